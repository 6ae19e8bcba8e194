"""Every notebook's parameters, their types and ranges, and the three profiles: one file.

* ``NOTEBOOKS[name]`` declares each parameter of a notebook with its ``quick`` value (the value the
  notebook's parameters cell holds, so a reader running it by hand gets the default profile).
* ``PROFILES[profile][name]`` overrides some of them: ``smoke`` (seconds, proves the notebook
  runs), ``quick`` (the default: real results on a 2-core CPU), ``paper`` (the papers' sizes,
  for a CUDA machine).

Parameters are validated before any work starts: an unknown name, a wrong type or an
out-of-range value raises :class:`ParameterError` naming the notebook, the parameter and what
was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A notebook parameter that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Param:
    """One notebook parameter.

    kind: int, float, bool, str or list (of ``item``); default: the quick value;
    low/high: inclusive bounds for numbers (and for list items); choices: allowed values.
    """

    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    item: type | None = None
    min_len: int = 1

    def expected(self) -> str:
        what = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(self.kind)
        if self.kind is list:
            what = f"a list of at least {self.min_len} {self.item.__name__}s"
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            what += f" in [{lo}, {hi}]" if self.kind is not list else f", each in [{lo}, {hi}]"
        return what

    def _scalar(self, kind: type, value: Any) -> Any:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        raise TypeError

    def _in_range(self, value: Any) -> bool:
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and value > self.high:
            return False
        return True

    def check(self, notebook: str, name: str, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise :class:`ParameterError`."""
        problem = f"{notebook}: parameter {name!r} must be {self.expected()}, got {value!r} ({type(value).__name__})"
        try:
            if self.kind is list:
                if not isinstance(value, (list, tuple)) or len(value) < self.min_len:
                    raise TypeError
                out = [self._scalar(self.item, v) for v in value]
                if not all(self._in_range(v) for v in out):
                    raise TypeError
            else:
                out = self._scalar(self.kind, value)
                if self.kind in (int, float) and not self._in_range(out):
                    raise TypeError
            if self.choices is not None and out not in self.choices:
                raise TypeError
        except TypeError:
            raise ParameterError(problem) from None
        return out


NOTEBOOKS: dict[str, dict[str, Param]] = {
    "crw_theory": {
        "seeds": Param(int, 3, "random seeds (each draws `trials` problems)", 1, 50),
        "trials": Param(int, 2000, "random (q, u, V) draws per seed", 1, 1_000_000),
        "dim": Param(int, 128, "feature dimension (must exceed 1 + max_negatives for the least squares)", 2, 4096),
        "max_identical": Param(int, 20, "most negatives identical to the positive", 0, 10_000),
        "max_negatives": Param(int, 40, "most true negatives", 0, 4000),
    },
    "data_worlds": {
        "n_clips": Param(int, 8, "test clips per world for the statistics", 1, 1000),
        "preset": Param(str, "quick", "world sizes: the quick defaults or the papers' sizes", choices=("quick", "paper")),
        "seed": Param(int, 0, "world seed", 0, 2**31 - 1),
    },
    "savos_theorem1": {
        "seeds": Param(int, 3, "number of world seeds (one clip per seed and condition)", 1, 50),
        "height": Param(int, 48, "frame height of the rigid world, pixels", 32, 512),
        "width": Param(int, 48, "frame width of the rigid world, pixels", 32, 512),
        "n_frames": Param(int, 12, "frames per clip", 4, 256),
        "n_objects": Param(int, 2, "objects per clip (the helpers that break assumptions come on top)", 2, 6),
        "steps": Param(int, 800, "optimisation steps of the free-mask fit", 1, 100_000),
        "lr": Param(float, 0.1, "Adam learning rate on the mask logits", 1e-5, 10.0),
        "init_low": Param(float, -4.0, "starting logit of the 'all background' initialisation", -20.0, 0.0),
        "init_high": Param(float, 4.0, "starting logit of the 'all object' initialisation", 0.0, 20.0),
        "chain_lengths": Param(list, [8, 16, 32, 64, 128], "clip lengths T for the App. B cost study",
                               2, 1024, item=int, min_len=2),
        "chain_size": Param(int, 32, "frame side (pixels) in the App. B cost study", 8, 256),
        "chain_repeats": Param(int, 3, "timing repeats in the App. B cost study (recorded as seeds)", 1, 20),
    },
}

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        "crw_theory": dict(seeds=1, trials=50),
        "data_worlds": dict(n_clips=1),
        "savos_theorem1": dict(seeds=1, height=40, width=40, n_frames=8, steps=60,
                               chain_lengths=[4, 8], chain_size=16, chain_repeats=1),
    },
    "quick": {},
    "paper": {
        "data_worlds": dict(n_clips=2, preset="paper"),
        "savos_theorem1": dict(seeds=10, height=96, width=96, n_frames=24, n_objects=3, steps=2000,
                               chain_lengths=[8, 16, 32, 64, 128, 256], chain_size=64, chain_repeats=5),
    },
}


def profile_names() -> list[str]:
    return list(PROFILES)


def resolve(notebook: str, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated parameters of ``notebook`` under ``profile``, with ``overrides`` on top.

    Raises:
        ParameterError: unknown notebook, profile or parameter, or a bad value.
    """
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; expected one of {profile_names()}")
    if notebook not in NOTEBOOKS:
        raise ParameterError(f"no parameters declared for notebook {notebook!r}; known: {sorted(NOTEBOOKS)}")
    spec = NOTEBOOKS[notebook]
    values = {name: p.default for name, p in spec.items()}
    for source, extra in (("profile " + profile, PROFILES[profile].get(notebook, {})), ("-p", overrides or {})):
        for name, value in extra.items():
            if name not in spec:
                raise ParameterError(
                    f"{notebook}: unknown parameter {name!r} (from {source}); expected one of {sorted(spec)}"
                )
            values[name] = spec[name].check(notebook, name, value)
    return values

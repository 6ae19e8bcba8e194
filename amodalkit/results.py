"""Recording a notebook's measurements, and reading the recorded results back.

A notebook makes a :class:`Recorder`, adds one value per seed for each measurement, and saves.
Under ``python -m amodalkit book run`` the runner tells the notebook (through the environment
variable ``AMODALKIT_MEASUREMENTS``) where to write; after a successful run the runner moves the
measurements into ``results/<profile>/<notebook>.json`` with the run's metadata. Run by hand,
the notebook keeps its measurements in memory and shows its verdicts without writing anything.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

MEASUREMENTS_ENV = "AMODALKIT_MEASUREMENTS"
TRAINING_LOG_ENV = "AMODALKIT_TRAINING_LOG"  # where train_cached logs each model it trains or loads


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


class Recorder:
    """Per-seed measurements of one notebook.

    Example:
        >>> rec = Recorder("demo")
        >>> rec.add("exact.min_iou", 0.995, seed=0)
        >>> rec.values("exact.min_iou")
        [0.995]
    """

    def __init__(self, notebook: str):
        self.notebook = notebook
        self.measurements: dict[str, dict[str, list]] = {}

    def add(self, name: str, value: float, seed: int) -> None:
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"{self.notebook}: measurement {name!r} for seed {seed} is NaN")
        entry = self.measurements.setdefault(name, {"values": [], "seeds": []})
        if seed in entry["seeds"]:
            raise ValueError(f"{self.notebook}: measurement {name!r} already has a value for seed {seed}")
        entry["values"].append(value)
        entry["seeds"].append(int(seed))

    def values(self, name: str) -> list[float]:
        return list(self.measurements[name]["values"])

    def as_results(self) -> dict[str, Any]:
        """The recorded measurements in the shape of a results file (without run metadata)."""
        return {"notebook": self.notebook, "measurements": self.measurements}

    def save(self) -> None:
        """Write the measurements where the runner asked (nothing when run by hand) and say so."""
        target = os.environ.get(MEASUREMENTS_ENV)
        count = len(self.measurements)
        if not target:
            print(f"{self.notebook}: run by hand, {count} measurements kept in memory only "
                  "(`python -m amodalkit book run` records them under results/)")
            return
        atomic_write_json(target, self.as_results())
        print(f"{self.notebook}: {count} measurements recorded")


def load_results(results_dir: Path | str) -> dict[str, dict[str, Any]]:
    """All results files of one profile: ``{notebook: results}``; an absent folder gives ``{}``."""
    results_dir = Path(results_dir)
    out = {}
    if results_dir.is_dir():
        for path in sorted(results_dir.glob("*.json")):
            try:
                out[path.stem] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"results file {path} is not valid JSON: {err}") from None
    return out

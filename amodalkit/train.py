"""One training loop for every method: device, seeds, Adam, validation-based selection, atomic
checkpoints, resume, progress, an early stop on NaN, and a cache of trained models.

The loop owns no data: the method's ``loss_fn(model, step, generator)`` draws its own batch from
``generator``, which is seeded from ``(seed, step)`` alone. A run resumed from a checkpoint therefore
draws the same batches and the same augmentation as an uninterrupted one and ends with the same
weights (tested). Model selection uses ``validate(model)``, a self-supervised validation loss, never
ground truth; the weights at the lowest validation loss are the ones returned.

Example:
    >>> model = torch.nn.Linear(2, 1)
    >>> result = train(model, lambda m, step, g: m(torch.randn(8, 2, generator=g)).pow(2).mean(),
    ...                steps=5, lr=1e-2, seed=0)
    >>> len(result.history["loss"])
    5
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import progress, provenance
from .results import TRAINING_LOG_ENV, atomic_write_json, atomic_write_text


class TrainingError(RuntimeError):
    """Training cannot go on (a loss that is NaN or infinite)."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable (e.g. truncated), or not the model expected. Names the file."""


def read_checkpoint(path: Path | str, *, keys: tuple[str, ...] = ("model",), method: str | None = None) -> dict:
    """``torch.load`` of an amodalkit checkpoint, with errors that name the file and what was expected.

    Args:
        keys: entries the checkpoint must hold ("model": the state dict).
        method: when given, a checkpoint that says it holds another method's model is refused.

    Raises:
        CheckpointError: missing, unreadable (truncated, not a PyTorch file), without ``keys``, or another method's.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint ({path.stat().st_size} bytes; it may be "
                              f"truncated or not a checkpoint): {reason}") from None
    if not isinstance(saved, dict) or not all(k in saved for k in keys):
        found = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise CheckpointError(f"{path}: expected an amodalkit checkpoint with entries {list(keys)}, found {found}")
    if not isinstance(saved["model"], dict):
        raise CheckpointError(f"{path}: its 'model' entry is a {type(saved['model']).__name__}, expected a state dict")
    if method is not None and saved.get("method", method) != method:
        raise CheckpointError(f"{path}: holds a {saved['method']!r} model, expected {method!r}")
    return saved


def load_weights(model: nn.Module, state: dict, path: Path | str, what: str = "the model") -> None:
    """``model.load_state_dict(state)``, refused (model untouched) with a :class:`CheckpointError` that names the
    file and the first missing / unexpected entries and shape differences when the weights do not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: file {tuple(state[k].shape)}, {what} {tuple(v.shape)}" for k, v in expected.items()
              if k in state and getattr(state[k], "shape", None) != v.shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("other shapes", shapes)):
        if items:
            problems.append(f"{len(items)} {label} ({'; '.join(items[:3])}{'; ...' if len(items) > 3 else ''})")
    if problems:
        raise CheckpointError(f"{path}: its weights do not fit {what}: " + ", ".join(problems))
    model.load_state_dict(state)


def set_aside(path: Path, err: Exception) -> Path:
    """Move an unusable cached file out of the way (kept for inspection) and warn, naming both files."""
    import warnings

    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}")
    if distributed()[0] == 0:  # one process moves it; under torchrun every rank retrains
        os.replace(path, aside)
    warnings.warn(f"{err}. Moved it to {aside.name} and training again.", stacklevel=3)
    return aside


def device() -> torch.device:
    """CUDA when present (this process's GPU under torchrun: ``LOCAL_RANK``), else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def distributed() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless a torch.distributed process group is up (torchrun)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


_RANK_STRIDE = 1_000_000_007_000  # rank r's streams start far from rank 0's (steps would need to pass 1e12 to meet)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one training step: a function of (seed, step, rank) only (rank 0: of (seed, step))."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step) + int(rank) * _RANK_STRIDE) % (2**63 - 1))


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The global RNG's seed at a step (dropout and anything else drawing from it), per rank."""
    return (int(seed) * 7_919 + int(step) + int(rank) * _RANK_STRIDE) % (2**63 - 1)


class _LossModule(nn.Module):
    """``forward(step, generator) = loss_fn(model, step, generator)``: lets DistributedDataParallel see the whole loss
    computation as its module's forward, whichever of the model's methods the loss calls."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, step: int, generator: torch.Generator) -> torch.Tensor:
        return self.loss_fn(self.model, step, generator)


def _sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so every rank validates the same model."""
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)


def models_dir() -> Path:
    return Path(os.environ.get("AMODALKIT_CACHE", Path.home() / ".cache" / "amodalkit")) / "models"


def atomic_save(obj: Any, path: Path | str) -> None:
    """torch.save through a temporary file and a rename: an interrupt never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def _deferred_interrupt():
    """Ctrl-C inside the block takes effect when it ends: an optimiser step is applied whole or not at all (Adam
    updates the parameters one by one; a checkpoint of half a step would not resume to the uninterrupted weights)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class TrainResult:
    """A trained model (the selected weights loaded) and its history.

    history: {"step", "loss"} per step and {"val_step", "val_loss"} per validation.
    """

    model: nn.Module
    history: dict[str, list] = field(default_factory=dict)
    best_step: int = 0
    from_cache: bool = False

    @property
    def best_val_loss(self) -> float | None:
        losses = self.history.get("val_loss") or []
        return min(losses) if losses else None

    @property
    def selected_val_loss(self) -> float | None:
        """The validation loss of the returned weights (the best one, or the last with ``select="last"``)."""
        pairs = dict(zip(self.history.get("val_step") or [], self.history.get("val_loss") or []))
        return pairs.get(self.best_step)


def _partial_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".partial")


def train(model: nn.Module, loss_fn: Callable[[nn.Module, int, torch.Generator], torch.Tensor], *, steps: int, lr: float,
          seed: int, validate: Callable[[nn.Module], float | dict] | None = None, validate_every: int | None = None,
          checkpoint: Path | str | None = None, checkpoint_every: int = 100, desc: str = "training",
          weight_decay: float = 0.0, run_device: torch.device | None = None,
          trainable: Callable[[nn.Module], list] | None = None, select: str = "best",
          lr_schedule: Callable[[int], float] | None = None, meta: dict | None = None,
          log_path: Path | str | None = None) -> TrainResult:
    """Train ``model`` with Adam for ``steps`` steps and return the selected weights.

    Args:
        loss_fn: ``loss_fn(model, step, generator) -> scalar``; draws its batch from ``generator``.
        validate: self-supervised validation loss (no ground truth); the weights with the lowest
            value are selected. It may return a dict {"loss": value, name: scalar, ...}: the other
            scalars are recorded per validation as ``history["val_<name>"]``. None: the final weights
            are returned.
        validate_every: steps between validations (default: steps // 10, and always at the end).
        checkpoint: final checkpoint path; progress is kept in ``<checkpoint>.partial`` and a later
            call with the same path resumes from it.
        trainable: the parameters to optimise (default: all); a frozen part stays bit-identical.
        select: "best" returns the weights of the lowest validation loss; "last" the final weights (the
            validation curve is still recorded), as releases that evaluate their last checkpoint do.
        lr_schedule: ``lr_schedule(step)`` multiplies ``lr`` at each step (None: constant); see
            :func:`exponential_decay`.
        meta: entries stored beside the weights in the checkpoint (the command line's method, recipe, profile).
        log_path: a JSON file rewritten (atomically) at every validation, checkpoint and at the end with the
            history so far (the loss curve) and ``meta``.

    The final checkpoint also holds a ``record`` (:func:`training_record`: the commit and package version that
    trained it, whether the code had uncommitted changes, the steps and the validation score its selection used),
    and the same record with ``meta`` is written beside it as ``<checkpoint>.json`` (what ``python -m amodalkit
    models`` lists) and into ``log_path``.

    Distributed (torchrun): when a process group is up, each rank draws its own batch with the generator of
    (seed, step, rank) (the recipe's batch is then the per-rank batch: global batch / world size), the model runs
    under DistributedDataParallel (gradients averaged over ranks; on CUDA BatchNorm becomes SyncBatchNorm, on the
    CPU each rank normalises with its own batch statistics and rank 0's running statistics are kept), the recorded
    loss is the mean over ranks, every rank validates rank 0's model, and only rank 0 writes checkpoints and logs.

    Raises:
        TrainingError: the loss became NaN or infinite (names the step and the last finite loss).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{desc}: steps must be a positive integer, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"{desc}: lr must be > 0, got {lr!r}")
    if select not in ("best", "last"):
        raise ValueError(f"{desc}: select must be 'best' or 'last', got {select!r}")
    run_device = run_device or device()
    rank, world = distributed()
    if world > 1 and run_device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # batch statistics over every rank's samples
    model.to(run_device)
    params = trainable(model) if trainable else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    validate_every = validate_every or max(steps // 10, 1)
    history: dict[str, list] = {"step": [], "loss": [], "val_step": [], "val_loss": []}
    best = (math.inf, 0, None)  # (val loss, step, state)
    start = 0
    started = provenance.describe()  # the code that began this run (kept in the partial checkpoint)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    partial = _partial_path(checkpoint) if checkpoint is not None else None
    if partial is not None and partial.is_file():
        initial = (_cpu_state(model), optimizer.state_dict())
        try:
            saved = read_checkpoint(partial, keys=("model", "optimizer", "history", "step", "best_val", "best_step",
                                                   "best_model"))
            load_weights(model, saved["model"], partial, desc)
            optimizer.load_state_dict(saved["optimizer"])
        except (CheckpointError, ValueError) as err:  # ValueError: an optimizer state of other parameters
            model.load_state_dict(initial[0])
            optimizer.load_state_dict(initial[1])
            set_aside(partial, err)
        else:
            history, start = saved["history"], saved["step"]
            best = (saved["best_val"], saved["best_step"], saved["best_model"])
            started = saved.get("started", started)

    def save_partial(done: int) -> None:
        if rank != 0:
            return
        if partial is not None:
            atomic_save(dict(model=_cpu_state(model), optimizer=optimizer.state_dict(), history=history, step=done,
                             best_val=best[0], best_step=best[1], best_model=best[2], started=started,
                             **(meta or {})), partial)
        write_log(done)

    def write_log(done: int, record: dict | None = None) -> None:
        if log_path is not None and rank == 0:
            extra = {} if record is None else dict(record=record)
            atomic_write_text(Path(log_path), json.dumps(dict(meta or {}, steps_done=done, steps=steps,
                                                              history=history, **extra), default=str) + "\n")

    def run_validation(done: int) -> None:
        nonlocal best
        if world > 1:
            _sync_buffers(model)
        # the global RNG as a function of the step alone (the same on every rank, and in a validation made up on
        # resume), then restored: whatever runs after training sees the state it saw before
        outside = torch.get_rng_state()
        torch.manual_seed(step_seed(seed, done) ^ 0x5EED)
        model.eval()
        try:
            with torch.no_grad():
                measured = validate(model)
        finally:
            torch.set_rng_state(outside)
        model.train()
        # a dict carries scalars watched beside the loss (e.g. a VAE's active latent dimensions): "val_<name>" lists
        extras = dict(measured) if isinstance(measured, dict) else {"loss": measured}
        if "loss" not in extras:
            raise ValueError(f"{desc}: validate returned a dict without a 'loss' entry: {sorted(extras)}")
        value = float(extras.pop("loss"))
        history["val_step"].append(done)
        history["val_loss"].append(value)
        for name, extra in extras.items():
            history.setdefault(f"val_{name}", []).append(float(extra))
        if value < best[0]:
            best = (value, done, _cpu_state(model))

    model.train()
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # the constructor broadcasts rank 0's parameters and buffers; unused parameters (a frozen part) are allowed
        forward = DistributedDataParallel(_LossModule(model, loss_fn), find_unused_parameters=True,
                                          device_ids=[run_device.index] if run_device.type == "cuda" else None)
    else:
        forward = None
    done = start
    bar = progress(range(start, steps), desc=desc, total=steps - start, disable=rank != 0)
    try:
        due = validate is not None and start > 0 and (start % validate_every == 0 or start == steps)
        if due and (not history["val_step"] or history["val_step"][-1] != start):
            run_validation(start)  # the run was interrupted during this validation: do it now
        for step in bar:
            torch.manual_seed(step_seed(seed, step, rank))  # anything drawing from the global RNG
            generator = step_generator(seed, step, rank)
            loss = loss_fn(model, step, generator) if forward is None else forward(step, generator)
            reported = loss.detach().clone()
            if world > 1:  # every rank sees the mean (and a NaN anywhere), so all stop together
                import torch.distributed as dist

                dist.all_reduce(reported)
                reported /= world
            if not torch.isfinite(reported):
                last = history["loss"][-1] if history["loss"] else None
                raise TrainingError(f"{desc}: the loss is {float(reported)} at step {step} (last finite loss: {last}); "
                                    f"stopping. Lower the learning rate (lr = {lr}) or check the inputs.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if lr_schedule is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr * float(lr_schedule(step))
            with _deferred_interrupt():
                optimizer.step()
                done = step + 1
                history["step"].append(step)
                history["loss"].append(float(reported))
            if validate is not None and (done % validate_every == 0 or done == steps):
                run_validation(done)
                write_log(done)
            if partial is not None and done % checkpoint_every == 0 and done < steps:
                save_partial(done)
            if hasattr(bar, "set_postfix") and step % 10 == 0:
                bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
    except KeyboardInterrupt:
        save_partial(done)  # every completed step is kept; the next call resumes here
        raise
    if best[2] is not None and select == "best":
        model.load_state_dict(best[2])
        best_step = best[1]
    else:
        best_step = done
    result = TrainResult(model=model, history=history, best_step=best_step)
    record = training_record(result, done, select if validate is not None else "last", started)
    if checkpoint is not None and rank == 0:
        atomic_save(dict(model=_cpu_state(model), history=history, best_step=best_step, record=record,
                         **(meta or {})), checkpoint)
        atomic_write_json(record_path(checkpoint), dict(meta or {}, record=record))
        if partial.is_file():
            partial.unlink()
    write_log(done, record)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # the other ranks return once rank 0's files are in place
    return result


def training_record(result: TrainResult, steps_done: int, select: str, started: dict) -> dict:
    """Where a trained model comes from: ``{commit, dirty, version, created}`` of the code that finished it
    (:func:`amodalkit.provenance.describe`; ``started_at_commit`` too when a resumed run began at another commit),
    the steps, and the selection: its rule, the selected step and that step's validation loss."""
    record = dict(provenance.describe(), steps=steps_done, selection=dict(
        rule="lowest validation loss" if select == "best" else "last step", step=result.best_step,
        val_loss=result.selected_val_loss))
    if started.get("commit") != record["commit"]:
        record["started_at_commit"] = started.get("commit")
    return record


def record_path(checkpoint: Path | str) -> Path:
    """The JSON record written beside a checkpoint (``<checkpoint>.json``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + ".json")


def exponential_decay(steps: int, start: float, factor: float) -> Callable[[int], float]:
    """A learning-rate multiplier: 1 until ``start`` x ``steps``, then exponential decay reaching ``factor`` at the
    last step (STEm-Seg's release: constant, then ExponentialLR down to 1e-2 from 37.5% of the iterations).

    Example:
        >>> schedule = exponential_decay(100, 0.5, 0.01)
        >>> schedule(10), round(schedule(99), 6)
        (1.0, 0.01)
    """
    if not 0 <= start < 1 or not 0 < factor <= 1 or steps < 1:
        raise ValueError(f"exponential_decay: need steps >= 1, 0 <= start < 1 and 0 < factor <= 1, got {steps}, {start}, "
                         f"{factor}")
    first = int(start * steps)
    span = max(steps - 1 - first, 1)

    def multiplier(step: int) -> float:
        return 1.0 if step <= first else factor ** (min(step - first, span) / span)

    return multiplier


def plateau_improvement(history: dict[str, list], tail: float = 0.2) -> float:
    """How much the best validation loss still improved over the last ``tail`` of the steps, relative to it:
    (best up to step (1 - tail) S - best overall) / |best up to (1 - tail) S|, S the last validated step.

    0 means the run had plateaued (no better weights late); a value of 0.05 means the late steps still bought 5%.
    The convergence gates use it.

    Raises:
        ValueError: no validation, or none at or before the (1 - tail) mark.
    """
    steps, losses = history.get("val_step") or [], history.get("val_loss") or []
    if not losses:
        raise ValueError("plateau_improvement: the history has no validation losses (train with validate=...)")
    if not 0 < tail < 1:
        raise ValueError(f"plateau_improvement: tail must be in (0, 1), got {tail}")
    mark = (1 - tail) * max(steps)
    early = [loss for step, loss in zip(steps, losses) if step <= mark]
    if not early:
        raise ValueError(f"plateau_improvement: no validation at or before step {mark:g} (validate more often)")
    best_early = min(early)
    return (best_early - min(losses)) / abs(best_early) if best_early else 0.0


def config_key(config: dict[str, Any], code: tuple[str, ...] = ()) -> str:
    """A hash of a training configuration and of the source files it depends on (paths in the package)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    package = Path(__file__).parent
    for name in sorted(set(code) | {"train.py"}):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:20]


class TargetTrained(Exception):
    """Raised by :func:`train_cached` inside :func:`redirect_training` once the target model is trained (ends the
    caller's remaining work, e.g. the later stages of a multi-stage recipe); carries the :class:`TrainResult`."""

    def __init__(self, result: TrainResult):
        super().__init__("target trained")
        self.result = result


class TrainingCaptured(Exception):
    """Raised by :func:`train_cached` inside :func:`redirect_training` with no checkpoint: hands back the target's
    ``make_model``, ``loss_fn`` and training arguments untrained (to run the same recipe another way, e.g. the
    distributed-equivalence test)."""

    def __init__(self, make_model, loss_fn, train_kwargs: dict):
        super().__init__("target captured")
        self.make_model, self.loss_fn, self.train_kwargs = make_model, loss_fn, train_kwargs


_REDIRECT: dict | None = None


@contextmanager
def redirect_training(match: Callable[[str, dict], bool], checkpoint: Path | str | None, *, meta: dict | None = None,
                      log_path: Path | str | None = None):
    """Train one model of a chapter's recipe into a given checkpoint instead of the cache (the command line's
    ``train``): inside the block, the first :func:`train_cached` call whose ``(name, config)`` ``match`` accepts
    trains into ``checkpoint`` (resuming ``<checkpoint>.partial`` if present), stores ``meta`` beside the weights,
    writes the loss curve to ``log_path``, then raises :class:`TargetTrained`. Other models the recipe needs first
    (e.g. stage 1 before stage 2) come from the cache as usual. ``checkpoint=None`` trains nothing and raises
    :class:`TrainingCaptured` instead.
    """
    global _REDIRECT
    previous = _REDIRECT
    _REDIRECT = dict(match=match, checkpoint=None if checkpoint is None else Path(checkpoint), meta=meta,
                     log_path=log_path)
    try:
        yield
    finally:
        _REDIRECT = previous


def train_cached(name: str, config: dict[str, Any], make_model: Callable[[], nn.Module],
                 loss_fn: Callable[[nn.Module, int, torch.Generator], torch.Tensor], *, code: tuple[str, ...] = (),
                 **train_kwargs) -> TrainResult:
    """:func:`train`, cached by configuration: the same ``config`` (and code) loads the stored weights.

    ``config`` must hold everything that determines the result (data, sizes, steps, lr, seed, ...);
    ``code`` names the package files the training depends on (``train.py`` always counts).
    Models live in ``$AMODALKIT_CACHE/models`` (default ``~/.cache/amodalkit/models``).
    """
    if _REDIRECT is not None and _REDIRECT["match"](name, config):
        target = _REDIRECT
        train_kwargs.setdefault("seed", config.get("seed", 0))
        if target["checkpoint"] is None:
            raise TrainingCaptured(make_model, loss_fn, train_kwargs)
        result = train(make_model(), loss_fn, checkpoint=target["checkpoint"], meta=target["meta"],
                       log_path=target["log_path"], desc=train_kwargs.pop("desc", name), **train_kwargs)
        raise TargetTrained(result)
    world = distributed()[1]
    if world > 1:  # per-rank batches and generators: another model than one process with that batch would train
        config = dict(config, world_size=world)
    path = models_dir() / f"{name}-{config_key(config, code)}.pt"
    model = make_model()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()  # every rank decides on the same state of the cache
    if path.is_file():
        try:
            saved = read_checkpoint(path, keys=("model", "history", "best_step"))
            load_weights(model, saved["model"], path, f"the {name} model")
        except CheckpointError as err:  # truncated, or written by other code: retrain rather than fail the chapter
            set_aside(path, err)
        else:
            model.to(train_kwargs.get("run_device") or device())
            _log_training(name, True, 0.0)
            return TrainResult(model=model, history=saved["history"], best_step=saved["best_step"], from_cache=True)
    train_kwargs.setdefault("seed", config.get("seed", 0))
    start = time.perf_counter()
    stored = json.loads(json.dumps(config, default=str))  # kept beside the weights: what trained them
    # the chapter and profile whose run trained it, when the book runner says (python -m amodalkit models lists them)
    origin = {k: os.environ[v] for k, v in (("chapter", "AMODALKIT_CHAPTER"), ("profile", "AMODALKIT_PROFILE"))
              if os.environ.get(v)}
    result = train(model, loss_fn, checkpoint=path, desc=train_kwargs.pop("desc", name),
                   meta=dict(config=stored, name=name, seed=config.get("seed"), **origin), **train_kwargs)
    _log_training(name, False, time.perf_counter() - start)
    return result


def _log_training(name: str, from_cache: bool, seconds: float) -> None:
    """One JSON line per model a chapter trained or loaded, where the book runner asks (so each chapter's recorded
    wall time says how much of it was training)."""
    target = os.environ.get(TRAINING_LOG_ENV)
    if target:
        with open(target, "a") as handle:
            handle.write(json.dumps(dict(name=name, from_cache=from_cache, seconds=round(seconds, 2))) + "\n")



# ------------------------------------------------------------------------------------ listing trained models


@dataclass
class ModelEntry:
    """One trained model as ``python -m amodalkit models`` lists it."""

    method: str
    name: str
    profile: str | None
    seed: int | None
    steps: int | None
    val_loss: float | None
    selection: str | None
    commit: str | None
    dirty: bool | None
    created: str
    size: int
    path: Path


def _read_record(checkpoint: Path) -> dict:
    """What a checkpoint says about itself: its ``<checkpoint>.json``, else its own entries (older checkpoints)."""
    sidecar = record_path(checkpoint)
    if sidecar.is_file():
        try:
            return json.loads(sidecar.read_text())
        except json.JSONDecodeError:
            pass
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: listed with what the file name says
        return {}
    return {k: v for k, v in saved.items() if k not in ("model", "optimizer", "best_model", "history")} \
        if isinstance(saved, dict) else {}


def list_models(dirs: list[str | Path] = (), *, method: str | None = None, cache: bool = True) -> list[ModelEntry]:
    """Trained models of the model cache (unless ``cache`` is False) and of the folders ``dirs`` (``train --out``
    folders, searched recursively for ``*.pt``), newest first; ``method`` keeps one method's (e.g. ``savos``).

    Raises:
        FileNotFoundError: a folder of ``dirs`` does not exist.
    """
    paths: list[Path] = sorted(models_dir().glob("*.pt")) if cache and models_dir().is_dir() else []
    for folder in map(Path, dirs):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder (expected a `train --out` folder)")
        paths += sorted(folder.rglob("*.pt"))
    entries = []
    for path in paths:
        meta = _read_record(path)
        record = meta.get("record") or {}
        config = meta.get("config") or {}
        name = meta.get("name") or meta.get("command") or path.stem.rsplit("-", 1)[0]
        kind = meta.get("method") or name.split("-")[0]
        if method is not None and method not in (kind, name):
            continue
        selection = record.get("selection") or {}
        created = record.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
        entries.append(ModelEntry(method=kind, name=name, profile=meta.get("profile"),
                                  seed=meta.get("seed", config.get("seed")),
                                  steps=record.get("steps", config.get("steps")), val_loss=selection.get("val_loss"),
                                  selection=selection.get("rule"), commit=record.get("commit"),
                                  dirty=record.get("dirty"), created=created, size=path.stat().st_size, path=path))
    return sorted(entries, key=lambda e: e.created, reverse=True)


def models_table(entries: list[ModelEntry]) -> str:
    """The listing as text columns (commit: short hash, ``+`` when the code had uncommitted changes)."""
    if not entries:
        return f"no trained models (model cache: {models_dir()})"
    rows = [("method", "model", "profile", "seed", "steps", "selection score", "commit", "size", "created", "path")]
    for e in entries:
        score = "-" if e.val_loss is None else f"{e.val_loss:.4g} ({'best' if e.selection == 'lowest validation loss' else 'last'})"
        commit = "-" if e.commit is None else e.commit[:10] + ("+" if e.dirty else "")
        rows.append((e.method, e.name, e.profile or "-", "-" if e.seed is None else str(e.seed),
                     "-" if e.steps is None else str(e.steps), score, commit, f"{e.size / 2**20:.1f} MiB",
                     e.created.replace("T", " ").removesuffix("Z"), str(e.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)

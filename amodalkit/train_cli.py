"""``python -m amodalkit train METHOD --profile P --out DIR [--seed S] [--steps N] [-p KEY VALUE ...] [--resume]``.

Trains one model with the recipe and data its chapter uses under a profile (the chapter's parameters, validated
before any work; ``-p`` overrides them as in ``book run``). What is written into ``DIR``:

* ``checkpoint.pt``: the selected weights (the chapter's selection rule), the history, and what was trained
  (method, profile, seed, parameters, recipe): ``propagate --checkpoint`` reads a CRW one;
* ``checkpoint.pt.partial`` while training (every ``checkpoint_every`` steps and on Ctrl-C): ``--resume`` continues
  it to the same weights as an uninterrupted run (the loop draws every batch from (seed, step));
* ``log.json``: the loss and validation curves so far, rewritten at every validation.

Models a recipe needs before the target (stage 1 before stage 2, Mask-VOS's phase A before phase B) come from the
book's model cache, trained there first if absent. ``train crw|maskvos-a|maskvos-b --frames ROOT`` trains on a user's
unlabelled videos (``ROOT/JPEGImages/480p/<video>/*.jpg``) instead of the ``vos`` world (these methods need no labels).

Under ``torchrun --nproc_per_node N`` the same command trains with DistributedDataParallel (see
:func:`amodalkit.train.train`): each process runs batch / N of the chapter's batch (an error if it does not divide).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .profiles import Param, ParameterError, resolve

# torch and numpy are imported where used: the command line builds its parser from METHODS for every command


class TrainCommandError(ValueError):
    """A ``train`` invocation that cannot start (names the option or file and what was expected)."""


@dataclass(frozen=True)
class Method:
    """One ``train`` METHOD: the chapter whose parameters it takes, the parameter ``--steps`` sets, the parameters
    only the command line has (``-p world street``), which cached model is the target, and how to run the recipe."""

    notebook: str
    steps_param: str
    batch_params: tuple[str, ...]  # per-rank batch = global / world size under torchrun
    extra: dict[str, Param]
    target: Callable[[dict, str, dict], bool]  # (params, name, config) -> is this train_cached call the target?
    run: Callable[[dict, int, dict, Path | None], None]  # (params, seed, meta, frames) runs the chapter's recipe
    summary: str


# ----------------------------------------------------------------------------------------- the recipes


def _run_crw(params: dict, seed: int, meta: dict, frames: Path | None) -> None:
    from .crw import chapter_data, chapter_recipe, train_crw

    recipe = chapter_recipe(params)
    meta["recipe"] = dataclasses.asdict(recipe)
    if frames is not None:
        train, val, key = frame_folder_videos(frames, params["height"], params["width"], params["n_frames"])
    else:
        data = chapter_data(params, seed, test_clips=1)
        train, val, key = data.train, data.val, data.key
    meta["data"] = key
    train_crw(recipe, train, val, seed=seed, data_key=key)


def _run_savos(params: dict, seed: int, meta: dict, frames: Path | None) -> None:
    from . import savos

    data, recipe, key = savos.chapter_setup(params["world"], seed, params)
    meta.update(recipe=dataclasses.asdict(recipe), data=key)
    savos.train_variant(params["variant"], data, recipe, seed, key)


def _run_vae(params: dict, seed: int, meta: dict, frames: Path | None) -> None:
    from .amodal_vae import experiments

    data = experiments.chapter_data(params["world"], seed, params, splits=())
    meta.update(recipe=dataclasses.asdict(experiments.recipe_from(params)), data=data.key)
    experiments.train_vae(data, params, seed)


def _stem_world(params: dict) -> dict:
    from .data.worlds import STREET_FAST_MOTION

    if params["world"] == "davis_like":
        return {}
    return dict(height=params["fast_height"], width=params["fast_width"],
                ego_speed=STREET_FAST_MOTION["ego_speed"] * params["fast_height"] / 64)


def _run_stemseg(params: dict, seed: int, meta: dict, frames: Path | None) -> None:
    from .stemseg import StemRecipe, load_stem_data, train_stemseg

    recipe = StemRecipe(width=params["width"], stride=params["stride"], clip_len=params["clip_len"],
                        batch=params["batch"], steps=params["steps"], lr=params["lr"], decay_start=params["decay_start"],
                        validate_every=max(params["steps"] // 12, 1), mixing=params["mixing"])
    world = params["world"]
    data = load_stem_data(world, seed, train_clips=params["train_clips"],
                          image_count=params["image_count"] if world == "davis_like" else 0, val_clips=params["val_clips"],
                          test_clips=params["test_clips"], clip_len=params["clip_len"], preset=params["preset"],
                          world_params=_stem_world(params))
    meta.update(recipe=dataclasses.asdict(recipe), data=data.key)
    train_stemseg(recipe, data, seed)


def _run_maskvos(params: dict, seed: int, meta: dict, frames: Path | None) -> None:
    from .crw import VosData
    from .maskvos import train_phase_a, train_phase_b
    from .maskvos.experiments import chapter_data, chapter_recipe

    recipe = chapter_recipe(params)
    if frames is not None:  # unlabelled videos: no pseudo-mask IoU is recorded
        train, val, key = frame_folder_videos(frames, params["height"], params["width"], params["n_frames"])
        data, foreground = VosData(train, val, [], key), None
    else:  # the pseudo masks' IoU to the true foreground is recorded in validation, as the chapter does
        data, foreground = chapter_data(params, seed)
    meta.update(recipe=dataclasses.asdict(recipe), data=data.key)
    if params["phase"] == "a":
        train_phase_a(params["learner"], recipe, data.train, data.val, seed=seed, data_key=data.key)
        return
    train_phase_b(params["learner"], params["arm"], recipe, data, foreground, seed=seed)


def _variants() -> tuple:
    from .savos import VARIANTS

    return tuple(VARIANTS)


def _mixings() -> tuple:
    from .stemseg import MIXING

    return tuple(MIXING)


def _vae(stage: int) -> Method:
    return Method("vae_analysis", f"steps{stage}", ("batch",), {},
                  lambda p, name, config, stage=stage: name == "amodal_vae" and config.get("stage") == stage, _run_vae,
                  f"Amodal-VAE stage {stage}" + (" (stage 1 from the cache)" if stage == 2 else
                                                 " (stages 1-2 from the cache)" if stage == 3 else ""))


METHODS: dict[str, Method] = {
    "savos": Method("savos_ablations", "steps", ("batch",),
                    {"world": Param(str, "fishbowl", "the world", choices=("fishbowl", "street")),
                     "variant": Param(str, "full", "the row of Tables 1-3")},
                    lambda p, name, config: name == f"savos-{p['variant']}", _run_savos, "SaVos (a row of Tables 1-3)"),
    "crw": Method("crw_propagation", "steps", ("batch",), {}, lambda p, name, config: name == "crw", _run_crw,
                  "CRW (the main model of the CRW chapters; --frames ROOT for your own videos)"),
    "vae-stage1": _vae(1),
    "vae-stage2": _vae(2),
    "vae-stage3": _vae(3),
    "stemseg": Method("stem_mixing", "steps", ("batch",),
                      {"world": Param(str, "davis_like", "the world", choices=("davis_like", "fast_motion")),
                       "mixing": Param(str, "xyff", "the mixing function of Table I")},
                      lambda p, name, config: name == "stemseg", _run_stemseg, "STEm-Seg (a mixing function of Table I)"),
    "maskvos-a": Method("maskvos", "corr_steps", ("batch",),
                        {"learner": Param(str, "lcorr", "the correspondence learner", choices=("lcorr", "crw"))},
                        lambda p, name, config: name == f"maskvos-{p['learner']}-a", _run_maskvos,
                        "Mask-VOS phase A (the correspondence learner alone)"),
    "maskvos-b": Method("maskvos", "seg_steps", ("batch", "seg_batch"),
                        {"learner": Param(str, "lcorr", "the correspondence learner", choices=("lcorr", "crw")),
                         "arm": Param(str, "seg", "with L_Seg or correspondence only", choices=("seg", "correspondence"))},
                        lambda p, name, config: name == f"maskvos-{p['learner']}-{p['arm']}", _run_maskvos,
                        "Mask-VOS phase B (phase A from the cache)"),
}


def method_params(method: str, profile: str, overrides: dict[str, Any], steps: int | None) -> dict[str, Any]:
    """The chapter's parameters under ``profile`` with the command line's own on top, all validated."""
    if method not in METHODS:
        raise TrainCommandError(f"unknown METHOD {method!r}; expected one of {', '.join(METHODS)}")
    spec = METHODS[method]
    overrides = dict(overrides)
    extra = {name: param.default for name, param in spec.extra.items()}
    for name in list(overrides):
        if name in spec.extra:
            extra[name] = spec.extra[name].check(f"train {method}", name, overrides.pop(name))
    if steps is not None:
        overrides[spec.steps_param] = steps
    params = resolve(spec.notebook, profile, overrides)
    if method == "savos" and extra["variant"] not in _variants():
        raise ParameterError(f"train savos: variant must be one of {list(_variants())}, got {extra['variant']!r}")
    if method == "stemseg" and extra["mixing"] not in _mixings():
        raise ParameterError(f"train stemseg: mixing must be one of {list(_mixings())}, got {extra['mixing']!r}")
    if method.startswith("maskvos"):
        extra["phase"] = method[-1]
    return {**params, **extra}


def frame_folder_videos(root: Path | str, height: int, width: int, n_frames: int) -> tuple:
    """Unlabelled videos in DAVIS's JPEG layout as training clips: every video under ``root/JPEGImages/480p`` resized
    to ``height`` x ``width`` and cut into windows of ``n_frames`` (a shorter tail is dropped); every 10th window (at
    least one) is held out for the validation curve.

    Returns (train (V, T, H, W, 3) uint8, val (V', T, H, W, 3) uint8, a key naming the data).

    Raises:
        TrainCommandError: no such folder, no videos, or fewer than two windows in all.
    """
    import numpy as np
    import torch
    from PIL import Image

    from .train import distributed

    folder = Path(root) / "JPEGImages" / "480p"
    if not folder.is_dir():
        raise TrainCommandError(f"--frames {root}: expected videos in {folder}/<video>/*.jpg (DAVIS's layout)")
    videos = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.glob("*.jpg")))
    if not videos:
        raise TrainCommandError(f"--frames {root}: no video folder with .jpg frames in {folder}")
    windows, digest, skipped = [], hashlib.sha256(), []
    for video in videos:
        paths = sorted(video.glob("*.jpg"))
        if len(paths) < n_frames:
            skipped.append(f"{video.name} ({len(paths)} frames)")
            continue
        frames = []
        for path in paths[:len(paths) // n_frames * n_frames]:
            try:
                with Image.open(path) as image:
                    frames.append(np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR)))
            except OSError as err:
                raise TrainCommandError(f"{path}: cannot be read as an image ({err})") from None
            digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}".encode())
        frames = np.stack(frames)
        windows += [frames[i:i + n_frames] for i in range(0, len(frames), n_frames)]
    if skipped and distributed()[0] == 0:
        print(f"--frames: skipped {len(skipped)} video(s) shorter than n_frames = {n_frames}: {', '.join(skipped[:5])}")
    if len(windows) < 2:
        raise TrainCommandError(f"--frames {root}: {len(windows)} window(s) of {n_frames} frames; need at least 2 (one "
                                f"for validation): add videos or lower -p n_frames")
    held_out = set(range(0, len(windows), 10))
    train = torch.from_numpy(np.stack([w for i, w in enumerate(windows) if i not in held_out]))
    val = torch.from_numpy(np.stack([windows[i] for i in sorted(held_out)]))
    key = dict(frames=str(Path(root).resolve()), videos=len(videos), windows=len(windows), height=height, width=width,
               n_frames=n_frames, digest=digest.hexdigest()[:16])
    return train, val, key


def start_distributed() -> tuple[int, int]:
    """Under torchrun (``WORLD_SIZE`` > 1), join the process group: nccl on CUDA (one GPU per ``LOCAL_RANK``), gloo on
    the CPU. Returns (rank, world size); (0, 1) on one process."""
    import os

    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def per_rank_batches(method: str, params: dict, world: int) -> dict:
    """The recipe's batch sizes for one of ``world`` ranks: each global batch divided evenly (else an error)."""
    if world == 1:
        return params
    out = dict(params)
    for name in METHODS[method].batch_params:
        if params[name] % world:
            raise TrainCommandError(f"-p {name} {params[name]}: the global batch must divide evenly over the "
                                    f"{world} processes (each runs {name} / {world})")
        out[name] = params[name] // world
    return out


def train_command(method: str, profile: str, out: Path | str, *, seed: int = 0, steps: int | None = None,
                  overrides: dict[str, Any] | None = None, resume: bool = False, frames: Path | str | None = None):
    """The ``train`` command: check everything, then train the target into ``out`` (see the module docstring).

    Returns the :class:`amodalkit.train.TrainResult`, or None when ``--resume`` finds the run in ``out`` finished.
    """
    from .train import TargetTrained, read_checkpoint, redirect_training

    params = method_params(method, profile, overrides or {}, steps)
    if frames is not None and method not in ("crw", "maskvos-a", "maskvos-b"):
        raise TrainCommandError(f"--frames is for the self-supervised methods (crw, maskvos-a, maskvos-b), not {method}")
    if frames is not None and not (Path(frames) / "JPEGImages" / "480p").is_dir():
        raise TrainCommandError(f"--frames {frames}: expected videos in {Path(frames) / 'JPEGImages' / '480p'}/<video>/")
    if not isinstance(seed, int) or seed < 0:
        raise TrainCommandError(f"--seed must be an integer >= 0, got {seed!r}")
    rank, world = start_distributed()
    say = print if rank == 0 else (lambda *a, **k: None)
    rank_params = per_rank_batches(method, params, world)
    out = Path(out)
    checkpoint, partial = out / "checkpoint.pt", out / "checkpoint.pt.partial"
    meta = dict(method=method.split("-")[0] if method.startswith(("vae", "maskvos")) else method, command=method,
                profile=profile, seed=seed, params=params, frames=str(frames) if frames else None, world_size=world)
    meta["method"] = {"vae": "amodal_vae"}.get(meta["method"], meta["method"])
    for existing in (checkpoint, partial):
        if existing.is_file():
            if not resume:
                what = "a finished run" if existing == checkpoint else "an interrupted run"
                raise TrainCommandError(f"--out {out} holds {what} ({existing.name}); pass --resume to continue it, or "
                                        f"choose another --out")
            saved = read_checkpoint(existing)
            # frames and world size too: other data or other per-rank batches would not resume to the same weights
            differs = {k: (saved.get(k), meta[k]) for k in ("command", "profile", "seed", "params", "frames", "world_size")
                       if saved.get(k, 1 if k == "world_size" else None) != meta[k]}
            if differs:
                detail = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in differs.items() if k != "params")
                if "params" in differs:
                    old, new = differs["params"]
                    changed = sorted(k for k in set(old or {}) | set(new) if (old or {}).get(k) != new.get(k))
                    detail += ("; " if detail else "") + f"parameters {changed}"
                raise TrainCommandError(f"--resume: {existing} was written by another run ({detail})")
    if checkpoint.is_file() and not partial.is_file():
        say(f"{checkpoint} is complete: nothing to resume")
        return None
    out.mkdir(parents=True, exist_ok=True)
    spec = METHODS[method]
    ranks = f", {world} processes (batch per process: {', '.join(str(rank_params[b]) for b in spec.batch_params)})" \
        if world > 1 else ""
    say(f"train {method}: {spec.summary}; profile {profile}, seed {seed}, {params[spec.steps_param]} steps{ranks} -> "
        f"{checkpoint}" + (" (resuming)" if partial.is_file() else ""))
    try:
        with redirect_training(lambda name, config: spec.target(params, name, config), checkpoint, meta=meta,
                               log_path=out / "log.json"):
            spec.run(rank_params, seed, meta, Path(frames) if frames else None)
    except TargetTrained as done:
        say(f"written {checkpoint} (selected step {done.result.best_step}) and {out / 'log.json'}")
        return done.result
    raise RuntimeError(f"train {method}: the recipe finished without training its target model (a bug: the target "
                       f"rule of METHODS[{method!r}] matched no model)")

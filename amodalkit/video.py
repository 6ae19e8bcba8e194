"""CRW-style label propagation on a user's own video in DAVIS layout: ``python -m amodalkit propagate``.

Input (``root``, one sequence ``name``)::

    JPEGImages/480p/<name>/00000.jpg, 00001.jpg, ...   the frames (any size; all frames one size)
    Annotations/480p/<name>/00000.png                  the first frame's objects (indexed PNG, 0 background)

Output: ``out/<name>/<stem>.png`` for every frame, indexed PNGs with the annotation's palette (DAVIS's results
layout, so ``python -m amodalkit evaluate --results out`` reads it). Frames are read, encoded and written one at a
time and :func:`amodalkit.propagation.propagate_stream` keeps only frame 0 and the context frames, so memory does
not grow with the video's length (``benchmarks/video_propagation.py`` measures it on 480 x 854).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import progress

FEATURES = ("crw", "untrained", "pixels")


class VideoError(ValueError):
    """A sequence folder or option that cannot be propagated (the message names the file or option)."""


@dataclass
class Sequence:
    """A DAVIS-layout sequence checked before any work: frame paths (sorted), its first annotation (H, W) ids,
    and the annotation's palette (flat RGB list, or None)."""

    name: str
    frames: list[Path]
    first_ids: np.ndarray
    palette: list[int] | None


def open_sequence(root: Path | str, name: str, resolution: str = "480p") -> Sequence:
    """Check a sequence folder before any work: frames present, numbered without gaps, one size; the first frame's
    annotation present, of the frames' size, with at least one object.

    Raises:
        VideoError: naming the folder or file and what was expected.
    """
    from PIL import Image

    root = Path(root)
    frame_dir = root / "JPEGImages" / resolution / name
    if not frame_dir.is_dir():
        raise VideoError(f"--sequence {name}: no frame folder {frame_dir}")
    frames = sorted(frame_dir.glob("*.jpg"))
    if not frames:
        raise VideoError(f"--sequence {name}: no .jpg frames in {frame_dir}")
    numbers = [int(p.stem) for p in frames if re.fullmatch(r"\d+", p.stem)]
    if len(numbers) == len(frames):  # numbered frames: a gap is a missing frame
        absent = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if absent:
            digits = len(frames[0].stem)
            raise VideoError(f"--sequence {name}: frame {absent[0]:0{digits}d}.jpg is missing from {frame_dir} (the "
                             f"frames run {frames[0].name}..{frames[-1].name}; {len(absent)} missing)")
    label_path = root / "Annotations" / resolution / name / f"{frames[0].stem}.png"
    if not label_path.is_file():
        raise VideoError(f"--sequence {name}: the first frame's annotation {label_path} is missing")
    with Image.open(label_path) as label:
        palette = label.getpalette() if label.mode == "P" else None
        first_ids = np.array(label)
    if first_ids.ndim != 2:
        raise VideoError(f"{label_path}: expected an indexed ('P') PNG of object ids, got shape {first_ids.shape}")
    first_ids = first_ids.astype(np.int64)
    first_ids[first_ids == 255] = 0  # void
    size = first_ids.shape
    for path in frames:
        try:
            with Image.open(path) as image:  # reads the header only
                frame_size = image.size[::-1]
        except OSError as err:
            raise VideoError(f"{path}: cannot be read as an image ({err})") from None
        if frame_size != size:
            raise VideoError(f"{label_path} is {size[0]} x {size[1]} (H x W), but frame {path.name} is "
                             f"{frame_size[0]} x {frame_size[1]}: the annotation must have its frames' size")
    if not first_ids.any():
        raise VideoError(f"{label_path} is empty (every pixel 0): nothing to propagate; annotate at least one object")
    return Sequence(name, frames, first_ids, palette)


def crw_from_checkpoint(path: Path | str):
    """A CRW network from a checkpoint: ``python -m amodalkit train crw`` writes its recipe beside the weights and
    the book's cache its configuration (which holds the recipe); a file without either gets its width and dim from
    the weights' shapes and reflect padding (the release's). Errors name the file and what was expected."""
    from .crw import CRW
    from .train import CheckpointError, load_weights, read_checkpoint

    saved = read_checkpoint(path, method="crw")
    state = saved["model"]
    # `train crw` stores the recipe; the book's cache stores the configuration that holds it
    recipe = saved.get("recipe") or (saved.get("config") or {}).get("recipe") or {}
    if "head.weight" not in state:
        raise CheckpointError(f"{path}: expected CRW weights (entries encoder.* and head.weight), found "
                              f"{sorted(state)[:4]}...")
    dim, channels = state["head.weight"].shape
    width = recipe.get("width", channels // 8)
    model = CRW(width=width, dim=recipe.get("dim", dim), padding=recipe.get("padding", "reflect"))
    load_weights(model, state, path, f"a CRW network of width {width}, dim {dim}")
    return model.eval()


def feature_model(features: str, checkpoint: Path | str | None, seed: int = 0):
    """The network behind ``--features`` (None for raw pixels), checked before any work."""
    from .crw import CRW

    if features not in FEATURES:
        raise VideoError(f"--features must be one of {', '.join(FEATURES)}, got {features!r}")
    if features == "crw":
        if checkpoint is None:
            raise VideoError("--features crw needs --checkpoint FILE (a CRW model from `python -m amodalkit train crw`)")
        return crw_from_checkpoint(checkpoint)
    if checkpoint is not None:
        raise VideoError(f"--checkpoint is only read with --features crw (got --features {features})")
    if features == "untrained":
        torch.manual_seed(seed)
        return CRW(width=64, dim=128, padding="reflect").eval()  # ResNet-18 as the paper, random weights
    return None


def _read_frame(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except OSError as err:
        raise VideoError(f"{path}: cannot be read as an image ({err})") from None


def propagate_sequence(root: Path | str, name: str, out: Path | str, *, features: str = "crw",
                       checkpoint: Path | str | None = None, layer: str = "res3", context: int = 20, topk: int = 10,
                       radius: float = 12, temperature: float = 0.05, seed: int = 0, resolution: str = "480p",
                       log=print) -> Path:
    """Propagate the first frame's objects through a DAVIS-layout sequence and write indexed PNGs.

    Options are the release's evaluation settings (context 20, top 10, radius 12 on the stride-8 grid,
    temperature 0.05). Returns the folder written (``out/<name>``).
    """
    from .crw import pixel_features, to_input
    from .data.davis import write_ids_png
    from .propagation import propagate_stream

    if layer not in ("res3", "res4"):
        raise VideoError(f"--layer must be res3 or res4, got {layer!r}")
    for flag, value in (("--context", context), ("--topk", topk)):
        if not isinstance(value, int) or value < 1:
            raise VideoError(f"{flag} must be an integer >= 1, got {value!r}")
    for flag, value in (("--radius", radius), ("--temperature", temperature)):
        if not value > 0:
            raise VideoError(f"{flag} must be > 0, got {value!r}")
    sequence = open_sequence(root, name, resolution)  # every check before the network is built
    height, width = sequence.first_ids.shape
    nodes = (height // 8) * (width // 8)  # the stride-8 grid (at least this many nodes for every feature kind)
    if topk > nodes:
        raise VideoError(f"--topk {topk} exceeds the {nodes} nodes of the stride-8 grid of a {height} x {width} frame")
    model = feature_model(features, checkpoint, seed)
    run_device = next(model.parameters()).device if model is not None else torch.device("cpu")
    target = Path(out) / name
    target.mkdir(parents=True, exist_ok=True)
    palette = sequence.palette  # None: DAVIS's
    n_labels = int(sequence.first_ids.max()) + 1

    @torch.no_grad()
    def encode(path: Path) -> torch.Tensor:
        x = to_input(_read_frame(path))[None]
        if model is None:
            return pixel_features(x)[0]
        return model.features(x.to(run_device), layer)[0].cpu()

    def features_of_frames():
        for path in sequence.frames:
            yield encode(path)

    frames = features_of_frames()
    first = next(frames)
    one_hot = F.one_hot(torch.from_numpy(sequence.first_ids), n_labels).permute(2, 0, 1).float()
    small = F.interpolate(one_hot[None], size=first.shape[1:], mode="bilinear", align_corners=False)[0]
    write_ids_png(sequence.first_ids, target / f"{sequence.frames[0].stem}.png", palette)

    def chained():
        yield first
        yield from frames

    stream = propagate_stream(chained(), small, context=context, topk=topk, radius=radius, temperature=temperature)
    bar = progress(total=len(sequence.frames) - 1, desc=f"propagate {name}")
    try:
        for path, soft in zip(sequence.frames[1:], stream):
            big = F.interpolate(soft[None], size=(height, width), mode="bilinear", align_corners=False)[0]
            write_ids_png(big.argmax(dim=0).numpy(), target / f"{path.stem}.png", palette)
            bar.update(1)
    finally:
        bar.close()
    objects = sorted(set(np.unique(sequence.first_ids).tolist()) - {0})
    log(f"wrote {len(sequence.frames)} masks of object(s) {objects} to {target}")
    return target

"""DAVIS-2017 layout: read a dataset folder, and write generated clips into one.

Layout (``root``)::

    JPEGImages/480p/<seq>/00000.jpg
    Annotations/480p/<seq>/00000.png    palette PNGs, pixel value = object id (0 background)
    ImageSets/2017/<subset>.txt         one sequence name per line

Semi-supervised DAVIS defines the objects by the first frame's annotation: every id of a later
frame must appear in frame 0. The writer therefore exports the objects visible in frame 0
(renumbered 1..n in their order) and leaves objects that only enter later as background.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .scene import Clip


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS (and PASCAL VOC) annotations, flat [r0, g0, b0, r1, ...]."""
    palette = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [r, g, b]
    return palette


def write_ids_png(ids: np.ndarray, path: Path | str, palette: list[int] | None = None) -> None:
    """An (H, W) id map as an indexed PNG (DAVIS's palette by default), written atomically: the temporary file ends
    in ``.tmp``, so no ``*.png`` glob ever sees half a mask."""
    import io

    from PIL import Image

    from ..results import atomic_write_bytes

    image = Image.fromarray(np.asarray(ids, dtype=np.uint8), mode="P")
    image.putpalette(palette or davis_palette())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


@dataclass
class DavisSequence:
    """One sequence: frames (T, H, W, 3) uint8, masks (T, H, W) uint8 object ids (0 background),
    annotated (T,) bool (frames with an annotation file), object_ids: the ids of frame 0."""

    name: str
    frames: np.ndarray
    masks: np.ndarray
    annotated: np.ndarray
    object_ids: list[int]


def davis_ids(clip: Clip) -> np.ndarray:
    """The DAVIS annotation of a clip: (T, H, W) uint8 ids 1..n of the objects visible in frame 0
    (in object order), 0 elsewhere; objects absent from frame 0 are background, as in DAVIS."""
    present = [k for k in range(clip.n_objects) if clip.visible[0, k].any()]
    ids = np.zeros(clip.visible.shape[:1] + clip.visible.shape[2:], dtype=np.uint8)
    for new_id, k in enumerate(present, start=1):
        ids[clip.visible[:, k]] = new_id
    return ids


def write_davis(root: Path | str, clips: list[Clip], subset: str = "val", names: list[str] | None = None,
                resolution: str = "480p", quality: int = 95) -> list[str]:
    """Write clips in the DAVIS-2017 layout; returns the sequence names (added to ImageSets/2017/<subset>.txt).

    Each clip's visible masks become the annotations; see the module docstring for which objects.
    """
    from PIL import Image

    root = Path(root)
    names = names or [f"seq{i:04d}" for i in range(len(clips))]
    if len(names) != len(clips) or len(set(names)) != len(names):
        raise ValueError(f"write_davis: need one distinct name per clip, got {len(names)} names for {len(clips)} clips")
    palette = davis_palette()
    for name, clip in zip(names, clips):
        ids = davis_ids(clip)
        image_dir = root / "JPEGImages" / resolution / name
        label_dir = root / "Annotations" / resolution / name
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for t in range(clip.n_frames):
            Image.fromarray(clip.frames[t]).save(image_dir / f"{t:05d}.jpg", quality=quality)
            write_ids_png(ids[t], label_dir / f"{t:05d}.png", palette)
    listing = root / "ImageSets" / "2017" / f"{subset}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    existing = listing.read_text().split() if listing.is_file() else []
    listing.write_text("\n".join(sorted(set(existing) | set(names))) + "\n")
    return names


def read_davis(root: Path | str, subset: str = "val", resolution: str = "480p") -> list[DavisSequence]:
    """Read the sequences of ``ImageSets/2017/<subset>.txt`` from a DAVIS-2017 folder.

    Raises:
        FileNotFoundError: a missing root, listing, frame folder or annotation folder (named).
        ValueError: an annotation that is not a palette PNG, that does not match its frame's size,
            or that holds ids absent from the first frame's annotation (named, with the ids).
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"read_davis: no DAVIS folder at {root}")
    listing = root / "ImageSets" / "2017" / f"{subset}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"read_davis: {listing} is missing (it lists the {subset!r} sequences)")
    sequences = []
    for name in listing.read_text().split():
        image_dir = root / "JPEGImages" / resolution / name
        label_dir = root / "Annotations" / resolution / name
        jpgs = sorted(image_dir.glob("*.jpg"))
        if not jpgs:
            raise FileNotFoundError(f"read_davis: sequence {name!r} has no frames in {image_dir}")
        if not label_dir.is_dir() or not any(label_dir.glob("*.png")):
            raise FileNotFoundError(f"read_davis: sequence {name!r} has frames but no annotations in {label_dir}")
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in jpgs])
        masks = np.zeros(frames.shape[:3], dtype=np.uint8)
        annotated = np.zeros(len(jpgs), dtype=bool)
        first_ids: set[int] | None = None
        for t, jpg in enumerate(jpgs):
            png = label_dir / (jpg.stem + ".png")
            if not png.is_file():
                if t == 0:
                    raise FileNotFoundError(f"read_davis: {png} is missing: the first frame must be annotated")
                continue
            label = Image.open(png)
            if label.mode != "P":
                raise ValueError(f"read_davis: {png} must be a palette ('P') PNG of object ids, got mode {label.mode!r}")
            ids = np.asarray(label)
            if ids.shape != frames.shape[1:3]:
                raise ValueError(f"read_davis: {png} is {ids.shape}, its frame {jpg.name} is {frames.shape[1:3]}")
            present = set(np.unique(ids).tolist()) - {0}
            if first_ids is None:
                first_ids = present
            elif not present <= first_ids:
                raise ValueError(f"read_davis: {png} holds object ids {sorted(present - first_ids)} that are absent "
                                 f"from the first frame's annotation (ids {sorted(first_ids)})")
            masks[t], annotated[t] = ids, True
        sequences.append(DavisSequence(name, frames, masks, annotated, sorted(first_ids or [])))
    return sequences

"""Amodal-VAE's data: object instances of a world and the large set of whole masks stage 1 learns."""
from __future__ import annotations

import json

import numpy as np
import torch

from .. import progress

class Instances:
    """Object instances of a world, one per (clip, frame, object), as full-frame boolean masks.

    Attributes (N instances, H x W frames):
        visible, amodal, occluders: (N, H, W) bool; ``occluders`` is the union of the other objects'
            visible masks in that frame (the pixels that may hide this object).
        visible_pred, occluders_pred: (N, H, W) bool, the same from the world's degraded "predicted"
            visible masks (``street``), else None.
        types: (N,) int object types (-1 for classless worlds).
    """

    def __init__(self, visible, amodal, occluders, types, visible_pred=None, occluders_pred=None):
        self.visible, self.amodal, self.occluders = visible, amodal, occluders
        self.types, self.visible_pred, self.occluders_pred = types, visible_pred, occluders_pred

    def __len__(self) -> int:
        return len(self.visible)

    @property
    def visible_ratio(self) -> np.ndarray:
        """|visible| / |amodal| per instance."""
        return self.visible.sum((1, 2)) / np.maximum(self.amodal.sum((1, 2)), 1)

    def subset(self, index) -> "Instances":
        pred = None if self.visible_pred is None else self.visible_pred[index]
        pred_occluders = None if self.occluders_pred is None else self.occluders_pred[index]
        return Instances(self.visible[index], self.amodal[index], self.occluders[index], self.types[index], pred,
                         pred_occluders)


def _usable(visible: np.ndarray, amodal: np.ndarray, min_visible: int) -> bool:
    """An instance with ground truth: >= min_visible visible pixels and an amodal mask clear of the image border."""
    border = amodal[0].any() or amodal[-1].any() or amodal[:, 0].any() or amodal[:, -1].any()
    return bool(visible.sum() >= min_visible and not border)


def full_mask_set(world: str, seed: int, *, n_clips: int, every: int = 2, min_visible: int = 12, split: str = "train",
                  preset: str = "quick", **params) -> np.ndarray:
    """The fully visible instance masks of the first ``n_clips`` clips of a split: (N, H, W) bool.

    Stage 1 of the VAE needs many distinct full masks (the chapters' instance sets hold a few hundred, and a VAE
    trained on those overfits). The clips are generated without keeping them on disk (a few hundred clips would
    take gigabytes) and only the masks are cached, bit-packed, under ``$AMODALKIT_CACHE/vae_masks`` (keyed by the
    world's generator code and this function's). The first clips are the chapters' own training clips.
    """
    import hashlib
    import inspect

    from ..data import load_world
    from ..data.worlds import cache_dir, generator_version

    key = json.dumps(dict(world=world, split=split, seed=seed, n_clips=n_clips, every=every, min_visible=min_visible,
                          preset=preset, params=params, generator=generator_version(world),
                          code=inspect.getsource(full_mask_set) + inspect.getsource(_usable)), sort_keys=True, default=str)
    path = cache_dir().parent / "vae_masks" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".npz")
    if path.is_file():
        with np.load(path) as saved:
            shape = tuple(saved["shape"])
            return np.unpackbits(saved["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    clips = load_world(world, split, seed=seed, n_clips=n_clips, preset=preset, cache=False, **params)
    masks = []
    for clip in progress(clips, desc=f"{world} full masks"):
        for t in range(0, clip.n_frames, every):
            for k in clip.evaluated:
                visible, amodal = clip.visible[t, k], clip.amodal[t, k]
                if visible.sum() == amodal.sum() and _usable(visible, amodal, min_visible):
                    masks.append(visible)
    if not masks:
        raise ValueError(f"full_mask_set: no fully visible instance in {n_clips} {world}/{split} clips")
    out = np.stack(masks)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, bits=np.packbits(out), shape=np.array(out.shape))
    partial.replace(path)  # never a half-written file
    return out


def load_instances(world: str, split: str, *, seed: int, n_clips: int, every: int = 4, min_visible: int = 12,
                   preset: str = "quick", **params) -> Instances:
    """Instances of the evaluated objects of ``world`` on every ``every``-th frame.

    An instance is kept when at least ``min_visible`` pixels are visible and its amodal mask does not
    touch the image border (the world's amodal masks stop at the border, so a truncated shape has no
    ground truth). Raises ValueError when no instance is left.
    """
    from ..data import load_world

    clips = load_world(world, split, seed=seed, n_clips=n_clips, preset=preset, **params)
    rows = {"visible": [], "amodal": [], "occluders": [], "types": [], "visible_pred": [], "occluders_pred": []}
    for clip in clips:
        pred = clip.extra.get("visible_pred")
        for t in range(0, clip.n_frames, every):
            all_visible = clip.visible[t].any(axis=0)
            for k in clip.evaluated:
                amodal, visible = clip.amodal[t, k], clip.visible[t, k]
                if not _usable(visible, amodal, min_visible):
                    continue
                rows["visible"].append(visible)
                rows["amodal"].append(amodal)
                rows["occluders"].append(all_visible & ~visible)
                rows["types"].append(-1 if clip.types is None else int(clip.types[k]))
                if pred is not None:
                    rows["visible_pred"].append(pred[t, k])
                    rows["occluders_pred"].append(pred[t].any(axis=0) & ~pred[t, k])
    if not rows["visible"]:
        raise ValueError(f"load_instances: no instance of {world}/{split} has >= {min_visible} visible pixels away "
                         f"from the border; use more clips or a smaller min_visible")
    stack = {k: np.stack(v) for k, v in rows.items() if v}
    return Instances(stack["visible"], stack["amodal"], stack["occluders"], np.array(rows["types"]),
                     stack.get("visible_pred"), stack.get("occluders_pred"))



def _masks(instances: Instances, which: str) -> torch.Tensor:
    return torch.from_numpy(getattr(instances, which)).float()


def instances_digest(*sets: Instances) -> str:
    """A short hash of the masks and types of instance sets (what a model trained on them saw)."""
    import hashlib

    digest = hashlib.sha256()
    for instances in sets:
        for name in ("visible", "amodal", "occluders", "types", "visible_pred", "occluders_pred"):
            value = getattr(instances, name)
            digest.update(name.encode() + (b"-" if value is None else np.ascontiguousarray(value).tobytes()))
    return digest.hexdigest()[:16]

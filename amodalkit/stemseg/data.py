"""STEm-Seg's data: the two worlds, training windows, video flips and sequences synthesised from images.

* DAVIS-like: the ``vos`` world (textured blobs that deform, enter, leave and occlude each other);
  KITTI-MOTS-like: the ``street`` world with :data:`~amodalkit.data.worlds.STREET_FAST_MOTION` (small cars
  moving fast, entering and leaving, a moving camera). Instances are the visible masks of the objects.
* Video clips: random windows of ``clip_len`` frames, flipped horizontally as a whole with p = 0.5
  (supplement II; the release applies no video augmentation at all).
* Image-to-sequence (supplement II): from one still frame and its instance masks, ``clip_len`` frames, each
  an independent random affine (rotation within 10 degrees, translation up to 10% per axis, scale
  0.8-1.2) with a mild perspective change, hue and saturation offsets and, with p = 0.25, a motion blur;
  as the release, one frame is the unchanged image and the frame order is shuffled.
"""
from __future__ import annotations

from dataclasses import dataclass

import kornia.augmentation as K
import numpy as np
import torch
import torch.nn.functional as F

from ..data.worlds import STREET_FAST_MOTION, generator_version, load_world

# DAVIS's unsupervised task segments the salient objects: the vos world with object colours of their own (the look
# before issue 14; the shared-palette camouflage of issue 14 is there to defeat raw-colour propagation in CRW), with the
# video look (drift, light, blur, sensor noise) kept
DAVIS_LIKE = dict(palette_size=0, texture_period=(3.0, 8.0))
WORLDS = {"davis_like": ("vos", DAVIS_LIKE), "fast_motion": ("street", STREET_FAST_MOTION)}


def instance_masks(clip) -> np.ndarray:
    """(K, T, H, W) bool visible masks of a clip's evaluated objects (helpers left out)."""
    keep = [k for k, role in enumerate(clip.roles or ["object"] * clip.n_objects) if role == "object"]
    return clip.visible[:, keep].transpose(1, 0, 2, 3).astype(bool)


def id_map(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) int ids from (K, T, H, W) disjoint masks: objects visible in the first frame are numbered first
    (the DAVIS toolkit evaluates ids 1..max of the first frame), the others after them in order of appearance."""
    k, t = masks.shape[:2]
    first = [int(np.argmax(m.reshape(t, -1).any(1))) if m.any() else t for m in masks]
    order = sorted(range(k), key=lambda i: (first[i] > 0, first[i], i))
    ids = np.zeros(masks.shape[1:], dtype=np.int64)
    for new_id, obj in enumerate(order, start=1):
        ids[masks[obj]] = new_id
    return ids


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)


def downsample_masks(masks: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(K, T, H, W) bool -> (K, T, H/f, W/f) bool: a cell belongs to an instance when it covers at least half of it."""
    if masks.shape[0] == 0:
        return masks[:, :, ::factor, ::factor].bool()
    k, t, h, w = masks.shape
    pooled = F.avg_pool2d(masks.reshape(k * t, 1, h, w).float(), factor)
    return (pooled >= 0.5).reshape(k, t, h // factor, w // factor)


@dataclass
class StemData:
    """One world split for STEm-Seg: training videos, still images for synthesised sequences, validation windows and
    test videos, all in memory.

    train_frames: list of (T, H, W, 3) uint8; train_masks: list of (K, T, H, W) bool;
    images: (M, H, W, 3) uint8 stills with image_masks: list of (K, H, W) bool;
    val_frames / val_masks: the first ``clip_len`` frames of each validation video;
    test_frames: list of (T, H, W, 3) uint8; test_ids: list of (T, H, W) int ground-truth ids (:func:`id_map`);
    key: what determines the data (for model caches).
    """

    world: str
    train_frames: list
    train_masks: list
    images: np.ndarray
    image_masks: list
    val_frames: list
    val_masks: list
    test_frames: list
    test_ids: list
    key: dict


def load_stem_data(world: str, seed: int, *, train_clips: int, image_count: int, val_clips: int, test_clips: int,
                   clip_len: int, preset: str = "quick", world_params: dict | None = None, multiple: int = 4) -> StemData:
    """The data of one seed: ``world`` is "davis_like" or "fast_motion".

    ``world_params`` go to the world on top of the set's own (e.g. a frame size); frames and masks are cropped to
    multiples of ``multiple`` pixels (the network's stride; 854-pixel-wide paper frames lose 2 columns).
    The stills are the middle frames of ``image_count`` further clips of the same world (world seed + 1000), so
    they show instances the training videos do not: the role COCO plays in the paper.
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {list(WORLDS)}, got {world!r}")
    for name, value in dict(train_clips=train_clips, val_clips=val_clips, test_clips=test_clips, clip_len=clip_len).items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"load_stem_data: {name} must be a positive integer, got {value!r}")
    if not isinstance(image_count, int) or image_count < 0:
        raise ValueError(f"load_stem_data: image_count must be an integer >= 0, got {image_count!r}")
    name, params = WORLDS[world]
    params = {**params, **(world_params or {})}

    def split(which: str, n: int, world_seed: int):
        return load_world(name, which, seed=world_seed, n_clips=n, preset=preset, **params)

    def crop(a: np.ndarray, spatial_from_end: int) -> np.ndarray:  # (..., H, W[, 3]) to multiples of `multiple`
        h, w = a.shape[a.ndim - spatial_from_end:a.ndim - spatial_from_end + 2]
        index = [slice(None)] * a.ndim
        index[a.ndim - spatial_from_end] = slice(0, h - h % multiple)
        index[a.ndim - spatial_from_end + 1] = slice(0, w - w % multiple)
        return a[tuple(index)]

    def frames_of(c):
        return crop(c.frames, 3)

    def masks_of(c):
        return crop(instance_masks(c), 2)

    train = split("train", train_clips, seed)
    if train[0].n_frames < clip_len:
        raise ValueError(f"load_stem_data: clip_len {clip_len} is longer than the {world} clips ({train[0].n_frames} frames)")
    # short clips: only their middle frame is used
    stills = load_world(name, "train", seed=seed + 1000, n_clips=image_count, preset=preset, **{**params, "n_frames": 3}) \
        if image_count else []
    images = np.stack([frames_of(c)[c.n_frames // 2] for c in stills]) if image_count else np.zeros((0, 1, 1, 3), np.uint8)
    image_masks = [masks_of(c)[:, c.n_frames // 2] for c in stills]
    val = split("val", val_clips, seed)
    test = split("test", test_clips, seed)
    key = dict(world=world, world_name=name, params=params, seed=seed, preset=preset, multiple=multiple, train=train_clips,
               images=image_count, val=val_clips, code=generator_version(name))
    return StemData(world, [frames_of(c) for c in train], [masks_of(c) for c in train], images, image_masks,
                    [frames_of(c)[:clip_len] for c in val], [masks_of(c)[:, :clip_len] for c in val],
                    [frames_of(c) for c in test], [id_map(masks_of(c)) for c in test], key)


def video_window(frames: np.ndarray, masks: np.ndarray, clip_len: int, generator: torch.Generator,
                 flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A random window of ``clip_len`` frames, flipped horizontally as a whole with p = 0.5 when ``flip``.

    Returns (clip_len, 3, H, W) float frames and (K, clip_len, H, W) bool masks.
    """
    start = int(torch.randint(0, frames.shape[0] - clip_len + 1, (1,), generator=generator))
    x = to_tensor(frames[start:start + clip_len])
    m = torch.from_numpy(masks[:, start:start + clip_len])
    if flip and bool(torch.rand(1, generator=generator) < 0.5):
        x, m = x.flip(-1), m.flip(-1)
    return x, m


_GEOMETRY = K.AugmentationSequential(
    K.RandomAffine(degrees=10.0, translate=(0.1, 0.1), scale=(0.8, 1.2), p=1.0),
    K.RandomPerspective(distortion_scale=0.1, p=1.0),
    data_keys=["input", "mask"])
_PHOTOMETRIC = K.ColorJitter(brightness=0.15, saturation=0.1, hue=0.02, p=1.0)
_MOTION_BLUR = K.RandomMotionBlur(kernel_size=5, angle=180.0, direction=1.0, p=0.25)


def image_sequence(image: np.ndarray, masks: np.ndarray, clip_len: int, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A clip synthesised from one still (supplement II): ``clip_len`` independently transformed copies, one of
    them the unchanged image, in random order.

    Args:
        image: (H, W, 3) uint8; masks: (K, H, W) bool instance masks.

    Returns:
        (clip_len, 3, H, W) float frames, (K, clip_len, H, W) bool masks. The transforms draw from torch's global
        generator (kornia's), which the training loop seeds per step; the order and the unchanged frame from
        ``generator``.
    """
    k = masks.shape[0]
    x = to_tensor(image[None]).expand(clip_len - 1, -1, -1, -1).contiguous()
    m = torch.from_numpy(masks).float()[None].expand(clip_len - 1, -1, -1, -1).contiguous()
    if clip_len > 1:
        x, m = _GEOMETRY(x, m)
        x = _MOTION_BLUR(_PHOTOMETRIC(x)).clamp(0, 1)
    x = torch.cat([to_tensor(image[None]), x])
    m = torch.cat([torch.from_numpy(masks).float()[None], m])
    order = torch.randperm(clip_len, generator=generator)
    return x[order], (m[order] > 0.5).permute(1, 0, 2, 3).reshape(k, clip_len, *masks.shape[1:])


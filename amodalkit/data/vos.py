"""The ``vos`` world: textured blobs under a panning camera, for correspondence and label propagation.

Objects rotate, scale, shear and wobble, enter and leave the frame and pass each other (every clip
has an occlusion). Since issue 14 the clips look like video rather than like flat cartoons, so that
propagating raw colours is no longer enough:

- textures at object scale (``texture_period`` in sprite units; a blob is about 2 units across),
  with colours drawn from one small palette per clip that the background shares (``palette_size``):
  colour alone cannot tell objects from each other or from the background;
- a slow drift of brightness, contrast and white balance (``drift``), a light spot that moves across
  the frame (``light``), a mild Gaussian blur (``blur``, pixels) and sensor noise (``noise_sigma``,
  grey levels), all applied to the rendered frames only: masks, flow and depth are unchanged;
- stronger scale change (``scale_change``) on top of the shear and wobble.

``VOS_BEFORE_ISSUE_14`` holds the earlier look (two random colours per object, textures coarser
than the objects, no photometric change); with it the generator draws exactly the earlier clips.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .scene import Clip, render_clip
from .shapes import Ellipse, Shape, Sprite, Texture, affine, random_texture

VOS_DEFAULTS = dict(height=64, width=112, n_frames=16, n_objects=(2, 4), object_size=(0.14, 0.24), pan_speed=1.0,
                    texture_period=(0.35, 0.8), palette_size=4, scale_change=0.25, drift=0.12, light=0.3, blur=0.7,
                    noise_sigma=4.0)
VOS_PAPER = dict(height=480, width=854, n_frames=60, n_objects=(2, 5), pan_speed=4.0)
# the look before issue 14: random_texture's own colours and period (3-8 units), no photometric change
VOS_BEFORE_ISSUE_14 = dict(texture_period=(3.0, 8.0), palette_size=0, scale_change=0.15, drift=0.0, light=0.0, blur=0.0,
                           noise_sigma=0.0)
_OLD_PERIOD = (3.0, 8.0)  # random_texture's period range: no redraw when asked for it
TEXTURE_KINDS = ("stripes", "spots", "noise")


def blob_shape(rng: np.random.Generator) -> Shape:
    """A random blob: the union of 3-5 ellipses about the origin, about 2 units across."""
    parts = [Ellipse(0, 0, rng.uniform(0.5, 0.8), rng.uniform(0.4, 0.7), rng.uniform(0, np.pi))]
    for _ in range(int(rng.integers(2, 5))):
        a = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.2, 0.5)
        parts.append(Ellipse(r * np.cos(a), r * np.sin(a), rng.uniform(0.25, 0.5), rng.uniform(0.2, 0.45), rng.uniform(0, np.pi)))
    return Shape(tuple(parts))


def _palette_texture(rng: np.random.Generator, palette: np.ndarray, period: tuple[float, float],
                     kinds=TEXTURE_KINDS) -> Texture:
    """A two-colour texture whose colours are two different entries of ``palette`` (P, 3)."""
    kind = str(rng.choice(kinds))
    i, j = rng.choice(len(palette), size=2, replace=False)
    return Texture(kind, (tuple(int(c) for c in palette[i]), tuple(int(c) for c in palette[j])),
                   period=float(rng.uniform(*period)), angle=float(rng.uniform(0, np.pi)), seed=int(rng.integers(2**31)))


def _object_texture(rng: np.random.Generator, palette: np.ndarray | None, period: tuple[float, float]) -> Texture:
    if palette is not None:
        return _palette_texture(rng, palette, period)
    texture = random_texture(rng, kinds=TEXTURE_KINDS)
    if tuple(period) != _OLD_PERIOD:
        texture = dataclasses.replace(texture, period=float(rng.uniform(*period)))
    return texture


def video_look(frames: np.ndarray, rng: np.random.Generator, *, drift: float, light: float, blur: float,
               noise_sigma: float) -> np.ndarray:
    """Photometric changes of real video on rendered frames (T, H, W, 3) uint8 -> uint8 of the same shape.

    In order: a light spot (Gaussian, half the frame wide) moving on a straight line across the frame scales
    brightness within [1 - light, 1 + light]; brightness, contrast and each channel's gain (white balance) drift
    as slow sinusoids (periods 1-3 clip lengths) of amplitude ``drift``; a Gaussian blur of ``blur`` pixels;
    Gaussian sensor noise of ``noise_sigma`` grey levels. All zero: the frames come back unchanged.
    """
    if drift == 0 and light == 0 and blur == 0 and noise_sigma == 0:
        return frames
    n_frames, height, width, _ = frames.shape
    x = frames.astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None]
    if light > 0:
        start, end = rng.uniform([0, 0], [width, height], size=(2, 2))
        centres = start + (end - start) * t / max(n_frames - 1, 1)  # (T, 2)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        spread = 0.5 * max(height, width)
        d2 = (xs[None] - centres[:, 0, None, None]) ** 2 + (ys[None] - centres[:, 1, None, None]) ** 2
        x *= (1 - light + 2 * light * np.exp(-d2 / (2 * spread**2)))[..., None]
    if drift > 0:
        periods = rng.uniform(1, 3, size=5) * n_frames
        waves = drift * np.sin(2 * np.pi * t / periods + rng.uniform(0, 2 * np.pi, size=5))  # (T, 5)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        contrast, brightness, gains = 1 + waves[:, 0], 1 + waves[:, 1], 1 + waves[:, 2:]
        x = (mean + contrast[:, None, None, None] * (x - mean)) * (brightness[:, None] * gains)[:, None, None, :]
    if blur > 0:
        x = np.stack([cv2.GaussianBlur(frame, (0, 0), blur) for frame in x])
    if noise_sigma > 0:
        x += rng.normal(0, noise_sigma, size=x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def vos_clip(rng: np.random.Generator, *, height, width, n_frames, n_objects, object_size, pan_speed, texture_period,
             palette_size, scale_change, drift, light, blur, noise_sigma, max_tries: int = 50) -> Clip:
    """One clip of the vos world (parameters: :data:`VOS_DEFAULTS`); retried until two objects occlude each other."""
    for _ in range(max_tries):
        clip = _vos_attempt(rng, height, width, n_frames, n_objects, object_size, pan_speed, texture_period, palette_size,
                            scale_change)
        if clip.occlusion.max() > 0.1:  # the objects must occlude each other somewhere
            clip.frames = video_look(clip.frames, rng, drift=drift, light=light, blur=blur, noise_sigma=noise_sigma)
            return clip
    raise RuntimeError(f"vos world: no clip with occlusion in {max_tries} tries; use more or larger objects")


def _vos_attempt(rng, height, width, n_frames, n_objects, object_size, pan_speed, texture_period, palette_size,
                 scale_change) -> Clip:
    # the palette is drawn first only when there is one, so the earlier look draws exactly the earlier clips
    palette = rng.integers(25, 231, size=(palette_size, 3)) if palette_size else None
    k = int(rng.integers(n_objects[0], n_objects[1] + 1))
    pan = pan_speed * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), 0.4 * np.sin(a)])
    camera = np.stack([affine(*(-pan * t)) for t in range(n_frames)])
    # the objects pass near a common point at a middle frame, so they occlude each other
    t_meet = int(rng.integers(n_frames // 4, 3 * n_frames // 4 + 1))
    meet = rng.uniform([0.3 * width, 0.3 * height], [0.7 * width, 0.7 * height])
    sprites = []
    for obj in range(k):
        size = rng.uniform(*object_size) * min(height, width)
        at_meet = meet + rng.normal(0, 0.6 * size, size=2)
        if rng.random() < 0.35:  # this one comes in from outside the frame (and may leave again)
            side = rng.integers(4)
            outside = np.array([[-size, at_meet[1]], [width + size, at_meet[1]], [at_meet[0], -size], [at_meet[0], height + size]][side])
            velocity = (at_meet - outside) / max(t_meet, 1)
        else:
            velocity = rng.normal(0, 0.8, size=2) * size / 10
        start = at_meet - velocity * t_meet
        spin = rng.normal(0, 0.05)
        wobble = rng.uniform(0.05, 0.2)
        period = rng.uniform(6, 16)
        poses = []
        for t in range(n_frames):
            phase = 2 * np.pi * t / period
            # the camera pans with the objects, so they move by `velocity` in the image and the background by -pan
            world = start + (velocity + pan) * t
            s = size * (1 + scale_change * np.sin(phase / 2))
            poses.append(camera[t] @ affine(world[0], world[1], spin * t,
                                            s * (1 + wobble * np.sin(phase)), s * (1 - wobble * np.sin(phase)),
                                            shear=wobble * np.cos(phase)))
        sprites.append(Sprite(blob_shape(rng), _object_texture(rng, palette, texture_period), np.stack(poses),
                              np.full(n_frames, float(obj) + rng.uniform(-0.3, 0.3))))
    if palette is None:
        background = Texture("noise", tuple(tuple(int(c) for c in rng.integers(30, 160, 3)) for _ in range(2)),
                             period=5.0, seed=int(rng.integers(2**31)))
    else:  # the same palette, at the scale of the objects' textures (in pixels)
        typical_size = np.mean(object_size) * min(height, width)
        background = _palette_texture(rng, palette, tuple(p * typical_size for p in texture_period), kinds=("noise",))
    return render_clip(sprites, background, camera, height, width)


def vos_check(cfg: dict, world_error, frames_and_size, check_range) -> None:
    """Raise ValueError (``world_error``) naming the first bad parameter of ``cfg``."""
    frames_and_size("vos", cfg)
    check_range("vos", "n_objects", cfg["n_objects"], low=2)  # occlusion needs two
    lo, hi = check_range("vos", "object_size", cfg["object_size"])
    if hi > 0.5:
        raise world_error("vos", f"object_size is a fraction of min(height, width) and must be <= 0.5 "
                                 f"(objects larger than the frame), got {cfg['object_size']!r}")
    lo, _ = check_range("vos", "texture_period", cfg["texture_period"])
    if lo <= 0:
        raise world_error("vos", f"texture_period (sprite units, a blob is about 2 across) must be > 0, "
                                 f"got {cfg['texture_period']!r}")
    if not isinstance(cfg["palette_size"], int) or cfg["palette_size"] == 1 or cfg["palette_size"] < 0:
        raise world_error("vos", f"palette_size must be 0 (no shared palette) or an integer >= 2, got {cfg['palette_size']!r}")
    for key, high in (("scale_change", 0.9), ("drift", 0.5), ("light", 0.9), ("blur", 10.0), ("noise_sigma", 64.0)):
        if not 0 <= cfg[key] <= high:
            raise world_error("vos", f"{key} must be in [0, {high}], got {cfg[key]!r}")

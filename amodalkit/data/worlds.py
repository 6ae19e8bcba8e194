"""The generated video worlds, behind one entry point: :func:`load_world`.

==============  ==========================================================================
``rigid``        convex shapes translating over a background; switches break Theorem 1's
                 assumption 3 (a square glued inside an object) and 4 (one glued outside)
``chewing_gum``  the SaVos toy set: classless convex polygons from 44 points on a circle, one
                 static at the centre, one on a square path, a glued 8x8 occluder (switchable)
``fishbowl``     six fish types with per-instance variation, swimming with turns and depth
                 changes over a textured background: heavy occlusion and a type prior to learn
``street``       car models in side and rear views on lanes with perspective scale, camera
                 ego-motion, and "predicted" visible masks degraded like a segmenter's output
``vos``          textured blobs that rotate, scale and shear, enter, leave and occlude each
                 other under a panning camera: for correspondence and label propagation
==============  ==========================================================================

Every clip has the structure of :class:`amodalkit.data.scene.Clip`. Same world, split, seed and
parameters give the same bytes; splits never share a clip (each clip's seed hashes the split).
Clips are cached on disk (``$AMODALKIT_CACHE``, default ``~/.cache/amodalkit``) keyed by all of
that plus the generator code, written atomically.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from .scene import Clip, never_background_comoving, never_visible, render_clip
from .vos import VOS_DEFAULTS, VOS_PAPER, vos_check, vos_clip
from .shapes import Ellipse, Polygon, Shape, Sprite, Texture, affine, convex_polygon_on_circle, random_convex_polygon, random_texture

SPLITS = ("train", "val", "test")


class World(Sequence):
    """A lazily generated, deterministic sequence of clips (``len`` and indexing)."""

    def __init__(self, name: str, split: str, seed: int, n_clips: int, make_clip: Callable[[int], Clip]):
        self.name, self.split, self.seed, self.n_clips = name, split, seed, n_clips
        self._make_clip = make_clip

    def __len__(self) -> int:
        return self.n_clips

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}/{self.split}: clip {index} out of range (0..{len(self) - 1})")
        return self._make_clip(index % len(self))

    def __repr__(self) -> str:
        return f"World({self.name!r}, split={self.split!r}, seed={self.seed}, clips={self.n_clips})"


def clip_seed(world: str, split: str, seed: int, index: int) -> int:
    """A seed per clip, distinct across worlds, splits, seeds and indices (so splits never share a clip)."""
    digest = hashlib.sha256(f"{world}/{split}/{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _world_error(world: str, message: str) -> ValueError:
    return ValueError(f"{world} world: {message}")


def _range(world: str, name: str, value, low: float = 0.0) -> tuple[float, float]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and low <= value[0] <= value[1]):
        raise _world_error(world, f"{name} must be a (min, max) pair with {low} <= min <= max, got {value!r}")
    return float(value[0]), float(value[1])


def _frames_and_size(world: str, cfg: dict) -> None:
    if not isinstance(cfg["n_frames"], int) or cfg["n_frames"] < 2:
        raise _world_error(world, f"n_frames must be an integer >= 2, got {cfg['n_frames']!r}")
    for key in ("height", "width"):
        if not isinstance(cfg[key], int) or cfg[key] < 16:
            raise _world_error(world, f"{key} must be an integer >= 16 pixels, got {cfg[key]!r}")


def _dark_noise(rng: np.random.Generator, low=20, high=110, period=8.0) -> Texture:
    a = tuple(int(c) for c in rng.integers(low, high, size=3))
    b = tuple(int(c) for c in rng.integers(low, high, size=3))
    return Texture("noise", (a, b), period=period, seed=int(rng.integers(2**31)))


def _static_camera(n_frames: int) -> np.ndarray:
    return np.repeat(np.eye(3)[None], n_frames, axis=0)


def _translations(start: np.ndarray, velocity: np.ndarray, n_frames: int) -> np.ndarray:
    return np.stack([affine(*(start + t * velocity)) for t in range(n_frames)])


# ===================================================================================== rigid

RIGID_DEFAULTS = dict(height=48, width=48, n_frames=12, n_objects=2, object_radius=(8.0, 11.0), max_speed=2.0,
                      subpixel=False, break_visibility=False, break_exterior=False)
RIGID_PAPER = dict(height=96, width=96, n_frames=24, n_objects=3)


def _square(half: float) -> Shape:
    return Shape((Polygon(((-half, -half), (half, -half), (half, half), (-half, half))),))


def _rigid_clip(rng: np.random.Generator, *, height, width, n_frames, n_objects, object_radius, max_speed, subpixel,
                break_visibility, break_exterior, max_tries: int = 3000) -> Clip:
    margin = 2
    size = np.array([width, height], dtype=float)
    speeds = np.arange(-max_speed, max_speed + 0.25, 0.5) if subpixel else np.arange(-int(max_speed), int(max_speed) + 1.0)
    canvas = np.mgrid[0:64, 0:64].astype(float) - 32  # for placing the helpers in a shape's own coordinates
    for _ in range(max_tries):
        # objects meet near a common point at a middle frame, so the front ones sweep over the back ones
        t_meet = rng.integers(n_frames // 3, max(n_frames // 3 + 1, 2 * n_frames // 3))
        meet = rng.uniform(0.35, 0.65, size=2) * size
        shapes, starts, velocities = [], [], []
        for _k in range(n_objects):
            radius = rng.uniform(*object_radius)
            shapes.append(Shape((random_convex_polygon(rng, radius, int(rng.integers(6, 10))),)))
            vel = rng.choice(speeds, size=2)
            pos_meet = meet + rng.uniform(-radius / 2, radius / 2, size=2)
            if not subpixel:
                pos_meet = np.round(pos_meet)
            start = pos_meet - t_meet * vel
            end = start + (n_frames - 1) * vel
            if np.any(np.minimum(start, end) < radius + margin) or np.any(np.maximum(start, end) > size - radius - margin - 1):
                break
            starts.append(start)
            velocities.append(vel)
        if len(starts) < n_objects:
            continue
        # every object must move relative to the others, or occluded parts could never be revealed
        if len({tuple(v) for v in velocities}) < n_objects:
            continue
        order = list(rng.permutation(n_objects))  # front to back
        host = order[-1]  # helpers go on the back-most object, the one that is occluded most
        helpers = []  # (kind, local centre)
        inner = shapes[host].contains(canvas[1], canvas[0])
        for kind, wanted in (("sticker", break_visibility), ("glued", break_exterior)):
            if not wanted:
                continue
            if kind == "sticker":  # a 5x5 square wholly inside the host, two pixels from its edge
                ok_at = ndimage.binary_erosion(inner, np.ones((9, 9), bool))
            else:  # a 5x5 square just outside the host: no overlap, but touching its one-pixel ring
                ok_at = ndimage.binary_dilation(inner, np.ones((7, 7), bool)) & ~ndimage.binary_dilation(inner, np.ones((5, 5), bool))
            candidates = np.argwhere(ok_at)
            if len(candidates) == 0:
                break
            cy, cx = candidates[int(rng.integers(len(candidates)))]
            helpers.append((kind, np.array([cx - 32.0, cy - 32.0])))
        else:
            sprites = []
            depth_of = {obj: rank for rank, obj in enumerate(order)}
            for k in range(n_objects):
                sprites.append(Sprite(shapes[k], Texture("solid", (tuple(int(c) for c in rng.integers(130, 256, 3)),) * 2),
                                      _translations(starts[k], velocities[k], n_frames), np.full(n_frames, float(depth_of[k]))))
            for kind, local in helpers:  # just in front of the host, moving with it
                sprites.append(Sprite(_square(2.5), Texture("solid", (tuple(int(c) for c in rng.integers(130, 256, 3)),) * 2),
                                      _translations(starts[host] + local, velocities[host], n_frames),
                                      np.full(n_frames, depth_of[host] - 0.5), role=kind))
            clip = render_clip(sprites, _dark_noise(rng), _static_camera(n_frames), height, width)
            if not all(clip.occlusion[:, k].max() > 0.1 for k in order[1:]):
                continue
            # judged on the frames the losses observe (1..T-1), see never_visible: each switch breaks its
            # assumption exactly on the helper's pixels, and nothing else is broken
            expected_vis = {k: np.zeros_like(clip.amodal[:, 0]) for k in range(n_objects)}
            expected_ext = {k: np.zeros_like(clip.amodal[:, 0]) for k in range(n_objects)}
            for j, (kind, _local) in enumerate(helpers):
                if kind == "sticker":
                    expected_vis[host] = clip.amodal[:, n_objects + j] & clip.amodal[:, host]
                else:
                    expected_ext[host] = clip.amodal[:, n_objects + j]
            if all(np.array_equal(never_visible(clip, k, first_frame=1), expected_vis[k])
                   and np.array_equal(never_background_comoving(clip, k, first_frame=1), expected_ext[k])
                   for k in range(n_objects)):
                return clip
    raise RuntimeError(
        "rigid world: could not place objects that satisfy the requested assumptions in "
        f"{max_tries} tries; use a larger frame, fewer or smaller objects, more frames or more speed")


def _rigid_check(cfg: dict) -> None:
    _frames_and_size("rigid", cfg)
    if cfg["n_objects"] < 2:
        raise _world_error("rigid", f"n_objects must be >= 2 (occlusion needs two), got {cfg['n_objects']}")
    r_lo, r_hi = _range("rigid", "object_radius", cfg["object_radius"], low=1.0)
    if 2 * r_hi + 4 >= min(cfg["height"], cfg["width"]):
        raise _world_error("rigid", f"object_radius up to {r_hi} does not fit a {cfg['height']}x{cfg['width']} frame "
                                    "(need 2 * max radius + 4 < min(height, width))")
    if r_hi > 24:
        raise _world_error("rigid", f"object_radius max must be <= 24 (helpers are placed on a 64x64 canvas), got {r_hi}")


# ================================================================================ chewing gum

CHEWING_GUM_DEFAULTS = dict(height=50, width=56, n_frames=40, glued_occluder=True, speed=2.0)
CHEWING_GUM_PAPER = dict(CHEWING_GUM_DEFAULTS)  # the generator's own sizes; 10000 / 500 / 1000 videos


def _square_path(t: np.ndarray, centre: np.ndarray, side: float, corner: int, clockwise: bool) -> np.ndarray:
    """Points at arc length ``t`` along a square of ``side`` about ``centre``, from a given corner."""
    corners = centre + side / 2 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    if not clockwise:
        corners = corners[::-1]
    corners = np.roll(corners, -corner, axis=0)
    s = np.mod(t, 4 * side)
    edge = np.minimum((s // side).astype(int), 3)
    frac = (s - edge * side) / side
    start, end = corners[edge], corners[(edge + 1) % 4]
    return start + (end - start) * frac[:, None]


def _chewing_gum_clip(rng: np.random.Generator, *, height, width, n_frames, glued_occluder, speed) -> Clip:
    centre = np.array([width / 2, height / 2])
    shapes = [Shape((convex_polygon_on_circle(rng, 44, 8.0, int(rng.integers(7, 12))),)) for _ in range(2)]
    colours = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(3)]
    side = speed * n_frames / 4  # one loop of the square over the clip
    path = _square_path(speed * np.arange(n_frames), centre, side, int(rng.integers(4)), bool(rng.integers(2)))
    static = np.repeat(affine(*centre)[None], n_frames, axis=0)
    moving = np.stack([affine(*p) for p in path])
    lower = int(rng.integers(2))  # random draw order: the lower object is drawn first (behind)
    depths = [np.full(n_frames, 1.0 if k == lower else 0.0) for k in range(2)]
    sprites = [Sprite(shapes[k], Texture("solid", (colours[k],) * 2), pose, depths[k]) for k, pose in enumerate((static, moving))]
    if glued_occluder:
        box = np.array(shapes[lower].parts[0].vertices)
        lo, hi = box.min(axis=0), box.max(axis=0)
        quadrant = np.array([rng.integers(2), rng.integers(2)])
        corner = np.where(quadrant, hi, lo)
        local = (corner + (lo + hi) / 2) / 2  # the centre of that quadrant of the box
        pose = sprites[lower].poses @ affine(*local)
        sprites.append(Sprite(_square(4.0 - 0.5), Texture("solid", (colours[2],) * 2), pose, np.full(n_frames, -1.0),
                              role="occluder"))
    background = Texture("solid", (tuple(int(c) for c in rng.integers(0, 128, 3)),) * 2)
    return render_clip(sprites, background, _static_camera(n_frames), height, width)


def _chewing_gum_check(cfg: dict) -> None:
    _frames_and_size("chewing_gum", cfg)
    reach = cfg["speed"] * cfg["n_frames"] / 8 + 8
    if 2 * reach > min(cfg["height"], cfg["width"]):
        raise _world_error("chewing_gum", f"the square path ({cfg['speed']} px/frame over {cfg['n_frames']} frames) "
                                          f"and radius-8 polygons do not fit a {cfg['height']}x{cfg['width']} frame")


# ================================================================================== fishbowl

FISH_TYPES = ("round", "eel", "angelfish", "puffer", "ray", "shark")


def fish_shape(kind: int, rng: np.random.Generator | None = None, jitter: float = 0.0) -> Shape:
    """The silhouette of fish type ``kind`` in unit coordinates (nose at +x, about 2 units long, y down).

    ``jitter`` perturbs radii and vertices (a small per-instance deformation).
    """
    def j(v):
        return v if rng is None or jitter == 0 else v + rng.normal(0, jitter)

    def poly(*pts):
        return Polygon(tuple((j(x), j(y)) for x, y in pts))

    def ell(cx, cy, rx, ry, a=0.0):
        return Ellipse(cx, cy, abs(j(rx)), abs(j(ry)), a)

    if kind == 0:  # round: deep oval body, wide tail
        parts = (ell(0.1, 0, 0.75, 0.55), poly((-0.5, 0), (-1.0, -0.5), (-1.0, 0.5)))
    elif kind == 1:  # eel: long thin body, small tail
        parts = (ell(0.05, 0, 1.0, 0.17), poly((-0.8, 0), (-1.1, -0.22), (-1.1, 0.22)))
    elif kind == 2:  # angelfish: diamond body, tall fins, tail
        parts = (poly((0.6, 0), (0, -0.5), (-0.5, 0), (0, 0.5)), poly((0.15, -0.35), (-0.45, -1.0), (-0.35, -0.2)),
                 poly((0.15, 0.35), (-0.45, 1.0), (-0.35, 0.2)), poly((-0.4, 0), (-0.9, -0.3), (-0.9, 0.3)))
    elif kind == 3:  # puffer: round body with spikes
        spikes = tuple(poly((0.5 * np.cos(a - 0.25), 0.5 * np.sin(a - 0.25)), (0.85 * np.cos(a), 0.85 * np.sin(a)),
                            (0.5 * np.cos(a + 0.25), 0.5 * np.sin(a + 0.25)))
                       for a in np.linspace(0, 2 * np.pi, 9)[:-1] + np.pi / 8)
        parts = (ell(0, 0, 0.6, 0.6),) + spikes
    elif kind == 4:  # ray: wide rhombus wings, long tail
        parts = (poly((0.55, 0), (0, -0.8), (-0.35, 0), (0, 0.8)), poly((-0.3, -0.07), (-1.15, -0.04), (-1.15, 0.04), (-0.3, 0.07)))
    elif kind == 5:  # shark: slender body, dorsal fin, forked tail
        parts = (ell(0.1, 0, 0.85, 0.24), poly((0.2, -0.18), (-0.1, -0.62), (-0.25, -0.18)),
                 poly((-0.62, 0), (-1.0, -0.48), (-0.82, 0)), poly((-0.62, 0), (-1.0, 0.36), (-0.82, 0)))
    else:
        raise ValueError(f"fish_shape: kind must be 0..{len(FISH_TYPES) - 1}, got {kind}")
    return Shape(parts)


FISHBOWL_DEFAULTS = dict(height=64, width=96, n_frames=16, n_objects=(6, 9), speed=(0.8, 2.0), fish_size=(12.0, 16.0),
                         turn_rate=0.15, depth_rate=0.06, turn_frames=4, depth_lock=True)
FISHBOWL_PAPER = dict(height=320, width=480, n_frames=128, n_objects=(6, 10), speed=(2.0, 5.0), fish_size=(40.0, 60.0))
# The world before issue 13 (kept for the record): a fish mirror-flipped in one frame when it turned around, and two
# overlapping fish could swap depth order. ``world_params("fishbowl", **FISHBOWL_BEFORE_ISSUE_13)`` rebuilds it.
FISHBOWL_BEFORE_ISSUE_13 = dict(turn_frames=1, depth_lock=False)
_FISH_RADIUS = 1.2  # a fish's bounding circle in half-lengths (the longest silhouette reaches 1.15)
_THINNEST_TURN = 0.25  # the narrowest a turning fish gets, as a fraction of its length (end-on, not a line)


def _fishbowl_clip(rng: np.random.Generator, *, height, width, n_frames, n_objects, speed, fish_size, turn_rate,
                   depth_rate, turn_frames, depth_lock) -> Clip:
    k = int(rng.integers(n_objects[0], n_objects[1] + 1))
    kinds = [int(rng.integers(len(FISH_TYPES))) for _ in range(k)]
    shapes = [fish_shape(kind, rng, jitter=0.03) for kind in kinds]
    half_length = rng.uniform(*fish_size, size=k)
    aspect = rng.uniform(0.85, 1.15, size=k)
    v = rng.uniform(*speed, size=k)
    pos = rng.uniform([0.25 * width, 0.25 * height], [0.75 * width, 0.75 * height], size=(k, 2))  # crowded mid-bowl
    heading = rng.uniform(0, 2 * np.pi, size=k)
    z = rng.uniform(0, 1, size=k)
    # facing: +1 / -1 the side the fish shows (dorsal side up when swimming right / left); a turn-around moves it
    # towards the new side by 2 / turn_frames per frame: the fish narrows to end-on and widens mirrored (the old
    # world flipped it in one frame)
    facing = np.where(np.cos(heading) >= 0, 1.0, -1.0)
    margin = np.array([0.1 * width, 0.1 * height])
    poses, depth = np.zeros((k, n_frames, 3, 3)), np.zeros((k, n_frames))
    for t in range(n_frames):
        scale = half_length * (1.15 - 0.3 * z)  # nearer fish (small z) look larger
        side = np.where(np.cos(heading) >= 0, 1.0, -1.0)
        facing = facing + np.clip(side - facing, -2.0 / turn_frames, 2.0 / turn_frames)
        for i in range(k):
            # the mirrored image of the fish seen from side `side`, squashed horizontally mid-turn: continuous with
            # the old facing at the turn's start (the mirror of heading pi - heading) and the new one at its end
            width_factor = facing[i] * side[i]
            if abs(width_factor) < _THINNEST_TURN:
                width_factor = _THINNEST_TURN if width_factor >= 0 else -_THINNEST_TURN
            body = affine(0, 0, heading[i], scale[i], scale[i] * aspect[i] * side[i])
            poses[i, t] = np.diag([width_factor, 1.0, 1.0]) @ body
            poses[i, t, :2, 2] = pos[i]
        depth[:, t] = z
        heading = heading + turn_rate * rng.normal(size=k)
        for i in range(k):
            nxt = pos[i] + v[i] * np.array([np.cos(heading[i]), np.sin(heading[i])])
            if not margin[0] <= nxt[0] <= width - margin[0]:  # turn back at the glass
                heading[i] = np.pi - heading[i]
            if not margin[1] <= nxt[1] <= height - margin[1]:
                heading[i] = -heading[i]
            pos[i] = pos[i] + v[i] * np.array([np.cos(heading[i]), np.sin(heading[i])])
        proposed = np.clip(z + depth_rate * rng.normal(size=k), 0, 1)
        if depth_lock:
            proposed = _keep_depth_order(z, proposed, pos, _FISH_RADIUS * half_length * (1.15 - 0.3 * np.minimum(z, proposed)))
        z = proposed
    sprites = [Sprite(shapes[i], random_texture(rng), poses[i], depth[i], type=kinds[i]) for i in range(k)]
    background = Texture("noise", ((20, 60, 90), (40, 110, 120)), period=6.0, seed=int(rng.integers(2**31)))
    return render_clip(sprites, background, _static_camera(n_frames), height, width)


def _keep_depth_order(z: np.ndarray, proposed: np.ndarray, pos: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Depths ``proposed`` for the next frame, with every fish whose bounding circle (``radius``) touches another's and
    whose depth order with it would change kept at its depth ``z``: fish do not pass through each other."""
    out = proposed.copy()
    near = np.linalg.norm(pos[:, None] - pos[None], axis=-1) < radius[:, None] + radius[None]
    np.fill_diagonal(near, False)
    for _ in range(len(z)):  # restoring one pair can reorder another: repeat until no touching pair changes order
        swapped = near & (np.sign(z[:, None] - z[None]) != np.sign(out[:, None] - out[None]))
        if not swapped.any():
            break
        out[swapped.any(axis=1)] = z[swapped.any(axis=1)]
    return out


def _fishbowl_check(cfg: dict) -> None:
    _frames_and_size("fishbowl", cfg)
    lo, hi = _range("fishbowl", "n_objects", cfg["n_objects"], low=1)
    _range("fishbowl", "speed", cfg["speed"])
    _, size_hi = _range("fishbowl", "fish_size", cfg["fish_size"], low=1.0)
    if 2 * size_hi * 1.15 > 0.8 * min(cfg["height"], cfg["width"]):
        raise _world_error("fishbowl", f"fish of half-length {size_hi} px do not fit a {cfg['height']}x{cfg['width']} bowl")
    if isinstance(cfg["turn_frames"], bool) or not isinstance(cfg["turn_frames"], (int, np.integer)) or cfg["turn_frames"] < 1:
        raise _world_error("fishbowl", f"turn_frames must be an integer >= 1 (1: the old one-frame flip), got {cfg['turn_frames']!r}")
    if not isinstance(cfg["depth_lock"], (bool, np.bool_)):
        raise _world_error("fishbowl", f"depth_lock must be True or False, got {cfg['depth_lock']!r}")


# ==================================================================================== street

CAR_MODELS = ("sedan", "suv", "van", "truck")


def car_shape(model: int, view: str) -> Shape:
    """Silhouette of a car model in unit coordinates: side view 2 units long (front at +x), or rear view 2 wide; y down."""
    def box(x0, y0, x1, y1):
        return Polygon(((x0, y0), (x1, y0), (x1, y1), (x0, y1)))

    if view == "side":
        wheel = 0.17 + 0.03 * model
        wheels = (Ellipse(-0.62, 0.27, wheel, wheel), Ellipse(0.62, 0.27, wheel, wheel))
        if model == 0:
            parts = (box(-1, -0.1, 1, 0.25), Polygon(((-0.5, -0.1), (0.45, -0.1), (0.25, -0.42), (-0.35, -0.42))))
        elif model == 1:
            parts = (box(-1, -0.2, 1, 0.25), Polygon(((-0.9, -0.2), (0.55, -0.2), (0.4, -0.58), (-0.9, -0.58))))
        elif model == 2:
            parts = (Polygon(((-1, -0.6), (0.55, -0.6), (1, -0.15), (1, 0.25), (-1, 0.25))),)
        elif model == 3:
            parts = (box(-1, -0.75, 0.5, 0.25), Polygon(((0.55, -0.55), (0.8, -0.55), (1, -0.3), (1, 0.25), (0.55, 0.25))))
        else:
            raise ValueError(f"car_shape: model must be 0..{len(CAR_MODELS) - 1}, got {model}")
        return Shape(parts + wheels)
    if view == "rear":
        tyres = (box(-0.88, 0.25, -0.55, 0.42), box(0.55, 0.25, 0.88, 0.42))
        height = (0.55, 0.75, 0.95, 1.15)[model] if 0 <= model < 4 else None
        if height is None:
            raise ValueError(f"car_shape: model must be 0..{len(CAR_MODELS) - 1}, got {model}")
        roof = Polygon(((-0.8, -0.2), (0.8, -0.2), (0.6, -height), (-0.6, -height))) if model < 2 else box(-0.95, -height, 0.95, -0.2)
        return Shape((box(-1, -0.2, 1, 0.3), roof) + tyres)
    raise ValueError(f"car_shape: view must be 'side' or 'rear', got {view!r}")


class StreetBackground:
    """Sky above the horizon, asphalt below with dashed lane markings, in world coordinates."""

    def __init__(self, rng: np.random.Generator, horizon: float, lanes: list[float]):
        self.horizon, self.lanes = horizon, lanes
        self.sky = Texture("noise", ((150, 175, 200), (185, 205, 225)), period=10.0, seed=int(rng.integers(2**31)))
        self.road = Texture("noise", ((70, 70, 72), (100, 100, 104)), period=3.0, seed=int(rng.integers(2**31)))

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.where((y < self.horizon)[..., None], self.sky.sample(x, y), self.road.sample(x, y))
        for lane in self.lanes:
            mark = (np.abs(y - lane) < 0.6) & (np.mod(x, 16) < 8)
            out[mark] = (210, 210, 200)
        return out


# predicted visible masks: "detector" errors (issue 15) calibrated so that the mask-only full mIoU of the occluded test
# instances drops by about 6 points from annotated to predicted masks, as KINS's does in the Amodal-VAE supplement
STREET_DEFAULTS = dict(height=64, width=192, n_frames=12, n_cars=(4, 7), ego_speed=1.0, ego_zoom=0.01, car_speed=1.0,
                       car_scale=1.0, degradation="detector", boundary_px=0.4, boundary_smooth=3.0, miss_rate=0.15, fp_rate=0.15,
                       boundary_noise=0.3, merge_rate=0.15)
STREET_PAPER = dict(height=376, width=1248, n_frames=20, n_cars=(4, 8), ego_speed=6.0, boundary_px=2.0,
                    boundary_smooth=15.0)
# the predicted masks before issue 15 (kept for the record): salt-and-pepper boundaries, bites and merges with the
# neighbours, which spilled into the hidden parts (mask-only full mIoU dropped 0.16)
STREET_BEFORE_ISSUE_15 = dict(degradation="noisy")
# STEm-Seg's KITTI-MOTS-like set (issue 16): smaller cars ten times faster (car speeds scale with car size, so with the
# frame), a camera panning 10 px a frame at the default 64-pixel height (scale ego_speed with the height), longer
# clips: most cars enter or leave within a clip and objects move 2.3-3.2 times as fast as the DAVIS-like vos world's
# (centroid displacement per frame relative to the diagonal, measured at 48 x 144 on 3 seeds)
STREET_FAST_MOTION = dict(n_frames=16, n_cars=(5, 8), car_speed=10.0, car_scale=0.7, ego_speed=10.0, ego_zoom=0.02)


def detector_masks(visible: np.ndarray, rng: np.random.Generator, boundary_px: float, boundary_smooth: float,
                   miss_rate: float, fp_rate: float) -> np.ndarray:
    """Visible masks with the errors of an instance segmenter: smooth boundary shifts, missed parts, false positives.

    Args:
        visible: (T, K, H, W) bool, disjoint.
        boundary_px: standard deviation (pixels) of a smooth displacement of each boundary: the mask is the set where
            its signed distance plus Gaussian noise blurred over ``boundary_smooth`` pixels (rescaled to that std)
            is positive.
        miss_rate, fp_rate: per object and frame, the probability of a missed disc (radius a quarter of the object's
            size, centred on its boundary) and of a false-positive disc (a fifth of its size, on its boundary, into the
            background only).

    Returns:
        (T, K, H, W) bool, still disjoint: a mask never takes another object's pixels, so it never spills into the
        part of an object that its occluder hides.
    """
    import cv2

    out = visible.copy()
    t_len, k, height, width = visible.shape
    ys, xs = np.ogrid[:height, :width]
    square = np.ones((3, 3), np.uint8)
    for t in range(t_len):
        for obj in range(k):
            mask = visible[t, obj]
            if not mask.any():
                continue
            m8 = mask.astype(np.uint8)
            signed = np.where(mask, cv2.distanceTransform(m8, cv2.DIST_L2, 3) - 0.5,
                              0.5 - cv2.distanceTransform(1 - m8, cv2.DIST_L2, 3))
            noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), boundary_smooth)
            # the other objects' true pixels and their predictions so far: disjoint, and no spill into hidden parts
            others = np.delete(visible[t] | out[t], obj, axis=0).any(axis=0)
            new = (signed + noise * (boundary_px / max(float(noise.std()), 1e-6)) > 0) & ~others
            size = np.sqrt(mask.sum())
            band = np.argwhere(cv2.dilate(m8, square).astype(bool) & ~cv2.erode(m8, square).astype(bool))
            if rng.random() < miss_rate and mask.sum() > 8:
                r, c = band[rng.integers(len(band))]
                new &= (ys - r) ** 2 + (xs - c) ** 2 > (size / 4) ** 2
            if rng.random() < fp_rate:
                r, c = band[rng.integers(len(band))]
                new |= ((ys - r) ** 2 + (xs - c) ** 2 <= (size / 5) ** 2) & ~others
            if new.any():  # a detection that vanished entirely would be a different (missed-object) error
                out[t, obj] = new
    return out


def degrade_masks(visible: np.ndarray, rng: np.random.Generator, boundary_noise: float, miss_rate: float,
                  merge_rate: float) -> np.ndarray:
    """The predicted masks before issue 15 (``degradation="noisy"``): noisy boundaries, missed fragments, merges.

    Args:
        visible: (T, K, H, W) bool, disjoint.

    Returns:
        (T, K, H, W) bool, still disjoint across objects: boundary pixels flipped with probability
        ``boundary_noise``; with probability ``miss_rate`` per object and frame a disc of a third of
        the object's size removed; with probability ``merge_rate`` the part of another object's
        mask within 3 px taken over.
    """
    import cv2

    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))

    def dilate(m, iterations=1):
        return cv2.dilate(m.view(np.uint8), cross, iterations=iterations).astype(bool)

    out = visible.copy()
    t_len, k = visible.shape[:2]
    for t in range(t_len):
        for obj in range(k):
            mask = out[t, obj]
            if not mask.any():
                continue
            band = dilate(mask) & ~cv2.erode(mask.view(np.uint8), cross).astype(bool)
            flips = band.copy()
            flips[band] = rng.random(int(band.sum())) < boundary_noise  # draw only for the boundary band
            mask ^= flips
            mask &= ~np.delete(out[t], obj, axis=0).any(axis=0)  # stay disjoint
            if rng.random() < miss_rate and mask.sum() > 8:
                rr, cc = np.nonzero(mask)
                i = int(rng.integers(rr.size))
                radius = max(1.5, np.sqrt(rr.size / np.pi) / 3)
                ys, xs = np.ogrid[: mask.shape[0], : mask.shape[1]]
                mask &= (ys - rr[i]) ** 2 + (xs - cc[i]) ** 2 > radius ** 2
            if rng.random() < merge_rate:
                near = dilate(mask, iterations=3)
                others = [o for o in range(k) if o != obj and (out[t, o] & near).any()]
                if others:
                    other = others[int(rng.integers(len(others)))]
                    taken = out[t, other] & near
                    out[t, other] &= ~taken
                    mask |= taken
            out[t, obj] = mask
    return out


def _street_clip(rng: np.random.Generator, *, height, width, n_frames, n_cars, ego_speed, ego_zoom, car_speed, car_scale,
                 degradation,
                 boundary_px, boundary_smooth, miss_rate, fp_rate, boundary_noise, merge_rate) -> Clip:
    horizon = 0.38 * height
    vanishing = np.array([width / 2, horizon])

    def ground_scale(y):  # perspective: size grows with distance below the horizon
        return max(0.05, (y - horizon) / (height - horizon))

    lanes = [horizon + f * (height - horizon) for f in (0.3, 0.55, 0.85)]  # far, middle, near
    sprites = []
    k = int(rng.integers(n_cars[0], n_cars[1] + 1))
    for _ in range(k):
        model = int(rng.integers(len(CAR_MODELS)))
        if rng.random() < 0.6:  # cross traffic: side view along a lane
            lane = lanes[int(rng.integers(len(lanes)))]
            s = 0.3 * height * ground_scale(lane) * car_scale
            direction = 1.0 if rng.random() < 0.5 else -1.0
            v = direction * rng.uniform(0.3, 1.2) * s / 4 * car_speed
            x0 = rng.uniform(0.1 * width, 0.9 * width)
            poses = np.stack([affine(x0 + v * t, lane - 0.27 * s, 0.0, s * direction, s) for t in range(n_frames)])
            depth = np.full(n_frames, -lane)
            view = "side"
        else:  # traffic ahead: rear view, getting nearer or farther
            lateral = rng.uniform(-0.6, 0.6)
            dist = rng.uniform(1.5, 4.0)
            rate = rng.uniform(-0.08, 0.08) * car_speed
            poses, depth = [], []
            for t in range(n_frames):
                d = max(1.0, dist + rate * t)
                y = horizon + (height - horizon) / d
                s = 0.16 * height / d * 1.6 * car_scale
                poses.append(affine(vanishing[0] + lateral * width * 0.5 / d, y - 0.3 * s, 0.0, s, s))
                depth.append(-y)
            poses, depth = np.stack(poses), np.array(depth)
            view = "rear"
        sprites.append(Sprite(car_shape(model, view), random_texture(rng, kinds=("solid", "noise")), poses, depth,
                              type=model, meta={"view": view}))
    # ego-motion: the camera drifts sideways and moves forward (a zoom about the vanishing point)
    camera = np.stack([affine(*vanishing) @ affine(0, 0, 0, 1 + ego_zoom * t, 1 + ego_zoom * t) @ affine(*-vanishing)
                       @ affine(-ego_speed * t, 0) for t in range(n_frames)])
    for sprite in sprites:
        sprite.poses = camera @ sprite.poses
    clip = render_clip(sprites, StreetBackground(rng, horizon, lanes), camera, height, width)
    if degradation == "detector":
        clip.extra["visible_pred"] = detector_masks(clip.visible, rng, boundary_px, boundary_smooth, miss_rate, fp_rate)
    else:
        clip.extra["visible_pred"] = degrade_masks(clip.visible, rng, boundary_noise, miss_rate, merge_rate)
    clip.extra["views"] = np.array([s.meta["view"] for s in sprites])
    return clip


def _street_check(cfg: dict) -> None:
    _frames_and_size("street", cfg)
    _range("street", "n_cars", cfg["n_cars"], low=1)
    for key in ("car_speed", "car_scale"):
        if not 0 < cfg[key] <= 10:
            raise _world_error("street", f"{key} must be in (0, 10], got {cfg[key]!r}")
    for key in ("boundary_noise", "miss_rate", "merge_rate", "fp_rate"):
        if not 0 <= cfg[key] <= 1:
            raise _world_error("street", f"{key} must be a probability in [0, 1], got {cfg[key]!r}")
    if cfg["degradation"] not in ("detector", "noisy"):
        raise _world_error("street", f"degradation must be 'detector' or 'noisy', got {cfg['degradation']!r}")
    for key in ("boundary_px", "boundary_smooth"):
        if not cfg[key] >= 0 or (key == "boundary_smooth" and cfg[key] == 0):
            raise _world_error("street", f"{key} must be {'positive' if key == 'boundary_smooth' else '>= 0'}, "
                                         f"got {cfg[key]!r}")


# ================================================================================ the registry

WORLDS: dict[str, dict[str, Any]] = {
    "rigid": dict(make=_rigid_clip, defaults=RIGID_DEFAULTS, paper=RIGID_PAPER, check=_rigid_check, n_clips=4),
    "chewing_gum": dict(make=_chewing_gum_clip, defaults=CHEWING_GUM_DEFAULTS, paper=CHEWING_GUM_PAPER,
                        check=_chewing_gum_check, n_clips=16),
    "fishbowl": dict(make=_fishbowl_clip, defaults=FISHBOWL_DEFAULTS, paper=FISHBOWL_PAPER, check=_fishbowl_check, n_clips=8),
    "street": dict(make=_street_clip, defaults=STREET_DEFAULTS, paper=STREET_PAPER, check=_street_check, n_clips=8),
    "vos": dict(make=vos_clip, defaults=VOS_DEFAULTS, paper=VOS_PAPER,
                check=lambda cfg: vos_check(cfg, _world_error, _frames_and_size, _range), n_clips=8, module="vos.py"),
}


def world_params(name: str, preset: str = "quick", **params) -> dict[str, Any]:
    """The full, checked parameters of a world: its quick defaults, the paper sizes on top for
    ``preset="paper"``, then ``params``. Raises ValueError naming what is wrong."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; expected one of {sorted(WORLDS)}")
    if preset not in ("quick", "paper"):
        raise ValueError(f"{name} world: preset must be 'quick' or 'paper', got {preset!r}")
    spec = WORLDS[name]
    unknown = set(params) - set(spec["defaults"])
    if unknown:
        raise _world_error(name, f"unknown parameter(s) {sorted(unknown)}; expected some of {sorted(spec['defaults'])}")
    cfg = {**spec["defaults"], **(spec["paper"] if preset == "paper" else {}), **params}
    spec["check"](cfg)
    return cfg


# ------------------------------------------------------------------------------------- caching


def cache_dir() -> Path:
    return Path(os.environ.get("AMODALKIT_CACHE", Path.home() / ".cache" / "amodalkit")) / "worlds"


def generator_version(name: str) -> str:
    """A hash of the code that generates world ``name``: the shared modules plus the world's own module (where it has
    one), so a change to the generators invalidates the cached clips of the worlds it touches."""
    digest = hashlib.sha256()
    own = WORLDS[name].get("module")
    for module in ("shapes.py", "scene.py", "worlds.py") + ((own,) if own else ()):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:16]


_ARRAYS = ("frames", "visible", "amodal", "object_ids", "depth", "flow_fwd", "flow_bwd", "object_flow_fwd",
           "object_flow_bwd", "occlusion", "poses", "camera")


def save_clip(clip: Clip, path: Path) -> None:
    """Write a clip as .npz through a temporary file and a rename (never a half-written file)."""
    arrays = {name: getattr(clip, name) for name in _ARRAYS}
    if clip.types is not None:
        arrays["types"] = clip.types
    for key, value in clip.extra.items():
        arrays[f"extra__{key}"] = value
    arrays["roles"] = np.array(clip.roles)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)


def load_clip(path: Path) -> Clip:
    with np.load(path, allow_pickle=False) as data:
        fields = {name: data[name] for name in _ARRAYS}
        extra = {key.removeprefix("extra__"): data[key] for key in data.files if key.startswith("extra__")}
        types = data["types"] if "types" in data.files else None
        roles = [str(r) for r in data["roles"]]
    return Clip(**fields, types=types, roles=roles, extra=extra)


def load_world(name: str, split: str, *, seed: int = 0, n_clips: int | None = None, preset: str = "quick",
               cache: bool = True, **params) -> World:
    """Load a generated world: a sequence of :class:`Clip` (``len`` and indexing, generated lazily).

    Args:
        name: one of ``WORLDS``; split: "train", "val" or "test"; seed: the world seed.
        n_clips: clips in the split (the world's default when None).
        preset: "quick" (small, the default) or "paper" (the papers' sizes).
        cache: keep generated clips on disk (``$AMODALKIT_CACHE``) and reuse them.
        params: the world's knobs (see ``WORLDS[name]["defaults"]``).

    Example:
        >>> clip = load_world("rigid", "test", seed=0, n_clips=1, cache=False)[0]
        >>> clip.frames.shape[-1]
        3
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    cfg = world_params(name, preset, **params)
    spec = WORLDS[name]
    n_clips = spec["n_clips"] if n_clips is None else n_clips
    if not isinstance(n_clips, int) or n_clips < 1:
        raise _world_error(name, f"n_clips must be a positive integer, got {n_clips!r}")
    key_base = json.dumps({"world": name, "split": split, "seed": seed, "params": cfg, "code": generator_version(name)},
                          sort_keys=True, default=list)

    def make(index: int) -> Clip:
        path = cache_dir() / name / (hashlib.sha256(f"{key_base}/{index}".encode()).hexdigest()[:32] + ".npz")
        if cache and path.is_file():
            return load_clip(path)
        clip = spec["make"](np.random.default_rng(clip_seed(name, split, seed, index)), **cfg)
        if cache:
            save_clip(clip, path)
        return clip

    return World(name, split, seed, n_clips, make)

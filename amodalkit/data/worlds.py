"""Generated video worlds.

Every world yields :class:`Clip` objects with one structure (see its docstring). This module
holds the ``rigid`` world for now: rigid convex shapes translating over a textured background,
with switches that break Theorem 1's assumption 3 (part of an object never visible) and
assumption 4 (a co-moving exterior region that is never background).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

SPLITS = ("train", "val", "test")


@dataclass
class Clip:
    """One generated video with full ground truth.

    Shapes (T frames, K objects, H x W pixels):
        frames: (T, H, W, 3) uint8.
        visible: (T, K, H, W) bool, disjoint across objects at every pixel.
        amodal: (T, K, H, W) bool, ``visible`` is a subset of it.
        object_ids: (K,) int.
        types: (K,) int class index, or None for classless worlds.
        depth: (T, K) int, 0 = front-most at that frame.
        flow_fwd, flow_bwd: (T, 2, H, W) float32 scene flow (x, y) in pixels, t -> t+1 and t -> t-1,
            taken from the visible object at each pixel (background static); zero where undefined
            (last frame for forward, first for backward).
        object_flow_fwd, object_flow_bwd: (T, K, 2, H, W) float32, each object's own flow on its
            amodal region, zero elsewhere.
        occlusion: (T, K) float, 1 - |visible| / |amodal| (0 when the amodal mask is empty).
        motion: (T-1, K, 2) float, each object's translation (dx, dy) from t to t+1 (rigid worlds).
        roles: K strings: "object" (evaluated), or "sticker" / "glued" (helpers that break an
            assumption; not evaluated).
    """

    frames: np.ndarray
    visible: np.ndarray
    amodal: np.ndarray
    object_ids: np.ndarray
    types: np.ndarray | None
    depth: np.ndarray
    flow_fwd: np.ndarray
    flow_bwd: np.ndarray
    object_flow_fwd: np.ndarray
    object_flow_bwd: np.ndarray
    occlusion: np.ndarray
    motion: np.ndarray
    roles: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def n_objects(self) -> int:
        return self.visible.shape[1]

    @property
    def evaluated(self) -> np.ndarray:
        """Indices of the objects that are evaluated (role "object")."""
        return np.array([k for k, r in enumerate(self.roles) if r == "object"], dtype=int)


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


# --------------------------------------------------------------------------------------------
# rasterisation helpers


def convex_polygon(rng: np.random.Generator, radius: float, n_vertices: int) -> np.ndarray:
    """A random convex polygon: ``n_vertices`` sorted angles on an ellipse of mean radius ``radius``.

    Returns (n_vertices, 2) vertices (x, y) counter-clockwise about the origin.
    """
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    # keep the gaps below pi so the origin is inside and the polygon is convex and fat
    angles = np.sort(np.concatenate([angles, np.linspace(0, 2 * np.pi, 5, endpoint=False) + rng.uniform(0, 1)]))
    aspect = rng.uniform(0.7, 1.0)
    rot = rng.uniform(0, np.pi)
    pts = np.stack([radius * np.cos(angles), radius * aspect * np.sin(angles)], axis=1)
    c, s = np.cos(rot), np.sin(rot)
    return pts @ np.array([[c, s], [-s, c]])


def rasterise_convex(vertices: np.ndarray, centre: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centres lie inside the convex polygon ``vertices + centre`` (closed set).

    Args:
        vertices: (N, 2) counter-clockwise (x, y) relative to ``centre``.
        centre: (2,) (x, y) in pixel coordinates, pixel (r, c) having its centre at (c, r).

    Returns:
        (height, width) bool mask.
    """
    ys, xs = np.mgrid[0:height, 0:width]
    px = xs - centre[0]
    py = ys - centre[1]
    inside = np.ones((height, width), dtype=bool)
    nxt = np.roll(vertices, -1, axis=0)
    for (x0, y0), (x1, y1) in zip(vertices, nxt):
        cross = (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0)
        inside &= cross >= -1e-9
    return inside


def rasterise_rect(half_size: np.ndarray, centre: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels whose centres lie in the axis-aligned box ``centre +- half_size`` (x, y)."""
    ys, xs = np.mgrid[0:height, 0:width]
    return (np.abs(xs - centre[0]) <= half_size[0] + 1e-9) & (np.abs(ys - centre[1]) <= half_size[1] + 1e-9)


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random texture, (H, W, 3) uint8 in a dark range so objects stand out."""
    coarse = rng.uniform(20, 110, size=(height // 8 + 2, width // 8 + 2, 3))
    rows = np.linspace(0, coarse.shape[0] - 1.001, height)
    cols = np.linspace(0, coarse.shape[1] - 1.001, width)
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    img = top * (1 - fr) + bottom * fr + rng.normal(0, 4, size=(height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def compose_clip(
    amodal: np.ndarray,
    depth: np.ndarray,
    colours: np.ndarray,
    background: np.ndarray,
    motion: np.ndarray,
    roles: list[str],
    types: np.ndarray | None = None,
) -> Clip:
    """Build a :class:`Clip` from amodal masks, a depth order and per-object translations.

    Args:
        amodal: (T, K, H, W) bool.
        depth: (T, K) int, 0 = front.
        colours: (K, 3) uint8.
        background: (H, W, 3) uint8.
        motion: (T-1, K, 2) translation (dx, dy) of each object from t to t+1.
    """
    t_len, k, h, w = amodal.shape
    visible = np.zeros_like(amodal)
    frames = np.repeat(background[None], t_len, axis=0).copy()
    for t in range(t_len):
        taken = np.zeros((h, w), dtype=bool)
        for obj in np.argsort(depth[t], kind="stable"):  # front to back
            visible[t, obj] = amodal[t, obj] & ~taken
            taken |= amodal[t, obj]
            frames[t][visible[t, obj]] = colours[obj]
    object_flow_fwd = np.zeros((t_len, k, 2, h, w), dtype=np.float32)
    object_flow_bwd = np.zeros((t_len, k, 2, h, w), dtype=np.float32)
    for t in range(t_len - 1):
        for obj in range(k):
            object_flow_fwd[t, obj][:, amodal[t, obj]] = motion[t, obj][:, None]
            object_flow_bwd[t + 1, obj][:, amodal[t + 1, obj]] = -motion[t, obj][:, None]
    # scene flow: the visible object's flow at each pixel; background static
    flow_fwd = np.einsum("tkhw,tkchw->tchw", visible.astype(np.float32), object_flow_fwd)
    flow_bwd = np.einsum("tkhw,tkchw->tchw", visible.astype(np.float32), object_flow_bwd)
    area_amodal = amodal.sum(axis=(2, 3))
    area_visible = visible.sum(axis=(2, 3))
    occlusion = np.where(area_amodal > 0, 1 - area_visible / np.maximum(area_amodal, 1), 0.0)
    return Clip(
        frames=frames,
        visible=visible,
        amodal=amodal,
        object_ids=np.arange(1, k + 1),
        types=types,
        depth=depth,
        flow_fwd=flow_fwd,
        flow_bwd=flow_bwd,
        object_flow_fwd=object_flow_fwd,
        object_flow_bwd=object_flow_bwd,
        occlusion=occlusion,
        motion=motion.astype(np.float32),
        roles=list(roles),
    )


def trajectory_pixels(clip: Clip, obj: int) -> tuple[np.ndarray, np.ndarray]:
    """Follow the frame-0 amodal pixels of a translating object through every frame.

    Returns:
        positions: (T, N, 2) int (row, col) of each frame-0 amodal pixel at every frame
            (rounded cumulative translation; exact for integer motion).
        inside: (T, N) bool, whether that position lies in the image.
    """
    rows, cols = np.nonzero(clip.amodal[0, obj])
    offset = np.concatenate([np.zeros((1, 2)), np.cumsum(clip.motion[:, obj], axis=0)], axis=0)  # (T, 2) x, y
    pos_r = np.rint(rows[None, :] + offset[:, 1:2]).astype(int)
    pos_c = np.rint(cols[None, :] + offset[:, 0:1]).astype(int)
    h, w = clip.amodal.shape[2:]
    inside = (pos_r >= 0) & (pos_r < h) & (pos_c >= 0) & (pos_c < w)
    return np.stack([pos_r, pos_c], axis=-1), inside


def never_visible(clip: Clip, obj: int, first_frame: int = 0) -> np.ndarray:
    """Amodal pixels of ``obj`` that are visible in no frame (Theorem 1, assumption 3), per frame.

    Follows each amodal point along its trajectory (the object translates rigidly), so the result
    is exact for integer motion. Only frames ``first_frame..T-1`` count as seen: SaVos's L_M
    compares the predictions of frames 1..T-1 with their visible masks and never looks at frame 0,
    so for the losses a point seen only in frame 0 is never seen (pass ``first_frame=1``).

    Returns:
        (T, H, W) bool: at frame t, the amodal pixels of ``obj`` whose point is never visible.
    """
    pos, inside = trajectory_pixels(clip, obj)
    t_len = clip.n_frames
    seen = np.zeros(pos.shape[1], dtype=bool)
    for t in range(first_frame, t_len):
        r, c = pos[t, :, 0].clip(0, clip.amodal.shape[2] - 1), pos[t, :, 1].clip(0, clip.amodal.shape[3] - 1)
        seen |= inside[t] & clip.visible[t, obj][r, c]
    out = np.zeros(clip.amodal[:, obj].shape, dtype=bool)
    for t in range(t_len):
        r, c = pos[t, ~seen & inside[t], 0], pos[t, ~seen & inside[t], 1]
        out[t, r, c] = True
    return out & clip.amodal[:, obj]


def never_background_comoving(clip: Clip, obj: int, first_frame: int = 0) -> np.ndarray:
    """Exterior pixels that move with ``obj`` and are background in no frame (assumption 4), per frame.

    Follows every image pixel of frame 0 with ``obj``'s translation; a point counts when it lies
    outside the object's amodal mask, stays inside the image in every frame (the domain of
    :func:`in_view`, where the theorem speaks) and is background in none of the frames
    ``first_frame..T-1`` (see :func:`never_visible` for why the losses need ``first_frame=1``).

    Returns:
        (T, H, W) bool.
    """
    t_len, _, h, w = clip.amodal.shape
    background = ~clip.visible.any(axis=1)  # (T, H, W)
    rows, cols = np.mgrid[0:h, 0:w]
    rows, cols = rows.ravel(), cols.ravel()
    offset = np.concatenate([np.zeros((1, 2)), np.cumsum(clip.motion[:, obj], axis=0)], axis=0)
    pos_r = np.rint(rows[None] + offset[:, 1:2]).astype(int)
    pos_c = np.rint(cols[None] + offset[:, 0:1]).astype(int)
    inside = (pos_r >= 0) & (pos_r < h) & (pos_c >= 0) & (pos_c < w)
    pr, pc = pos_r.clip(0, h - 1), pos_c.clip(0, w - 1)
    exterior = ~clip.amodal[0, obj][rows, cols]
    ever_bg = np.zeros(rows.shape, dtype=bool)
    for t in range(first_frame, t_len):
        ever_bg |= inside[t] & background[t][pr[t], pc[t]]
    flagged = exterior & ~ever_bg & inside.all(axis=0)
    out = np.zeros((t_len, h, w), dtype=bool)
    for t in range(t_len):
        keep = flagged & inside[t]
        out[t, pos_r[t, keep], pos_c[t, keep]] = True
    return out


# --------------------------------------------------------------------------------------------
# the rigid world


def _rigid_clip(
    rng: np.random.Generator,
    *,
    height: int,
    width: int,
    n_frames: int,
    n_objects: int,
    object_radius: tuple[float, float],
    max_speed: float,
    subpixel: bool,
    break_visibility: bool,
    break_exterior: bool,
    max_tries: int = 3000,
) -> Clip:
    margin = 2
    size = np.array([width, height], dtype=float)
    speeds = np.arange(-max_speed, max_speed + 0.25, 0.5) if subpixel else np.arange(-int(max_speed), int(max_speed) + 1.0)
    for _ in range(max_tries):
        # objects meet near a common point at a middle frame, so the front ones sweep over the back ones
        t_meet = rng.integers(n_frames // 3, max(n_frames // 3 + 1, 2 * n_frames // 3))
        meet = rng.uniform(0.35, 0.65, size=2) * size
        shapes, starts, velocities = [], [], []
        for _k in range(n_objects):
            radius = rng.uniform(*object_radius)
            shapes.append(convex_polygon(rng, radius, int(rng.integers(6, 10))))
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
        roles = ["object"] * n_objects
        extra_kinds = []
        if break_visibility:
            extra_kinds.append("sticker")
        if break_exterior:
            extra_kinds.append("glued")
        helper_rects = []  # (kind, host object, local centre, half size)
        order = list(rng.permutation(n_objects))  # front to back
        host = order[-1]  # helpers go on the back-most object, the one that is occluded most
        ok = True
        for kind in extra_kinds:
            half = np.array([2.5, 2.5])
            inner = rasterise_convex(shapes[host], np.array([32.0, 32.0]), 64, 64)
            if kind == "sticker":
                # a 5x5 square wholly inside the host, at least two pixels from its edge
                ok_at = ndimage.binary_erosion(inner, np.ones((9, 9), bool))
            else:
                # a 5x5 square just outside the host: no overlap, but touching its one-pixel ring
                overlaps = ndimage.binary_dilation(inner, np.ones((5, 5), bool))
                touches = ndimage.binary_dilation(inner, np.ones((7, 7), bool))
                ok_at = touches & ~overlaps
            cand = [(x, y) for y, x in zip(*np.nonzero(ok_at))]
            if not cand:
                ok = False
                break
            cx, cy = cand[int(rng.integers(len(cand)))]
            helper_rects.append((kind, host, np.array([cx - 32.0, cy - 32.0]), half))
        if not ok:
            continue
        k_total = n_objects + len(helper_rects)
        amodal = np.zeros((n_frames, k_total, height, width), dtype=bool)
        motion = np.zeros((n_frames - 1, k_total, 2))
        for t in range(n_frames):
            for k in range(n_objects):
                amodal[t, k] = rasterise_convex(shapes[k], starts[k] + t * velocities[k], height, width)
                if t < n_frames - 1:
                    motion[t, k] = velocities[k]
            for j, (kind, host_k, local, half) in enumerate(helper_rects):
                centre = starts[host_k] + t * velocities[host_k] + local
                amodal[t, n_objects + j] = rasterise_rect(half, centre, height, width)
                if t < n_frames - 1:
                    motion[t, n_objects + j] = velocities[host_k]
        roles = roles + [kind for kind, *_ in helper_rects]
        # depth: each helper just in front of its host
        for j, (kind, host_k, *_rest) in enumerate(helper_rects):
            order.insert(order.index(host_k), n_objects + j)
        depth_row = np.empty(k_total, dtype=int)
        depth_row[order] = np.arange(k_total)
        depth = np.repeat(depth_row[None], n_frames, axis=0)
        colours = rng.integers(130, 256, size=(k_total, 3)).astype(np.uint8)
        clip = compose_clip(amodal, depth, colours, textured_background(rng, height, width), motion, roles)
        # the clip must test what it is meant to: occlusion present, assumptions hold unless broken
        occluded_enough = all(clip.occlusion[:, k].max() > 0.1 for k in order[1:])
        if not occluded_enough:
            continue
        # judged on the frames the losses observe (1..T-1), see never_visible: each switch breaks its
        # assumption exactly on the helper's pixels, and nothing else is broken
        expected_vis = {k: np.zeros_like(amodal[:, 0]) for k in range(n_objects)}
        expected_ext = {k: np.zeros_like(amodal[:, 0]) for k in range(n_objects)}
        for j, (kind, host_k, *_rest) in enumerate(helper_rects):
            if kind == "sticker":
                expected_vis[host_k] = amodal[:, n_objects + j] & amodal[:, host_k]
            else:
                expected_ext[host_k] = amodal[:, n_objects + j]
        if all(np.array_equal(never_visible(clip, k, first_frame=1), expected_vis[k])
               and np.array_equal(never_background_comoving(clip, k, first_frame=1), expected_ext[k])
               for k in range(n_objects)):
            return clip
    raise RuntimeError(
        "rigid world: could not place objects that satisfy the requested assumptions in "
        f"{max_tries} tries; use a larger frame, fewer or smaller objects, more frames or more speed"
    )


RIGID_DEFAULTS = dict(
    height=48,
    width=48,
    n_frames=12,
    n_objects=2,
    object_radius=(8.0, 11.0),
    max_speed=2.0,
    subpixel=False,
    break_visibility=False,
    break_exterior=False,
)


def rigid_world(split: str, seed: int = 0, n_clips: int = 4, **params) -> World:
    """The ``rigid`` world: convex shapes translating at constant velocity over a textured background.

    Params (defaults in ``RIGID_DEFAULTS``): height, width, n_frames, n_objects, object_radius
    (min, max), max_speed (px/frame), subpixel (velocities in steps of 0.5 px instead of integers),
    break_visibility (glue a small square inside the back-most object, so part of it is never visible:
    breaks assumption 3), break_exterior (glue a small square just outside the back-most object, so a co-moving
    exterior region is never background: breaks assumption 4). Clips are drawn until they show
    occlusion (max occlusion rate > 0.1 for every object behind another) and satisfy exactly the
    assumptions that are not switched off, judged on frames 1..T-1 (the frames SaVos's L_M observes).
    """
    unknown = set(params) - set(RIGID_DEFAULTS)
    if unknown:
        raise ValueError(f"rigid world: unknown parameter(s) {sorted(unknown)}; expected some of {sorted(RIGID_DEFAULTS)}")
    cfg = {**RIGID_DEFAULTS, **params}
    if cfg["n_frames"] < 2:
        raise ValueError(f"rigid world: n_frames must be >= 2, got {cfg['n_frames']}")
    if cfg["n_objects"] < 2:
        raise ValueError(f"rigid world: n_objects must be >= 2 (occlusion needs two), got {cfg['n_objects']}")
    r_lo, r_hi = cfg["object_radius"]
    if not 0 < r_lo <= r_hi or 2 * r_hi + 4 >= min(cfg["height"], cfg["width"]):
        raise ValueError(
            f"rigid world: object_radius must satisfy 0 < min <= max and 2*max + 4 < min(height, width); "
            f"got {cfg['object_radius']} for a {cfg['height']}x{cfg['width']} frame"
        )
    if r_hi > 24:
        raise ValueError(f"rigid world: object_radius max must be <= 24 (helpers are placed on a 64x64 canvas), got {r_hi}")

    def make(index: int) -> Clip:
        return _rigid_clip(np.random.default_rng(clip_seed("rigid", split, seed, index)), **cfg)

    return World("rigid", split, seed, n_clips, make)


WORLDS: dict[str, Callable[..., World]] = {"rigid": rigid_world}


def load_world(name: str, split: str, *, seed: int = 0, **params) -> World:
    """Load a generated world: a sequence of :class:`Clip`.

    Example:
        >>> clip = load_world("rigid", "test", seed=0, n_clips=1)[0]
        >>> clip.frames.shape[-1]
        3
    """
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; expected one of {sorted(WORLDS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return WORLDS[name](split, seed=seed, **params)


def in_view(clip: Clip, obj: int) -> np.ndarray:
    """Pixels whose point, moving with ``obj``, stays inside the image in every frame.

    Theorem 1 follows points along their trajectories through all frames; a point that leaves
    the image has its chain cut (nothing constrains it there), so the theorem speaks only about
    this domain. For a translating object it is a rectangle per frame.

    Returns:
        (T, H, W) bool.
    """
    t_len, _, h, w = clip.amodal.shape
    offset = np.concatenate([np.zeros((1, 2)), np.cumsum(clip.motion[:, obj], axis=0)], axis=0)  # (T, 2)
    out = np.zeros((t_len, h, w), dtype=bool)
    for t in range(t_len):
        rel = offset - offset[t]  # displacement from frame t to every frame
        x_lo, x_hi = max(0.0, -rel[:, 0].min()), (w - 1) - max(0.0, rel[:, 0].max())
        y_lo, y_hi = max(0.0, -rel[:, 1].min()), (h - 1) - max(0.0, rel[:, 1].max())
        xs, ys = np.arange(w), np.arange(h)
        out[t] = ((ys >= y_lo) & (ys <= y_hi))[:, None] & ((xs >= x_lo) & (xs <= x_hi))[None, :]
    return out

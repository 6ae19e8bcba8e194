"""A clip with full ground truth, rendered from sprites, and exact checks along trajectories.

Every generated world draws its clips with :func:`render_clip`: sprites (shape, texture, pose and
depth per frame) over a textured background seen by a moving camera. Visible masks follow from
the depth order, ground-truth flow from the poses of consecutive frames, so both are exact.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .shapes import Sprite, Texture, apply


@dataclass
class Clip:
    """One generated video with full ground truth.

    Shapes (T frames, K objects, H x W pixels):
        frames: (T, H, W, 3) uint8.
        visible: (T, K, H, W) bool, disjoint across objects at every pixel.
        amodal: (T, K, H, W) bool (the part inside the image); ``visible`` is a subset of it.
        object_ids: (K,) int, 1..K.
        types: (K,) int class index, or None for classless worlds.
        depth: (T, K) int, 0 = front-most at that frame.
        flow_fwd, flow_bwd: (T, 2, H, W) float32 scene flow (x, y) in pixels, t -> t+1 and t -> t-1:
            the visible object's flow at each pixel, the camera's on the background; zero where
            undefined (last frame forward, first frame backward).
        object_flow_fwd, object_flow_bwd: (T, K, 2, H, W) float32, each object's own flow on its
            amodal region, zero elsewhere.
        occlusion: (T, K) float, 1 - |visible| / |amodal| (0 when the amodal mask is empty).
        poses: (T, K, 3, 3) sprite -> image affine of each object; camera: (T, 3, 3) world -> image.
        roles: K strings: "object" (evaluated) or a helper ("sticker", "glued", "occluder").
        extra: world-specific arrays (e.g. street's degraded "visible_pred").
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
    poses: np.ndarray
    camera: np.ndarray
    roles: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

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

    @property
    def motion(self) -> np.ndarray:
        """(T-1, K, 2) translation of each object from t to t+1; only for purely translating objects."""
        linear = self.poses[:, :, :2, :2]
        if not np.allclose(linear, linear[:1]):
            raise ValueError("Clip.motion: objects do not only translate in this clip; use motion_field()")
        return (self.poses[1:, :, :2, 2] - self.poses[:-1, :, :2, 2]).astype(np.float32)

    def motion_field(self) -> np.ndarray:
        """(T-1, K, 2, H, W) float32: where each pixel would go from t to t+1 if it moved with object k.

        Defined over the whole image (the amodal mask's occluded part and beyond), as an amodal
        prediction needs when it is warped: M p - p with M = pose[t+1] @ pose[t]^-1.
        """
        t_len, k, h, w = self.amodal.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        step = self.poses[1:] @ np.linalg.inv(self.poses[:-1])  # (T-1, K, 3, 3)
        nx, ny = apply(step[..., None, None, :, :], xs, ys)
        return np.stack([nx - xs, ny - ys], axis=2).astype(np.float32)


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:height, 0:width]
    return xs.astype(np.float64), ys.astype(np.float64)


def _background_frames(background: Texture, camera: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) float background of every frame.

    A moving camera's frames are resampled (bilinear) from one canvas of the world region they
    see, drawn once: sampling a procedural texture anew for every frame costs far more.
    """
    xs, ys = _pixel_grid(height, width)
    if np.allclose(camera, camera[:1]):
        wx, wy = apply(np.linalg.inv(camera[0]), xs, ys)
        return np.repeat(background.sample(wx, wy)[None].astype(np.float32), camera.shape[0], axis=0)
    import cv2

    corners_x = np.array([0, width - 1, 0, width - 1], dtype=float)
    corners_y = np.array([0, 0, height - 1, height - 1], dtype=float)
    wx, wy = apply(np.linalg.inv(camera)[:, None], corners_x, corners_y)
    x0, y0 = np.floor(wx.min()) - 2, np.floor(wy.min()) - 2
    cw, ch = int(np.ceil(wx.max()) - x0) + 3, int(np.ceil(wy.max()) - y0) + 3
    gx, gy = np.meshgrid(np.arange(cw) + x0, np.arange(ch) + y0)
    canvas = background.sample(gx, gy).astype(np.float32)
    out = np.empty((camera.shape[0], height, width, 3), dtype=np.float32)
    for t, cam in enumerate(camera):
        to_canvas = np.linalg.inv(cam)  # image -> world, then shift to the canvas origin
        to_canvas[0] -= to_canvas[2] * x0
        to_canvas[1] -= to_canvas[2] * y0
        out[t] = cv2.warpAffine(canvas, to_canvas[:2], (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def render_clip(sprites: list[Sprite], background: Texture, camera: np.ndarray, height: int, width: int,
                extra: dict | None = None) -> Clip:
    """Draw sprites over a background seen by ``camera`` and derive every ground truth.

    Args:
        sprites: K sprites with poses (T, 3, 3) and depths (T,).
        background: texture in world coordinates.
        camera: (T, 3, 3) world -> image affine of each frame.

    Returns:
        a :class:`Clip`; pixel (r, c) has its centre at image coordinates (x, y) = (c, r).
    """
    t_len, k = camera.shape[0], len(sprites)
    xs, ys = _pixel_grid(height, width)
    amodal = np.zeros((t_len, k, height, width), dtype=bool)
    windows = []
    for obj, sprite in enumerate(sprites):
        if sprite.poses.shape != (t_len, 3, 3) or sprite.depth.shape != (t_len,):
            raise ValueError(f"render_clip: sprite {obj} needs poses (T, 3, 3) and depth (T,) with T = {t_len}")
        # every frame tests one square window about the sprite, as large as its widest reach (its extent
        # times the pose's largest stretch): one vectorised test over all frames, cropped to the image after
        reach = sprite.shape.extent() * np.linalg.norm(sprite.poses[:, :2, :2], ord=2, axis=(1, 2)) + 2
        side = int(2 * np.ceil(reach.max()) + 1)
        r0 = np.floor(sprite.poses[:, 1, 2] - side / 2).astype(int)
        c0 = np.floor(sprite.poses[:, 0, 2] - side / 2).astype(int)
        wy = (r0[:, None] + np.arange(side))[:, :, None].astype(np.float64)  # (T, side, 1)
        wx = (c0[:, None] + np.arange(side))[:, None, :].astype(np.float64)  # (T, 1, side)
        inverse = np.linalg.inv(sprite.poses)[:, None, None]
        u, v = apply(inverse, wx, wy)
        inside = sprite.shape.contains(u, v)
        windows.append((r0, c0, inside))
        for t in range(t_len):
            rs, re = max(r0[t], 0), min(r0[t] + side, height)
            cs, ce = max(c0[t], 0), min(c0[t] + side, width)
            if rs < re and cs < ce:
                amodal[t, obj, rs:re, cs:ce] = inside[t, rs - r0[t]:re - r0[t], cs - c0[t]:ce - c0[t]]

    depth_value = np.stack([s.depth for s in sprites], axis=1) if k else np.zeros((t_len, 0))
    depth = np.argsort(np.argsort(depth_value, axis=1, kind="stable"), axis=1, kind="stable")
    visible = np.zeros_like(amodal)
    for t in range(t_len):
        taken = np.zeros((height, width), dtype=bool)
        for obj in np.argsort(depth[t], kind="stable"):  # front to back
            visible[t, obj] = amodal[t, obj] & ~taken
            taken |= amodal[t, obj]
    images = _background_frames(background, camera, height, width)
    poses = np.stack([s.poses for s in sprites], axis=1) if k else np.zeros((t_len, 0, 3, 3))
    object_flow_fwd = np.zeros((t_len, k, 2, height, width), dtype=np.float32)
    object_flow_bwd = np.zeros_like(object_flow_fwd)
    flow_fwd = np.zeros((t_len, 2, height, width), dtype=np.float32)
    flow_bwd = np.zeros_like(flow_fwd)
    background_px = ~visible.any(axis=1)
    static_camera = np.allclose(camera, camera[:1])
    for t in range(0 if static_camera else t_len):  # the background moves with the camera (if it moves)
        for other, target in ((t + 1, flow_fwd), (t - 1, flow_bwd)):
            if 0 <= other < t_len:
                nx, ny = apply(camera[other] @ np.linalg.inv(camera[t]), xs, ys)
                target[t, 0] = np.where(background_px[t], nx - xs, 0)
                target[t, 1] = np.where(background_px[t], ny - ys, 0)
    for obj, sprite in enumerate(sprites):
        # the object's amodal pixels, found in its windows rather than in the whole (T, H, W) volume
        r0, c0, inside = windows[obj]
        tt, wr, wc = np.nonzero(inside)
        rr, cc = wr + r0[tt], wc + c0[tt]
        in_image = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        tt, rr, cc = tt[in_image], rr[in_image], cc[in_image]
        px, py = cc.astype(np.float64), rr.astype(np.float64)
        inverse = np.linalg.inv(sprite.poses)
        shown = visible[tt, obj, rr, cc]
        if shown.any():  # colours: the texture at each visible pixel's sprite point
            u, v = apply(inverse[tt[shown]], px[shown], py[shown])
            images[tt[shown], rr[shown], cc[shown]] = sprite.texture.sample(u, v)
        steps = {1: sprite.poses[1:] @ inverse[:-1], -1: sprite.poses[:-1] @ inverse[1:]}  # per frame, not per pixel
        for shift, target, scene in ((1, object_flow_fwd, flow_fwd), (-1, object_flow_bwd, flow_bwd)):
            keep = (tt + shift >= 0) & (tt + shift < t_len)  # flow: where the next / previous pose puts the point
            nx, ny = apply(steps[shift][tt[keep] - (shift < 0)], px[keep], py[keep])
            fx, fy = (nx - px[keep]).astype(np.float32), (ny - py[keep]).astype(np.float32)
            target[tt[keep], obj, 0, rr[keep], cc[keep]] = fx
            target[tt[keep], obj, 1, rr[keep], cc[keep]] = fy
            mine = shown[keep]  # the scene flow of a pixel is its visible object's flow
            scene[tt[keep][mine], 0, rr[keep][mine], cc[keep][mine]] = fx[mine]
            scene[tt[keep][mine], 1, rr[keep][mine], cc[keep][mine]] = fy[mine]
    frames = np.clip(np.rint(images), 0, 255).astype(np.uint8)

    area_amodal = amodal.sum(axis=(2, 3))
    area_visible = visible.sum(axis=(2, 3))
    occlusion = np.where(area_amodal > 0, 1 - area_visible / np.maximum(area_amodal, 1), 0.0)
    types = None if any(s.type is None for s in sprites) else np.array([s.type for s in sprites], dtype=int)
    return Clip(frames=frames, visible=visible, amodal=amodal, object_ids=np.arange(1, k + 1), types=types,
                depth=depth, flow_fwd=flow_fwd, flow_bwd=flow_bwd, object_flow_fwd=object_flow_fwd,
                object_flow_bwd=object_flow_bwd, occlusion=occlusion, poses=poses.astype(np.float64),
                camera=np.asarray(camera, dtype=np.float64), roles=[s.role for s in sprites], extra=extra or {})


# ------------------------------------------------------------------------------ trajectory checks


def _follow(clip: Clip, obj: int, t: int, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions in every frame of the points at pixels (px, py) of frame t moving with ``obj``.

    Returns rows (T, N), cols (T, N) rounded to the nearest pixel, and inside (T, N).
    """
    t_len, _, h, w = clip.amodal.shape
    to_frames = clip.poses[:, obj] @ np.linalg.inv(clip.poses[t, obj])  # (T, 3, 3)
    nx, ny = apply(to_frames[:, None], px[None], py[None])
    cols, rows = np.rint(nx).astype(int), np.rint(ny).astype(int)
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    return rows.clip(0, h - 1), cols.clip(0, w - 1), inside


def never_visible(clip: Clip, obj: int, first_frame: int = 0) -> np.ndarray:
    """Amodal pixels of ``obj`` whose point is visible in none of the frames ``first_frame..T-1``.

    Follows each amodal point along its trajectory (Theorem 1, assumption 3): exact for integer
    translations, to the nearest pixel otherwise. SaVos's L_M compares the predictions of frames
    1..T-1 with their visible masks and never looks at frame 0, so for the losses a point seen
    only in frame 0 is never seen: pass ``first_frame=1``.

    Returns:
        (T, H, W) bool.
    """
    out = np.zeros(clip.amodal[:, obj].shape, dtype=bool)
    for t in range(clip.n_frames):
        rr, cc = np.nonzero(clip.amodal[t, obj])
        if rr.size == 0:
            continue
        rows, cols, inside = _follow(clip, obj, t, cc.astype(float), rr.astype(float))
        seen = (inside & clip.visible[np.arange(clip.n_frames)[:, None], obj, rows, cols])[first_frame:].any(axis=0)
        out[t, rr[~seen], cc[~seen]] = True
    return out


def in_view(clip: Clip, obj: int) -> np.ndarray:
    """Pixels whose point, moving with ``obj``, stays inside the image in every frame.

    Theorem 1 follows points along their trajectories through all frames; a point that leaves
    the image has its chain cut (nothing constrains it there), so the theorem speaks only about
    this domain.

    Returns:
        (T, H, W) bool.
    """
    t_len, _, h, w = clip.amodal.shape
    xs, ys = _pixel_grid(h, w)
    out = np.zeros((t_len, h, w), dtype=bool)
    for t in range(t_len):
        to_frames = clip.poses[:, obj] @ np.linalg.inv(clip.poses[t, obj])
        nx, ny = apply(to_frames[:, None, None], xs, ys)
        out[t] = ((nx >= -1e-6) & (nx <= w - 1 + 1e-6) & (ny >= -1e-6) & (ny <= h - 1 + 1e-6)).all(axis=0)
    return out


def never_background_comoving(clip: Clip, obj: int, first_frame: int = 0) -> np.ndarray:
    """Exterior points that move with ``obj`` and are background in none of the frames ``first_frame..T-1``.

    A pixel counts when it lies outside the object's amodal mask, its point stays in the image in
    every frame (the domain of :func:`in_view`, where the theorem speaks) and is never background
    (Theorem 1, assumption 4; see :func:`never_visible` for ``first_frame``).

    Returns:
        (T, H, W) bool.
    """
    background = ~clip.visible.any(axis=1)
    view = in_view(clip, obj)
    out = np.zeros_like(view)
    frames = np.arange(clip.n_frames)[:, None]
    for t in range(clip.n_frames):
        rr, cc = np.nonzero(view[t] & ~clip.amodal[t, obj])
        if rr.size == 0:
            continue
        rows, cols, inside = _follow(clip, obj, t, cc.astype(float), rr.astype(float))
        ever = (inside & background[frames, rows, cols])[first_frame:].any(axis=0)
        out[t, rr[~ever], cc[~ever]] = True
    return out


"""Object-centric crops (SaVos-style tracks) and their exact inverse.

Per object and frame, the visible mask's box is enlarged 1.5x about its centre and clipped to the
image; frames, masks and flow are resampled into a fixed (h, w) crop (64 x 128 at paper size),
flow vectors rescaled to crop pixels. With ``boxes="track"`` (the default) every frame of a track
uses one box size, the largest width and height of its frames' enlarged boxes, centred on each
frame's visible box (the release also keeps one scale per track, anchoring each crop at its own
box's corner and zero-padding; its paste-back then assumes the full crop for every frame). With
``boxes="frame"`` each frame's own enlarged box is stretched to the crop, so an object's size in
crop space changes as its visible part does. :func:`paste_back` is the exact inverse of either.

Coordinates: pixel (r, c) covers [c, c + 1) x [r, r + 1); a box is (x0, y0, x1, y1) in those
edge coordinates, so a mask's box is (cmin, rmin, cmax + 1, rmax + 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Clip


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """The (x0, y0, x1, y1) box of a boolean (H, W) mask in edge coordinates; None when empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=float)


def enlarge_box(box: np.ndarray, scale: float, height: int, width: int) -> np.ndarray:
    """``box`` scaled by ``scale`` about its centre, then clipped to the image [0, W] x [0, H]."""
    centre = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) * scale / 2
    out = np.concatenate([centre - half, centre + half])
    return np.clip(out, 0, [width, height, width, height])


def track_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """One box size for a whole track: the largest width and height of the frames' enlarged visible
    boxes (so every frame's box fits), moved to each frame's box centre and then shifted (not shrunk)
    to lie inside the image. The release takes the box of the frame with the largest visible area,
    which can cut off another frame's wider or taller mask.

    Args:
        boxes: (N, 4) each frame's enlarged visible box.

    Returns:
        (N, 4) boxes of one size (the image's size where that is smaller).
    """
    size = np.minimum((boxes[:, 2:] - boxes[:, :2]).max(axis=0), [width, height])
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    lo = np.clip(centre - size / 2, 0, np.array([width, height]) - size)
    return np.concatenate([lo, lo + size], axis=1)


def crop_matrix(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """2x3 affine taking image pixel-centre coordinates to crop pixel-centre coordinates.

    Crop pixel j (of ``w``) covers [x0 + j a, x0 + (j + 1) a) with a = (x1 - x0) / w; its centre is
    at image coordinate x0 + (j + 0.5) a - 0.5.
    """
    h, w = size
    ax, ay = (box[2] - box[0]) / w, (box[3] - box[1]) / h
    if ax <= 0 or ay <= 0:
        raise ValueError(f"crop_matrix: empty box {box.tolist()}")
    bx, by = box[0] + 0.5 * ax - 0.5, box[1] + 0.5 * ay - 0.5
    return np.array([[1 / ax, 0, -bx / ax], [0, 1 / ay, -by / ay]])


def crop(image: np.ndarray, box: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resample the ``box`` of an (H, W[, C]) image into an (h, w[, C]) crop (bilinear, or nearest)."""
    import cv2

    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    inverse = cv2.invertAffineTransform(crop_matrix(box, size))  # crop -> image, as WARP_INVERSE_MAP wants
    src = image.astype(np.float32) if image.dtype == bool else image
    return cv2.warpAffine(src, inverse, (size[1], size[0]), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def paste_back(crop_mask: np.ndarray, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """The exact inverse of :func:`crop`: an (h, w) crop-space map put back into an (H, W) image (0 outside the box)."""
    import cv2

    h, w = crop_mask.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    # replicate the crop's border for the box's edge pixels, then zero everything outside the box
    out = cv2.warpAffine(crop_mask.astype(np.float32), crop_matrix(box, (h, w)), (width, height), flags=flags,
                         borderMode=cv2.BORDER_REPLICATE)
    inside = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = box
    inside[int(np.ceil(y0 - 0.5)):int(np.ceil(y1 - 0.5)), int(np.ceil(x0 - 0.5)):int(np.ceil(x1 - 0.5))] = True
    return np.where(inside, out, 0.0).astype(np.float32)


def crop_flow(flow: np.ndarray, box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop a (2, H, W) flow and rescale its vectors to crop pixels: (2, h, w)."""
    h, w = size
    scale = np.array([w / (box[2] - box[0]), h / (box[3] - box[1])], dtype=np.float32)[:, None, None]
    resampled = crop(np.ascontiguousarray(flow.transpose(1, 2, 0)), box, size).transpose(2, 0, 1)
    return resampled * scale


@dataclass
class Track:
    """One object's crops over consecutive frames.

    frame_index: (N,) frames of the clip; boxes: (N, 4) enlarged boxes; frames: (N, h, w, 3) uint8;
    visible, amodal: (N, h, w) float32 in [0, 1] (bilinear); flow_fwd, flow_bwd: (N, 2, h, w) float32
    in crop pixels; others: (N, h, w) float32, the other objects' visible masks (the pixels where
    SaVos's weight W is 0); occlusion: (N,) of the full object (from the ground truth).
    """

    object_index: int
    frame_index: np.ndarray
    boxes: np.ndarray
    frames: np.ndarray
    visible: np.ndarray
    amodal: np.ndarray
    flow_fwd: np.ndarray
    flow_bwd: np.ndarray
    others: np.ndarray
    occlusion: np.ndarray

    def paste(self, crops: np.ndarray, height: int, width: int) -> np.ndarray:
        """Put (N, h, w) crop-space maps back into (N, H, W) image space."""
        return np.stack([paste_back(c, b, height, width) for c, b in zip(crops, self.boxes)])


def select_frames(clip: Clip, obj: int, *, min_visible_area: int = 1, min_amodal_area: int = 1,
                  visible: np.ndarray | None = None, border: int = 0) -> np.ndarray:
    """(T,) bool: the frames where object ``obj`` has enough visible (``visible``, default the clip's) and amodal
    pixels and, with ``border`` > 0, whose amodal box keeps at least ``border`` pixels from every image edge."""
    visible_area = (clip.visible if visible is None else visible)[:, obj].sum(axis=(1, 2))
    amodal_area = clip.amodal[:, obj].sum(axis=(1, 2))
    keep = (visible_area >= max(min_visible_area, 1)) & (amodal_area >= min_amodal_area)
    if border > 0:
        height, width = clip.amodal.shape[-2:]
        for t in np.nonzero(keep)[0]:
            x0, y0, x1, y1 = mask_box(clip.amodal[t, obj])
            keep[t] = x0 >= border and y0 >= border and x1 <= width - border and y1 <= height - border
    return keep


def visible_change(visible: np.ndarray, lag: int = 4) -> np.ndarray:
    """(N,) 1 - IoU of each frame's visible mask with the one ``lag`` frames earlier, both cut to their own boxes
    and aligned at the boxes' top-left corners (the release's test of a changing mask); 0 for the first ``lag``.

    Args:
        visible: (N, H, W) bool masks of one object, none empty.
    """
    out = np.zeros(len(visible))
    cuts = []
    for mask in visible:
        x0, y0, x1, y1 = mask_box(mask).astype(int)
        cuts.append(mask[y0:y1, x0:x1])
    for t in range(lag, len(visible)):
        a, b = cuts[t - lag], cuts[t]
        h, w = max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1])
        pa, pb = np.zeros((h, w), bool), np.zeros((h, w), bool)
        pa[:a.shape[0], :a.shape[1]], pb[:b.shape[0], :b.shape[1]] = a, b
        out[t] = 1 - (pa & pb).sum() / max((pa | pb).sum(), 1)
    return out


def object_tracks(clip: Clip, size: tuple[int, int] = (64, 128), *, scale: float = 1.5, flow: tuple | None = None,
                  min_visible_area: int = 1, min_amodal_area: int = 1, occlusion_range: tuple | None = None,
                  min_length: int = 2, objects=None, visible: np.ndarray | None = None,
                  boxes: str = "track", border: int = 0, min_change: float | None = None) -> list[Track]:
    """SaVos-style tracks of a clip's objects, with the release's filters as parameters.

    A track is the longest run of consecutive frames in which the object passes the area filters
    (:func:`select_frames`); it is kept when that run has at least ``min_length`` frames and, if
    ``occlusion_range`` = (lo, hi) is given, some frame of it has lo < occlusion < hi.

    Args:
        size: (h, w) of the crops.
        flow: (forward, backward) scene flows (T, 2, H, W) to crop, e.g. from ``estimate_flow``;
            the ground truth when None.
        objects: indices to consider (default: the evaluated objects).
        visible: (T, K, H, W) visible masks to crop instead of the clip's (e.g. street's degraded
            ``clip.extra["visible_pred"]``); boxes, ``visible`` and ``others`` follow them, while
            ``amodal`` and ``occlusion`` stay the ground truth's.
        boxes: "track" (one box size per track, :func:`track_boxes`) or "frame" (each frame's own box).
        border: frames whose amodal box comes closer than this to an image edge end a track (0: no test).
        min_change: keep a track only if some frame's visible mask changed by more than this from 4 frames
            earlier (:func:`visible_change`; the release keeps training fish with 1 - IoU > 0.4). None: no test.
    """
    if boxes not in ("track", "frame"):
        raise ValueError(f"object_tracks: boxes must be 'track' or 'frame', got {boxes!r}")
    if len(size) != 2 or min(size) < 4:
        raise ValueError(f"object_tracks: size must be (h, w) with both >= 4, got {size}")
    if scale < 1:
        raise ValueError(f"object_tracks: scale must be >= 1 (the box is enlarged), got {scale}")
    forward, backward = (clip.flow_fwd, clip.flow_bwd) if flow is None else flow
    t_len, _, height, width = clip.amodal.shape
    visible = clip.visible if visible is None else np.asarray(visible, dtype=bool)
    if visible.shape != clip.visible.shape:
        raise ValueError(f"object_tracks: visible must be (T, K, H, W) = {clip.visible.shape}, got {visible.shape}")
    union = visible.any(axis=1)
    tracks = []
    for obj in clip.evaluated if objects is None else objects:
        keep = select_frames(clip, obj, visible=visible, min_visible_area=min_visible_area, min_amodal_area=min_amodal_area,
                             border=border)
        best, start = (0, 0), None
        for t in range(t_len + 1):
            if t < t_len and keep[t]:
                start = t if start is None else start
            elif start is not None:
                best = max(best, (t - start, start))
                start = None
        length, first = best
        if length < min_length:
            continue
        frames = np.arange(first, first + length)
        occ = clip.occlusion[frames, obj]
        if occlusion_range is not None and not ((occ > occlusion_range[0]) & (occ < occlusion_range[1])).any():
            continue
        if min_change is not None and not (visible_change(visible[frames, obj]) > min_change).any():
            continue
        track_box = np.stack([enlarge_box(mask_box(visible[t, obj]), scale, height, width) for t in frames])
        if boxes == "track":
            track_box = track_boxes(track_box, height, width)
        tracks.append(Track(
            object_index=int(obj), frame_index=frames, boxes=track_box,
            frames=np.stack([crop(clip.frames[t], b, size) for t, b in zip(frames, track_box)]),
            visible=np.stack([crop(visible[t, obj], b, size) for t, b in zip(frames, track_box)]),
            amodal=np.stack([crop(clip.amodal[t, obj], b, size) for t, b in zip(frames, track_box)]),
            flow_fwd=np.stack([crop_flow(forward[t], b, size) for t, b in zip(frames, track_box)]),
            flow_bwd=np.stack([crop_flow(backward[t], b, size) for t, b in zip(frames, track_box)]),
            others=np.stack([crop(union[t] & ~visible[t, obj], b, size) for t, b in zip(frames, track_box)]),
            occlusion=occ,
        ))
    return tracks

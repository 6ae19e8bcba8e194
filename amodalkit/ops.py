"""Small tensor operations shared by several methods: backward warping, soft IoU, mask boxes, crops and
pasting (the spatial transformer's sampler), and synthetic occlusion."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_warp_inputs(image: torch.Tensor, flow: torch.Tensor) -> None:
    if image.dim() != 4:
        raise ValueError(f"warp: image must be (B, C, H, W), got shape {tuple(image.shape)}")
    b, _, h, w = image.shape
    if flow.shape != (b, 2, h, w):
        raise ValueError(
            f"warp: flow must be (B, 2, H, W) = {(b, 2, h, w)} to match image, got {tuple(flow.shape)}"
        )


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image`` from frame t to frame t+1 with the forward flow ``flow``.

    The output at pixel p is ``image`` sampled at ``p - flow(p)`` (bilinear, border padding,
    ``align_corners=False``), as the SaVos release does: it is a gather, not a splat, so every
    output pixel gets exactly one value. For a flow that is constant over the image (a rigid
    translation) and integer, this is an exact shift with the border row/column repeated.

    Args:
        image: (B, C, H, W) float.
        flow: (B, 2, H, W) float, channel 0 = x (columns), channel 1 = y (rows), in pixels.

    Returns:
        (B, C, H, W), the warped image.

    Example:
        >>> img = torch.zeros(1, 1, 4, 4); img[0, 0, 1, 1] = 1
        >>> flow = torch.zeros(1, 2, 4, 4); flow[:, 0] = 1   # move right by one pixel
        >>> warp(img, flow)[0, 0, 1, 2].item()
        1.0
    """
    _check_warp_inputs(image, flow)
    b, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=image.dtype, device=image.device),
        torch.arange(w, dtype=image.dtype, device=image.device),
        indexing="ij",
    )
    src_x = xs - flow[:, 0]
    src_y = ys - flow[:, 1]
    # pixel centres -> normalised coordinates for align_corners=False
    grid = torch.stack(((2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1), dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def translation_flow(shift_xy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A flow field that is one translation per batch element.

    Args:
        shift_xy: (B, 2) float, (dx, dy) in pixels.

    Returns:
        (B, 2, height, width) with ``flow[b, :, y, x] == shift_xy[b]``.
    """
    if shift_xy.dim() != 2 or shift_xy.shape[1] != 2:
        raise ValueError(f"translation_flow: shift_xy must be (B, 2), got {tuple(shift_xy.shape)}")
    return shift_xy[:, :, None, None].expand(-1, 2, height, width).contiguous()


def soft_iou(a: torch.Tensor, b: torch.Tensor, dims=(-2, -1), eps: float = 1e-8) -> torch.Tensor:
    """Soft IoU ``sum(ab) / (sum(a + b - ab) + eps)`` over ``dims``.

    Args:
        a, b: masks with values in [0, 1], same shape (..., H, W).

    Returns:
        the soft IoU with ``dims`` reduced; equals the IoU for binary masks.
    """
    if a.shape != b.shape:
        raise ValueError(f"soft_iou: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    inter = (a * b).sum(dim=dims)
    union = (a + b - a * b).sum(dim=dims)
    return inter / (union + eps)


def binary_iou(pred: torch.Tensor, target: torch.Tensor, dims=(-2, -1), eps: float = 1e-6) -> torch.Tensor:
    """IoU of boolean masks, ``(I + eps) / (U + eps)`` (1 when both are empty), reduced over ``dims``."""
    pred, target = pred.bool(), target.bool()
    inter = (pred & target).sum(dim=dims).double()
    union = (pred | target).sum(dim=dims).double()
    return (inter + eps) / (union + eps)


# ------------------------------------------------------------------ boxes, crops and pasting of masks


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes (N, 4) of (N, H, W) masks (> 0.5); an empty mask gets the whole frame."""
    on = masks > 0.5
    n, height, width = masks.shape
    rows, cols = on.any(dim=2), on.any(dim=1)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    big = torch.tensor(10**9, device=masks.device)
    y0 = torch.where(rows, ys, big).min(dim=1).values
    y1 = torch.where(rows, ys, -1).max(dim=1).values + 1
    x0 = torch.where(cols, xs, big).min(dim=1).values
    x1 = torch.where(cols, xs, -1).max(dim=1).values + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    empty = ~on.flatten(1).any(dim=1)
    boxes[empty] = torch.tensor([0.0, 0.0, width, height], device=masks.device)
    return boxes


def crop_to_box(masks: torch.Tensor, boxes: torch.Tensor, size: int = 28) -> torch.Tensor:
    """Bilinear crops of each box (x0, y0, x1, y1; pixel i covers [i, i + 1)), resized to size x size:
    (N, H, W) float, (N, 4) -> (N, 1, size, size).

    Outside the frame counts as 0. A box with integer corners and the crop's own size is an exact slice.
    """
    n, height, width = masks.shape
    steps = (2 * torch.arange(size, dtype=masks.dtype, device=masks.device) + 1) / size - 1  # output pixel centres
    b = boxes.to(masks.dtype)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    gx = (2 * cx[:, None] + w[:, None] * steps[None]) / width - 1  # (N, size)
    gy = (2 * cy[:, None] + h[:, None] * steps[None]) / height - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def paste_from_box(crops: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Place (N, 1, s, s) crops into (N, 1, height, width) frames at ``boxes`` (bilinear, 0 outside the box);
    differentiable in both the crops and the boxes (the spatial transformer's sampler)."""
    b = boxes.to(crops.dtype)
    xs = torch.arange(width, dtype=crops.dtype, device=crops.device) + 0.5
    ys = torch.arange(height, dtype=crops.dtype, device=crops.device) + 0.5
    # frame pixel centre -> normalised coordinate inside the box ([-1, 1] spans the box)
    gx = (2 * (xs[None] - b[:, 0:1]) / (b[:, 2:3] - b[:, 0:1]) - 1)  # (N, W)
    gy = (2 * (ys[None] - b[:, 1:2]) / (b[:, 3:4] - b[:, 1:2]) - 1)  # (N, H)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def synthetic_occlusion(full: torch.Tensor, pool: torch.Tensor, generator: torch.Generator,
                        min_visible: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay another instance's mask over each full mask (stage 2's training pairs).

    Args:
        full: (B, H, W) float full masks; pool: (M, H, W) float masks to draw occluders from.
        min_visible: an occlusion that leaves less than this fraction visible is not applied.

    Returns:
        partial (B, H, W) = full minus the occluder, and the occluder (B, H, W) placed with its
        centre at a uniform point of the full mask's box.
    """
    b, height, width = full.shape
    pick = torch.randint(len(pool), (b,), generator=generator)
    occluder = pool[pick.to(pool.device)].to(full.dtype)  # the pool may be held as bool
    fb, ob = mask_boxes(full), mask_boxes(occluder)
    u = torch.rand(b, 2, generator=generator).to(full.device)
    target = fb[:, :2] + u * (fb[:, 2:] - fb[:, :2])
    shift = target - (ob[:, :2] + ob[:, 2:]) / 2  # (B, 2) pixels, x then y
    theta = torch.zeros(b, 2, 3, device=full.device)
    theta[:, 0, 0], theta[:, 1, 1] = 1, 1
    theta[:, 0, 2], theta[:, 1, 2] = -2 * shift[:, 0] / width, -2 * shift[:, 1] / height
    grid = F.affine_grid(theta, (b, 1, height, width), align_corners=False)
    occluder = F.grid_sample(occluder[:, None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, 0]
    partial = full * (1 - occluder)
    kept = partial.sum((1, 2)) / full.sum((1, 2)).clamp(min=1)
    apply = (kept >= min_visible)[:, None, None].to(full.dtype)
    return apply * partial + (1 - apply) * full, apply * occluder

"""Small tensor operations shared by several methods: backward warping and soft IoU."""
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

"""SaVos (Yao et al., NeurIPS 2022): its losses, and the free-mask optimisation of Theorem 1.

The network itself (Table 6) comes with the SaVos chapter; the pieces here are the ones the
theorem is about and the model reuses:

* :func:`visibility_weight` W = (1 - sum_i V_i) + V_k (background plus the object's own pixels),
* :func:`mask_loss` L_M, BCE between the warped prediction and the next visible mask, weighted by W,
* :func:`consistency_loss` L_C, 1 - soft IoU between the warped prediction and the next prediction,
* :func:`complete_loss` L_complete of App. B, Eq. 1 (every later frame, O(T^2) warps),
* :func:`fit_free_masks`, which optimises free per-frame mask logits (no network) against
  L_M (+ L_C) with given motion: the setting of Theorem 1.

Shapes: B batch (objects), T frames, H x W pixels. Masks are float probabilities in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .ops import soft_iou, warp


def visibility_weight(visible: torch.Tensor) -> torch.Tensor:
    """W_k = (1 - sum_i V_i) + V_k for every object k at once.

    Args:
        visible: (..., K, H, W) visible masks in {0, 1}, disjoint across K.

    Returns:
        (..., K, H, W): 1 on the background and on object k's own visible pixels, 0 on the
        pixels where another object is visible (the only place L_M says nothing).
    """
    visible = visible.float()
    background = 1 - visible.sum(dim=-3, keepdim=True)
    if (background < -1e-6).any():
        raise ValueError("visibility_weight: visible masks overlap; they must be disjoint across objects")
    return background + visible


def warp_sequence(masks: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Warp each frame's mask to the next frame: output[:, t] predicts frame t+1 from frame t.

    Args:
        masks: (B, T, H, W).
        flow: (B, T-1, 2, H, W), the object's forward flow from t to t+1.

    Returns:
        (B, T-1, H, W).
    """
    b, t_len, h, w = masks.shape
    if flow.shape != (b, t_len - 1, 2, h, w):
        raise ValueError(f"warp_sequence: flow must be (B, T-1, 2, H, W) = {(b, t_len - 1, 2, h, w)}, got {tuple(flow.shape)}")
    out = warp(masks[:, :-1].reshape(b * (t_len - 1), 1, h, w), flow.reshape(b * (t_len - 1), 2, h, w))
    return out.reshape(b, t_len - 1, h, w)


def mask_loss(pred_next: torch.Tensor, visible_next: torch.Tensor, weight_next: torch.Tensor) -> torch.Tensor:
    """L_M: BCE(pred, V) weighted by W, summed over pixels, averaged over batch and frames.

    Args:
        pred_next: (B, T', H, W) predicted amodal probabilities of frames 1..T' (already warped).
        visible_next: (B, T', H, W) the object's visible mask in those frames.
        weight_next: (B, T', H, W) W of those frames (see :func:`visibility_weight`).

    Returns:
        scalar. It is exactly 0 iff pred = 1 on the visible pixels and 0 on the background
        (Eq. 9 of the supplement); pixels of other objects are free.
    """
    if not (pred_next.shape == visible_next.shape == weight_next.shape):
        raise ValueError(
            f"mask_loss: shapes differ: pred {tuple(pred_next.shape)}, visible {tuple(visible_next.shape)}, "
            f"weight {tuple(weight_next.shape)}"
        )
    bce = F.binary_cross_entropy(pred_next.clamp(0, 1), visible_next.float(), reduction="none")
    return (bce * weight_next).sum(dim=(-2, -1)).mean()


def consistency_loss(
    pred_next: torch.Tensor, pred: torch.Tensor, distance: str = "soft_iou", pair_weighting: str = "sum"
) -> torch.Tensor:
    """L_C: the distance between each warped prediction and the next prediction, summed over pairs.

    Args:
        pred_next: (B, T-1, H, W) the predictions of frames 0..T-2 warped to frames 1..T-1.
        pred: (B, T, H, W) the predictions themselves.
        distance: "soft_iou" (the paper's main text and the release: 1 - softIoU per pair) or
            "l2" (the pixel-wise d of the proof, Eq. 12: squared differences summed over pixels).
        pair_weighting: "sum" (the paper's plain sum) or "cumulative" (the release weights pair j
            by j + 1, so later pairs count more).

    Returns:
        scalar, averaged over the batch; 0 iff every warped prediction equals the next
        prediction (for binary masks, with either distance).
    """
    if pred_next.shape[1] != pred.shape[1] - 1:
        raise ValueError(f"consistency_loss: pred_next must have T-1 frames, got {pred_next.shape[1]} for T = {pred.shape[1]}")
    if distance == "soft_iou":
        per_pair = 1 - soft_iou(pred_next, pred[:, 1:])  # (B, T-1)
    elif distance == "l2":
        per_pair = ((pred_next - pred[:, 1:]) ** 2).sum(dim=(-2, -1))
    else:
        raise ValueError(f"consistency_loss: distance must be 'soft_iou' or 'l2', got {distance!r}")
    if pair_weighting == "sum":
        weights = torch.ones(per_pair.shape[1], dtype=per_pair.dtype)
    elif pair_weighting == "cumulative":
        weights = torch.arange(1, per_pair.shape[1] + 1, dtype=per_pair.dtype)
    else:
        raise ValueError(f"consistency_loss: pair_weighting must be 'sum' or 'cumulative', got {pair_weighting!r}")
    return (per_pair * weights.to(per_pair.device)).sum(dim=1).mean()


def complete_loss(pred: torch.Tensor, flow: torch.Tensor, visible: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L_complete (App. B, Eq. 1): each prediction compared with the visible mask of every later frame.

    The prediction of frame t is carried to frame l > t by chaining the per-frame warps, so the
    loss needs T(T-1)/2 warps and keeps all of them for the backward pass: O(T^2) time and memory,
    where the chained L_M + L_C need T-1.

    Args:
        pred: (B, T, H, W); flow: (B, T-1, 2, H, W); visible, weight: (B, T, H, W).

    Returns:
        scalar, BCE weighted by W_l, summed over pixels, averaged over batch and pairs (t, l).
    """
    b, t_len, h, w = pred.shape
    total, pairs = pred.new_zeros(()), 0
    for t in range(t_len - 1):
        carried = pred[:, t : t + 1]
        for l in range(t + 1, t_len):
            carried = warp(carried, flow[:, l - 1])
            bce = F.binary_cross_entropy(carried[:, 0].clamp(0, 1), visible[:, l].float(), reduction="none")
            total = total + (bce * weight[:, l]).sum(dim=(-2, -1)).mean()
            pairs += 1
    return total / max(pairs, 1)


@dataclass
class FreeMaskFit:
    """Result of :func:`fit_free_masks`.

    probs: (B, T, H, W) final mask probabilities; init_probs: the same at initialisation;
    history: per step, (L_M, L_C) as floats.
    """

    probs: torch.Tensor
    init_probs: torch.Tensor
    history: list[tuple[float, float]]


def fit_free_masks(
    visible: torch.Tensor,
    weight: torch.Tensor,
    flow: torch.Tensor,
    *,
    use_consistency: bool = True,
    distance: str = "l2",
    init_logit: float = 0.0,
    init_noise: float = 0.0,
    steps: int = 600,
    lr: float = 0.1,
    consistency_weight: float = 1.0,
    seed: int = 0,
    progress=None,
) -> FreeMaskFit:
    """Optimise free per-frame mask logits against L_M (+ L_C), with the motion given.

    This is Theorem 1's setting: no network, ground-truth visible masks and motion; what the
    losses alone pin down is what the optimum shows.

    Args:
        visible: (B, T, H, W) each object's visible masks.
        weight: (B, T, H, W) W for each object and frame.
        flow: (B, T-1, 2, H, W) each object's forward flow.
        use_consistency: add L_C (False: L_M alone).
        distance: L_C's distance, "l2" (the proof's pixel-wise d) or "soft_iou" (the release's);
            see :func:`consistency_loss`.
        init_logit: the starting logit of every pixel (e.g. -4: all background, +4: all object).
        init_noise: std of Gaussian noise added to the starting logits.
        progress: optional callable(step) for a progress bar.

    Returns:
        :class:`FreeMaskFit`.
    """
    if visible.dim() != 4 or visible.shape != weight.shape:
        raise ValueError(f"fit_free_masks: visible and weight must both be (B, T, H, W), got {tuple(visible.shape)} and {tuple(weight.shape)}")
    if steps < 0:
        raise ValueError(f"fit_free_masks: steps must be >= 0, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    logits = torch.full(visible.shape, float(init_logit)) + init_noise * torch.randn(visible.shape, generator=gen)
    logits.requires_grad_(True)
    init_probs = torch.sigmoid(logits.detach()).clone()
    optimiser = torch.optim.Adam([logits], lr=lr)
    history = []
    for step in range(steps):
        probs = torch.sigmoid(logits)
        warped = warp_sequence(probs, flow)
        l_m = mask_loss(warped, visible[:, 1:], weight[:, 1:])
        l_c = consistency_loss(warped, probs, distance=distance) if use_consistency else probs.new_zeros(())
        loss = l_m + consistency_weight * l_c
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append((l_m.item(), l_c.item()))
        if progress is not None:
            progress(step)
    return FreeMaskFit(torch.sigmoid(logits.detach()), init_probs, history)


def theorem_inputs(clip) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors for :func:`fit_free_masks` from a clip, one batch row per object.

    Each object's flow is its ground-truth motion over the whole image (the motion an amodal mask
    needs, occluded part included), as assumption 1 of Theorem 1 grants.

    Returns:
        visible (K, T, H, W), weight (K, T, H, W), flow (K, T-1, 2, H, W).
    """
    visible = torch.from_numpy(clip.visible).float()  # (T, K, H, W)
    weight = visibility_weight(visible)
    flow = torch.from_numpy(clip.motion_field()).permute(1, 0, 2, 3, 4).contiguous()  # (K, T-1, 2, H, W)
    return visible.permute(1, 0, 2, 3).contiguous(), weight.permute(1, 0, 2, 3).contiguous(), flow


def free_fit_prediction(clip, probs: torch.Tensor, view: np.ndarray | None = None) -> np.ndarray:
    """(K, T, H, W) bool: the fitted masks (probs > 0.5) on the pixels whose points stay in view.

    ``view`` (K, T, H, W) is computed from the clip when not given.
    """
    if view is None:
        from .data import in_view

        view = np.stack([in_view(clip, k) for k in range(clip.n_objects)])
    return (probs > 0.5).numpy() & view


def free_fit_scores(clip, probs: torch.Tensor) -> dict[str, np.ndarray]:
    """Score a free-mask fit against the ground truth, on the pixels Theorem 1 speaks about.

    Pixels whose point leaves the image in some frame (moving with the object) are left out:
    their chain of warps is cut, so no loss constrains them (see ``amodalkit.data.in_view``).

    Args:
        clip: a rigid-world clip; probs: (K, T, H, W) fitted probabilities.

    Returns:
        dict of (K, T) arrays: "iou" and "recall" (|pred & amodal| / |amodal|) of the prediction
        (probs > 0.5) against the amodal mask, and "extra" (the predicted pixels outside it).
    """
    from .data import in_view

    view = np.stack([in_view(clip, k) for k in range(clip.n_objects)])
    pred = free_fit_prediction(clip, probs, view)
    amodal = clip.amodal.transpose(1, 0, 2, 3) & view
    inter = (pred & amodal).sum(axis=(-2, -1))
    union = (pred | amodal).sum(axis=(-2, -1))
    return {
        "iou": (inter + 1e-6) / (union + 1e-6),
        "recall": (inter + 1e-6) / (amodal.sum(axis=(-2, -1)) + 1e-6),
        "extra": (pred & ~amodal).sum(axis=(-2, -1)),
    }


def chain_cost_problem(n_frames: int, size: int, seed: int = 0):
    """A random problem for comparing the cost of the chained losses with L_complete (App. B).

    Returns:
        (logits, flow, visible, weight): logits (1, T, size, size) requiring grad, a random
        translation per frame as flow (1, T-1, 2, size, size), random visible masks and W.
    """
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, n_frames, size, size, generator=gen).requires_grad_(True)
    shifts = torch.randint(-2, 3, (n_frames - 1, 2), generator=gen).float()
    flow = shifts[None, :, :, None, None].expand(1, n_frames - 1, 2, size, size).contiguous()
    visible = (torch.rand(1, n_frames, size, size, generator=gen) > 0.5).float()
    weight = (torch.rand(1, n_frames, size, size, generator=gen) > 0.3).float()
    return logits, flow, visible, weight


def chained_loss(logits, flow, visible, weight) -> torch.Tensor:
    """L_M + L_C over a clip: T-1 warps, each prediction compared with the next frame only."""
    probs = torch.sigmoid(logits)
    warped = warp_sequence(probs, flow)
    return mask_loss(warped, visible[:, 1:], weight[:, 1:]) + consistency_loss(warped, probs)

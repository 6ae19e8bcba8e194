"""Theorem 1 of SaVos: free per-frame mask logits (no network) optimised against L_M (+ L_C) with the motion given,
and the cost comparison of the chained losses with L_complete (App. B)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .losses import consistency_loss, mask_loss, visibility_weight, warp_sequence


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
        from ..data import in_view

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
    from ..data import in_view

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

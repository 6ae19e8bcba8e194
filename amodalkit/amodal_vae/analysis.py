"""Amodal-VAE's evaluation: completion in the image, IoUs, thresholds, prior samples and the posterior-width view."""
from __future__ import annotations

import numpy as np
import torch

from ..ops import crop_to_box, mask_boxes, paste_from_box, synthetic_occlusion
from .model import AmodalVAE, absolute_box


@torch.no_grad()
def complete(model: AmodalVAE, visible: torch.Tensor, samples: int = 0, generator: torch.Generator | None = None,
             batch: int = 256) -> dict[str, torch.Tensor]:
    """Complete visible masks (N, H, W): decode the posterior mode (and ``samples`` posterior samples),
    placed in the image at the transformer's box.

    Returns:
        {"mode": (N, H, W) probabilities, "samples": (S, N, H, W), "std" and "mu": (N, latent) posterior stds and
        means}.
    """
    model.eval()
    device = next(model.parameters()).device
    modes, draws, stds, mus = [], [], [], []
    for i in range(0, len(visible), batch):
        v = visible[i:i + batch].float().to(device)
        box = mask_boxes(v)
        x = crop_to_box(v, box)
        mu, logvar = model.partial_encoder(x)
        amodal_box = absolute_box(model.box(x), box)

        def place(z):
            return paste_from_box(torch.sigmoid(model.decoder(z)), amodal_box, *v.shape[1:])[:, 0].cpu()

        modes.append(place(mu))
        stds.append((0.5 * logvar).exp().cpu())
        mus.append(mu.cpu())
        draws.append(torch.stack([place(model.sample(mu, logvar, generator)) for _ in range(samples)])
                     if samples else torch.zeros(0, *v.shape))
    return {"mode": torch.cat(modes), "samples": torch.cat(draws, dim=1), "std": torch.cat(stds), "mu": torch.cat(mus)}


def binarise(probs: torch.Tensor, visible: torch.Tensor, threshold: float) -> torch.Tensor:
    """The amodal prediction: decoder probability >= threshold, united with the visible mask."""
    return (probs >= threshold) | visible.bool()


def completion_iou(pred: torch.Tensor, visible: torch.Tensor, amodal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-instance full IoU (pred vs amodal) and invisible IoU (both restricted to the pixels outside the
    visible mask; NaN where the instance has no invisible part). All (N, H, W) bool -> (N,), (N,)."""
    pred, visible, amodal = pred.bool(), visible.bool(), amodal.bool()

    def iou(a, b):
        inter = (a & b).flatten(1).sum(1).float()
        union = (a | b).flatten(1).sum(1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))

    hidden = amodal & ~visible
    invisible = iou(pred & ~visible, hidden)
    invisible[~hidden.flatten(1).any(1)] = float("nan")
    return iou(pred, amodal), invisible


def tune_threshold(probs: torch.Tensor, visible: torch.Tensor, amodal: torch.Tensor,
                   candidates=tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))) -> tuple[float, list[float]]:
    """The candidate threshold with the highest mean full IoU (ties: the lowest), and every candidate's mIoU."""
    scores = [float(completion_iou(binarise(probs, visible, t), visible, amodal)[0].mean()) for t in candidates]
    best = int(np.argmax(scores))
    return float(candidates[best]), scores



@torch.no_grad()
def prior_samples(model: AmodalVAE, n: int, generator: torch.Generator) -> torch.Tensor:
    """Decode ``n`` draws z ~ N(0, I): (n, 28, 28) Bernoulli probabilities (Fig. 3)."""
    model.eval()
    device = next(model.parameters()).device
    z = torch.randn(n, model.latent, generator=generator).to(device)
    return torch.sigmoid(model.decoder(z))[:, 0].cpu()


def best_iou_to(samples: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """For each boolean (S, h, w) sample, its highest IoU with any boolean (M, h, w) reference shape: (S,)."""
    a = samples.flatten(1).float()
    b = shapes.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).max(dim=1).values


def active_dimensions(std: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """Latent dimensions whose mean posterior std (over instances, (N, D)) is below ``threshold``; the others
    match the prior N(0, 1) and are "turned off" (Fig. 4). Returns (D,) bool."""
    return std.mean(dim=0) < threshold


@torch.no_grad()
def self_supervised_threshold(model: AmodalVAE, full: torch.Tensor, pool: torch.Tensor, seed: int = 0,
                              candidates=tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))) -> tuple[float, list[float]]:
    """Tune the binarisation threshold on synthetic occlusions of fully visible validation masks (N, H, W):
    no amodal annotation is used, only masks that are entirely visible."""
    partial, _ = synthetic_occlusion(full, pool, torch.Generator().manual_seed(seed))
    probs = complete(model, partial)["mode"]
    return tune_threshold(probs, partial.cpu() > 0.5, full.cpu() > 0.5, candidates)


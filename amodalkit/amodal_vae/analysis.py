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


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every boolean (N, h, w) mask of ``a`` with every (M, h, w) mask of ``b``: (N, M); two empty masks are
    the same shape (IoU 1)."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def best_iou_to(samples: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """For each boolean (S, h, w) sample, its highest IoU with any boolean (M, h, w) reference shape: (S,)."""
    return pairwise_iou(samples, shapes).max(dim=1).values


def classifier_two_sample_accuracy(samples: torch.Tensor, reference: torch.Tensor, folds: int = 5,
                                   seed: int = 0) -> float:
    """How well a classifier tells boolean (n, h, w) samples from as many (n, h, w) reference shapes: the held-out
    accuracy of a logistic regression on the pixels, over ``folds`` stratified folds (a classifier two-sample test,
    Lopez-Paz & Oquab 2017). About 0.5 when the two sets come from one distribution; 1.0 when they are told apart
    every time, as a decoder that draws the same filled box, or noise, is told apart from real shapes.

    Distances between the masks do not do this in the VAE's tight-crop space: a filled box has a high IoU with every
    box-filling shape (the best IoU with a reference rewards it) and sits nearer to each real shape than real shapes
    sit to each other, and pixel noise sits nearer to real shapes than to other noise, so a nearest-neighbour test on
    1 - IoU mislabels the references in the first case and the samples in the second.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if samples.shape != reference.shape or samples.ndim != 3:
        raise ValueError(f"classifier_two_sample_accuracy: needs two sets of as many (n, h, w) masks; got "
                         f"{tuple(samples.shape)} and {tuple(reference.shape)}")
    if len(samples) < folds:
        raise ValueError(f"classifier_two_sample_accuracy: needs at least as many masks per set as folds ({folds}); "
                         f"got {len(samples)}")
    x = torch.cat([samples, reference]).flatten(1).double().numpy()
    y = np.r_[np.zeros(len(samples)), np.ones(len(reference))]
    # strong L2 (C = 0.1): a few hundred masks against h * w pixels; lbfgs in float64 is deterministic
    classifier = LogisticRegression(C=0.1, max_iter=2000)
    split = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(classifier, x, y, cv=split, scoring="accuracy").mean())


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


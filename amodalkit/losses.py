"""Losses shared by several methods.

* :func:`lovasz_hinge`: Berman et al.'s Lovasz hinge (the convex surrogate of the Jaccard loss STEm-Seg
  trains its instance probabilities with), with the published reference's signature and semantics; the
  per-image computation is kornia's ``lovasz_hinge_loss``, which equals the reference.
* :func:`variance_smoothness_loss`, :func:`seediness_loss`: STEm-Seg's two other terms (supplement I).
"""
from __future__ import annotations

import torch
from kornia.losses import lovasz_hinge_loss


def _lovasz_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The Lovasz hinge of one flat set of pixels (logits (P,), labels (P,) in {0, 1}); 0 for P = 0."""
    if logits.numel() == 0:
        return logits.sum() * 0.0  # the reference's value for an empty set (keeps the graph)
    return lovasz_hinge_loss(logits.reshape(1, 1, 1, -1), labels.reshape(1, 1, -1))


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor, per_image: bool = True, ignore: int | None = None) -> torch.Tensor:
    """Binary Lovasz hinge loss (Berman et al. 2018), as the published reference defines it.

    Hinge errors 1 - logit * (2 label - 1), sorted in decreasing order, weighted by the Lovasz gradient of
    the Jaccard loss at the sorted labels (the weights carry no gradient). With logits in {-1, +1} the loss
    is 2 (1 - IoU) of the positive pixels; with all-negative labels it is relu(max error).

    Args:
        logits: (B, H, W) float logits (any trailing shape works: pixels are flattened per image).
        labels: (B, H, W) binary labels {0, 1}, or ``ignore`` for pixels left out.
        per_image: the mean of the per-image losses (True) or one loss over all pixels of the batch.
        ignore: a label value whose pixels are removed before the loss (None: none).

    Returns:
        A 0-d tensor (an image with no pixel left contributes 0).

    Example:
        >>> x = torch.tensor([[[1.0, -1.0], [1.0, -1.0]]]); y = torch.tensor([[[1, 1], [0, 0]]])
        >>> float(lovasz_hinge(x, y))  # IoU 1/3: 2 (1 - 1/3)
        1.3333333730697632
    """
    if logits.shape != labels.shape or logits.dim() < 1:
        raise ValueError(f"lovasz_hinge: logits and labels must have one shape (B, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"lovasz_hinge: logits must be a float tensor, got {logits.dtype}")

    def flat(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = x.reshape(-1), y.reshape(-1)
        if ignore is not None:
            keep = y != ignore
            x, y = x[keep], y[keep]
        return _lovasz_flat(x, y.to(logits.dtype))

    if not per_image:
        return flat(logits, labels)
    if logits.shape[0] == 0:
        raise ValueError("lovasz_hinge: per_image needs at least one image (the reference's mean of nothing)")
    return torch.stack([flat(x, y) for x, y in zip(logits, labels)]).mean()


def variance_smoothness_loss(raw_variance: torch.Tensor, instance_masks: torch.Tensor) -> torch.Tensor:
    """STEm-Seg's variance smoothness: for every instance the mean squared deviation of its pixels' raw
    variance outputs from their mean (per channel), averaged over instances (supplement I, Eq. 1).

    Args:
        raw_variance: (C, N) the network's raw variance (bandwidth) outputs over N pixels of a clip.
        instance_masks: (K, N) bool, the instances' ground-truth tubes; no loss on background pixels.

    Returns:
        0-d tensor (0 when there is no instance pixel).
    """
    if raw_variance.dim() != 2 or instance_masks.dim() != 2 or raw_variance.shape[1] != instance_masks.shape[1]:
        raise ValueError(f"variance_smoothness_loss: expected (C, N) variances and (K, N) masks, got "
                         f"{tuple(raw_variance.shape)} and {tuple(instance_masks.shape)}")
    terms = []
    for mask in instance_masks.bool():
        if mask.any():
            v = raw_variance[:, mask]
            terms.append(((v - v.mean(dim=1, keepdim=True)) ** 2).mean())
    return torch.stack(terms).mean() if terms else raw_variance.sum() * 0.0


def seediness_loss(seediness: torch.Tensor, instance_probs: torch.Tensor, instance_masks: torch.Tensor) -> torch.Tensor:
    """STEm-Seg's centre (seediness) regression: on each instance's pixels the squared error to that
    instance's probability (Eq. 2 of the paper, no gradient into it), on background pixels to 0; the
    sum of the per-region mean squared errors over (instances + 1).

    Args:
        seediness: (N,) predicted seediness in [0, 1]; instance_probs: (K, N) instance probabilities;
        instance_masks: (K, N) bool ground-truth tubes (disjoint).
    """
    if seediness.dim() != 1 or instance_probs.shape != instance_masks.shape or instance_masks.shape[-1] != seediness.shape[0]:
        raise ValueError(f"seediness_loss: expected (N,) seediness and (K, N) probabilities and masks, got "
                         f"{tuple(seediness.shape)}, {tuple(instance_probs.shape)}, {tuple(instance_masks.shape)}")
    masks = instance_masks.bool()
    total = seediness.sum() * 0.0
    for prob, mask in zip(instance_probs.detach(), masks):
        if mask.any():
            total = total + ((seediness[mask] - prob[mask]) ** 2).mean()
    background = ~masks.any(dim=0)
    if background.any():
        total = total + (seediness[background] ** 2).mean()
    return total / (masks.shape[0] + 1)

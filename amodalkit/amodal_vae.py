"""Amodal-VAE (Ling et al., NeurIPS 2020): variational amodal mask completion, written from the supplement.

No public code exists; the supplement (sections 1-3) and ``shared/reference-facts.md`` are the
specification:

* masks are tightly cropped to their box and resized to 28x28; the latent has 64 dimensions;
* encoder and decoder are CNNs followed by two residual blocks and fully connected layers, batch
  norm before every ReLU;
* a spatial transformer (a CNN with max pooling) maps between the partial mask's box and the full
  mask's box: here it predicts the amodal box relative to the visible box (:func:`relative_box`);
* three stages: (1) a VAE on full masks with the KL weight :func:`kl_weight`; (2) a partial-mask
  encoder trained on synthetic occlusions with the decoder frozen; (3) fine-tuning on really
  occluded instances with the reconstruction loss restricted to pixels no occluder covers;
* Adam 1e-3 in stage 1, 1e-4 after; the binarisation threshold is tuned on validation.

Box convention: (x0, y0, x1, y1) in pixels of a continuous frame whose pixel i covers [i, i + 1).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MASK_SIZE = 28
LATENT_DIM = 64


# ------------------------------------------------------------------------------------ the schedule


def kl_weight(step: int, final: float = 0.5, start: float = 0.01, alpha: float = 0.9995, begin: int = 2000) -> float:
    """lambda(t) = final - (final - start) * alpha ** max(0, t - begin) (supplement Eq. 1).

    Example:
        >>> kl_weight(0), kl_weight(2000)
        (0.01, 0.01)
    """
    return final - (final - start) * alpha ** max(0, step - begin)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions: (B, D) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


# ------------------------------------------------------------------------------------- the network


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input, then ReLU (batch norm before every activation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def _fc(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, cout, bias=False), nn.BatchNorm1d(cout), nn.ReLU())


class MaskEncoder(nn.Module):
    """(B, 1, 28, 28) mask -> (mu, logvar), each (B, latent)."""

    def __init__(self, width: int = 32, hidden: int = 256, latent: int = LATENT_DIM):
        super().__init__()
        self.features = nn.Sequential(_conv(1, width, 1), _conv(width, 2 * width, 2), _conv(2 * width, 4 * width, 2),
                                      ResidualBlock(4 * width), ResidualBlock(4 * width))
        self.fc = nn.Sequential(_fc(4 * width * 49, hidden), nn.Linear(hidden, 2 * latent))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.fc(self.features(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)  # keeps exp(logvar) finite early in training


class MaskDecoder(nn.Module):
    """(B, latent) -> (B, 1, 28, 28) Bernoulli logits."""

    def __init__(self, width: int = 32, hidden: int = 256, latent: int = LATENT_DIM):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(_fc(latent, hidden), _fc(hidden, 4 * width * 49))
        self.features = nn.Sequential(
            ResidualBlock(4 * width), ResidualBlock(4 * width),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 1, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(z).view(-1, 4 * self.width, 7, 7))


class BoxTransformer(nn.Module):
    """The spatial transformer's localisation net: a CNN with max pooling on the 28x28 partial mask,
    predicting the amodal box relative to the visible box (:func:`relative_box`), (B, 4)."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(_conv(1, width, 1), nn.MaxPool2d(2), _conv(width, 2 * width, 1), nn.MaxPool2d(2),
                                 _conv(2 * width, 2 * width, 1), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
                                 nn.Linear(2 * width, 4))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)  # starts at "the amodal box is the visible box"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AmodalVAE(nn.Module):
    """The full-mask encoder (stage 1), the partial-mask encoder (stages 2 and 3), the shared decoder
    and the box transformer."""

    def __init__(self, width: int = 32, hidden: int = 256, latent: int = LATENT_DIM):
        super().__init__()
        self.full_encoder = MaskEncoder(width, hidden, latent)
        self.partial_encoder = MaskEncoder(width, hidden, latent)
        self.decoder = MaskDecoder(width, hidden, latent)
        self.box = BoxTransformer()
        self.latent = latent

    @staticmethod
    def sample(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mu.shape, generator=generator).to(mu.device)
        return mu + noise * (0.5 * logvar).exp()


# ------------------------------------------------------------------------------------------- boxes


def tight_box(mask: np.ndarray) -> np.ndarray:
    """The tight box (x0, y0, x1, y1) of a non-empty boolean (H, W) mask (x1, y1 exclusive)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("tight_box: the mask is empty")
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def relative_box(outer: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Encode box ``outer`` relative to box ``reference`` (both (..., 4) x0, y0, x1, y1):
    (centre offset / reference size, log of the size ratio), so the identity is 0."""
    rw, rh = reference[..., 2] - reference[..., 0], reference[..., 3] - reference[..., 1]
    ow, oh = outer[..., 2] - outer[..., 0], outer[..., 3] - outer[..., 1]
    dx = ((outer[..., 0] + outer[..., 2]) - (reference[..., 0] + reference[..., 2])) / 2 / rw
    dy = ((outer[..., 1] + outer[..., 3]) - (reference[..., 1] + reference[..., 3])) / 2 / rh
    return torch.stack([dx, dy, torch.log(ow / rw), torch.log(oh / rh)], dim=-1)


def absolute_box(relative: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`relative_box`."""
    rw, rh = reference[..., 2] - reference[..., 0], reference[..., 3] - reference[..., 1]
    cx = (reference[..., 0] + reference[..., 2]) / 2 + relative[..., 0] * rw
    cy = (reference[..., 1] + reference[..., 3]) / 2 + relative[..., 1] * rh
    w, h = rw * torch.exp(relative[..., 2]), rh * torch.exp(relative[..., 3])
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def crop_to_box(masks: torch.Tensor, boxes: torch.Tensor, size: int = MASK_SIZE) -> torch.Tensor:
    """Bilinear crops of each box, resized to size x size: (N, H, W) float, (N, 4) -> (N, 1, size, size).

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


# ------------------------------------------------------------------------------------------ the data


class Instances:
    """Object instances of a world, one per (clip, frame, object), as full-frame boolean masks.

    Attributes (N instances, H x W frames):
        visible, amodal, occluders: (N, H, W) bool; ``occluders`` is the union of the other objects'
            visible masks in that frame (the pixels that may hide this object).
        visible_pred: (N, H, W) bool degraded "predicted" visible masks (``street``), else None.
        types: (N,) int object types (-1 for classless worlds).
    """

    def __init__(self, visible, amodal, occluders, types, visible_pred=None):
        self.visible, self.amodal, self.occluders = visible, amodal, occluders
        self.types, self.visible_pred = types, visible_pred

    def __len__(self) -> int:
        return len(self.visible)

    @property
    def visible_ratio(self) -> np.ndarray:
        """|visible| / |amodal| per instance."""
        return self.visible.sum((1, 2)) / np.maximum(self.amodal.sum((1, 2)), 1)

    def subset(self, index) -> "Instances":
        pred = None if self.visible_pred is None else self.visible_pred[index]
        return Instances(self.visible[index], self.amodal[index], self.occluders[index], self.types[index], pred)


def load_instances(world: str, split: str, *, seed: int, n_clips: int, every: int = 4, min_visible: int = 12,
                   preset: str = "quick", **params) -> Instances:
    """Instances of the evaluated objects of ``world`` on every ``every``-th frame.

    An instance is kept when at least ``min_visible`` pixels are visible and its amodal mask does not
    touch the image border (the world's amodal masks stop at the border, so a truncated shape has no
    ground truth). Raises ValueError when no instance is left.
    """
    from .data import load_world

    clips = load_world(world, split, seed=seed, n_clips=n_clips, preset=preset, **params)
    rows = {"visible": [], "amodal": [], "occluders": [], "types": [], "visible_pred": []}
    for clip in clips:
        pred = clip.extra.get("visible_pred")
        for t in range(0, clip.n_frames, every):
            all_visible = clip.visible[t].any(axis=0)
            for k in clip.evaluated:
                amodal, visible = clip.amodal[t, k], clip.visible[t, k]
                border = amodal[0].any() or amodal[-1].any() or amodal[:, 0].any() or amodal[:, -1].any()
                if visible.sum() < min_visible or border:
                    continue
                rows["visible"].append(visible)
                rows["amodal"].append(amodal)
                rows["occluders"].append(all_visible & ~visible)
                rows["types"].append(-1 if clip.types is None else int(clip.types[k]))
                if pred is not None:
                    rows["visible_pred"].append(pred[t, k])
    if not rows["visible"]:
        raise ValueError(f"load_instances: no instance of {world}/{split} has >= {min_visible} visible pixels away "
                         f"from the border; use more clips or a smaller min_visible")
    stack = {k: np.stack(v) for k, v in rows.items() if v}
    return Instances(stack["visible"], stack["amodal"], stack["occluders"], np.array(rows["types"]),
                     stack.get("visible_pred"))


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


# ------------------------------------------------------------------------------------- the stages


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
    occluder = pool[pick.to(pool.device)]
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


def reconstruction(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Bernoulli negative log-likelihood summed over pixels (optionally weighted): (B, ...) -> (B,)."""
    nll = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    return nll.flatten(1).sum(dim=1)


def stage1_loss(model: AmodalVAE, full: torch.Tensor, kl: float, generator: torch.Generator) -> torch.Tensor:
    """The VAE's negative ELBO on full masks (B, H, W): reconstruction + kl * KL, mean over the batch."""
    crops = crop_to_box(full, mask_boxes(full))
    mu, logvar = model.full_encoder(crops)
    logits = model.decoder(model.sample(mu, logvar, generator))
    return (reconstruction(logits, crops) + kl * kl_divergence(mu, logvar)).mean()


def stage2_loss(model: AmodalVAE, full: torch.Tensor, pool: torch.Tensor, kl: float,
                generator: torch.Generator) -> torch.Tensor:
    """Partial-mask encoder on synthetic occlusions: decode the full mask from the partial one, and
    regress the full box relative to the partial box (the transformer). The decoder is kept in
    eval mode so its batch-norm statistics stay frozen too."""
    model.decoder.eval()
    partial, _ = synthetic_occlusion(full, pool, generator)
    full_box, partial_box = mask_boxes(full), mask_boxes(partial)
    x = crop_to_box(partial, partial_box)
    mu, logvar = model.partial_encoder(x)
    logits = model.decoder(model.sample(mu, logvar, generator))
    box_error = F.smooth_l1_loss(model.box(x), relative_box(full_box, partial_box), reduction="none").sum(dim=1)
    return (reconstruction(logits, crop_to_box(full, full_box)) + kl * kl_divergence(mu, logvar) + 28 * box_error).mean()


def stage3_loss(model: AmodalVAE, visible: torch.Tensor, occluders: torch.Tensor, kl: float,
                generator: torch.Generator) -> torch.Tensor:
    """Fine-tuning on occluded instances (B, H, W): the completion, placed in the image by the
    transformer, must match the visible mask wherever no occluder covers the pixel."""
    box = mask_boxes(visible)
    x = crop_to_box(visible, box)
    mu, logvar = model.partial_encoder(x)
    probs = torch.sigmoid(model.decoder(model.sample(mu, logvar, generator)))
    placed = paste_from_box(probs, absolute_box(model.box(x), box), *visible.shape[1:])[:, 0].clamp(1e-6, 1 - 1e-6)
    seen = 1 - occluders
    nll = -(visible * torch.log(placed) + (1 - visible) * torch.log(1 - placed)) * seen
    return (nll.flatten(1).sum(dim=1) + kl * kl_divergence(mu, logvar)).mean()


# ------------------------------------------------------------------------------------- completion


@torch.no_grad()
def complete(model: AmodalVAE, visible: torch.Tensor, samples: int = 0, generator: torch.Generator | None = None,
             batch: int = 256) -> dict[str, torch.Tensor]:
    """Complete visible masks (N, H, W): decode the posterior mode (and ``samples`` posterior samples),
    placed in the image at the transformer's box.

    Returns:
        {"mode": (N, H, W) probabilities, "samples": (S, N, H, W), "std": (N, latent) posterior stds}.
    """
    model.eval()
    device = next(model.parameters()).device
    modes, draws, stds = [], [], []
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
        draws.append(torch.stack([place(model.sample(mu, logvar, generator)) for _ in range(samples)])
                     if samples else torch.zeros(0, *v.shape))
    return {"mode": torch.cat(modes), "samples": torch.cat(draws, dim=1), "std": torch.cat(stds)}


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

"""Amodal-VAE's model: the KL schedule, the networks, box encoding, the three stages' losses and the latent-space
measures that training watches (the cached models are keyed by this module, :mod:`.training` and ``ops.py``)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ops import crop_to_box, mask_boxes, paste_from_box, synthetic_occlusion

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


def scaled_kl_schedule(steps: int, fraction: float = 0.1) -> tuple[int, float]:
    """(kl_begin, kl_alpha) of a stage 1 run of ``steps`` steps: annealing starts after ``fraction`` of the run and
    alpha = 1 - 1 / kl_begin, so lambda closes 1 - 1/e of its gap every kl_begin steps. The paper's 20,000 steps give
    its values, (2000, 0.9995).

    Example:
        >>> scaled_kl_schedule(20_000)
        (2000, 0.9995)
    """
    begin = max(1, round(fraction * steps))
    return begin, 1 - 1 / begin if begin > 1 else 0.5


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





# ------------------------------------------------------------------------------------- the stages


def reconstruction(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Bernoulli negative log-likelihood summed over pixels (optionally weighted): (B, ...) -> (B,)."""
    nll = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="none")
    return nll.flatten(1).sum(dim=1)


def stage1_loss(model: AmodalVAE, full: torch.Tensor, kl: float, generator: torch.Generator) -> torch.Tensor:
    """The VAE's negative ELBO on full masks (B, H, W), or on their 28x28 crops (B, 1, 28, 28): reconstruction +
    kl * KL, mean over the batch."""
    crops = full if full.dim() == 4 else crop_to_box(full, mask_boxes(full))
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



# ---------------------------------------------------------------------------------- the latent space


def shape_crops(masks: np.ndarray | torch.Tensor, size: int = MASK_SIZE) -> torch.Tensor:
    """Masks (N, H, W) cropped tightly and resized: (N, size, size) float (the VAE's view of a shape)."""
    m = masks.float() if torch.is_tensor(masks) else torch.as_tensor(np.asarray(masks)).float()
    return crop_to_box(m, mask_boxes(m), size)[:, 0]



@torch.no_grad()
def posterior(encoder: MaskEncoder, crops: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar), each (N, latent), of 28x28 crops (N, 1, 28, 28) under an encoder in eval mode."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = [encoder(crops[i:i + batch].to(device)) for i in range(0, len(crops), batch)]
    encoder.train(was_training)
    return torch.cat([m for m, _ in out]).cpu(), torch.cat([v for _, v in out]).cpu()


def latent_activity(mu: torch.Tensor) -> torch.Tensor:
    """Burda et al.'s activity of each latent dimension: the variance over the data of the posterior mean,
    (N, D) -> (D,). A dimension the encoder ignores has the same mean for every input (activity 0)."""
    return mu.var(dim=0, unbiased=True) if len(mu) > 1 else torch.zeros(mu.shape[1])


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Active dimensions as Burda et al. (2016) define them: activity (:func:`latent_activity`) > 0.01. (D,) bool."""
    return latent_activity(mu) > threshold


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The KL of each latent dimension to the prior, mean over the data: (N, D) -> (D,). An inactive dimension's
    posterior equals the prior (KL 0)."""
    return (0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)).mean(dim=0)


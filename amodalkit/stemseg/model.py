"""STEm-Seg's network, mixing functions, instance probability and training loss (Athar et al., ECCV 2020).

A clip (T frames) goes through a per-frame 2D encoder (output stride 2 here; 4 in the release) and a
spatio-temporal decoder of 3D convolutions, which predicts at every pixel of the clip

* an embedding e: ``tanh(0.25 x)`` of the raw output plus the mixing function's coordinate grid (release:
  every channel goes through the tanh; the grid is added to the coordinate channels, channel order
  (t, y, x, free...));
* a precision (bandwidth) b = 10 exp(v) per non-free dimension; free dimensions have the fixed precision
  1 / 0.3^2 (the release's FREE_DIM_STDS);
* a seediness s = sigmoid(.) (how likely the pixel is an instance centre).

An instance k of the clip has centre mu_k = mean of e over its tube and precision b_k = mean of b over it
(exp first, then mean, as the release); p_k(i) = exp(-1/2 sum_d b_kd (e_id - mu_kd)^2) (paper Eq. 2).
The loss is the release's: Lovasz hinge on 2 p_k - 1 over the whole clip per instance (mean over
instances), 10 x the variance smoothness on raw v, and the seediness regression (:mod:`amodalkit.losses`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import lovasz_hinge, seediness_loss, variance_smoothness_loss

# mixing function -> the coordinate added to each embedding channel, in the release's channel order
MIXING: dict[str, tuple[str, ...]] = {
    "xy": ("y", "x"),
    "xyt": ("t", "y", "x"),
    "xyf": ("y", "x", "f"),
    "xytf": ("t", "y", "x", "f"),
    "xyff": ("y", "x", "f", "f"),
    "xyfff": ("y", "x", "f", "f", "f"),
}
FREE_DIM_STD = 0.3  # the release's FREE_DIM_STDS: fixed precision 1 / 0.3^2 on free dimensions
SMOOTHNESS_WEIGHT = 10.0  # the release's WEIGHT_VARIANCE_SMOOTHNESS (Lovasz and seediness weigh 1)


def _check_mixing(mixing: str) -> tuple[str, ...]:
    if mixing not in MIXING:
        raise ValueError(f"mixing must be one of {list(MIXING)}, got {mixing!r}")
    return MIXING[mixing]


def coordinate_grid(mixing: str, n_frames: int, height: int, width: int) -> torch.Tensor:
    """The offsets the mixing function adds to the embedding: (E, T, H, W).

    x = linspace(-max(1, W/H), max(1, W/H), W), y = linspace(-max(1, H/W), max(1, H/W), H) (the shorter side spans
    [-1, 1]), t = linspace(-1, 1, T) (0 for a single frame); free dimensions get 0.

    Example:
        >>> coordinate_grid("xyt", 3, 2, 4)[0, :, 0, 0].tolist()
        [-1.0, 0.0, 1.0]
    """
    axes = _check_mixing(mixing)
    x_abs, y_abs = max(1.0, width / height), max(1.0, height / width)
    t = torch.linspace(-1, 1, n_frames) if n_frames > 1 else torch.zeros(1)
    coords = {"t": t[:, None, None].expand(n_frames, height, width),
              "y": torch.linspace(-y_abs, y_abs, height)[None, :, None].expand(n_frames, height, width),
              "x": torch.linspace(-x_abs, x_abs, width)[None, None, :].expand(n_frames, height, width),
              "f": torch.zeros(n_frames, height, width)}
    return torch.stack([coords[a] for a in axes])


def _conv2d(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(min(4, cout), cout), nn.ReLU(inplace=True))


def _conv3d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, 1, 1, bias=False), nn.GroupNorm(min(4, cout), cout), nn.ReLU(inplace=True))


class STEmSeg(nn.Module):
    """A small STEm-Seg: per-frame encoder (output stride 2 or 4; the release's 4), 3D-conv decoder, three heads.

    forward(clips (B, T, 3, H, W) in [0, 1]) -> dict of (s = stride, h = H/s, w = W/s)
        embedding (B, E, T, h, w) (grid added), raw_variance (B, E - free, T, h, w),
        precision (B, E, T, h, w) (free dims filled with 1 / 0.3^2), seediness (B, T, h, w) in (0, 1).
    H and W must be multiples of the stride.
    """

    def __init__(self, mixing: str = "xyff", width: int = 16, stride: int = 4):
        super().__init__()
        if stride not in (2, 4):
            raise ValueError(f"STEmSeg: stride must be 2 or 4, got {stride!r}")
        self.mixing, self.stride = mixing, stride
        self.axes = _check_mixing(mixing)
        self.n_dims = len(self.axes)
        self.free = [a == "f" for a in self.axes]
        self.n_variance = self.n_dims - sum(self.free)
        self.encoder = nn.Sequential(_conv2d(3, width), _conv2d(width, 2 * width, 2), _conv2d(2 * width, 2 * width, stride // 2))
        self.decoder = nn.Sequential(_conv3d(2 * width, 2 * width), _conv3d(2 * width, 2 * width))
        self.embedding_head = nn.Conv3d(2 * width, self.n_dims, 1, bias=False)  # release: bias=False
        self.variance_head = nn.Conv3d(2 * width, self.n_variance, 1)
        self.seediness_head = nn.Conv3d(2 * width, 1, 1, bias=False)

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        s = self.stride
        if clips.dim() != 5 or clips.shape[2] != 3 or clips.shape[-1] % s or clips.shape[-2] % s:
            raise ValueError(f"STEmSeg: expected clips (B, T, 3, H, W) with H and W multiples of {s}, got {tuple(clips.shape)}")
        b, t, _, h, w = clips.shape
        feats = self.encoder(clips.reshape(b * t, 3, h, w) - 0.5)
        feats = feats.reshape(b, t, *feats.shape[1:]).transpose(1, 2)  # (B, C, T, h, w)
        x = self.decoder(feats)
        grid = coordinate_grid(self.mixing, t, h // s, w // s).to(x)
        embedding = torch.tanh(0.25 * self.embedding_head(x)) + grid
        raw_variance = self.variance_head(x)
        precision = torch.full_like(embedding, 1.0 / FREE_DIM_STD**2)
        learned = [i for i, free in enumerate(self.free) if not free]
        precision[:, learned] = 10.0 * raw_variance.exp()
        seediness = torch.sigmoid(self.seediness_head(x))[:, 0]
        return dict(embedding=embedding, raw_variance=raw_variance, precision=precision, seediness=seediness)


def instance_probability(embedding: torch.Tensor, centre: torch.Tensor, precision: torch.Tensor,
                         sqrt_distance: bool = False) -> torch.Tensor:
    """p(i) = exp(-1/2 sum_d b_d (e_id - mu_d)^2) (paper Eq. 2) for embeddings (N, E), a centre (E,) and a
    precision (E,). ``sqrt_distance`` uses exp(-1/2 sqrt(.)), what the release's inference code computes."""
    distance = ((embedding - centre) ** 2 * precision).sum(-1)
    return torch.exp(-0.5 * (distance.clamp_min(0).sqrt() if sqrt_distance else distance))


def clip_loss(outputs: dict[str, torch.Tensor], instance_masks: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The training loss of a batch of clips (release weights: Lovasz 1, smoothness 10, seediness 1).

    Args:
        outputs: the model's outputs for B clips.
        instance_masks: per clip a (K, T, h, w) bool tensor of its instances' tubes at the output resolution
            (K may be 0; tubes are disjoint).

    Returns:
        dict: total, lovasz (mean over all instances of the batch), smoothness, seediness (means over clips).
    """
    lovasz_terms, smooth_terms, seed_terms = [], [], []
    for n, masks in enumerate(instance_masks):
        emb = outputs["embedding"][n].flatten(1).T  # (N, E)
        prec = outputs["precision"][n].flatten(1).T
        raw_v = outputs["raw_variance"][n].flatten(1)  # (C, N)
        seed = outputs["seediness"][n].flatten()
        masks = masks.flatten(1).bool()  # (K, N)
        masks = masks[masks.any(dim=1)]
        probs = []
        for mask in masks:
            p = instance_probability(emb, emb[mask].mean(0), prec[mask].mean(0))
            probs.append(p)
            lovasz_terms.append(lovasz_hinge(2 * p - 1, mask.float(), per_image=False))
        probs = torch.stack(probs) if probs else emb.new_zeros(0, emb.shape[0])
        smooth_terms.append(variance_smoothness_loss(raw_v, masks))
        seed_terms.append(seediness_loss(seed, probs, masks))
    zero = outputs["embedding"].sum() * 0.0
    lovasz = torch.stack(lovasz_terms).mean() if lovasz_terms else zero
    smooth = torch.stack(smooth_terms).mean()
    seediness = torch.stack(seed_terms).mean()
    return dict(total=lovasz + SMOOTHNESS_WEIGHT * smooth + seediness, lovasz=lovasz, smoothness=smooth, seediness=seediness)


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


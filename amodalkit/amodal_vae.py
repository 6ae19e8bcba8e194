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

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import progress
from .ops import crop_to_box, mask_boxes, paste_from_box, synthetic_occlusion

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




# ------------------------------------------------------------------------------------------ the data


class Instances:
    """Object instances of a world, one per (clip, frame, object), as full-frame boolean masks.

    Attributes (N instances, H x W frames):
        visible, amodal, occluders: (N, H, W) bool; ``occluders`` is the union of the other objects'
            visible masks in that frame (the pixels that may hide this object).
        visible_pred, occluders_pred: (N, H, W) bool, the same from the world's degraded "predicted"
            visible masks (``street``), else None.
        types: (N,) int object types (-1 for classless worlds).
    """

    def __init__(self, visible, amodal, occluders, types, visible_pred=None, occluders_pred=None):
        self.visible, self.amodal, self.occluders = visible, amodal, occluders
        self.types, self.visible_pred, self.occluders_pred = types, visible_pred, occluders_pred

    def __len__(self) -> int:
        return len(self.visible)

    @property
    def visible_ratio(self) -> np.ndarray:
        """|visible| / |amodal| per instance."""
        return self.visible.sum((1, 2)) / np.maximum(self.amodal.sum((1, 2)), 1)

    def subset(self, index) -> "Instances":
        pred = None if self.visible_pred is None else self.visible_pred[index]
        pred_occluders = None if self.occluders_pred is None else self.occluders_pred[index]
        return Instances(self.visible[index], self.amodal[index], self.occluders[index], self.types[index], pred,
                         pred_occluders)


def _usable(visible: np.ndarray, amodal: np.ndarray, min_visible: int) -> bool:
    """An instance with ground truth: >= min_visible visible pixels and an amodal mask clear of the image border."""
    border = amodal[0].any() or amodal[-1].any() or amodal[:, 0].any() or amodal[:, -1].any()
    return bool(visible.sum() >= min_visible and not border)


def full_mask_set(world: str, seed: int, *, n_clips: int, every: int = 2, min_visible: int = 12, split: str = "train",
                  preset: str = "quick", **params) -> np.ndarray:
    """The fully visible instance masks of the first ``n_clips`` clips of a split: (N, H, W) bool.

    Stage 1 of the VAE needs many distinct full masks (the chapters' instance sets hold a few hundred, and a VAE
    trained on those overfits). The clips are generated without keeping them on disk (a few hundred clips would
    take gigabytes) and only the masks are cached, bit-packed, under ``$AMODALKIT_CACHE/vae_masks`` (keyed by the
    world's generator code and this function's). The first clips are the chapters' own training clips.
    """
    import hashlib
    import inspect

    from .data import load_world
    from .data.worlds import cache_dir, generator_version

    key = json.dumps(dict(world=world, split=split, seed=seed, n_clips=n_clips, every=every, min_visible=min_visible,
                          preset=preset, params=params, generator=generator_version(world),
                          code=inspect.getsource(full_mask_set) + inspect.getsource(_usable)), sort_keys=True, default=str)
    path = cache_dir().parent / "vae_masks" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".npz")
    if path.is_file():
        with np.load(path) as saved:
            shape = tuple(saved["shape"])
            return np.unpackbits(saved["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)
    clips = load_world(world, split, seed=seed, n_clips=n_clips, preset=preset, cache=False, **params)
    masks = []
    for clip in progress(clips, desc=f"{world} full masks"):
        for t in range(0, clip.n_frames, every):
            for k in clip.evaluated:
                visible, amodal = clip.visible[t, k], clip.amodal[t, k]
                if visible.sum() == amodal.sum() and _usable(visible, amodal, min_visible):
                    masks.append(visible)
    if not masks:
        raise ValueError(f"full_mask_set: no fully visible instance in {n_clips} {world}/{split} clips")
    out = np.stack(masks)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, bits=np.packbits(out), shape=np.array(out.shape))
    partial.replace(path)  # never a half-written file
    return out


def load_instances(world: str, split: str, *, seed: int, n_clips: int, every: int = 4, min_visible: int = 12,
                   preset: str = "quick", **params) -> Instances:
    """Instances of the evaluated objects of ``world`` on every ``every``-th frame.

    An instance is kept when at least ``min_visible`` pixels are visible and its amodal mask does not
    touch the image border (the world's amodal masks stop at the border, so a truncated shape has no
    ground truth). Raises ValueError when no instance is left.
    """
    from .data import load_world

    clips = load_world(world, split, seed=seed, n_clips=n_clips, preset=preset, **params)
    rows = {"visible": [], "amodal": [], "occluders": [], "types": [], "visible_pred": [], "occluders_pred": []}
    for clip in clips:
        pred = clip.extra.get("visible_pred")
        for t in range(0, clip.n_frames, every):
            all_visible = clip.visible[t].any(axis=0)
            for k in clip.evaluated:
                amodal, visible = clip.amodal[t, k], clip.visible[t, k]
                if not _usable(visible, amodal, min_visible):
                    continue
                rows["visible"].append(visible)
                rows["amodal"].append(amodal)
                rows["occluders"].append(all_visible & ~visible)
                rows["types"].append(-1 if clip.types is None else int(clip.types[k]))
                if pred is not None:
                    rows["visible_pred"].append(pred[t, k])
                    rows["occluders_pred"].append(pred[t].any(axis=0) & ~pred[t, k])
    if not rows["visible"]:
        raise ValueError(f"load_instances: no instance of {world}/{split} has >= {min_visible} visible pixels away "
                         f"from the border; use more clips or a smaller min_visible")
    stack = {k: np.stack(v) for k, v in rows.items() if v}
    return Instances(stack["visible"], stack["amodal"], stack["occluders"], np.array(rows["types"]),
                     stack.get("visible_pred"), stack.get("occluders_pred"))


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


# ------------------------------------------------------------------------------------- completion


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


# ---------------------------------------------------------------------------------- the three stages


@dataclass(frozen=True)
class VAERecipe:
    """Sizes and schedule of the three stages. The paper: Adam 1e-3 (stage 1) and 1e-4 (stages 2, 3),
    KL weight annealed from 0.01 to 0.5 with alpha 0.9995 from step 2000 (``anneal=False``: a constant
    ``kl_final``, the ablation); steps are "until convergence on validation" in the paper."""

    width: int = 32
    hidden: int = 256
    batch: int = 64
    steps1: int = 20_000
    steps2: int = 10_000
    steps3: int = 5_000
    lr1: float = 1e-3
    lr23: float = 1e-4
    kl_final: float = 0.5
    kl_start: float = 0.01
    kl_alpha: float = 0.9995
    kl_begin: int = 2000
    anneal: bool = True

    def kl(self, step: int) -> float:
        if not self.anneal:
            return self.kl_final
        return kl_weight(step, self.kl_final, self.kl_start, self.kl_alpha, self.kl_begin)


def _masks(instances: Instances, which: str) -> torch.Tensor:
    return torch.from_numpy(getattr(instances, which)).float()


def instances_digest(*sets: Instances) -> str:
    """A short hash of the masks and types of instance sets (what a model trained on them saw)."""
    import hashlib

    digest = hashlib.sha256()
    for instances in sets:
        for name in ("visible", "amodal", "occluders", "types", "visible_pred", "occluders_pred"):
            value = getattr(instances, name)
            digest.update(name.encode() + (b"-" if value is None else np.ascontiguousarray(value).tobytes()))
    return digest.hexdigest()[:16]


STAGE1_FIELDS = ("width", "hidden", "batch", "steps1", "lr1", "kl_final", "kl_start", "kl_alpha", "kl_begin", "anneal")


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


def train_stage1(recipe: VAERecipe, train_masks: np.ndarray | torch.Tensor, val_masks: np.ndarray | torch.Tensor, *,
                 seed: int, data_key: dict):
    """Stage 1, the VAE on full masks (N, H, W), cached by the stage-1 fields of the recipe and the masks themselves,
    so every experiment that starts from the same stage 1 shares one model.

    Validation (every 5% of the steps) records the negative ELBO at the final KL weight on every validation mask
    (the same z draws each time), the active dimensions as Burda et al. define them (``val_active``) and those with
    a mean posterior std below 0.9 (``val_active_std``). Returns the :class:`~amodalkit.train.TrainResult`.
    """
    from .train import device, train_cached

    run_device = device()
    crops = {name: shape_crops(m).unsqueeze(1).to(run_device) for name, m in (("train", train_masks), ("val", val_masks))}
    for name, c in crops.items():
        if len(c) < 2:
            raise ValueError(f"train_stage1: the {name} set needs >= 2 full masks, got {len(c)}")
    config = dict(method="amodal_vae", stage=1, recipe={f: getattr(recipe, f) for f in STAGE1_FIELDS}, data=data_key,
                  seed=seed, masks=_tensor_digest(crops["train"], crops["val"]))

    def make() -> AmodalVAE:
        torch.manual_seed(seed)
        return AmodalVAE(recipe.width, recipe.hidden)

    def loss(m, step, g):
        pick = torch.randint(len(crops["train"]), (min(recipe.batch, len(crops["train"])),), generator=g)
        return stage1_loss(m, crops["train"][pick], recipe.kl(step), g)

    def validate(m):
        val = crops["val"]
        losses = [float(stage1_loss(m, val[i:i + 256], recipe.kl_final, torch.Generator().manual_seed(7 + i)))
                  * len(val[i:i + 256]) for i in range(0, len(val), 256)]
        mu, logvar = posterior(m.full_encoder, val)
        return {"loss": sum(losses) / len(val), "active": int(active_units(mu).sum()),
                "active_std": int(((0.5 * logvar).exp().mean(0) < 0.9).sum())}

    return train_cached("amodal_vae", config, make, loss, code=("amodal_vae.py",), steps=recipe.steps1, lr=recipe.lr1,
                        seed=seed, desc="Amodal-VAE stage 1", validate=validate,
                        validate_every=max(recipe.steps1 // 20, 1))


def _tensor_digest(*tensors: torch.Tensor) -> str:
    import hashlib

    digest = hashlib.sha256()
    for t in tensors:
        digest.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()[:16]


def train_amodal_vae(recipe: VAERecipe, train_set: Instances, val_set: Instances, *, seed: int, data_key: dict,
                     stage1_masks: tuple[np.ndarray, np.ndarray] | None = None, partial_init: str = "full"):
    """Train the three stages (each cached by configuration) and return (model, {stage: TrainResult}).

    Stage 1 learns the full masks ``stage1_masks`` = (train, val) (N, H, W) bool when given (a large set, see
    :func:`full_mask_set`), else the fully visible instances of the two sets; stage 2 draws its full masks and
    occluders from the same training masks; stage 3 uses the occluded instances and their occluders. Each stage keeps
    the weights with the lowest validation loss of its own objective (never ground truth amodal masks).

    partial_init: "full" starts stage 2's partial-mask encoder from the trained full-mask encoder (the supplement is
        silent; it trains each stage to convergence, which a random start does not reach in our budget), "random"
        from its initialisation.
    """
    import copy

    from .train import device, train_cached

    if partial_init not in ("full", "random"):
        raise ValueError(f"train_amodal_vae: partial_init must be 'full' or 'random', got {partial_init!r}")
    run_device = device()
    whole = {"train": train_set.visible_ratio >= 1.0, "val": val_set.visible_ratio >= 1.0}
    sets = {name: s for name, s in (("train", train_set), ("val", val_set))}
    if stage1_masks is None:
        stage1_masks = tuple(sets[k].visible[whole[k]] for k in ("train", "val"))
    full = {k: torch.as_tensor(np.asarray(m)).to(run_device) for k, m in zip(("train", "val"), stage1_masks)}  # bool
    occluded = {k: sets[k].subset(~whole[k]) for k in sets}
    partial = {k: (_masks(occluded[k], "visible").to(run_device), _masks(occluded[k], "occluders").to(run_device))
               for k in sets}
    for k in sets:
        if len(full[k]) < 2 or len(partial[k][0]) < 1:
            raise ValueError(f"train_amodal_vae: the {k} set needs >= 2 fully visible and >= 1 occluded instances, got "
                             f"{len(full[k])} and {len(partial[k][0])}; load more clips")

    def batch_of(tensor, generator):
        return torch.randint(len(tensor), (min(recipe.batch, len(tensor)),), generator=generator)

    def fixed(fn, tensors, n=4):  # validation: the same draws every time
        return lambda m: float(np.mean([float(fn(m, *[t[i * recipe.batch:(i + 1) * recipe.batch] for t in tensors],
                                                  torch.Generator().manual_seed(7 + i)))
                                        for i in range(max(1, min(n, math.ceil(len(tensors[0]) / recipe.batch))))]))

    results = {1: train_stage1(recipe, full["train"], full["val"], seed=seed, data_key=data_key)}
    code = ("amodal_vae.py",)
    # stages 2 and 3 are keyed by stage 1's key plus their own fields and data
    base = dict(method="amodal_vae", stage1=dict(recipe={f: getattr(recipe, f) for f in STAGE1_FIELDS}, data=data_key,
                                                 masks=_tensor_digest(full["train"], full["val"])), seed=seed,
                stage23=dict(batch=recipe.batch, lr23=recipe.lr23, kl_final=recipe.kl_final, partial_init=partial_init))

    def start2() -> AmodalVAE:
        model = copy.deepcopy(results[1].model)
        if partial_init == "full":
            model.partial_encoder.load_state_dict(model.full_encoder.state_dict())
        return model

    def loss2(m, step, g):
        return stage2_loss(m, full["train"][batch_of(full["train"], g)].float(), full["train"], recipe.kl_final, g)

    val_full = full["val"].float()
    results[2] = train_cached("amodal_vae", {**base, "stage": 2, "steps2": recipe.steps2}, start2, loss2,
                              code=code, steps=recipe.steps2, lr=recipe.lr23, seed=seed + 1, desc="Amodal-VAE stage 2",
                              trainable=lambda m: [*m.partial_encoder.parameters(), *m.box.parameters()],
                              validate=fixed(lambda m, f, g: stage2_loss(m, f, val_full, recipe.kl_final, g), [val_full]))

    def loss3(m, step, g):
        visible, occluders = partial["train"]
        pick = batch_of(visible, g)
        return stage3_loss(m, visible[pick], occluders[pick], recipe.kl_final, g)

    results[3] = train_cached("amodal_vae", {**base, "stage": 3, "steps2": recipe.steps2, "steps3": recipe.steps3,
                                             "instances": instances_digest(occluded["train"], occluded["val"])},
                              lambda: copy.deepcopy(results[2].model), loss3,
                              code=code, steps=recipe.steps3, lr=recipe.lr23, seed=seed + 2, desc="Amodal-VAE stage 3",
                              trainable=lambda m: [*m.partial_encoder.parameters(), *m.decoder.parameters(),
                                                   *m.box.parameters()],
                              validate=fixed(lambda m, v, o, g: stage3_loss(m, v, o, recipe.kl_final, g),
                                             list(partial["val"])))
    return results[3].model, results


# ------------------------------------------------------------------------------------- analysis


def shape_crops(masks: np.ndarray | torch.Tensor, size: int = MASK_SIZE) -> torch.Tensor:
    """Masks (N, H, W) cropped tightly and resized: (N, size, size) float (the VAE's view of a shape)."""
    m = masks.float() if torch.is_tensor(masks) else torch.as_tensor(np.asarray(masks)).float()
    return crop_to_box(m, mask_boxes(m), size)[:, 0]


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

"""STEm-Seg's training recipe, cached training and evaluation on the two worlds.

The release trains with SGD (momentum 0.9, Nesterov, weight decay 1e-4, lr 1e-3 constant, then exponential
decay to 1e-5 from 37.5% of the iterations on YouTube-VIS) for 10k-160k iterations on 8-frame clips, batch 2. A
2-core CPU affords a few hundred steps: the book's training loop (Adam, which moves much further than SGD at 1e-3 in
so few steps) with the schedule's shape (constant, then exponential decay by 0.01 from 37.5% of the steps) in the
paper profile and a constant rate in the quick profile (``decay_start=1``): at 300 steps the decay flattened the
validation curve (plateau statistic 0.0068 and 0.0004 for xyff and xyt, seed 0) while the models found fewer
objects (xyff J&F 0.22 against 0.47 at a constant rate; xyt none), so the convergence gate would have passed on
models that stopped only because their rate vanished. The differences are on the "differs from the papers" page. Models are selected by the validation loss (the loss on
the first window of each validation video); the convergence gate reads the validation curve.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..metrics import evaluate_davis_unsupervised, mots_metrics
from ..train import TrainResult, exponential_decay, train_cached
from .data import StemData, downsample_masks, image_sequence, to_tensor, video_window
from .inference import segment_video
from .model import MIXING, STEmSeg, clip_loss

STEM_CODE = ("stemseg/model.py", "stemseg/data.py", "stemseg/experiments.py", "losses.py")


@dataclass(frozen=True)
class StemRecipe:
    """How one STEm-Seg model is trained (quick sizes; the paper's in comments).

    image_fraction: the share of the batch's clips synthesised from stills (0 = videos only).
    """

    mixing: str = "xyff"
    width: int = 16  # the release: ResNet-101 + FPN
    stride: int = 4  # the release's output stride
    clip_len: int = 8  # release 8 (16 for DAVIS fine-tuning)
    batch: int = 2  # release 2
    steps: int = 300  # release 10k-160k
    lr: float = 1e-3  # release 1e-3 (SGD)
    # release (YouTube-VIS): decay from iteration 60k of 160k to 1e-2 of the initial rate; 1.0 keeps the rate constant
    # (the quick profile: a decay flattens the validation curve by construction, so the convergence gate would pass on
    # models that stopped improving only because their rate vanished)
    decay_start: float = 0.375
    decay_factor: float = 0.01
    image_fraction: float = 0.0
    flip: bool = True
    validate_every: int = 25

    def __post_init__(self):
        if self.mixing not in MIXING:
            raise ValueError(f"StemRecipe: mixing must be one of {list(MIXING)}, got {self.mixing!r}")
        if not 0 <= self.decay_start <= 1 or not 0 < self.decay_factor <= 1:
            raise ValueError(f"StemRecipe: need 0 <= decay_start <= 1 and 0 < decay_factor <= 1, got {self.decay_start!r}, "
                             f"{self.decay_factor!r}")
        if not 0 <= self.image_fraction <= 1:
            raise ValueError(f"StemRecipe: image_fraction must be in [0, 1], got {self.image_fraction!r}")
        for name in ("width", "clip_len", "batch", "steps", "validate_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"StemRecipe: {name} must be a positive integer, got {getattr(self, name)!r}")


def _batch(data: StemData, recipe: StemRecipe, generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    clips, masks = [], []
    for _ in range(recipe.batch):
        use_image = len(data.images) and bool(torch.rand(1, generator=generator) < recipe.image_fraction)
        if use_image:
            i = int(torch.randint(len(data.images), (1,), generator=generator))
            x, m = image_sequence(data.images[i], data.image_masks[i], recipe.clip_len, generator)
        else:
            i = int(torch.randint(len(data.train_frames), (1,), generator=generator))
            x, m = video_window(data.train_frames[i], data.train_masks[i], recipe.clip_len, generator, flip=recipe.flip)
        clips.append(x)
        masks.append(downsample_masks(m, recipe.stride))
    return torch.stack(clips), masks


def validation_loss(model: STEmSeg, data: StemData) -> float:
    """The mean training loss on the first window of each validation video (no augmentation)."""
    device = next(model.parameters()).device
    losses = []
    for frames, masks in zip(data.val_frames, data.val_masks):
        out = model(to_tensor(frames)[None].to(device))
        masks = downsample_masks(torch.from_numpy(masks), model.stride).to(device)
        losses.append(float(clip_loss(out, [masks])["total"]))
    return float(np.mean(losses))


def train_stemseg(recipe: StemRecipe, data: StemData, seed: int) -> TrainResult:
    """Train (or load from the cache) one STEm-Seg model on ``data``; seeded initialisation and batches."""

    def make_model() -> STEmSeg:
        torch.manual_seed(seed)
        return STEmSeg(recipe.mixing, recipe.width, recipe.stride)

    def loss_fn(model: STEmSeg, step: int, generator: torch.Generator) -> torch.Tensor:
        clips, masks = _batch(data, recipe, generator)
        device = next(model.parameters()).device
        return clip_loss(model(clips.to(device)), [m.to(device) for m in masks])["total"]

    config = dict(method="stemseg", recipe=dataclasses.asdict(recipe), data=data.key, seed=seed)
    return train_cached("stemseg", config, make_model, loss_fn, code=STEM_CODE, steps=recipe.steps, lr=recipe.lr,
                        seed=seed, validate=lambda m: validation_loss(m, data), validate_every=recipe.validate_every,
                        lr_schedule=None if recipe.decay_start >= 1 else
                        exponential_decay(recipe.steps, recipe.decay_start, recipe.decay_factor),
                        desc=f"STEm-Seg {recipe.mixing} ({data.world}, seed {seed})")


def predict_tracks(model: STEmSeg, data: StemData, clip_len: int, overlap: int, **cluster_kwargs) -> list[np.ndarray]:
    """Tracks of every test video: (T, H, W) int ids."""
    return [segment_video(model, frames, clip_len=clip_len, overlap=overlap, **cluster_kwargs) for frames in data.test_frames]


def score_tracks(tracks: list[np.ndarray], data: StemData) -> dict[str, float]:
    """DAVIS unsupervised J&F (DAVIS-like world) or sMOTSA / MOTSA / IDS (fast-motion world) of predicted tracks,
    plus the other family of numbers where it is defined."""
    gt = {f"video{i:03d}": ids for i, ids in enumerate(data.test_ids)}
    pred = {f"video{i:03d}": ids for i, ids in enumerate(tracks)}
    scores = {}
    if data.world == "davis_like":
        result = evaluate_davis_unsupervised(pred, gt).overall
        scores.update(jf=result["J&F"], j=result["J-Mean"], f=result["F-Mean"])
    mots = mots_metrics(pred, gt)
    scores.update(smotsa=mots["sMOTSA"], motsa=mots["MOTSA"], ids=float(mots["IDS"]), fp=float(mots["FP"]),
                  fn=float(mots["FN"]))
    return scores

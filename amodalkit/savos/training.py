"""Training of every SaVos ablation row: the recipe, the windows, the model and loss of each variant.

The cached models are keyed by this module, the network, the losses, Self-Deocclusion's module and ops (see
``TRAINING_CODE``) and by the tracks' own key, so an edit to the evaluation or the chapters does not retrain them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .losses import deocclusion_window_loss, savos_loss, supervised_window_loss
from .model import VARIANTS, SaVosNet, TrackBatch, Variant, track_batch
from .world_tracks import WorldTracks

TRAINING_CODE = ("savos/model.py", "savos/losses.py", "savos/training.py", "deocclusion.py", "ops.py")


@dataclass(frozen=True)
class SaVosRecipe:
    """Sizes and budget of one training run (Table 6 and E.2 at paper size: 64 x 128, base 32,
    Adam 1e-4; batch 64 / 24 / 8 for Chewing Gum / FISHBOWL / KINS)."""

    size: tuple[int, int] = (16, 32)
    base: int = 8
    window: int = 8
    batch: int = 8
    steps: int = 300
    lr: float = 1e-3
    photometric: float = 0.0
    pcnet_width: int = 16
    val_windows: int = 32


def _windows(tracks, window: int) -> list[tuple[int, int]]:
    return [(j, s) for j, (_, tr) in enumerate(tracks) for s in range(len(tr.frame_index) - window + 1)]


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def matched_pcnet_width(recipe: SaVosRecipe) -> int:
    """The smallest PCNet-M width (>= the recipe's) whose parameters reach those of the recipe's full SaVos network."""
    from ..deocclusion import PCNetM

    target = _parameters(SaVosNet(recipe.size, recipe.base, VARIANTS["full"]))
    width = recipe.pcnet_width
    while _parameters(PCNetM(width)) < target:
        width += 1
    return width


def make_model(variant: Variant, recipe: SaVosRecipe) -> nn.Module:
    """A SaVos network of the recipe's size, or PCNet-M for the Self-Deocclusion architecture (at the recipe's width,
    or at the SaVos network's parameter count for ``matched_capacity``)."""
    if variant.architecture == "pcnet":
        from ..deocclusion import PCNetM

        return PCNetM(matched_pcnet_width(recipe) if variant.matched_capacity else recipe.pcnet_width)
    return SaVosNet(recipe.size, recipe.base, variant)


def variant_loss(model: nn.Module, variant: Variant, batch: TrackBatch, generator: torch.Generator,
                 recipe: SaVosRecipe) -> torch.Tensor:
    """The training loss of a variant on a batch of windows (its own self-supervision)."""
    if variant.loss == "deocclusion":
        return deocclusion_window_loss(model, batch, generator)
    if variant.loss == "supervised":
        return supervised_window_loss(model, batch)
    return savos_loss(model, batch, photometric=recipe.photometric)


def train_variant(name: str, data: WorldTracks, recipe: SaVosRecipe, seed: int, data_key: dict):
    """Train (or load from the cache) one ablation row on a world's tracks.

    Every row gets the same windows, steps, batch and selection rule: the lowest value of its
    own self-supervised loss on fixed validation windows (no ground truth).

    Returns:
        :class:`amodalkit.train.TrainResult`.
    """
    from ..train import device, train_cached

    if name not in VARIANTS:
        raise ValueError(f"unknown SaVos variant {name!r}; expected one of {sorted(VARIANTS)}")
    variant = VARIANTS[name]
    run_device = device()
    train_windows = _windows(data.tracks["train"], recipe.window)
    val_windows = _windows(data.tracks["val"], recipe.window)
    if not train_windows or not val_windows:
        raise ValueError(f"{data.world}: no training or validation window of {recipe.window} frames")
    spread = np.linspace(0, len(val_windows) - 1, min(recipe.val_windows, len(val_windows))).round().astype(int)
    val_batch = track_batch([data.tracks["val"][val_windows[i][0]][1] for i in spread],
                            [val_windows[i][1] for i in spread], recipe.window).to(run_device)

    def loss_fn(model, step, g):
        pick = torch.randint(len(train_windows), (recipe.batch,), generator=g).tolist()
        batch = track_batch([data.tracks["train"][train_windows[i][0]][1] for i in pick],
                            [train_windows[i][1] for i in pick], recipe.window).to(run_device)
        return variant_loss(model, variant, batch, g, recipe)

    def validate(model):
        return float(variant_loss(model, variant, val_batch, torch.Generator().manual_seed(12345), recipe))

    def make():
        torch.manual_seed(seed)
        return make_model(variant, recipe)

    if variant.flow_input:
        config = dict(method="savos", variant=name, recipe=recipe.__dict__, data=data_key, tracks=data.key, seed=seed)
    else:  # the flow is never seen: one model for either flow source (the same weights bit for bit)
        config = dict(method="savos", variant=name, recipe=recipe.__dict__, data={**data_key, "flow": None},
                      tracks=data.flow_free_key, seed=seed)
    return train_cached(f"savos-{name}", config, make, loss_fn, code=TRAINING_CODE,
                        steps=recipe.steps, lr=recipe.lr, seed=seed, validate=validate, desc=f"{data.world} {name}")

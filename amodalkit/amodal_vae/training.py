"""Amodal-VAE's training: the recipe and the three stages, each cached by what determines it (stage 1 once per seed
and schedule, shared by every experiment that starts from it)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .data import Instances, _masks, instances_digest
from .model import (AmodalVAE, active_units, kl_weight, posterior, shape_crops, stage1_loss, stage2_loss,
                    stage3_loss)

# the files whose code decides what a cached model is (train.py counts for every model)
TRAINING_CODE = ("amodal_vae/model.py", "amodal_vae/training.py", "ops.py")


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



STAGE1_FIELDS = ("width", "hidden", "batch", "steps1", "lr1", "kl_final", "kl_start", "kl_alpha", "kl_begin", "anneal")


def train_stage1(recipe: VAERecipe, train_masks: np.ndarray | torch.Tensor, val_masks: np.ndarray | torch.Tensor, *,
                 seed: int, data_key: dict):
    """Stage 1, the VAE on full masks (N, H, W), cached by the stage-1 fields of the recipe and the masks themselves,
    so every experiment that starts from the same stage 1 shares one model.

    Validation (every 5% of the steps) records the negative ELBO at the final KL weight on every validation mask
    (the same z draws each time), the active dimensions as Burda et al. define them (``val_active``) and those with
    a mean posterior std below 0.9 (``val_active_std``). Returns the :class:`~amodalkit.train.TrainResult`.
    """
    from ..train import device, train_cached

    run_device = device()
    crops = {name: shape_crops(m).unsqueeze(1).to(run_device) for name, m in (("train", train_masks), ("val", val_masks))}
    for name, c in crops.items():
        if len(c) < 2:
            raise ValueError(f"train_stage1: the {name} set needs >= 2 full masks, got {len(c)}")
    config = dict(method="amodal_vae", stage=1, recipe={f: getattr(recipe, f) for f in STAGE1_FIELDS}, data=data_key,
                  seed=seed, masks=_tensor_digest(crops["train"], crops["val"]))

    def make() -> AmodalVAE:
        torch.manual_seed(seed)
        # channels-last weights: about 11% less time a step on the CPU here (mkldnn's 28 x 28 convolutions)
        return AmodalVAE(recipe.width, recipe.hidden).to(memory_format=torch.channels_last)

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

    return train_cached("amodal_vae", config, make, loss, code=TRAINING_CODE, steps=recipe.steps1, lr=recipe.lr1,
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

    from ..train import device, train_cached

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
    code = TRAINING_CODE
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


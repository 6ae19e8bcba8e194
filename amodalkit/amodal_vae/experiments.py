"""The Amodal-VAE chapters' set-ups and models, named once so that the notebooks and the parallel warm-up
(``book run --jobs N``) train the same cached models: a world and seed's instances and stage 1's whole masks
(:func:`chapter_data`), the two KL schedules (:func:`schedules`), PCNet-M on the same masks (:func:`train_pcnet`) and
the warm-up's tasks (:func:`warm_tasks`)."""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import torch

from .data import Instances, full_mask_set, load_instances
from .training import VAERecipe, train_amodal_vae

# the chapters' parameters that decide their data and models (the warm-up hands these to its workers)
SETUP_PARAMS = ("preset", "train_clips", "stage1_clips", "val_clips", "test_clips", "every", "net_width", "hidden",
                "batch", "steps1", "lr1", "steps2", "steps3", "kl_begin", "kl_alpha")
PCNET_PARAMS = ("deo_width", "deo_size", "deo_steps", "deo_lr")
# the files whose code decides what a cached PCNet-M is (its loss and validation are defined here)
PCNET_CODE = ("deocclusion.py", "ops.py", "amodal_vae/experiments.py")
# the world of the robustness chapter (Table 1 of the supplement is on KINS: cars and people)
ROBUSTNESS_WORLD = "street"


class ChapterData(NamedTuple):
    """A world and seed's instances (``sets``: train and val, and test when asked for), the cache key of its models
    and stage 1's whole masks (train (N, H, W) bool from many clips, val: the validation clips' whole masks)."""

    sets: dict[str, Instances]
    key: dict
    stage1_masks: tuple[np.ndarray, np.ndarray]


def recipe_from(params: dict) -> VAERecipe:
    """The three stages' recipe from a chapter's parameters."""
    return VAERecipe(width=params["net_width"], hidden=params["hidden"], batch=params["batch"],
                     steps1=params["steps1"], lr1=params["lr1"], steps2=params["steps2"], steps3=params["steps3"],
                     kl_begin=params["kl_begin"], kl_alpha=params["kl_alpha"])


def schedules(recipe: VAERecipe) -> dict[str, VAERecipe]:
    """Supplement 3.1's KL annealing and its ablation, a constant KL weight (everything else equal)."""
    return {"anneal": recipe, "constant": dataclasses.replace(recipe, anneal=False)}


def chapter_data(world: str, seed: int, params: dict, splits: tuple[str, ...] = ("train", "val", "test")) -> ChapterData:
    """Load a world and seed's instances (the ``splits`` asked for; train and val always) and stage 1's whole masks:
    those of ``stage1_clips`` training clips (the first ``train_clips`` are the chapter's own) and the validation
    clips' whole masks (stage 1 selects its weights on them)."""
    preset, every = params["preset"], params["every"]
    clips = {"train": params["train_clips"], "val": params["val_clips"], "test": params["test_clips"]}
    sets = {split: load_instances(world, split, seed=seed, n_clips=clips[split], every=every, preset=preset)
            for split in dict.fromkeys(("train", "val", *splits))}
    key = dict(world=world, seed=seed, preset=preset, clips=(clips["train"], clips["val"]), every=every,
               stage1_clips=params["stage1_clips"])
    whole_val = sets["val"].visible[sets["val"].visible_ratio >= 1.0]
    train_masks = full_mask_set(world, seed, n_clips=params["stage1_clips"], every=every, preset=preset)
    return ChapterData(sets, key, (train_masks, whole_val))


def train_vae(data: ChapterData, params: dict, seed: int, schedule: str = "anneal", partial_init: str = "full"):
    """The three stages (:func:`~amodalkit.amodal_vae.train_amodal_vae`) of one schedule on a chapter's data:
    (model, {stage: TrainResult})."""
    recipe = schedules(recipe_from(params))[schedule]
    return train_amodal_vae(recipe, data.sets["train"], data.sets["val"], seed=seed, data_key=data.key,
                            stage1_masks=data.stage1_masks, partial_init=partial_init)


def pcnet_training_masks(data: ChapterData) -> np.ndarray:
    """Equal data: PCNet-M learns the visible masks the VAE saw (stage 1's whole masks and stage 3's occluded ones),
    (N, H, W) bool."""
    train = data.sets["train"]
    return np.concatenate([data.stage1_masks[0], train.visible[train.visible_ratio < 1.0]])


def check_pcnet_params(params: dict) -> None:
    """Raise a ValueError naming the parameter when PCNet-M cannot train at these sizes (call it before long work)."""
    if params["deo_size"] % 4:
        raise ValueError(f"deo_size must be divisible by 4 (the U-Net pools twice), got {params['deo_size']}")


def train_pcnet(data: ChapterData, params: dict, seed: int):
    """PCNet-M with the release's recipe (:mod:`amodalkit.deocclusion`) on :func:`pcnet_training_masks`, batch
    ``batch``, crops ``deo_size``; validation: its own loss on fixed pairs drawn from the validation clips' visible
    masks. Returns the :class:`~amodalkit.train.TrainResult`."""
    from .. import deocclusion
    from ..train import device, train_cached

    check_pcnet_params(params)
    size, width, steps, lr, batch = (params[k] for k in ("deo_size", "deo_width", "deo_steps", "deo_lr", "batch"))
    run_device = device()
    masks = torch.from_numpy(pcnet_training_masks(data)).to(run_device)
    val = torch.from_numpy(data.sets["val"].visible).float().to(run_device)

    def loss(model, step, g):
        pick = torch.randint(len(masks), (min(batch, len(masks)),), generator=g)
        inputs, targets, eraser = deocclusion.deocclusion_pairs(masks[pick.to(masks.device)].float(), masks, g,
                                                                size=size)
        return deocclusion.deocclusion_loss(model(inputs), targets, eraser)

    def validate(model):
        inputs, targets, eraser = deocclusion.deocclusion_pairs(val[:512], val, torch.Generator().manual_seed(7),
                                                                size=size)
        return float(deocclusion.deocclusion_loss(model(inputs), targets, eraser))

    def make():
        torch.manual_seed(seed)
        return deocclusion.PCNetM(width)

    config = dict(method="pcnet_m", width=width, size=size, steps=steps, lr=lr, batch=batch, data=data.key,
                  seed=seed, masks=len(masks))
    return train_cached("pcnet_m", config, make, loss, code=PCNET_CODE, steps=steps, lr=lr,
                        seed=seed, validate=validate, validate_every=max(steps // 20, 1), desc="PCNet-M")


# ------------------------------------------------------------------------------ the parallel warm-up
def warm_tasks(chapter: str, params: dict) -> list[list[tuple[str, dict]]]:
    """The models an Amodal-VAE chapter trains, as independent tasks for the parallel warm-up: a first wave loads
    each world and seed's data (stage 1's whole masks are cached once), the second trains the three stages per seed
    and schedule (``vae_analysis``: both schedules on its world; ``vae_robustness``: the annealed VAE and PCNet-M on
    street), the third ``vae_analysis``'s stage 2 from a random start (seed 0; it starts from the annealed stage 1).
    ``vae_inpainting`` loads ``vae_analysis``'s seed-0 model."""
    setup = {k: params[k] for k in SETUP_PARAMS}
    seeds = range(params["seeds"])
    if chapter == "vae_analysis":
        world = params["world"]
        models = [("amodalkit.amodal_vae.experiments:warm_vae", dict(world=world, seed=s, params=setup, schedule=name))
                  for s in seeds for name in ("anneal", "constant")]
        later = [[("amodalkit.amodal_vae.experiments:warm_vae",
                   dict(world=world, seed=0, params=setup, schedule="anneal", partial_init="random"))]]
    elif chapter == "vae_robustness":
        world, setup = ROBUSTNESS_WORLD, dict(setup, **{k: params[k] for k in PCNET_PARAMS})
        models = [(f"amodalkit.amodal_vae.experiments:warm_{model}", dict(world=world, seed=s, params=setup))
                  for s in seeds for model in ("vae", "pcnet")]
        later = []
    else:
        raise ValueError(f"warm_tasks: {chapter!r} trains no Amodal-VAE model of its own")
    data = [("amodalkit.amodal_vae.experiments:warm_data", dict(world=world, seed=s, params=setup)) for s in seeds]
    return [data, models, *later]


def warm_data(world: str, seed: int, params: dict) -> None:
    """Build (into the cache) one world and seed's instances and stage 1's whole masks."""
    chapter_data(world, seed, params)


def warm_vae(world: str, seed: int, params: dict, schedule: str = "anneal", partial_init: str = "full") -> None:
    """Train (into the model cache) one schedule's three stages."""
    train_vae(chapter_data(world, seed, params, splits=()), params, seed, schedule, partial_init)


def warm_pcnet(world: str, seed: int, params: dict) -> None:
    """Train (into the model cache) PCNet-M."""
    train_pcnet(chapter_data(world, seed, params, splits=()), params, seed)

"""The Mask-VOS chapter's experiments: recipe, the two training phases for both correspondence learners (L_Corr and
CRW), online pseudo masks, the correspondence gate, evaluation and the Table S2 timing.

Schedule (supplement F and B, scaled to steps): phase A trains correspondence alone for ``corr_steps`` (the paper's
epochs 0-300); phase B continues from phase A's weights for ``seg_steps`` (epochs 300-500) either with correspondence
alone (the "correspondence only" arm) or with correspondence + L_Seg. Pseudo masks are made from phase A's keys at the
start of phase B ("initial") and re-made ``updates`` times at equal intervals over the first ``update_span`` of phase B
(the paper: 9 updates, once per 10 epochs from epoch 300 to 400 of 500, i.e. the first half of phase B).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import torch

from .. import crw as crw_module
from ..crw import VosData, noise_split, sample_clips, to_input
from .clustering import CLUSTERINGS, cluster_video, foreground_iou, objects_from_clusters
from .model import MaskVOS, correspondence_loss, segmentation_loss

LEARNERS = ("lcorr", "crw")
MASKVOS_CODE = ("maskvos/model.py", "maskvos/clustering.py", "maskvos/experiments.py", "crw.py")
PHASE_B_FIELDS = ("seg_steps", "seg_batch", "max_skip", "n_clusters", "n_objects", "cluster_every", "updates",
                  "update_span", "bootstrap")


@dataclass(frozen=True)
class MaskRecipe:
    """The Mask-VOS recipe. Defaults: the release's YouTube-VOS config and Araslanov et al.'s framework defaults
    (crop 256, clip 5 frames 2 apart, batch 16, grid 8, reference grid 4, CE_REF 0.1, temperature 0.05, zoom 0.5-1 and
    guided flip, ResNet-18, 128-d keys, Adam 1e-4, weight decay 5e-4; L_Seg on 3-frame clips, batch 12, max skip 2;
    k-means k = 7 on every 8th frame, 2 pseudo objects, 9 updates). ``crw_grid``/``crw_patch`` set the CRW learner's
    patches (CRW's Table E: 7 x 7 patches of 64 on the 256 crop)."""

    crop: int = 256
    clip_len: int = 5
    gap: int = 2
    batch: int = 16
    grid: int = 8
    grid_ref: int = 4
    ce_ref: float = 0.1
    temperature: float = 0.05
    zoom: tuple[float, float] = (0.5, 1.0)
    flip: bool = True
    width: int = 64
    dim: int = 128
    value_dim: int = 128
    lr: float = 1e-4
    weight_decay: float = 5e-4
    corr_steps: int = 3000
    seg_steps: int = 2000
    seg_batch: int = 12
    max_skip: int = 2
    n_clusters: int = 7
    n_objects: int = 2
    cluster_every: int = 8
    updates: int = 9
    update_span: float = 0.5
    bootstrap: bool = False
    crw_grid: int = 7
    crw_patch: int = 64
    edge_dropout: float = 0.1

    def __post_init__(self):
        for name in ("crop", "clip_len", "batch", "grid", "grid_ref", "width", "dim", "value_dim", "corr_steps",
                     "seg_steps", "seg_batch", "n_clusters", "n_objects", "cluster_every", "crw_grid", "crw_patch"):
            if getattr(self, name) < 1:
                raise ValueError(f"MaskRecipe: {name} must be >= 1, got {getattr(self, name)}")
        if self.crop % 8:
            raise ValueError(f"MaskRecipe: crop must be a multiple of 8 (the keys are at 1/8), got {self.crop}")
        if self.grid > self.crop // 8 or self.grid_ref > self.crop // 8:
            raise ValueError(f"MaskRecipe: grid ({self.grid}) and grid_ref ({self.grid_ref}) must not exceed the key map "
                             f"side crop / 8 = {self.crop // 8}")
        if self.n_objects >= self.n_clusters:
            raise ValueError(f"MaskRecipe: n_objects ({self.n_objects}) must be below n_clusters ({self.n_clusters})")
        if not 0 < self.zoom[0] <= self.zoom[1] <= 1:
            raise ValueError(f"MaskRecipe: zoom must be (min, max) with 0 < min <= max <= 1, got {self.zoom}")
        if self.updates < 0 or not 0 < self.update_span <= 1:
            raise ValueError(f"MaskRecipe: need updates >= 0 and 0 < update_span <= 1, got {self.updates}, "
                             f"{self.update_span}")
        if self.crw_patch > self.crop:
            raise ValueError(f"MaskRecipe: crw_patch ({self.crw_patch}) must not exceed crop ({self.crop})")

    def crw_recipe(self, steps: int) -> crw_module.Recipe:
        """The CRW learner's recipe at the same crop, clip length, frame gap, batch, backbone and learning rate."""
        return crw_module.Recipe(crop=self.crop, grid=self.crw_grid, patch=self.crw_patch, clip_len=self.clip_len,
                                 stride=self.gap, temperature=self.temperature, edge_dropout=self.edge_dropout,
                                 batch=self.batch, lr=self.lr, width=self.width, dim=self.dim, steps=steps)

    def update_steps(self) -> list[int]:
        """Phase-B steps at which the pseudo masks are re-made (after the initial ones at step 0)."""
        return [round(self.seg_steps * self.update_span * (i + 1) / self.updates) for i in range(self.updates)]


def initial_maskvos(recipe: MaskRecipe, seed: int) -> MaskVOS:
    torch.manual_seed(seed)
    return MaskVOS(recipe.width, recipe.dim, recipe.value_dim)


# ------------------------------------------------------------------------------------------------ batches

def corr_clips(videos: torch.Tensor, recipe: MaskRecipe, generator: torch.Generator) -> torch.Tensor:
    """View 2 of a batch: clips of ``clip_len`` frames ``gap`` apart, one square crop per clip (side 0.8-1 of the
    frame's short side, the release's scale-smallest-then-crop), resized to ``crop``. (B, T, 3, crop, crop)."""
    height, width = videos.shape[2:4]
    short = min(height, width)
    scale = ((0.8 * short) ** 2 / (height * width), short ** 2 / (height * width))
    return sample_clips(videos, recipe.batch, recipe.clip_len, recipe.gap, recipe.crop, generator, scale, (1.0, 1.0),
                        per_frame=False, flip=False)


def seg_clips(videos: torch.Tensor, labels: torch.Tensor, recipe: MaskRecipe, generator: torch.Generator):
    """A batch of 3-frame L_Seg clips (the release's sampling: each next frame 1 to max_skip + 1 later, clamped;
    reversed with probability 1/2), each a crop x crop window of whole frames (the same window for its 3 frames, at a
    multiple of 8 so that the pseudo masks at 1/8 align), with the pseudo masks upsampled to it.

    videos (V, T, H, W, 3) uint8, labels (V, T, H/8, W/8) -> frames (B, 3, 3, c, c), labels (B, 3, c, c), c the crop
    (or the frame's short side when smaller)."""
    n_videos, n_frames, height, width = videos.shape[:4]
    side = min(recipe.crop, height // 8 * 8, width // 8 * 8)
    jump = min(n_frames, recipe.max_skip)
    frames, masks = [], []
    for _ in range(recipe.seg_batch):
        v = int(torch.randint(n_videos, (1,), generator=generator))
        start = int(torch.randint(n_frames - jump + 1, (1,), generator=generator))
        f1 = min(start + int(torch.randint(jump + 1, (1,), generator=generator)) + 1, n_frames - jump, n_frames - 1)
        f2 = min(f1 + int(torch.randint(jump + 1, (1,), generator=generator)) + 1, n_frames - jump // 2, n_frames - 1)
        ids = [start, f1, f2] if float(torch.rand(1, generator=generator)) > 0.5 else [f2, f1, start]
        y0 = 8 * int(torch.randint((height - side) // 8 + 1, (1,), generator=generator))
        x0 = 8 * int(torch.randint((width - side) // 8 + 1, (1,), generator=generator))
        frames.append(to_input(videos[v, ids, y0:y0 + side, x0:x0 + side]))
        masks.append(labels[v, ids, y0 // 8:(y0 + side) // 8, x0 // 8:(x0 + side) // 8])
    small = torch.stack(masks).float()
    big = torch.nn.functional.interpolate(small, size=(side, side), mode="nearest").long()
    return torch.stack(frames).to(videos.device), big.to(videos.device)


def correspondence_step(model: MaskVOS, learner: str, videos: torch.Tensor, recipe: MaskRecipe,
                        generator: torch.Generator, crw_recipe: crw_module.Recipe | None = None) -> torch.Tensor:
    """One batch of the learner's correspondence loss: L_Corr, or CRW's walk loss on the same backbone."""
    if learner == "lcorr":
        return correspondence_loss(model, corr_clips(videos, recipe, generator), generator, grid=recipe.grid,
                                   grid_ref=recipe.grid_ref, temperature=recipe.temperature, ce_ref=recipe.ce_ref,
                                   zoom=recipe.zoom, flip=recipe.flip)
    if learner == "crw":
        return crw_module.walk_loss_on(model.crw, videos, crw_recipe or recipe.crw_recipe(1), generator)
    raise ValueError(f"learner must be one of {LEARNERS}, got {learner!r}")


@torch.no_grad()
def correspondence_validation(model: MaskVOS, learner: str, videos: torch.Tensor, recipe: MaskRecipe,
                              seed: int = 12345, batches: int = 4) -> float:
    """The learner's loss on fixed batches of ``videos`` (no edge dropout): its self-supervised validation loss."""
    plain = dataclasses.replace(recipe.crw_recipe(1), edge_dropout=0.0)
    values = [float(correspondence_step(model, learner, videos, recipe, torch.Generator().manual_seed(seed + i), plain))
              for i in range(batches)]
    return sum(values) / len(values)


# -------------------------------------------------------------------------------------------- pseudo masks

@torch.no_grad()
def video_keys(model: MaskVOS, videos: torch.Tensor, batch: int = 16) -> list[torch.Tensor]:
    """The keys (T, D, H/8, W/8) of every video (V, T, H, W, 3) uint8, in eval mode."""
    was_training = model.training
    model.eval()
    run_device = next(model.parameters()).device
    out = []
    for video in videos:
        x = to_input(video)
        out.append(torch.cat([model.keys(x[i:i + batch].to(run_device)).cpu() for i in range(0, len(x), batch)]))
    model.train(was_training)
    return out


def pseudo_masks(model: MaskVOS, videos: torch.Tensor, recipe: MaskRecipe, method: str = "kmeans",
                 seed: int = 0) -> torch.Tensor:
    """Pseudo object labels (V, T, H/8, W/8) of every video: cluster its keys (:func:`cluster_video`), keep the
    ``n_objects`` clusters of least border share (:func:`objects_from_clusters`)."""
    keys = video_keys(model, videos)
    return torch.stack([objects_from_clusters(cluster_video(k, k=recipe.n_clusters, every=recipe.cluster_every,
                                                            method=method, seed=seed + i), recipe.n_clusters,
                                              recipe.n_objects) for i, k in enumerate(keys)])


def pseudo_iou(labels: torch.Tensor, foreground: np.ndarray) -> float:
    """Mean over videos of the pseudo foreground's IoU with the true foreground (V, T, H, W) (measurement only)."""
    return float(np.mean([foreground_iou(lab, fg) for lab, fg in zip(labels, foreground)]))


class OnlinePseudoMasks:
    """The pseudo masks of phase B and their schedule: made from the starting weights, re-made at
    :meth:`MaskRecipe.update_steps` from the weights of that step. After a resume they are re-made from the resumed
    weights (an uninterrupted run used the weights of the last update step). ``val_videos``: the validation videos'
    pseudo masks (``val_labels``) are made beside them, from the same weights."""

    def __init__(self, recipe: MaskRecipe, videos: torch.Tensor, method: str, seed: int,
                 val_videos: torch.Tensor | None = None):
        self.recipe, self.videos, self.method, self.seed, self.val_videos = recipe, videos, method, seed, val_videos
        self.schedule = [0] + recipe.update_steps()
        self.version, self.labels, self.val_labels = -1, None, None

    def at(self, model: MaskVOS, step: int) -> torch.Tensor:
        due = max(i for i, s in enumerate(self.schedule) if s <= step)
        if due != self.version:
            self.labels = pseudo_masks(model, self.videos.cpu(), self.recipe, self.method, self.seed + 1000 * due)
            if self.val_videos is not None:
                self.val_labels = pseudo_masks(model, self.val_videos.cpu(), self.recipe, self.method,
                                               self.seed + 1000 * due + 500)
            self.version = due
        return self.labels


# ------------------------------------------------------------------------------------------------- training

def train_phase_a(learner: str, recipe: MaskRecipe, train_videos: torch.Tensor, val_videos: torch.Tensor, *, seed: int,
                  data_key: dict):
    """Phase A: the learner's correspondence loss alone for ``corr_steps`` (cached). Returns a TrainResult."""
    from ..train import device, train_cached

    run_device = device()
    train_videos, val_videos = train_videos.to(run_device), val_videos.to(run_device)
    crw_recipe = recipe.crw_recipe(recipe.corr_steps)
    # only what phase A depends on: a phase-B setting changed must not retrain it
    phase_a = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in PHASE_B_FIELDS}
    config = dict(method="maskvos-a", learner=learner, recipe=phase_a, data=data_key, seed=seed)
    return train_cached(f"maskvos-{learner}-a", config, lambda: initial_maskvos(recipe, seed),
                        lambda m, step, g: correspondence_step(m, learner, train_videos, recipe, g, crw_recipe),
                        code=MASKVOS_CODE, steps=recipe.corr_steps, lr=recipe.lr, weight_decay=recipe.weight_decay,
                        seed=seed, select="last",
                        validate=lambda m: correspondence_validation(m, learner, val_videos, recipe),
                        desc=f"Mask-VOS phase A ({learner}) seed {seed}")


@torch.no_grad()
def segmentation_validation(model: MaskVOS, videos: torch.Tensor, labels: torch.Tensor, recipe: MaskRecipe,
                            seed: int = 54321, batches: int = 4) -> float:
    """L_Seg on fixed batches of ``videos`` (V, T, H, W, 3) with their pseudo masks ``labels`` (V, T, H/8, W/8): the
    self-supervised validation loss of the decoder (its convergence gate reads it; no ground truth)."""
    run_device = next(model.parameters()).device
    values = []
    for i in range(batches):
        frames, target = seg_clips(videos, labels.to(run_device), recipe, torch.Generator().manual_seed(seed + i))
        values.append(float(segmentation_loss(model, frames, target, n_objects=recipe.n_objects,
                                              temperature=recipe.temperature)))
    return sum(values) / len(values)


def seg_plateau(history: dict, recipe: MaskRecipe, tail: float = 0.2) -> float:
    """The decoder's convergence gate: :func:`amodalkit.train.plateau_improvement` of L_Seg on the validation videos
    (``history["val_seg"]`` of a "seg" phase-B run), read only on the validations after the last pseudo-mask update:
    each update changes the targets, so a loss measured against older pseudo masks is not comparable (a low value
    then would pass the gate by construction). A run too short to have a validation after the update and before the
    last ``tail`` (a smoke run) reads from its first kept validation."""
    from ..train import plateau_improvement

    last_update = max(recipe.update_steps(), default=0)
    kept = [(s, v) for s, v in zip(history["val_step"], history["val_seg"]) if s > last_update]
    if not kept:
        raise ValueError(f"seg_plateau: no validation after the last pseudo-mask update (step {last_update})")
    if kept[0][0] > (1 - tail) * kept[-1][0]:  # a run of a few steps (smoke): its first kept validation is the start
        kept = [(0, kept[0][1])] + kept
    return plateau_improvement({"val_step": [s for s, _ in kept], "val_loss": [v for _, v in kept]}, tail=tail)


def train_phase_b(learner: str, arm: str, recipe: MaskRecipe, data: VosData, foreground: np.ndarray | None, *,
                  seed: int, clustering: str = "kmeans"):
    """Phase B from phase A's weights: ``arm`` "correspondence" (the learner's loss alone) or "seg" (plus L_Seg on
    online pseudo masks made by ``clustering``). The validation records the correspondence loss and, for "seg", L_Seg
    on the validation videos with their own pseudo masks (``history["val_seg"]``; made and re-made beside the training
    videos', from the same weights; the decoder's convergence gate reads it) and the current
    training pseudo masks' IoU to the true foreground (``history["val_pseudo_iou"]``; a measurement, never used for
    selection: the last step is kept; ``foreground`` None, e.g. on a user's unlabelled videos, records no IoU).
    Cached. Returns a TrainResult."""
    from ..train import device, train_cached

    if arm not in ("correspondence", "seg"):
        raise ValueError(f"arm must be 'correspondence' or 'seg', got {arm!r}")
    if clustering not in CLUSTERINGS:
        raise ValueError(f"clustering must be one of {CLUSTERINGS}, got {clustering!r}")
    start = train_phase_a(learner, recipe, data.train, data.val, seed=seed, data_key=data.key).model
    run_device = device()
    train_videos, val_videos = data.train.to(run_device), data.val.to(run_device)
    crw_recipe = recipe.crw_recipe(recipe.seg_steps)
    online = OnlinePseudoMasks(recipe, data.train, clustering, seed, val_videos=data.val) if arm == "seg" else None

    def make_model():
        model = initial_maskvos(recipe, seed)
        model.load_state_dict(start.state_dict())
        return model

    def loss_fn(model, step, g):
        loss = correspondence_step(model, learner, train_videos, recipe, g, crw_recipe)
        if online is not None:
            frames, labels = seg_clips(train_videos, online.at(model, step).to(run_device), recipe, g)
            loss = loss + segmentation_loss(model, frames, labels, n_objects=recipe.n_objects,
                                            temperature=recipe.temperature, step=step, bootstrap=recipe.bootstrap)
        return loss

    def validate(model):
        out = {"loss": correspondence_validation(model, learner, val_videos, recipe)}
        if online is not None:
            if online.val_labels is None:  # a validation before any step of this process (made up on a resume)
                online.at(model, 0)
            out["seg"] = segmentation_validation(model, val_videos, online.val_labels, recipe)
            if online.labels is not None and foreground is not None:
                out["pseudo_iou"] = pseudo_iou(online.labels, foreground)
        return out

    config = dict(method="maskvos-b", learner=learner, arm=arm, clustering=clustering if arm == "seg" else None,
                  recipe=dataclasses.asdict(recipe), data=data.key, seed=seed)
    return train_cached(f"maskvos-{learner}-{arm}", config, make_model, loss_fn, code=MASKVOS_CODE,
                        steps=recipe.seg_steps, lr=recipe.lr, weight_decay=recipe.weight_decay, seed=seed,
                        select="last", validate=validate,
                        desc=f"Mask-VOS phase B ({learner}, {arm}{', ' + clustering if arm == 'seg' else ''}) seed {seed}")


def correspondence_margin(learner: str, recipe: MaskRecipe, data: VosData, seed: int) -> dict:
    """The correspondence gate of a learner (as the CRW chapter's): the relative drop of phase A's validation loss
    from the initial weights on ``vos``, minus the same drop on videos of independent noise (nothing to track).

    Returns dict(vos, noise, margin, vos_history, noise_history)."""
    out = {}
    train_noise, val_noise, noise_key = noise_split(data, seed)
    for name, (train_v, val_v, key) in {"vos": (data.train, data.val, data.key),
                                        "noise": (train_noise, val_noise, noise_key)}.items():
        with torch.no_grad():
            before = correspondence_validation(initial_maskvos(recipe, seed).eval(), learner, val_v, recipe)
        result = train_phase_a(learner, recipe, train_v, val_v, seed=seed, data_key=key)
        out[name] = 1 - result.selected_val_loss / before
        out[f"{name}_history"] = result.history
    out["margin"] = out["vos"] - out["noise"]
    return out


# ------------------------------------------------------------------------------------------------- timing

def time_steps(recipe: MaskRecipe, data: VosData, *, seed: int, steps: int = 3,
               rounds: bool = False) -> dict[str, float] | dict[str, list[float]]:
    """Seconds per training step (forward, backward, Adam) of L_Corr, L_Corr + L_Seg, CRW and CRW + L_Seg on one
    backbone, input size and batch, measured side by side: after one warm-up step each, the four are timed in turn
    ``steps`` times (round robin, so load changes on the machine hit all four alike) and the median kept
    (``rounds``: every round's time instead, in order)."""
    from ..train import device

    run_device = device()
    videos = data.train.to(run_device)
    model = initial_maskvos(recipe, seed).to(run_device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    labels = pseudo_masks(model, data.train[:2], recipe, seed=seed)
    seg_videos = videos[:2]
    crw_recipe = recipe.crw_recipe(1)
    names = ("lcorr", "lcorr_seg", "crw", "crw_seg")
    timings = {n: [] for n in names}
    g = torch.Generator().manual_seed(seed)
    for repeat in range(steps + 1):
        for name in names:
            start = time.perf_counter()
            loss = correspondence_step(model, name.split("_")[0], videos, recipe, g, crw_recipe)
            if name.endswith("_seg"):
                frames, lab = seg_clips(seg_videos, labels.to(run_device), recipe, g)
                loss = loss + segmentation_loss(model, frames, lab, n_objects=recipe.n_objects, temperature=recipe.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if run_device.type == "cuda":
                torch.cuda.synchronize()
            if repeat:  # the first round warms up
                timings[name].append(time.perf_counter() - start)
    if rounds:
        return {n: [float(x) for x in v] for n, v in timings.items()}
    return {n: float(np.median(v)) for n, v in timings.items()}


# ------------------------------------------------------------------------------- the chapter's recipe, data and models

def chapter_recipe(params: dict) -> MaskRecipe:
    """The Mask-VOS chapter's recipe from its parameters (the notebook, ``train maskvos-a|b`` and the GPU edition
    build it here, so the same parameters name the same cached models everywhere)."""
    return MaskRecipe(crop=params["crop"], clip_len=params["clip_len"], gap=params["gap"], batch=params["batch"],
                      grid=params["grid"], grid_ref=params["grid_ref"], width=params["net_width"], dim=params["dim"],
                      value_dim=params["value_dim"], lr=params["lr"], corr_steps=params["corr_steps"],
                      seg_steps=params["seg_steps"], seg_batch=params["seg_batch"], n_clusters=params["n_clusters"],
                      updates=params["updates"], crw_grid=params["crw_grid"], crw_patch=params["crw_patch"])


def chapter_data(params: dict, seed: int) -> tuple[VosData, np.ndarray]:
    """One seed's ``vos`` data and the true foreground of its training videos (V, T, H, W) bool (a measurement only:
    the pseudo masks' IoU recorded in phase B's validation)."""
    from ..data import load_world

    world = dict(height=params["height"], width=params["width"], n_frames=params["n_frames"])
    data = crw_module.vos_data(seed, train_clips=params["train_clips"], val_clips=params["val_clips"],
                               test_clips=params["test_clips"], preset=params["preset"], **world)
    train = load_world("vos", "train", seed=seed, n_clips=params["train_clips"], preset=params["preset"], **world)
    return data, np.stack([train[i].visible.any(1) for i in range(params["train_clips"])])


def gpu_tasks(chapter: str, params: dict) -> list[list[tuple[str, dict]]]:
    """The chapter's models as training tasks for the GPU edition's parallel warm-up, in two waves: phase A of both
    learners on ``vos`` and on noise (independent), then the phase-B arms, which start from phase A."""
    first = [dict(params=params, seed=s, learner=learner, phase="a", noise=noise)
             for s in range(params["seeds"]) for learner in LEARNERS for noise in (False, True)]
    arms = [(learner, arm, "kmeans") for learner in LEARNERS for arm in ("correspondence", "seg")]
    if params["sinkhorn_arm"]:
        arms.append(("lcorr", "seg", "sinkhorn"))
    second = [dict(params=params, seed=s, learner=learner, phase="b", arm=arm, clustering=clustering)
              for s in range(params["seeds"]) for learner, arm, clustering in arms]
    return [[("amodalkit.maskvos.experiments:warm", t) for t in wave] for wave in (first, second)]


def warm(params: dict, seed: int, learner: str, phase: str, noise: bool = False, arm: str = "seg",
         clustering: str = "kmeans") -> None:
    """Train (into the model cache) one model of :func:`gpu_tasks`, as the chapter trains it."""
    recipe = chapter_recipe(params)
    data, foreground = chapter_data(params, seed)
    if phase == "a" and noise:
        train_noise, val_noise, key = noise_split(data, seed)
        train_phase_a(learner, recipe, train_noise, val_noise, seed=seed, data_key=key)
    elif phase == "a":
        train_phase_a(learner, recipe, data.train, data.val, seed=seed, data_key=data.key)
    else:
        train_phase_b(learner, arm, recipe, data, foreground, seed=seed, clustering=clustering)

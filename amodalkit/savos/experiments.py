"""Evaluation of the SaVos chapters' rows: predictions in image space, scores, reliance probes, the rule baseline and
the per-chapter setup, so the notebooks only choose and show."""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from ..deocclusion import amodal_masks
from .baseline import rule_based_completion
from .model import VARIANTS, SaVosNet, Variant, cycled_batch, predict, track_batch
from .training import SaVosRecipe, train_variant
from .world_tracks import WorldTracks, load_world_tracks


@torch.no_grad()
def crop_predictions(model: nn.Module, variant: Variant, track, donor=None) -> np.ndarray:
    """(N, h, w) amodal probabilities of every frame of a track in its crops.

    SaVos-loss rows: the fused prediction (frames 1..N-2 have both passes; each frame's prediction
    is made without its own visible mask). Self-Deocclusion-loss and supervised rows: the completer's output of
    each frame (the SaVos network) or PCNet-M's completion from [visible mask, other objects' masks], as the
    release takes it (above 0.2, given as 0 or 1; a supervised PCNet-M's probability).
    donor: another track whose frames replace each frame's history (SaVos networks; see :func:`reliance_probes`).
    """
    dev = next(model.parameters()).device
    model.eval()
    batch = track_batch([track]).to(dev)
    if variant.architecture == "pcnet":
        x = torch.stack([batch.visible[0], batch.others[0]], 1)
        prob = torch.sigmoid(model(x))[:, 0]
        if variant.loss == "supervised":  # trained on the truth: its probability, scored as every other
            return prob.cpu().numpy()
        return amodal_masks(prob).float().cpu().numpy()  # the release's completion: probability above 0.2, as 0 / 1
    pred = predict(model, batch, None if donor is None else cycled_batch(donor, len(track.frame_index)).to(dev))
    out = pred.masks if variant.loss in ("deocclusion", "supervised") else pred.fused
    return out[0].cpu().numpy()


@dataclass
class Scores:
    """Per object-frame scores of one method: keys (M, 3) = (clip, frame, object); full, occluded (M,);
    occlusion (M,) the ground-truth occlusion rate."""

    keys: np.ndarray
    full: np.ndarray
    occluded: np.ndarray
    occlusion: np.ndarray

    def miou(self, metric: str = "occluded", level: str = "frame", select: np.ndarray | None = None) -> float:
        """Frame-level (the paper's) or object-level mIoU of ``metric`` over the selected object-frames."""
        from ..metrics import frame_level_miou, object_level_miou

        values = getattr(self, metric)
        keys = self.keys
        if select is not None:
            values, keys = values[select], keys[select]
        if level == "frame":
            return frame_level_miou(values, [tuple(k[:2]) for k in keys])
        if level == "object":
            return object_level_miou(values)
        raise ValueError(f"Scores.miou: level must be 'frame' or 'object', got {level!r}")


def score_tracks(data: WorldTracks, image_predictions) -> Scores:
    """Score image-space predictions of the test tracks with SaVos's metric.

    Args:
        image_predictions: one (N, H, W) probability array per test track (its frames), in order.

    Object-frames are kept where 0.1 < occlusion < 0.7, without the track's first and last frame.
    """
    from ..metrics import amodal_ious

    keys, full, occluded, occlusion = [], [], [], []
    unions = [seen.any(axis=1) for seen in data.visible["test"]]  # once per clip, not per track
    for (i, track), prob in zip(data.tracks["test"], image_predictions):
        clip, seen, union = data.clips["test"][i], data.visible["test"][i], unions[i]
        obj = track.object_index
        frames = track.frame_index
        for j in range(1, len(frames) - 1):
            t = frames[j]
            occ = clip.occlusion[t, obj]
            if not 0.1 < occ < 0.7:
                continue
            weight = 1.0 - (union[t] & ~seen[t, obj])
            f, o = amodal_ious(prob[j], seen[t, obj], weight, clip.amodal[t, obj])
            keys.append((i, t, obj))
            full.append(f)
            occluded.append(o)
            occlusion.append(occ)
    return Scores(np.array(keys, dtype=int).reshape(-1, 3), np.array(full), np.array(occluded), np.array(occlusion))


def image_predictions(model: nn.Module, variant: Variant, data: WorldTracks, donors: list | None = None) -> list[np.ndarray]:
    """Each test track's crop predictions pasted back into the image: (N, H, W) per track.

    donors: one donor track per test track, whose frames replace the history (the history-swap probe).
    """
    out = []
    for j, (i, track) in enumerate(data.tracks["test"]):
        h, w = data.clips["test"][i].frames.shape[1:3]
        donor = None if donors is None else donors[j]
        out.append(track.paste(crop_predictions(model, variant, track, donor), h, w))
    return out


RELIANCE_PROBES = {
    "history": "each frame's history (the frames before it, in each pass) taken from a track of another clip",
    "own_history": "no history at all: each frame's temporal state computed from that frame alone (what the model's "
                   "own past is worth, where the swap measures how much a wrong past misleads it)",
    "flow": "the flow input zeroed (network input and base flow, as in the no_flow row)",
    "image": "the RGB input zeroed (as in the no_image row)",
}


@contextmanager
def switched_inputs(model: SaVosNet, **switches: bool):
    """Switch a trained SaVos network's inputs off for a test-time probe (``flow_input=False``, ``image_input=False``);
    the variant is restored on exit."""
    unknown = set(switches) - {"flow_input", "image_input"}
    if unknown:
        raise ValueError(f"switched_inputs: only flow_input and image_input can be switched at test time, got {sorted(unknown)}")
    saved = model.variant
    model.variant = replace(saved, **switches)
    try:
        yield model
    finally:
        model.variant = saved


@contextmanager
def without_past(model: SaVosNet):
    """The own-history probe: inside the block each frame's temporal state is the LSTM's state after that frame alone
    (from a zero state), so the model completes every frame without its past."""
    saved = model.no_past
    model.no_past = True
    try:
        yield model
    finally:
        model.no_past = saved


def donor_tracks(data: WorldTracks) -> list:
    """For each test track, a donor: the next test track (in order, cyclically) that comes from another clip, else
    the next other track. Raises ValueError with fewer than two test tracks."""
    tracks = data.tracks["test"]
    if len(tracks) < 2:
        raise ValueError(f"{data.world} (seed {data.seed}): the history probe needs at least 2 test tracks, got {len(tracks)}")
    donors = []
    for j, (clip, _) in enumerate(tracks):
        order = [(j + k) % len(tracks) for k in range(1, len(tracks))]
        pick = next((m for m in order if tracks[m][0] != clip), order[0])
        donors.append(tracks[pick][1])
    return donors


def reliance_probes(model: SaVosNet, data: WorldTracks) -> dict[str, float]:
    """How much a trained SaVos model uses each input: the occluded frame-level mIoU on the test tracks, intact, and
    its drop when one input is taken away at test time (no retraining; see ``RELIANCE_PROBES``).

    A model whose mIoU does not drop without an input does not use it, so ablating that input in training cannot
    show what the input is worth: these drops are the gates of the ablation claims.

    Returns:
        {"intact": mIoU, "history": drop, "own_history": drop, "flow": drop, "image": drop}; a drop is intact minus
        probed ("own_history": the gain of the model's own past over none).
    """
    if not isinstance(model, SaVosNet):
        raise ValueError(f"reliance_probes: needs a SaVos network, got {type(model).__name__}")
    variant = model.variant

    def miou(**kwargs) -> float:
        return score_tracks(data, image_predictions(model, variant, data, **kwargs)).miou("occluded")

    intact = miou()
    out = {"intact": intact, "history": intact - miou(donors=donor_tracks(data))}
    with without_past(model):
        out["own_history"] = intact - miou()
    for probe, switch in (("flow", "flow_input"), ("image", "image_input")):
        with switched_inputs(model, **{switch: False}):
            out[probe] = intact - miou()
    return out


def rule_predictions(data: WorldTracks, k: int, flow: str = "estimated") -> list[np.ndarray]:
    """Algorithm 1 (forward ∪ backward, ``k`` frames) on each test track, in image space, with the
    estimated flow the models see or the world's exact flow."""
    out = []
    for i, track in data.tracks["test"]:
        clip, seen = data.clips["test"][i], data.visible["test"][i]
        fwd, bwd = (f.astype(np.float32) for f in data.flows["test"][i]) if flow == "estimated" else (clip.flow_fwd, clip.flow_bwd)
        frames = track.frame_index
        vis = seen[frames, track.object_index]
        out.append(rule_based_completion(vis, fwd[frames], bwd[frames], k).astype(np.float32))
    return out


def chapter_setup(world: str, seed: int, params: dict) -> tuple[WorldTracks, SaVosRecipe, dict]:
    """The tracks, recipe and cache key of one world and seed from a SaVos chapter's parameters.

    Every chapter builds its rows through this function, so the same parameters give the same
    cached models in every chapter (the ablation chapter trains them, the others reuse them).

    Args:
        params: the chapter's parameters: preset, train_clips, val_clips, test_clips, crop (the
            crop height; the width is twice it), base, window, batch, steps, lr, pcnet_width, and
            optionally flow ("estimated", the default, or "truth": the world's exact flow as input), boxes
            ("track", the default: one crop scale per track, or "frame") and train_tracks ("release", the
            default: the release's training-track filter, or "all").
    """
    size = (int(params["crop"]), 2 * int(params["crop"]))
    recipe = SaVosRecipe(size=size, base=params["base"], window=params["window"], batch=params["batch"],
                         steps=params["steps"], lr=params["lr"], photometric=0.1 if world == "fishbowl" else 0.0,
                         pcnet_width=params["pcnet_width"])
    clips = {"train": params["train_clips"], "val": params["val_clips"], "test": params["test_clips"]}
    flow, boxes = params.get("flow", "estimated"), params.get("boxes", "track")
    train_tracks = params.get("train_tracks", "release")
    data = load_world_tracks(world, seed, clips, size=size, window=recipe.window, preset=params["preset"], flow=flow,
                             boxes=boxes, train_tracks=train_tracks)
    return data, recipe, dict(world=world, seed=seed, clips=clips, preset=params["preset"], flow=flow, boxes=boxes,
                              train_tracks=train_tracks)


# The rows of the supplement's ablation tables (Tables 1-3: the paper's eight), trained on both worlds by
# savos_ablations; L_C's paper form is a fishbowl-only row (the ladder's supervised rows and the matched-size PCNet-M
# are benchmarks' rows, never a chapter's)
ABLATION_WORLDS = ("fishbowl", "street")
ABLATION_ROWS = ("full", "no_consistency", "no_bidirectional", "no_temporal", "no_flow", "no_image",
                 "savos_arch_deocc_loss", "deocc_arch_deocc_loss")
EXTRA_ROWS = {"fishbowl": ("paper_consistency",), "street": ()}
# the parameters chapter_setup reads (a warm-up task names its model by them)
SETUP_PARAMS = ("preset", "train_clips", "val_clips", "test_clips", "crop", "base", "window", "batch", "steps", "lr",
                "pcnet_width")


def ablation_rows(world: str) -> list[str]:
    """The rows savos_ablations trains on ``world``."""
    return list(ABLATION_ROWS + EXTRA_ROWS[world])


def warm_tasks(chapter: str, params: dict) -> list[list[tuple[str, dict]]]:
    """The models a SaVos chapter trains, as independent tasks for the parallel warm-up (``book run --jobs N``):
    a first wave cuts each world and seed's tracks once (:func:`warm_data`), the second trains the rows
    (:func:`warm`). ``savos_ablations``: every row on both worlds, and the exact-flow rows that see the flow (a row
    that ignores it is the same model); ``savos_chewing_gum``: SaVos and PCNet-M on ``chewing_gum``. The other
    SaVos chapters load these models."""
    setup = {k: params[k] for k in SETUP_PARAMS}
    if chapter == "savos_ablations":
        rows = [(w, dict(setup), r) for w in ABLATION_WORLDS for r in ablation_rows(w)]
        rows += [(w, dict(setup, flow="truth"), r) for w in ABLATION_WORLDS for r in params["exact_flow_rows"]
                 if VARIANTS[r].flow_input]
    elif chapter == "savos_chewing_gum":
        rows = [("chewing_gum", dict(setup), r) for r in ("full", "deocc_arch_deocc_loss")]
    else:
        raise ValueError(f"warm_tasks: {chapter!r} trains no SaVos model of its own")
    seeds = range(params["seeds"])
    data = {json.dumps([w, p.get("flow"), seed]): dict(world=w, seed=seed, params=p) for w, p, _ in rows for seed in seeds}
    return [[("amodalkit.savos.experiments:warm_data", d) for d in data.values()],
            [("amodalkit.savos.experiments:warm", dict(world=w, seed=seed, params=p, row=r)) for seed in seeds
             for w, p, r in rows]]


def warm_data(world: str, seed: int, params: dict) -> None:
    """Cut (into the cache) one world and seed's tracks of :func:`warm_tasks`."""
    chapter_setup(world, seed, params)


def warm(world: str, seed: int, params: dict, row: str) -> None:
    """Train (into the model cache) one row of :func:`warm_tasks`."""
    data, recipe, key = chapter_setup(world, seed, params)
    train_variant(row, data, recipe, seed, key)


def variant_scores(name: str, data: WorldTracks, recipe: SaVosRecipe, seed: int, key: dict):
    """Train (or load) one row and score it on the test tracks: (TrainResult, Scores, image predictions)."""
    result = train_variant(name, data, recipe, seed, key)
    predictions = image_predictions(result.model, VARIANTS[name], data)
    return result, score_tracks(data, predictions), predictions


def binary_amodal(prob: np.ndarray, seen: np.ndarray, obj: int) -> np.ndarray:
    """(N, H, W) bool: a track's predictions fused with the visible masks as the metric does, for display.

    Args:
        prob: (N, H, W) probabilities of frames ``t`` of the track; seen: (N, K, H, W) the visible
            masks of those frames; obj: the object.
    """
    from ..metrics import fuse_with_visible

    weight = 1.0 - (seen.any(axis=1) & ~seen[:, obj])
    return fuse_with_visible(prob, seen[:, obj], weight)


def history_visibility(data: WorldTracks, window: int) -> dict[str, float]:
    """What the past can tell at all, from the world's exact trajectories: for every scored test object-frame (0.1 <
    occlusion < 0.7, as :func:`score_tracks`), the share of its occluded amodal pixels whose point (moving with the
    object) is visible in one of the ``window - 1`` frames before it (the forward pass's history within a training
    window), and in one of the frames within ``window - 1`` before or after it (both passes). Also how long the
    objects' occlusions last: the mean length in frames of the runs of frames with occlusion above 0.1.

    Returns:
        dict(past, past_or_future: mean shares over object-frames, occlusion_run: mean run length, object_frames).
    """
    from ..data.scene import _follow

    past, both, runs = [], [], []
    for i, track in data.tracks["test"]:
        clip, obj = data.clips["test"][i], track.object_index
        occluded_run = 0
        for t in range(clip.n_frames):
            if clip.occlusion[t, obj] > 0.1:
                occluded_run += 1
            elif occluded_run:
                runs.append(occluded_run)
                occluded_run = 0
        if occluded_run:
            runs.append(occluded_run)
        for t in track.frame_index[1:-1]:
            if not 0.1 < clip.occlusion[t, obj] < 0.7:
                continue
            rr, cc = np.nonzero(clip.amodal[t, obj] & ~clip.visible[t, obj])
            if rr.size == 0:
                continue
            rows, cols, inside = _follow(clip, obj, t, cc.astype(float), rr.astype(float))
            seen = inside & clip.visible[np.arange(clip.n_frames)[:, None], obj, rows, cols]  # (T, N)
            before = seen[max(0, t - window + 1):t].any(axis=0)
            after = seen[t + 1:t + window].any(axis=0)
            past.append(before.mean())
            both.append((before | after).mean())
    return dict(past=float(np.mean(past)) if past else 0.0, past_or_future=float(np.mean(both)) if both else 0.0,
                occlusion_run=float(np.mean(runs)) if runs else 0.0, object_frames=len(past))

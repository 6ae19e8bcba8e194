"""Metrics: the DAVIS-2017 region (J) and boundary (F) measures, computed as the official evaluation does.

* J = |S ∧ G| / |S ∨ G|, 1 when both masks are empty.
* F: boundaries are the pixels that differ from their east, south or south-east neighbour
  (:func:`boundary_map`); each boundary is dilated by a disk of radius ceil(0.008 * ||(H, W)||)
  (8 px at 480 x 854); precision = |B_S ∧ dil(B_G)| / |B_S|, recall = |B_G ∧ dil(B_S)| / |B_G|;
  no boundary on either side: P = R = 1; a ground-truth boundary but no predicted one: P = 1, R = 0;
  a predicted boundary but no ground-truth one: P = 0, R = 1; F = 2PR / (P + R), 0 when P + R = 0.
* Objects are ids 1..max of the first annotation (an id missing in between is an empty object).
  Semi-supervised: frames 1..n-2 are scored (first and last excluded); unsupervised: every frame, proposals
  matched to objects by Hungarian assignment. Per object: mean, recall = mean(x > 0.5) and decay = mean of the
  first of 4 frame bins minus mean of the last; J&F = (mean J + mean F) / 2, means over objects.
* Checked line by line against davisvideochallenge/davis2017-evaluation (davis2017/{davis,evaluation,metrics,
  utils,results}.py); its quirks are kept where they change numbers (see :func:`toolkit_statistics`,
  :class:`DavisResult`); :mod:`amodalkit.davis_toolkit` evaluates folders and writes its CSVs.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _check_pair(name: str, pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"{name}: pred and gt must be boolean (H, W) masks of one shape, got {pred.shape} and {gt.shape}")
    return pred.astype(bool), gt.astype(bool)


def davis_j(pred: np.ndarray, gt: np.ndarray) -> float:
    """Region similarity J (IoU) of boolean (H, W) masks; 1 when both are empty."""
    pred, gt = _check_pair("davis_j", pred, gt)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean (H, W) mask: those that differ from their east, south or south-east neighbour.

    The last row compares with its east neighbour only, the last column with its south neighbour
    only, and the bottom-right pixel is never a boundary, as in the official evaluation.
    """
    mask = np.asarray(mask, dtype=bool)
    east = np.zeros_like(mask)
    south = np.zeros_like(mask)
    south_east = np.zeros_like(mask)
    east[:, :-1] = mask[:, 1:]
    south[:-1, :] = mask[1:, :]
    south_east[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    boundary[-1, :] = mask[-1, :] ^ east[-1, :]
    boundary[:, -1] = mask[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (xx ** 2 + yy ** 2) <= radius ** 2


def boundary_tolerance(height: int, width: int, bound_th: float = 0.008) -> int:
    """The dilation radius in pixels: ceil(bound_th * diagonal) for bound_th < 1, else bound_th itself."""
    return int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(height, width)))


def davis_f(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Boundary measure F of boolean (H, W) masks (see the module docstring for every case)."""
    import cv2

    pred, gt = _check_pair("davis_f", pred, gt)
    radius = boundary_tolerance(*gt.shape, bound_th)
    pred_b, gt_b = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = pred_b.sum(), gt_b.sum()
    if n_pred == 0 and n_gt == 0:
        precision = recall = 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        disk = _disk(radius).astype(np.uint8)  # OpenCV's dilation equals scipy's binary one here, 200x faster
        pred_dil = cv2.dilate(pred_b.astype(np.uint8), disk).astype(bool)
        gt_dil = cv2.dilate(gt_b.astype(np.uint8), disk).astype(bool)
        precision = float((pred_b & gt_dil).sum() / n_pred)
        recall = float((gt_b & pred_dil).sum() / n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Statistics:
    """mean, recall (fraction of frames > 0.5) and decay (first quarter minus last quarter) of a measure."""

    mean: float
    recall: float
    decay: float


def toolkit_statistics(values) -> Statistics:
    """The official toolkit's statistics of the per-frame values it evaluated (all of them are used).

    The decay splits the n values into 4 bins at round(linspace(1, n, 5)) - 1 and subtracts the last bin's mean
    from the first's. The toolkit stores those bin bounds as uint8, so above 256 values they wrap: the decay is
    then what the toolkit writes (often NaN from an empty bin), not a meaningful number; kept so that our CSVs
    equal the toolkit's (:func:`amodalkit.davis_toolkit.evaluate_folder` warns when it happens).
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f"toolkit_statistics: need a 1-D array of per-frame values, got shape {values.shape}")
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64) % 256  # the toolkit's uint8
    bins = [values[ids[i]:ids[i + 1] + 1] for i in range(4)]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty bin: NaN, as the toolkit
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
        return Statistics(float(np.nanmean(values)), float(np.nanmean(values > 0.5)), decay)


def davis_statistics(values) -> Statistics:
    """Statistics of per-frame values of one object over a whole sequence: frames 1..n-2 (the first and last are
    dropped, as the semi-supervised toolkit does), then :func:`toolkit_statistics`.

    Example:
        >>> davis_statistics([0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2, 0]).recall
        0.5714285714285714
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or values.size < 3:
        raise ValueError(f"davis_statistics: need per-frame values of at least 3 frames, got shape {values.shape}")
    return toolkit_statistics(values[1:-1])


@dataclass
class DavisResult:
    """Per-object statistics, per-sequence means and the overall numbers of a DAVIS evaluation.

    objects: {(sequence, k): {"J": Statistics, "F": Statistics, "object": id, "proposal": id}} in the toolkit's
    order, k = 1, 2, ... as the toolkit labels them in its per-sequence CSV (``<sequence>_<k>``). Semi-supervised:
    k is the object id. Unsupervised: the toolkit lists the assigned (proposal, object) pairs in proposal order and
    labels the i-th pair ``i``, so k need not be the object's id; "object" and "proposal" say which they are.
    sequences: {sequence: {"J", "F", "J&F"}} (means over the sequence's objects); overall: {"J&F", "J-Mean",
    "J-Recall", "J-Decay", "F-Mean", ...} (means over all objects, as the toolkit's global CSV).
    """

    objects: dict
    sequences: dict
    overall: dict


def _objects_semi_supervised(gt_frames: np.ndarray, pred_frames: np.ndarray, n_objects: int, bound_th: float,
                             name: str) -> list[dict]:
    """Per-object J and F over the frames given ((n, H, W) ids each; the toolkit passes frames 1..T-2).

    The objects are ids 1..``n_objects`` (the maximum id of the first annotation: an id absent there in between
    is an object too, empty in the ground truth). Predicted ids above it are an error, as in the toolkit; fewer
    predicted ids are padded with empty masks (the toolkit's earlier versions pad; its current one stops).
    """
    n_pred = int(pred_frames.max(initial=0))
    if n_pred > n_objects:
        raise ValueError(f"{name}: the predictions hold object id {n_pred}, but the first annotation has "
                         f"{n_objects} object(s) (ids 1..{n_objects})")
    out = []
    for k in range(1, n_objects + 1):
        j = np.array([davis_j(p == k, g == k) for p, g in zip(pred_frames, gt_frames)])
        f = np.array([davis_f(p == k, g == k, bound_th) for p, g in zip(pred_frames, gt_frames)])
        out.append({"object": k, "proposal": k, "J": j, "F": f})
    return out


def _objects_unsupervised(gt_frames: np.ndarray, pred_frames: np.ndarray, n_objects: int, bound_th: float,
                          name: str, max_proposals: int = 20) -> list[dict]:
    """Per-object J and F of the toolkit's unsupervised task over the frames given (it passes all of them).

    Proposals are ids 1..max of the predictions (more than ``max_proposals`` is an error, as in the toolkit),
    padded with empty masks up to ``n_objects``; J and F of every (proposal, object) pair; the Hungarian
    assignment maximises the mean over frames of (J + F) / 2; the pairs are returned in proposal order.
    """
    from scipy.optimize import linear_sum_assignment

    n_prop = int(pred_frames.max(initial=0))
    if n_prop > max_proposals:
        raise ValueError(f"{name}: proposal id {n_prop} exceeds the {max_proposals} proposals the task allows")
    n_prop = max(n_prop, n_objects)
    n_frames = len(gt_frames)
    j = np.zeros((n_prop, n_objects, n_frames))
    f = np.zeros_like(j)
    for o in range(n_objects):
        gt_masks = gt_frames == o + 1
        for p in range(n_prop):
            pred_masks = pred_frames == p + 1
            for t in range(n_frames):
                j[p, o, t] = davis_j(pred_masks[t], gt_masks[t])
                f[p, o, t] = davis_f(pred_masks[t], gt_masks[t], bound_th)
    rows, cols = linear_sum_assignment(-(j.mean(2) + f.mean(2)) / 2)
    return [{"object": int(o) + 1, "proposal": int(p) + 1, "J": j[p, o], "F": f[p, o]} for p, o in zip(rows, cols)]


def evaluate_sequences(sequences, task: str = "semi-supervised", bound_th: float = 0.008,
                       max_proposals: int = 20) -> DavisResult:
    """The toolkit's evaluation of whole sequences (the folder reader streams them through this, one at a time).

    Args:
        sequences: an iterable of (name, gt_ids, pred_ids) with (T, H, W) int ids of every frame of the sequence
            (void 255 already set to 0 in gt); a generator keeps one sequence in memory at a time.
        task: "semi-supervised" (frames 1..T-2 are read; objects from frame 0) or "unsupervised" (every frame;
            objects from frame 0; proposals matched by Hungarian assignment).
    """
    if task not in ("semi-supervised", "unsupervised"):
        raise ValueError(f"evaluate: task must be 'semi-supervised' or 'unsupervised', got {task!r}")
    objects, means = {}, {}
    for name, gt_ids, pred_ids in sequences:
        gt_ids, pred_ids = np.asarray(gt_ids), np.asarray(pred_ids)
        if pred_ids.shape != gt_ids.shape or gt_ids.ndim != 3:
            raise ValueError(f"evaluate ({task}): {name}: predictions {pred_ids.shape} and ground truth {gt_ids.shape} "
                             f"must be one (T, H, W) shape")
        n_objects = int(gt_ids[0].max())
        if task == "semi-supervised":
            if len(gt_ids) < 3:
                raise ValueError(f"evaluate ({task}): {name}: needs at least 3 frames (the first and last are not "
                                 f"evaluated), got {len(gt_ids)}")
            scored = _objects_semi_supervised(gt_ids[1:-1], pred_ids[1:-1], n_objects, bound_th, name)
        else:
            scored = _objects_unsupervised(gt_ids, pred_ids, n_objects, bound_th, name, max_proposals)
        for k, entry in enumerate(scored, start=1):
            objects[name, k] = {"J": toolkit_statistics(entry["J"]), "F": toolkit_statistics(entry["F"]),
                                "object": entry["object"], "proposal": entry["proposal"]}
        if scored:
            means[name] = _sequence_means([objects[name, k] for k in range(1, len(scored) + 1)])
    if not objects:
        raise ValueError(f"evaluate ({task}): no sequence has an object in its first annotation")
    return _davis_result(objects, means)


def _triples(gt: dict, pred: dict, task: str):
    missing = sorted(set(gt) - set(pred))
    if missing:
        raise ValueError(f"evaluate ({task}): no predictions for sequences {missing}")
    return ((name, gt_ids, pred[name]) for name, gt_ids in gt.items())


def evaluate_davis(predictions, ground_truth, bound_th: float = 0.008) -> DavisResult:
    """DAVIS J, F and J&F for a set of sequences, as the official toolkit's semi-supervised task.

    Args:
        predictions, ground_truth: either dicts {sequence: (T, H, W) int object-id arrays}, or
            DAVIS-layout folders (see :mod:`amodalkit.data.davis`; the ground truth's ImageSets lists
            the sequences, the predictions folder holds ``<sequence>/<frame>.png`` id maps or a
            DAVIS layout of its own). The objects are ids 1..max of the ground truth's first frame;
            frames 1..T-2 are scored.

    Returns:
        :class:`DavisResult`.
    """
    gt, pred = _paired_id_arrays(predictions, ground_truth, "evaluate_davis", "predictions")
    return evaluate_sequences(_triples(gt, pred, "semi-supervised"), "semi-supervised", bound_th)


def _paired_id_arrays(predictions, ground_truth, caller: str, what: str) -> tuple[dict, dict]:
    """Ground truth and predictions as id arrays, every ground-truth sequence predicted."""
    gt = _as_id_arrays(ground_truth, "ground_truth")
    pred = _as_id_arrays(predictions, what, like=gt)
    missing = sorted(set(gt) - set(pred))
    if missing:
        raise ValueError(f"{caller}: no {what} for sequences {missing}")
    return gt, pred


def _sequence_means(objects: list[dict]) -> dict[str, float]:
    """A sequence's J, F and J&F: means over its objects' statistics."""
    j_mean = float(np.mean([o["J"].mean for o in objects]))
    f_mean = float(np.mean([o["F"].mean for o in objects]))
    return {"J": j_mean, "F": f_mean, "J&F": (j_mean + f_mean) / 2}


def _davis_result(objects: dict, sequences: dict) -> DavisResult:
    """The overall numbers (means over all objects) beside the per-object and per-sequence ones."""
    overall = {}
    for measure in ("J", "F"):
        for stat in ("mean", "recall", "decay"):
            overall[f"{measure}-{stat.capitalize()}"] = float(np.mean([getattr(o[measure], stat) for o in objects.values()]))
    overall["J&F"] = (overall["J-Mean"] + overall["F-Mean"]) / 2
    return DavisResult(objects, sequences, overall)


def _as_id_arrays(source, what: str, like: dict | None = None) -> dict[str, np.ndarray]:
    if isinstance(source, dict):
        return {k: np.asarray(v) for k, v in source.items()}
    root = Path(source)
    if (root / "ImageSets").is_dir():
        from .data.davis import read_davis

        return {s.name: s.masks for s in read_davis(root)}
    if like is None:
        raise ValueError(f"evaluate_davis: {what} must be a dict of arrays or a DAVIS folder, got {root}")
    from PIL import Image

    out = {}
    for name in like:  # a results folder: <root>/<sequence>/<frame>.png
        pngs = sorted((root / name).glob("*.png"))
        if not pngs:
            raise FileNotFoundError(f"evaluate_davis: no predicted masks for sequence {name!r} in {root / name}")
        out[name] = np.stack([np.asarray(Image.open(p)) for p in pngs])
    return out


# ================================================================ amodal masks (SaVos's metrics)


def fuse_with_visible(prob: np.ndarray, visible: np.ndarray, weight: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """SaVos's binary amodal mask: ``prob * (1 - W) + visible * W >= threshold`` (shapes (..., H, W)).

    Where W is 1 (the background and the object's own visible pixels) the visible mask decides;
    elsewhere (pixels another object covers) the prediction does.
    """
    weight = np.asarray(weight, dtype=np.float64)
    return (np.asarray(prob) * (1 - weight) + np.asarray(visible, dtype=np.float64) * weight) >= threshold


def amodal_ious(prob: np.ndarray, visible: np.ndarray, weight: np.ndarray, amodal: np.ndarray,
                threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Full and occluded IoU of amodal predictions, as SaVos's evaluation computes them.

    The prediction is first fused with the visible mask where the visible masks already answer:
    ``prob * (1 - W) + visible * W`` (W = background plus the object's own visible pixels), then
    thresholded. IoU = (I + 1e-6) / (U + 1e-6). The occluded IoU is the IoU after multiplying the
    prediction and the ground truth by (1 - W): only the pixels other objects cover count.

    Args:
        prob: (..., H, W) predicted amodal probabilities; visible: (..., H, W) the object's visible
            mask; weight: (..., H, W) W in [0, 1]; amodal: (..., H, W) ground-truth amodal mask.

    Returns:
        full, occluded: (...) arrays.

    Example:
        >>> w = np.array([[1.0, 0.0]]); v = np.array([[1.0, 0.0]])
        >>> [float(x) for x in amodal_ious(np.array([[0.0, 1.0]]), v, w, np.array([[True, True]]))]
        [1.0, 1.0]
    """
    shapes = {np.shape(prob), np.shape(visible), np.shape(weight), np.shape(amodal)}
    if len(shapes) != 1:
        raise ValueError(f"amodal_ious: prob, visible, weight and amodal must share one shape, got {sorted(shapes)}")
    weight = np.asarray(weight, dtype=np.float64)
    pred = fuse_with_visible(prob, visible, weight, threshold)
    truth = np.asarray(amodal, dtype=bool)

    def iou(a, b):
        inter = (a & b).sum(axis=(-2, -1))
        union = (a | b).sum(axis=(-2, -1))
        return (inter + 1e-6) / (union + 1e-6)

    hidden = weight < 0.5
    return iou(pred, truth), iou(pred & hidden, truth & hidden)


def frame_level_miou(values: np.ndarray, frames) -> float:
    """SaVos's mIoU: the mean IoU of the objects of each frame, then the mean over frames.

    Args:
        values: (M,) one IoU per object-frame; frames: (M,) hashable frame keys (e.g. (clip, t)).
    """
    values = np.asarray(values, dtype=np.float64)
    keys = [tuple(np.atleast_1d(k).tolist()) for k in frames]
    if len(keys) != len(values):
        raise ValueError(f"frame_level_miou: {len(values)} values but {len(keys)} frame keys")
    if len(values) == 0:
        return float("nan")
    groups: dict = {}
    for k, v in zip(keys, values):
        groups.setdefault(k, []).append(v)
    return float(np.mean([np.mean(g) for g in groups.values()]))


def object_level_miou(values: np.ndarray) -> float:
    """The mean IoU over all object-frames, whatever their frame (Table 8 of SaVos)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()) if len(values) else float("nan")


# ================================================================ instance tracks (STEm-Seg's metrics)


def evaluate_davis_unsupervised(proposals, ground_truth, bound_th: float = 0.008, max_proposals: int = 20) -> DavisResult:
    """DAVIS J, F and J&F for the unsupervised task, as the official DAVIS-2017 toolkit computes it.

    Per sequence, over *every* frame (the unsupervised toolkit does not drop the first and last): the objects are
    ids 1..max of the ground truth's first frame; the proposals are ids 1..max of the predictions (more than
    ``max_proposals`` is an error, as in the toolkit); with fewer proposals than objects, empty masks pad. J and F
    of every (proposal, object) pair; the Hungarian assignment maximises the mean over frames of (J + F) / 2; each
    object is scored with its assigned proposal (see :class:`DavisResult` for the toolkit's labels).

    Args:
        proposals, ground_truth: dicts {sequence: (T, H, W) int id arrays}, or folders as for :func:`evaluate_davis`.
    """
    gt, pred = _paired_id_arrays(proposals, ground_truth, "evaluate_davis_unsupervised", "proposals")
    return evaluate_sequences(_triples(gt, pred, "unsupervised"), "unsupervised", bound_th, max_proposals)


def mots_metrics(tracks, ground_truth, iou_threshold: float = 0.5) -> dict[str, float]:
    """MOTS measures (Voigtlaender et al. 2019) over a set of sequences.

    Per frame a predicted mask matches a ground-truth mask when their IoU exceeds 0.5 (unique, as masks
    do not overlap); TP = matches, soft TP = sum of their IoUs, FP = unmatched predictions, FN = unmatched
    ground truth; an ID switch is a ground-truth object whose matched track differs from the track it was
    last matched to. Counts are summed over all sequences:

        sMOTSA = (soft TP - FP - IDS) / |M|,  MOTSA = (TP - FP - IDS) / |M|,  MOTSP = soft TP / TP,

    |M| the number of ground-truth masks (object-frames).

    Args:
        tracks, ground_truth: {sequence: (T, H, W) int id arrays} (0 background); or a single pair of arrays.

    Returns:
        dict: sMOTSA, MOTSA, MOTSP, TP, FP, FN, IDS, n_gt.
    """
    if not isinstance(tracks, dict):
        tracks, ground_truth = {"sequence": tracks}, {"sequence": ground_truth}
    if set(tracks) != set(ground_truth):
        raise ValueError(f"mots_metrics: sequences differ: {sorted(set(tracks) ^ set(ground_truth))}")
    tp = fp = fn = ids = 0
    soft = 0.0
    for name in ground_truth:
        pred_ids, gt_ids = np.asarray(tracks[name]), np.asarray(ground_truth[name])
        if pred_ids.shape != gt_ids.shape or gt_ids.ndim != 3:
            raise ValueError(f"mots_metrics: {name}: tracks {pred_ids.shape} and ground truth {gt_ids.shape} must be "
                             f"one (T, H, W) shape")
        last_match: dict[int, int] = {}
        for pred_frame, gt_frame in zip(pred_ids, gt_ids):
            gts = [g for g in np.unique(gt_frame) if g != 0]
            preds = [p for p in np.unique(pred_frame) if p != 0]
            matched_preds = set()
            for g in gts:
                g_mask = gt_frame == g
                best = None
                for p in preds:
                    p_mask = pred_frame == p
                    inter = np.logical_and(g_mask, p_mask).sum()
                    iou = inter / np.logical_or(g_mask, p_mask).sum()
                    if iou > iou_threshold:
                        best = (p, float(iou))
                        break  # disjoint masks: at most one prediction has IoU > 0.5
                if best is None:
                    fn += 1
                    continue
                p, iou = best
                tp += 1
                soft += iou
                matched_preds.add(p)
                if g in last_match and last_match[g] != p:
                    ids += 1
                last_match[g] = p
            fp += len(preds) - len(matched_preds)
    n_gt = tp + fn
    if n_gt == 0:
        raise ValueError("mots_metrics: the ground truth has no object mask")
    return dict(sMOTSA=(soft - fp - ids) / n_gt, MOTSA=(tp - fp - ids) / n_gt, MOTSP=soft / tp if tp else float("nan"),
                TP=tp, FP=fp, FN=fn, IDS=ids, n_gt=n_gt)

"""The proposal-based baselines of STEm-Seg's supplement III, over the same per-frame proposals.

Both link per-frame instance proposals (here: STEm-Seg's own model clustered frame by frame,
:func:`~amodalkit.stemseg.inference.frame_proposals`, so the comparison is about linking, not proposals):

* OF-Tracker: the proposals of frame t+1 are warped onto frame t with optical flow (OpenCV DIS; the paper:
  PWC-Net) and associated with frame t's tracks by linear assignment on overlap (IoU); a proposal with no
  overlapping partner starts a new track.
* RI-Tracker: a small re-identification network (masked crop -> unit vector) trained with the batch-hard
  triplet loss (Hermans et al. 2017) on the training videos' instances; proposals of frame t+1 are
  associated with the live tracks (their last embedding) by linear assignment on Euclidean distance; pairs
  farther than a threshold (the midpoint of the mean same-instance and different-instance distances on
  validation instances) start new tracks.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..data.flow import estimate_flow
from ..ops import warp
from ..train import TrainResult, train_cached
from .data import StemData, to_tensor
from .inference import _ious, _renumber


def _link(frames_labels: np.ndarray, cost_fn) -> np.ndarray:
    """Generic frame-to-frame linking. ``cost_fn(t, tracks_t, labels_next)`` returns (track ids, proposal ids,
    cost matrix, allowed matrix); allowed pairs chosen by the Hungarian algorithm continue the track."""
    tracks = np.zeros_like(frames_labels)
    first = frames_labels[0]
    next_id = 1
    for p in np.unique(first[first > 0]):
        tracks[0][first == p] = next_id
        next_id += 1
    for t in range(len(frames_labels) - 1):
        nxt = frames_labels[t + 1]
        props = [int(p) for p in np.unique(nxt[nxt > 0])]
        mapping = {}
        if props:
            track_ids, cost, allowed = cost_fn(t, tracks[t], props)
            if len(track_ids):
                rows, cols = linear_sum_assignment(cost)
                for r, c in zip(rows, cols):
                    if allowed[r, c]:
                        mapping[props[c]] = track_ids[r]
        for p in props:
            if p not in mapping:
                mapping[p] = next_id
                next_id += 1
            tracks[t + 1][nxt == p] = mapping[p]
    return tracks


def of_tracker(frames: np.ndarray, proposals: np.ndarray, max_tracks: int = 20) -> np.ndarray:
    """Link per-frame ``proposals`` ((T, H, W) ids per frame) of ``frames`` ((T, H, W, 3) uint8) with optical flow.

    Returns (T, H, W) track ids (the ``max_tracks`` largest kept)."""
    forward, _ = estimate_flow(frames)

    def cost(t, tracks_t, props):
        nxt = proposals[t + 1]
        masks = torch.stack([torch.from_numpy(nxt == p).float() for p in props])[:, None]
        # sample frame t+1 at p + flow_t(p): the proposals of t+1 seen from frame t
        flow = -torch.from_numpy(forward[t])[None].expand(len(props), -1, -1, -1)
        warped = (warp(masks, flow)[:, 0] > 0.5).numpy()
        track_ids = [int(i) for i in np.unique(tracks_t[tracks_t > 0])]
        warped_ids = np.zeros(nxt.shape, dtype=np.int64)
        for j in range(len(props)):  # overlapping warps: the later one wins (rare; masks are disjoint before warping)
            warped_ids[warped[j]] = j + 1
        dense = np.zeros_like(tracks_t)
        for i, tid in enumerate(track_ids):
            dense[tracks_t == tid] = i + 1
        iou = _ious(dense, warped_ids, len(track_ids), len(props))
        return track_ids, -iou, iou > 0

    return _renumber(_link(proposals, cost), keep=max_tracks)


# ------------------------------------------------------------------------------------------- RI-Tracker


class ReIdNet(nn.Module):
    """Masked crop (B, 4, 32, 32): RGB times mask and the mask -> (B, dim) unit vectors."""

    def __init__(self, width: int = 16, dim: int = 32):
        super().__init__()
        layers, cin = [], 4
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cin, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.body(x).mean((2, 3))), dim=1)


def masked_crop(frame: torch.Tensor, mask: torch.Tensor, size: int = 32) -> torch.Tensor:
    """(3, H, W) frame in [0, 1] and (H, W) bool mask -> (4, size, size): the mask's bounding box (10% margin)
    of frame x mask and mask, resized."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    my, mx = max(1, (y1 - y0) // 10), max(1, (x1 - x0) // 10)
    y0, y1 = max(0, y0 - my), min(mask.shape[0], y1 + my)
    x0, x1 = max(0, x0 - mx), min(mask.shape[1], x1 + mx)
    m = mask[y0:y1, x0:x1].float()[None]
    crop = torch.cat([frame[:, y0:y1, x0:x1] * m, m])
    return F.interpolate(crop[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Hermans et al.'s batch-hard triplet loss: for every anchor the farthest positive and the nearest negative,
    mean of relu(d_pos - d_neg + margin). embeddings (B, D), labels (B,)."""
    distance = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    hardest_positive = (distance * same).max(dim=1).values
    hardest_negative = torch.where(same, torch.full_like(distance, float("inf")), distance).min(dim=1).values
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def _instance_pool(frames_list, masks_list, min_pixels: int = 6):
    """(video, instance, frame) triples whose mask has at least ``min_pixels`` pixels."""
    pool = []
    for v, masks in enumerate(masks_list):
        for k in range(masks.shape[0]):
            frames_ok = [t for t in range(masks.shape[1]) if masks[k, t].sum() >= min_pixels]
            if len(frames_ok) >= 2:
                pool.append((v, k, frames_ok))
    return pool


def _triplet_batch(frames_list, masks_list, pool, generator: torch.Generator, identities: int, per_identity: int):
    picks = torch.randperm(len(pool), generator=generator)[:identities].tolist()
    crops, labels = [], []
    for label, index in enumerate(picks):
        v, k, frames_ok = pool[index]
        for j in torch.randint(len(frames_ok), (per_identity,), generator=generator).tolist():
            t = frames_ok[j]
            crops.append(masked_crop(to_tensor(frames_list[v][t:t + 1])[0], torch.from_numpy(masks_list[v][k, t])))
            labels.append(label)
    return torch.stack(crops), torch.tensor(labels)


def train_reid(data: StemData, seed: int, steps: int = 150, lr: float = 1e-3, identities: int = 8,
               per_identity: int = 4) -> tuple[TrainResult, float]:
    """Train the re-identification network on the training videos' instances; returns it and the linking
    threshold (midpoint of the mean same- and different-instance distances on the validation videos)."""
    pool = _instance_pool(data.train_frames, data.train_masks)
    val_pool = _instance_pool(data.val_frames, data.val_masks)
    if len(pool) < 2 or len(val_pool) < 2:
        raise ValueError("train_reid: need at least two instances visible in two frames in the training and the "
                         "validation videos")

    def make_model():
        torch.manual_seed(seed)
        return ReIdNet()

    def loss_fn(model, step, generator):
        x, y = _triplet_batch(data.train_frames, data.train_masks, pool, generator, identities, per_identity)
        return batch_hard_triplet_loss(model(x), y)

    val_batch = _triplet_batch(data.val_frames, data.val_masks, val_pool, torch.Generator().manual_seed(seed + 1),
                               len(val_pool), per_identity)

    def validate(model):
        return float(batch_hard_triplet_loss(model(val_batch[0]), val_batch[1]))

    config = dict(method="stemseg-reid", data=data.key, seed=seed, steps=steps, lr=lr, identities=identities,
                  per_identity=per_identity)
    result = train_cached("stemseg-reid", config, make_model, loss_fn, code=("stemseg/trackers.py", "stemseg/data.py"),
                          steps=steps, lr=lr, seed=seed, validate=validate, validate_every=max(steps // 6, 1),
                          desc=f"RI-Tracker re-id (seed {seed})")
    result.model.eval()
    with torch.no_grad():
        e = result.model(val_batch[0])
    d = torch.cdist(e, e)
    same = val_batch[1][:, None] == val_batch[1][None, :]
    off_diagonal = ~torch.eye(len(e), dtype=torch.bool)
    threshold = 0.5 * (float(d[same & off_diagonal].mean()) + float(d[~same].mean()))
    return result, threshold


@torch.no_grad()
def ri_tracker(frames: np.ndarray, proposals: np.ndarray, reid: ReIdNet, threshold: float, max_tracks: int = 20) -> np.ndarray:
    """Link per-frame ``proposals`` with re-identification embeddings (Euclidean distance, linear assignment)."""
    reid.eval()
    video = to_tensor(frames)
    last: dict[int, torch.Tensor] = {}  # track id -> its latest embedding

    def embed(t, ids_map, ids):
        crops = torch.stack([masked_crop(video[t], torch.from_numpy(ids_map == i)) for i in ids])
        return reid(crops)

    def cost(t, tracks_t, props):
        for tid in np.unique(tracks_t[tracks_t > 0]):  # refresh the embeddings of the tracks seen at t
            last[int(tid)] = embed(t, tracks_t, [int(tid)])[0]
        track_ids = sorted(last)
        if not track_ids:
            return [], np.zeros((0, len(props))), np.zeros((0, len(props)), bool)
        e_next = embed(t + 1, proposals[t + 1], props)
        distance = torch.cdist(torch.stack([last[i] for i in track_ids]), e_next).numpy()
        return track_ids, distance, distance < threshold

    return _renumber(_link(proposals, cost), keep=max_tracks)

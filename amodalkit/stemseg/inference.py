"""STEm-Seg inference: seediness-ordered clustering of a clip's embeddings, clips chained over a video.

Clustering (the release's SequentialClustering): among the unassigned foreground pixels take the one with
the highest seediness; stop when it is below ``min_seediness`` (0.8; the release's KITTI configs use
0.95) or after ``max_instances`` (20) clusters; its embedding and precision are the centre; every
unassigned foreground pixel with probability > 0.5 joins the cluster. Foreground pixels left over join
the cluster with the highest probability when it exceeds 0.3 (the paper's "nearest"; the release's code
takes the farthest, a bug we do not copy). Probabilities use the paper's Eq. 2; the release's inference
code uses exp(-1/2 sqrt(D)) (``sqrt_distance=True``). Foreground: seediness > ``foreground_threshold``
(0.25, the release's DAVIS rule; it has a semantic head for the other sets, which our model has not).

Chaining (the release's online chainer): clips start every ``clip_len - overlap`` frames (the last one
aligned to the video's end); a clip's clusters are matched to the tracks of the previous clip by the
Hungarian algorithm on 1 - IoU over the overlapping frames, among the clusters present in those frames; matched
clusters continue the track (the release merges every Hungarian pair, even at IoU 0: ``min_iou=None``), the others
start new tracks;
overlapping frames keep the earlier clip's labels.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .model import instance_probability


def cluster_clip(embedding: torch.Tensor, precision: torch.Tensor, seediness: torch.Tensor, *,
                 min_seediness: float = 0.8, primary: float = 0.5, secondary: float = 0.3,
                 foreground_threshold: float = 0.25, max_instances: int = 20, sqrt_distance: bool = False) -> torch.Tensor:
    """Cluster one clip's pixels into instances.

    Args:
        embedding, precision: (E, T, H, W); seediness: (T, H, W) in [0, 1].

    Returns:
        (T, H, W) int64 labels: 0 background, 1..n clusters in the order they were found.

    Example:
        >>> e = torch.zeros(2, 1, 1, 4); e[0, 0, 0, 2:] = 5.0
        >>> cluster_clip(e, torch.ones(2, 1, 1, 4), torch.full((1, 1, 4), 0.9)).flatten().tolist()
        [1, 1, 2, 2]
    """
    if embedding.dim() != 4 or precision.shape != embedding.shape or seediness.shape != embedding.shape[1:]:
        raise ValueError(f"cluster_clip: expected embedding and precision (E, T, H, W) and seediness (T, H, W), got "
                         f"{tuple(embedding.shape)}, {tuple(precision.shape)}, {tuple(seediness.shape)}")
    emb, prec = embedding.flatten(1).T, precision.flatten(1).T  # (N, E)
    seed = seediness.flatten()
    foreground = seed > foreground_threshold
    labels = torch.zeros_like(seed, dtype=torch.long)
    centres = []
    while len(centres) < max_instances:
        available = foreground & (labels == 0)
        if not available.any():
            break
        index = int(torch.where(available, seed, seed.new_tensor(-1.0)).argmax())
        if seed[index] < min_seediness:
            break
        centre = (emb[index], prec[index])
        members = available & (instance_probability(emb, *centre, sqrt_distance=sqrt_distance) > primary)
        members[index] = True  # p = 1 at the seed itself; kept explicit against rounding
        centres.append(centre)
        labels[members] = len(centres)
    leftover = foreground & (labels == 0)
    if centres and leftover.any():
        probs = torch.stack([instance_probability(emb[leftover], c, b, sqrt_distance=sqrt_distance) for c, b in centres])
        best, which = probs.max(dim=0)
        assigned = torch.where(best > secondary, which + 1, torch.zeros_like(which))
        labels[leftover] = assigned
    return labels.reshape(seediness.shape)


def clip_windows(n_frames: int, clip_len: int, overlap: int) -> list[int]:
    """Start frames of the clips that cover a video: every ``clip_len - overlap`` frames, the last one aligned to
    the end (one clip of the whole video when it is not longer than ``clip_len``).

    Example:
        >>> clip_windows(16, 8, 4)
        [0, 4, 8]
    """
    if clip_len < 1 or not 0 <= overlap < clip_len:
        raise ValueError(f"clip_windows: need clip_len >= 1 and 0 <= overlap < clip_len, got {clip_len}, {overlap}")
    if n_frames <= clip_len:
        return [0]
    starts = list(range(0, n_frames - clip_len + 1, clip_len - overlap))
    if starts[-1] + clip_len < n_frames:
        starts.append(n_frames - clip_len)
    return starts


def _ious(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> np.ndarray:
    """IoU of every label 1..na of ``a`` with every label 1..nb of ``b`` (same-shape int arrays)."""
    a, b = a.ravel(), b.ravel()
    joint = np.bincount(a * (nb + 1) + b, minlength=(na + 1) * (nb + 1)).reshape(na + 1, nb + 1)
    inter = joint[1:, 1:]
    area_a, area_b = joint[1:].sum(1), joint[:, 1:].sum(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def chain_clips(clip_labels: list[np.ndarray], starts: list[int], n_frames: int, min_iou: float | None = None) -> np.ndarray:
    """Chain per-clip cluster labels into video tracks.

    Args:
        clip_labels: per clip a (L_c, H, W) int label map (0 background); starts: the clip's first frame.
        min_iou: None merges every Hungarian pair (the release); a number merges only pairs with IoU >= it.

    Returns:
        (n_frames, H, W) int64 track ids (0 background, 1.. in order of appearance).
    """
    if len(clip_labels) != len(starts) or not clip_labels:
        raise ValueError(f"chain_clips: need one start per clip, got {len(clip_labels)} clips and {len(starts)} starts")
    height, width = clip_labels[0].shape[1:]
    video = np.zeros((n_frames, height, width), dtype=np.int64)
    covered_until, next_track = 0, 1
    for labels, start in zip(clip_labels, starts):
        labels = np.asarray(labels, dtype=np.int64)
        n = int(labels.max(initial=0))
        mapping = np.zeros(n + 1, dtype=np.int64)
        overlap = max(0, min(covered_until, start + len(labels)) - start)
        if overlap and n:
            previous = video[start:start + overlap]
            tracks = np.unique(previous[previous > 0])
            if len(tracks):
                dense = np.searchsorted(tracks, previous) + 1
                dense[previous == 0] = 0
                iou = _ious(labels[:overlap], dense, n, len(tracks))
                # only clusters seen in the overlap frames take part (as the release's chainer): a newcomer that
                # appears after the overlap must not inherit a track at IoU 0
                present = np.unique(labels[:overlap][labels[:overlap] > 0]) - 1
                rows, cols = linear_sum_assignment(1.0 - iou[present])
                for r, c in zip(present[rows], cols):
                    if min_iou is None or iou[r, c] >= min_iou:
                        mapping[r + 1] = tracks[c]
        for cluster in range(1, n + 1):
            if mapping[cluster] == 0 and (labels == cluster).any():
                mapping[cluster] = next_track
                next_track += 1
        fresh = labels[overlap:]
        video[start + overlap:start + len(labels)] = mapping[fresh]
        covered_until = max(covered_until, start + len(labels))
    return _renumber(video)


def _renumber(video: np.ndarray, keep: int | None = None) -> np.ndarray:
    """Relabel tracks 1.. in order of first appearance; with ``keep``, only the ``keep`` largest (others -> 0)."""
    ids, first = np.unique(video, return_index=True)
    order = [i for _, i in sorted(zip(first, ids)) if i != 0]
    if keep is not None and len(order) > keep:
        sizes = {i: int((video == i).sum()) for i in order}
        kept = set(sorted(order, key=lambda i: -sizes[i])[:keep])
        order = [i for i in order if i in kept]
    table = np.zeros(int(video.max(initial=0)) + 1, dtype=np.int64)
    table[order] = np.arange(1, len(order) + 1)
    return table[video]


@torch.no_grad()
def clip_outputs(model, frames: np.ndarray, clip_len: int, overlap: int):
    """Run ``model`` over the clips covering a video; yields (start, embedding, precision, seediness) per clip, the
    outputs resized bilinearly to the frames' size: (E, L, H, W), (E, L, H, W), (L, H, W)."""
    model.eval()
    device = next(model.parameters()).device
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255).to(device)
    n_frames, _, height, width = video.shape
    for start in clip_windows(n_frames, clip_len, overlap):
        out = model(video[start:start + clip_len][None])
        size = (height, width)
        emb = F.interpolate(out["embedding"][0], size=size, mode="bilinear", align_corners=False)
        prec = F.interpolate(out["precision"][0], size=size, mode="bilinear", align_corners=False)
        seed = F.interpolate(out["seediness"], size=size, mode="bilinear", align_corners=False)[0]
        yield start, emb, prec, seed


def segment_video(model, frames: np.ndarray, *, clip_len: int = 8, overlap: int = 4, max_tracks: int = 20,
                  min_iou: float | None = None, **cluster_kwargs) -> np.ndarray:
    """Instance tracks of a whole video with a trained :class:`~amodalkit.stemseg.model.STEmSeg`.

    Args:
        frames: (T, H, W, 3) uint8 (H, W multiples of the model's stride). The outputs are resized bilinearly to
            (H, W) before clustering.
        max_tracks: the largest tracks kept (the DAVIS unsupervised task allows 20 proposals).

    Returns:
        (T, H, W) int64 track ids.
    """
    starts, clip_labels = [], []
    for start, emb, prec, seed in clip_outputs(model, frames, clip_len, overlap):
        starts.append(start)
        clip_labels.append(cluster_clip(emb, prec, seed, **cluster_kwargs).cpu().numpy())
    return _renumber(chain_clips(clip_labels, starts, len(frames), min_iou=min_iou), keep=max_tracks)


def frame_proposals(model, frames: np.ndarray, *, clip_len: int = 8, overlap: int = 4, **cluster_kwargs) -> np.ndarray:
    """Per-frame instance proposals from the same model: each frame's pixels clustered on their own (the first clip
    that covers a frame is used). Ids are per frame (1..n_t), not linked over time.

    Returns:
        (T, H, W) int64.
    """
    out = np.zeros(frames.shape[:3], dtype=np.int64)
    done = np.zeros(len(frames), dtype=bool)
    for start, emb, prec, seed in clip_outputs(model, frames, clip_len, overlap):
        for offset in range(emb.shape[1]):
            t = start + offset
            if not done[t]:
                out[t] = cluster_clip(emb[:, offset:offset + 1], prec[:, offset:offset + 1], seed[offset:offset + 1],
                                      **cluster_kwargs)[0].cpu().numpy()
                done[t] = True
    return out

"""Label propagation by k nearest neighbours in feature space, with the CRW release's semantics.

For each query frame t (1..T-1) the sources are frame 0 (always, with its given labels) and the
``context`` preceding frames, the clip being front-padded with copies of frame 0 (so early frames
see frame 0 several times). Affinities are dot products / temperature; a source node of any
context frame but that first frame 0 counts only within Euclidean distance < ``radius`` of the
query on the feature grid; the top ``topk`` affinities are taken jointly over all source nodes of
all context frames (or per frame, for the ablation), weighted by a softmax over the kept values,
and the label of the query is the weighted sum of the sources' soft labels. Predictions are
written back and used as context as they are (no hardening).

The release builds the whole (nodes x context nodes) affinity and masks it; this module never
does: queries are processed in small spatial blocks, each against frame 0 (dense, as it is
unrestricted) and against the window of context nodes its radius can reach. Work and working
memory per query frame are bounded by the radius window and do not grow with the clip length.
``benchmarks/propagation.py`` holds the plain dense version and checks both agree.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def context_frames(t: int, context: int) -> list[int]:
    """Source frames of query frame ``t``: frame 0, then the ``context`` preceding frames front-padded with 0.

    Example:
        >>> context_frames(2, 4)
        [0, 0, 0, 0, 1]
    """
    return [0] + [max(s, 0) for s in range(t - context, t)]


def _check(feats: torch.Tensor, first_labels: torch.Tensor, context: int, topk: int, radius: float, temperature: float):
    if feats.dim() != 4:
        raise ValueError(f"propagate: feats must be (T, C, h, w), got {tuple(feats.shape)}")
    if first_labels.dim() != 3 or first_labels.shape[1:] != feats.shape[2:]:
        raise ValueError(f"propagate: first_labels must be (L, h, w) = (L, {feats.shape[2]}, {feats.shape[3]}), "
                         f"got {tuple(first_labels.shape)}")
    for name, value, low in (("context", context, 1), ("topk", topk, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"propagate: {name} must be an integer >= {low}, got {value!r}")
    if radius <= 0 or temperature <= 0:
        raise ValueError(f"propagate: radius and temperature must be > 0, got {radius}, {temperature}")
    if topk > feats.shape[2] * feats.shape[3]:
        raise ValueError(f"propagate: topk = {topk} exceeds the {feats.shape[2] * feats.shape[3]} nodes of frame 0")


@torch.no_grad()
def propagate(feats: torch.Tensor, first_labels: torch.Tensor, *, context: int = 20, topk: int = 10,
              radius: float = 12, temperature: float = 0.05, per_frame_topk: bool = False,
              block: int = 12, update=None) -> torch.Tensor:
    """Propagate soft labels from frame 0 through a clip (see the module docstring).

    Args:
        feats: (T, C, h, w) features, L2-normalised over C.
        first_labels: (L, h, w) soft one-hot labels of frame 0 at feature resolution.
        temperature: 0.05 as the release's documented evaluation command (its argument default is 0.07).
        per_frame_topk: take the top k of each context frame, then the softmax over all kept
            (the ablation of the supplement's F); the default is top k jointly over all sources.
        block: side of the query blocks (an implementation detail: any value gives the same result).
        update: ``update(t, readout) -> (L, h, w)``: what frame t stores for the later frames, given its read-out
            (the weighted sum of the sources' entries); None stores the read-out itself (label propagation).
            Mask-VOS reads out values and masks with the same weights and stores what its decoder makes of them.

    Returns:
        (T, L, h, w) soft labels (what each frame stored); frame 0 is ``first_labels``.
        :func:`propagate_stream` gives the same frames one by one in memory that does not grow with T.
    """
    _check(feats, first_labels, context, topk, radius, temperature)
    labels = torch.empty(len(feats), *first_labels.shape, dtype=feats.dtype)
    labels[0] = first_labels.to(feats.dtype)
    read_out = _ReadOut(feats[0], labels[0], topk=topk, radius=radius, temperature=temperature,
                        per_frame_topk=per_frame_topk, block=block)
    for t in range(1, len(feats)):
        ctx = context_frames(t, context)[1:]  # the restricted context entries (may repeat frame 0)
        unique = sorted(set(ctx))
        out = read_out(feats[t], feats[unique], labels[unique], [unique.index(s) for s in ctx])
        labels[t] = out if update is None else update(t, out)
    return labels


@torch.no_grad()
def propagate_stream(features, first_labels: torch.Tensor, *, context: int = 20, topk: int = 10, radius: float = 12,
                     temperature: float = 0.05, per_frame_topk: bool = False, block: int = 12):
    """:func:`propagate` over features that arrive one frame at a time: yields (L, h, w) soft labels of frames
    1, 2, ... as each frame's features come in, keeping only frame 0 and the ``context`` preceding frames
    (memory bounded by the context, whatever the video's length). Equal to :func:`propagate` frame by frame.

    Args:
        features: an iterable of (C, h, w) L2-normalised features, frame 0 first.
        first_labels: (L, h, w) soft labels of frame 0 at feature resolution.
    """
    frames = iter(features)
    try:
        first = next(frames)
    except StopIteration:
        raise ValueError("propagate_stream: no frames") from None
    _check(first[None], first_labels, context, topk, radius, temperature)
    dtype = first.dtype
    store = {0: (first, first_labels.to(dtype))}  # frame index -> (features, stored labels)
    read_out = _ReadOut(first, store[0][1], topk=topk, radius=radius, temperature=temperature,
                        per_frame_topk=per_frame_topk, block=block)
    for t, query in enumerate(frames, start=1):
        if query.shape != first.shape:
            raise ValueError(f"propagate_stream: frame {t}'s features are {tuple(query.shape)}, frame 0's "
                             f"{tuple(first.shape)}")
        ctx = context_frames(t, context)[1:]
        unique = sorted(set(ctx))
        out = read_out(query, torch.stack([store[s][0] for s in unique]), torch.stack([store[s][1] for s in unique]),
                       [unique.index(s) for s in ctx])
        store[t] = (query, out)
        if t - context > 0:
            del store[t - context]  # frame t + 1's context starts after it
        yield out


class _ReadOut:
    """One query frame's read-out against frame 0 (dense) and its distinct context frames (radius windows)."""

    def __init__(self, frame0: torch.Tensor, labels0: torch.Tensor, *, topk: int, radius: float, temperature: float,
                 per_frame_topk: bool, block: int):
        channels, self.h, self.w = frame0.shape
        self.n_labels = labels0.shape[0]
        self.frame0 = frame0.reshape(channels, -1)
        self.labels0 = labels0.reshape(self.n_labels, -1).T  # (h*w, L)
        self.topk, self.radius, self.temperature = topk, radius, temperature
        self.per_frame_topk, self.block = per_frame_topk, block
        self.reach = int(np.ceil(radius)) - 1 if float(radius).is_integer() else int(np.floor(radius))  # |d| < radius
        self.grid_y, self.grid_x = torch.meshgrid(torch.arange(self.h), torch.arange(self.w), indexing="ij")

    def __call__(self, query: torch.Tensor, ctx_feats: torch.Tensor, ctx_labels_all: torch.Tensor,
                 positions: list[int]) -> torch.Tensor:
        """query (C, h, w); ctx_feats (U, C, h, w) and ctx_labels_all (U, L, h, w) of the distinct context frames;
        positions: for each context entry, its index in U. Returns the (L, h, w) read-out."""
        h, w, block, reach, n_labels = self.h, self.w, self.block, self.reach, self.n_labels
        channels = query.shape[0]
        grid_y, grid_x = self.grid_y, self.grid_x
        position = torch.tensor(positions)
        n_unique = len(ctx_feats)
        out = torch.empty(n_labels, h, w, dtype=query.dtype)
        for y0 in range(0, h, block):
            for x0 in range(0, w, block):
                y1, x1 = min(y0 + block, h), min(x0 + block, w)
                q = query[:, y0:y1, x0:x1].reshape(channels, -1).T  # (nq, C)
                qy, qx = grid_y[y0:y1, x0:x1].reshape(-1), grid_x[y0:y1, x0:x1].reshape(-1)
                wy0, wy1 = max(y0 - reach, 0), min(y1 + reach, h)
                wx0, wx1 = max(x0 - reach, 0), min(x1 + reach, w)
                sy, sx = grid_y[wy0:wy1, wx0:wx1].reshape(-1), grid_x[wy0:wy1, wx0:wx1].reshape(-1)
                near = (qy[:, None] - sy[None]) ** 2 + (qx[:, None] - sx[None]) ** 2 < self.radius ** 2  # (nq, nw)
                dense0 = (q @ self.frame0) / self.temperature  # frame 0: every node
                # every distinct context frame's window in one product and one mask; repeats are gathered after
                window = ctx_feats[:, :, wy0:wy1, wx0:wx1].transpose(0, 1).reshape(channels, -1)  # (C, U * nw)
                window_scores = ((q @ window) / self.temperature).view(len(q), n_unique, -1)
                window_scores = window_scores.masked_fill(~near[:, None, :], float("-inf"))
                window_labels = ctx_labels_all[:, :, wy0:wy1, wx0:wx1].permute(0, 2, 3, 1).reshape(n_unique, -1, n_labels)
                ctx_scores, ctx_labels = window_scores[:, position], window_labels[position]  # (nq, m, nw), (m, nw, L)
                if self.per_frame_topk:
                    scores, sources = [dense0, *ctx_scores.unbind(1)], [self.labels0, *ctx_labels.unbind(0)]
                else:
                    scores = [torch.cat([dense0, ctx_scores.flatten(1)], dim=1)]
                    sources = [torch.cat([self.labels0, ctx_labels.flatten(0, 1)], dim=0)]
                out[:, y0:y1, x0:x1] = _aggregate(scores, sources, self.topk, self.per_frame_topk).T.reshape(
                    n_labels, y1 - y0, x1 - x0)
        return out


def _aggregate(scores: list[torch.Tensor], sources: list[torch.Tensor], topk: int, per_frame: bool) -> torch.Tensor:
    """Top-k (jointly, or per source frame), softmax over the kept values, weighted sum of source labels.

    scores: per source frame (nq, n_s); sources: per source frame (n_s, L). Returns (nq, L).
    """
    if per_frame:
        kept, picked = [], []
        for s, lab in zip(scores, sources):
            k = min(topk, s.shape[1])
            values, index = s.topk(k, dim=1)
            kept.append(values)
            picked.append(lab[index])  # (nq, k, L)
        values, chosen = torch.cat(kept, dim=1), torch.cat(picked, dim=1)
    else:
        all_scores, all_labels = torch.cat(scores, dim=1), torch.cat(sources, dim=0)
        values, index = all_scores.topk(topk, dim=1)
        chosen = all_labels[index]  # (nq, k, L)
    weights = torch.softmax(values, dim=1)  # -inf (masked) entries get weight 0
    return (weights.unsqueeze(-1) * chosen).sum(dim=1)


def propagate_masks(feats: torch.Tensor, first_mask: np.ndarray, n_labels: int | None = None, **kwargs) -> np.ndarray:
    """Propagate an image-size object-id mask: one-hot, bilinear down to the feature grid, propagate,
    bilinear back up to image size, argmax.

    Args:
        feats: (T, C, h, w) L2-normalised features.
        first_mask: (H, W) int object ids of frame 0 (0 = background).
        n_labels: number of labels (max id + 1 when None).

    Returns:
        (T, H, W) int predicted ids (frame 0 is ``first_mask``).
    """
    first_mask = np.asarray(first_mask)
    height, width = first_mask.shape
    n_labels = int(first_mask.max()) + 1 if n_labels is None else n_labels
    one_hot = F.one_hot(torch.from_numpy(first_mask.astype(np.int64)), n_labels).permute(2, 0, 1).float()
    small = F.interpolate(one_hot[None], size=feats.shape[2:], mode="bilinear", align_corners=False)[0]
    soft = propagate(feats.float(), small, **kwargs)
    big = F.interpolate(soft, size=(height, width), mode="bilinear", align_corners=False)
    out = big.argmax(dim=1).numpy()
    out[0] = first_mask
    return out


def evaluate_clips(features, clips, names: list[str] | None = None, **kwargs):
    """Propagate the DAVIS annotation of frame 0 through each clip and score it with the DAVIS metrics.

    Args:
        features: ``features(frames)`` with frames (T, H, W, 3) uint8 -> (T, C, h, w) L2-normalised
            features, or a list of such feature tensors, one per clip (computed once for a sweep).
        clips: :class:`amodalkit.data.Clip` objects; objects visible in frame 0 are the targets (DAVIS).
        kwargs: :func:`propagate` options (context, topk, radius, temperature, per_frame_topk).

    Returns:
        (:class:`amodalkit.metrics.DavisResult`, {name: (T, H, W) predicted ids}).
    """
    from .data.davis import davis_ids
    from .metrics import evaluate_davis

    clips = list(clips)
    names = names or [f"seq{i:04d}" for i in range(len(clips))]
    truth, predictions = {}, {}
    if not callable(features) and len(features) != len(clips):
        raise ValueError(f"evaluate_clips: got {len(features)} feature tensors for {len(clips)} clips")
    for i, (name, clip) in enumerate(zip(names, clips)):
        truth[name] = davis_ids(clip)
        feats = features(clip.frames) if callable(features) else features[i]
        predictions[name] = propagate_masks(feats, truth[name][0], n_labels=int(truth[name].max()) + 1, **kwargs)
    return evaluate_davis(predictions, truth), predictions

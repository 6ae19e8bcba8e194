"""Pseudo masks by space-time clustering of the learned keys (supplement 003, B and G).

The release (``gen_mask.py``) clusters the L2-normalised keys of every 8th frame of a video with k-means (k = 7,
scikit-learn) and assigns every position of every frame to its nearest centre. :func:`sinkhorn_centres` is the
optimal-transport alternative section G names as future work (Cuturi's entropic transport with equal-size clusters).
How the k clusters become the two foreground objects the release trains on (its pseudo-mask PNGs hold 0, 1, 2) is in
neither the supplement nor the release; :func:`objects_from_clusters` uses a border prior, listed on the book's
"differs from the papers" page.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLUSTERINGS = ("kmeans", "sinkhorn")


def kmeans_centres(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means (scikit-learn, k-means++ initialisation, as the release) of x (N, D) -> centres (k, D).

    Run on one OpenMP thread: beside PyTorch's threads scikit-learn's spin-waiting threads made each fit about 9x
    slower on this machine (0.2 s against 0.02 s for 576 keys), and the fits are small."""
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    if len(x) < k:
        raise ValueError(f"kmeans_centres: {len(x)} samples for k = {k} clusters")
    with threadpool_limits(1):
        return KMeans(n_clusters=k, random_state=seed, n_init=1).fit(x).cluster_centers_


def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 50) -> torch.Tensor:
    """Entropic optimal transport with uniform marginals: the plan Q (N, k) maximising <Q, scores> + epsilon H(Q)
    with every row summing to 1/N and every column to 1/k (Cuturi 2013), by alternate normalisation in log space.

    Returns Q scaled so that every row sums to 1 (soft assignments; each cluster gets N/k of the mass)."""
    n, k = scores.shape
    log_q = scores / epsilon
    for _ in range(iterations):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - np.log(k)  # columns: 1/k each
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - np.log(n)  # rows: 1/N each
    return torch.exp(log_q) * n


def sinkhorn_centres(x: np.ndarray, k: int, seed: int, *, epsilon: float = 0.05, rounds: int = 20) -> np.ndarray:
    """Balanced clustering of L2-normalised x (N, D): centres from k-means++ seeding (the same as k-means'), then
    ``rounds`` of (Sinkhorn assignment with equal cluster sizes on cosine similarity; centres = normalised weighted
    means). Returns centres (k, D)."""
    from sklearn.cluster import kmeans_plusplus
    from threadpoolctl import threadpool_limits

    if len(x) < k:
        raise ValueError(f"sinkhorn_centres: {len(x)} samples for k = {k} clusters")
    with threadpool_limits(1):  # as kmeans_centres
        centres, _ = kmeans_plusplus(x, n_clusters=k, random_state=seed)
    data = torch.from_numpy(np.asarray(x, dtype=np.float64))
    c = F.normalize(torch.from_numpy(np.asarray(centres, dtype=np.float64)), dim=1)
    for _ in range(rounds):
        q = sinkhorn(data @ c.T, epsilon)
        c = F.normalize(q.T @ data, dim=1)
    return c.numpy()


def assign(keys: torch.Tensor, centres: np.ndarray) -> torch.Tensor:
    """Every position to its nearest centre (squared Euclidean distance, as the release). keys (T, D, h, w) ->
    (T, h, w) cluster ids."""
    c = torch.as_tensor(centres, dtype=keys.dtype)
    flat = keys.movedim(1, -1)  # (T, h, w, D)
    distance = (flat[..., None, :] - c).pow(2).sum(-1)
    return distance.argmin(-1)


def cluster_video(keys: torch.Tensor, *, k: int = 7, every: int = 8, method: str = "kmeans", seed: int = 0) -> torch.Tensor:
    """Cluster ids (T, h, w) of one video's L2-normalised keys (T, D, h, w): centres fitted on every ``every``-th
    frame, every position of every frame assigned to its nearest centre."""
    if method not in CLUSTERINGS:
        raise ValueError(f"cluster_video: method must be one of {CLUSTERINGS}, got {method!r}")
    sample = keys[::every].movedim(1, -1).reshape(-1, keys.shape[1]).double().numpy()
    fit = kmeans_centres if method == "kmeans" else sinkhorn_centres
    return assign(keys, fit(sample, k, seed))


def border_share(clusters: torch.Tensor, k: int) -> torch.Tensor:
    """For each cluster id < k: the fraction of its positions (over all frames) on the outer ring of the frame
    (1.0 for an absent cluster). clusters (T, h, w) -> (k,)."""
    ring = torch.ones(clusters.shape[-2:], dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    share = torch.ones(k)
    for c in range(k):
        members = clusters == c
        total = int(members.sum())
        if total:
            share[c] = float((members & ring).sum()) / total
    return share


def objects_from_clusters(clusters: torch.Tensor, k: int, n_objects: int = 2, min_fraction: float = 0.005) -> torch.Tensor:
    """Pseudo object masks from cluster ids: the ``n_objects`` clusters that touch the frame border least (relative
    to their size; clusters under ``min_fraction`` of the positions are skipped) become objects 1..n_objects, in that
    order; every other cluster is background (0). clusters (T, h, w) -> labels (T, h, w)."""
    share = border_share(clusters, k)
    sizes = torch.bincount(clusters.reshape(-1), minlength=k).float() / clusters.numel()
    share[sizes < min_fraction] = float("inf")
    order = torch.argsort(share, stable=True)[:n_objects]
    labels = torch.zeros_like(clusters)
    for rank, c in enumerate(order.tolist()):
        if share[c] != float("inf"):
            labels[clusters == c] = rank + 1
    return labels


def foreground_iou(labels: torch.Tensor, truth: np.ndarray) -> float:
    """IoU over a whole video of the pseudo foreground (labels > 0, (T, h, w)) and the ground-truth foreground
    (any visible object, (T, H, W) bool), the truth reduced to the labels' grid (a cell is foreground when at least
    half of it is). Ground truth enters only this measurement."""
    t, h, w = labels.shape
    fg = torch.from_numpy(np.asarray(truth, dtype=np.float32))[:, None]
    small = F.adaptive_avg_pool2d(fg, (h, w))[:, 0] >= 0.5
    pred = labels > 0
    union = int((pred | small).sum())
    return float((pred & small).sum()) / union if union else 1.0

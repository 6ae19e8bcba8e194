"""Algorithm 1 of the SaVos supplement: the rule-based completion (visible masks carried by the flow, k frames each way)."""
from __future__ import annotations

import numpy as np


# ============================================================== Algorithm 1: rule-based baseline


def splat(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Move each pixel of a boolean (H, W) mask by its flow (2, H, W), to the nearest pixel (forward warping)."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    r = np.rint(rows + flow[1, rows, cols]).astype(int)
    c = np.rint(cols + flow[0, rows, cols]).astype(int)
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    out = np.zeros_like(mask, dtype=bool)
    out[r[inside], c[inside]] = True
    return out


def aggregate(visible: np.ndarray, flow: np.ndarray, k: int) -> np.ndarray:
    """Algorithm 1 in one direction: frame n's mask from the visible masks of frames n-k..n.

    AV = V_{n-k}, ΔAV = ΔV_{n-k}; for t = n-k+1..n: AV = Warp(AV, ΔAV) ∪ V_t; IV = (1 - V_t) ∩ AV;
    ΔAV = ΔV_t on V_t and mean(ΔV_t) on IV. Warp moves the aggregated mask by its flow
    (:func:`splat`). The first frames use what exists (from frame 0).

    Args:
        visible: (T, H, W) bool; flow: (T, 2, H, W), flow[t] from frame t to the next one in
            this order; k: frames aggregated (k = 0: the visible mask).

    Returns:
        (T, H, W) bool.
    """
    if k < 0:
        raise ValueError(f"aggregate: k must be >= 0, got {k}")
    t_len = len(visible)
    out = np.zeros_like(visible, dtype=bool)
    for n in range(t_len):
        start = max(0, n - k)
        av = visible[start].astype(bool)
        dav = flow[start] * av
        for t in range(start + 1, n + 1):
            av = splat(av, dav) | visible[t]
            iv = av & ~visible[t]
            v = visible[t].astype(bool)
            mean = flow[t][:, v].mean(axis=1) if v.any() else np.zeros(2, dtype=flow.dtype)
            dav = flow[t] * v + mean[:, None, None] * iv
        out[n] = av
    return out


def rule_based_completion(visible: np.ndarray, flow_fwd: np.ndarray, flow_bwd: np.ndarray, k: int) -> np.ndarray:
    """The union of Algorithm 1 run forward (frames n-k..n) and backward (frames n+k..n).

    Args:
        visible: (T, H, W) an object's visible masks; flow_fwd, flow_bwd: (T, 2, H, W) t -> t+1 and t -> t-1.

    Returns:
        (T, H, W) bool.
    """
    forward = aggregate(visible, flow_fwd, k)
    backward = aggregate(visible[::-1], flow_bwd[::-1], k)[::-1]
    return forward | backward

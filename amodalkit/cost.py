"""Measuring what a loss costs: autograd memory, wall time, and log-log growth rates."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch


def autograd_saved_bytes(loss_fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``loss_fn()``.

    Counted with ``torch.autograd.graph.saved_tensors_hooks``, each storage once: this is the
    memory a loss holds between forward and backward, exact and independent of the allocator
    (unlike peak RSS on a CPU).
    """
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    del loss
    return int(sum(seen.values()))


def time_forward_backward(loss_fn: Callable[[], torch.Tensor], repeats: int = 3) -> list[float]:
    """Wall seconds of ``loss_fn().backward()``, once per repeat (after one warm-up call)."""
    loss_fn().backward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss_fn().backward()
        times.append(time.perf_counter() - start)
    return times


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x): the exponent p of y ~ x^p.

    Example:
        >>> round(loglog_slope([1, 2, 4], [3, 12, 48]), 6)
        2.0
    """
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if xs.shape != ys.shape or xs.size < 2 or (xs <= 0).any() or (ys <= 0).any():
        raise ValueError("loglog_slope: need at least two positive (x, y) pairs of equal length")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])

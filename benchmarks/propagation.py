"""Label propagation: the plain dense reference against amodalkit.propagation, side by side.

The reference does what the CRW release does: for every query frame it builds the whole affinity
between the query nodes and every node of every context frame, masks it (radius on all context
frames but frame 0), takes the top k and the softmax. ``amodalkit.propagation.propagate`` must
give the same labels (max abs difference <= 1e-5) while doing far less work.

    .venv/bin/python benchmarks/propagation.py                      # 480p-sized: T = 60, 60 x 107 nodes, C = 256, 5 labels
    .venv/bin/python benchmarks/propagation.py --frames 8 --height 24 --width 40 --channels 64   # a quick run

Prints both times, their ratio and both peak memories: each method runs in a process of its own,
and its peak resident memory above a baseline process that only builds the inputs is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from amodalkit.propagation import _aggregate, context_frames, propagate


@torch.no_grad()
def dense_propagate(feats: torch.Tensor, first_labels: torch.Tensor, *, context: int = 20, topk: int = 10,
                    radius: float = 12, temperature: float = 0.05, per_frame_topk: bool = False) -> torch.Tensor:
    """The reference: dense affinity to all context nodes, then the radius mask, top-k, softmax."""
    t_len, channels, h, w = feats.shape
    n_labels = first_labels.shape[0]
    labels = torch.empty(t_len, n_labels, h, w, dtype=feats.dtype)
    labels[0] = first_labels
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near = (ys[:, None] - ys[None]) ** 2 + (xs[:, None] - xs[None]) ** 2 < radius ** 2  # (hw, hw)
    for t in range(1, t_len):
        ctx = context_frames(t, context)
        q = feats[t].reshape(channels, -1).T
        scores, sources = [], []
        for i, s in enumerate(ctx):
            a = (q @ feats[s].reshape(channels, -1)) / temperature
            scores.append(a if i == 0 else a.masked_fill(~near, float("-inf")))
            sources.append(labels[s].reshape(n_labels, -1).T)
        labels[t] = _aggregate(scores, sources, topk, per_frame_topk).T.reshape(n_labels, h, w)
    return labels


def random_problem(frames: int, channels: int, height: int, width: int, n_labels: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(frames, channels, height, width, generator=gen), dim=1)
    # smooth features over time so propagation has something to follow
    feats = torch.nn.functional.normalize(torch.cumsum(feats, dim=0), dim=1)
    ids = torch.randint(0, n_labels, (height // 4 + 1, width // 4 + 1), generator=gen)
    ids = ids.repeat_interleave(4, 0)[:height].repeat_interleave(4, 1)[:, :width]
    first = torch.nn.functional.one_hot(ids, n_labels).permute(2, 0, 1).float()
    return feats, first


def _child(args) -> None:
    """Run one method in this process; print its wall time and this process's peak RSS as JSON."""
    feats, first = random_problem(args.frames, args.channels, args.height, args.width, args.labels)
    options = dict(context=args.context, topk=args.topk, radius=args.radius)
    start = time.perf_counter()
    if args.method == "dense":
        out = dense_propagate(feats, first, **options)
    elif args.method == "local":
        out = propagate(feats, first, **options)
    else:
        out = first[None]
    seconds = time.perf_counter() - start
    if args.out:
        torch.save(out, args.out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--height", type=int, default=60)
    parser.add_argument("--width", type=int, default=107)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--labels", type=int, default=5)
    parser.add_argument("--context", type=int, default=20)
    parser.add_argument("--radius", type=float, default=12)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--method", default="both", choices=("both", "dense", "local", "none"))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.method != "both":
        return _child(args)
    # each method runs in its own process, so each peak RSS is its own; "none" measures the shared baseline
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("none", "local", "dense"):
            out = os.path.join(tmp, f"{method}.pt")
            argv = [sys.executable, __file__, "--method", method, "--out", out] + [
                f"--{k}={v}" for k, v in vars(args).items() if k not in ("method", "out")]
            proc = subprocess.run(argv, capture_output=True, text=True, check=True)
            runs[method] = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[method]["labels"] = torch.load(out, weights_only=True)
    base = runs["none"]["peak_bytes"]
    print(f"nodes {args.height}x{args.width}, T = {args.frames}, C = {args.channels}, {args.labels} labels, "
          f"context {args.context}, top-{args.topk}, radius {args.radius}")
    print(f"max |dense - local| soft labels = {(runs['dense']['labels'] - runs['local']['labels']).abs().max().item():.2e}")
    t_dense, t_local = runs["dense"]["seconds"], runs["local"]["seconds"]
    print(f"time: dense {t_dense:.1f} s, local {t_local:.1f} s, ratio {t_dense / t_local:.1f}x")
    m_dense, m_local = (max(runs[m]["peak_bytes"] - base, 0) / 2**20 for m in ("dense", "local"))
    local = f"{m_local:.0f} MiB" if m_local >= 1 else "under 1 MiB (within the baseline process's own peak)"
    print(f"peak memory above a process that only builds the inputs (RSS): dense {m_dense:.0f} MiB, local {local}")


if __name__ == "__main__":
    main()

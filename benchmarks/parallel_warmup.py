"""Is training two models at once (one thread each) faster than one after the other (two threads each)?

The question behind `book run --jobs 2` on this 2-core machine: at the quick sizes a training step is small, and
PyTorch's intra-op threads may not use the second core well. Measured side by side in one run, on the SaVos network
at the quick size (16 x 32, base 8, batch 8, 8-frame windows; the step of benchmarks/savos_throughput.py):
  - sequential: one process, torch.set_num_threads(cores), ``steps`` steps, twice (two models);
  - parallel: two processes at once, one thread each, ``steps`` steps each.
Prints the seconds of each and the ratio sequential / parallel (above 1: the parallel warm-up pays) and writes them to
results/parallel_warmup.json. Usage:

    .venv/bin/python benchmarks/parallel_warmup.py [--steps 60] [--crop 16] [--base 8] [--batch 8]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def train_steps(steps: int, crop: int, base: int, batch: int, threads: int) -> float:
    """Seconds for ``steps`` training steps of a fresh SaVos network with ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    from savos_throughput import random_windows

    from amodalkit import savos

    torch.manual_seed(0)
    size = (crop, 2 * crop)
    model = savos.SaVosNet(size, base)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = random_windows(batch, 8, size, torch.device("cpu"))

    def step():
        loss = savos.savos_loss(model, data, photometric=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up step, not timed
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def _worker(args):
    return train_steps(*args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--crop", type=int, default=16)
    parser.add_argument("--base", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    job = (args.steps, args.crop, args.base, args.batch)
    start = time.perf_counter()
    for _ in range(2):
        train_steps(*job, threads=cores)
    sequential = time.perf_counter() - start
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_worker, [job + (1,)] * 2)
    parallel = time.perf_counter() - start
    record = dict(steps=args.steps, crop=args.crop, base=args.base, batch=args.batch, cores=cores,
                  sequential_s=round(sequential, 2), parallel_s=round(parallel, 2), ratio=round(sequential / parallel, 3))
    from amodalkit.results import atomic_write_json

    atomic_write_json(Path(__file__).resolve().parents[1] / "results" / "parallel_warmup.json", record)
    print(f"two models of {args.steps} steps at {args.crop}x{2 * args.crop}, base {args.base}, batch {args.batch}: "
          f"one after the other with {cores} threads {sequential:.1f} s, at once with 1 thread each {parallel:.1f} s "
          f"(ratio {sequential / parallel:.2f})")


if __name__ == "__main__":
    main()

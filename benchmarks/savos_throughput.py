"""SaVos training throughput (windows per second) at the quick and the paper sizes, side by side in one run.

One training step = forward and backward passes of the full model (both directions, L_M + L_C, the
photometric term) on a batch of random windows, plus the Adam update. Prints the median over repeats
of the step time, windows/s and frames/s for each size, and the ratio paper / quick. Usage:

    .venv/bin/python benchmarks/savos_throughput.py [--window 8] [--repeats 5] [--paper-batch 24] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from amodalkit import savos


def random_windows(batch: int, window: int, size: tuple[int, int], device) -> savos.TrackBatch:
    g = torch.Generator().manual_seed(0)
    h, w = size
    visible = (torch.rand(batch, window, h, w, generator=g) > 0.5).float()
    return savos.TrackBatch(torch.rand(batch, window, 3, h, w, generator=g) - 0.5, visible,
                            (torch.rand(batch, window, h, w, generator=g) > 0.8).float() * (1 - visible),
                            torch.zeros(batch, window, h, w), torch.randn(batch, window, 2, h, w, generator=g),
                            torch.randn(batch, window, 2, h, w, generator=g),
                            torch.tensor([0.0, 0.0, w, h]).expand(batch, window, 4).clone()).to(device)


def step_seconds(size, base, batch, window, repeats, device) -> float:
    torch.manual_seed(0)
    model = savos.SaVosNet(size, base).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = random_windows(batch, window, size, device)
    times = []
    for i in range(repeats + 1):  # the first step warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = savos.savos_loss(model, data, photometric=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=8, help="frames per training window")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick-batch", type=int, default=8)
    parser.add_argument("--paper-batch", type=int, default=24, help="FISHBOWL's batch in E.2 (64 Chewing Gum, 8 KINS)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = {}
    print(f"device {device}, window {args.window} frames, median of {args.repeats} steps")
    print(f"{'size':>10} {'base':>5} {'batch':>6} {'step s':>8} {'windows/s':>10} {'frames/s':>9}")
    for name, size, base, batch in (("quick", (16, 32), 8, args.quick_batch), ("paper", (64, 128), 32, args.paper_batch)):
        seconds = step_seconds(size, base, batch, args.window, args.repeats, device)
        rows[name] = batch / seconds
        print(f"{size[0]:>4}x{size[1]:<5} {base:>5} {batch:>6} {seconds:>8.3f} {batch / seconds:>10.1f} {batch * args.window / seconds:>9.1f}")
    print(f"throughput ratio quick / paper (windows/s): {rows['quick'] / rows['paper']:.1f}x")


if __name__ == "__main__":
    main()

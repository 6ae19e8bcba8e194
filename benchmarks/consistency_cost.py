"""App. B in numbers: the chained L_M + L_C against L_complete, side by side in one run.

Prints, for each clip length T, forward + backward time (median of repeats) and the bytes autograd
keeps for the backward pass, and the ratios complete / chained. Usage:

    .venv/bin/python benchmarks/consistency_cost.py [--size 32] [--lengths 8 16 32 64 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics

import torch

from amodalkit import savos
from amodalkit.cost import autograd_saved_bytes, loglog_slope, time_forward_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="frame side in pixels")
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    print(f"{'T':>5} {'chained s':>10} {'complete s':>11} {'time ratio':>10} {'chained MiB':>12} {'complete MiB':>13} {'memory ratio':>12}")
    for n in args.lengths:
        problem = savos.chain_cost_problem(n, args.size)
        logits, flow, visible, weight = problem
        chained = lambda: savos.chained_loss(*problem)  # noqa: E731
        complete = lambda: savos.complete_loss(torch.sigmoid(logits), flow, visible, weight)  # noqa: E731
        t_chain = statistics.median(time_forward_backward(chained, args.repeats))
        t_complete = statistics.median(time_forward_backward(complete, args.repeats))
        m_chain, m_complete = autograd_saved_bytes(chained), autograd_saved_bytes(complete)
        rows.append((n, t_chain, t_complete, m_chain, m_complete))
        print(f"{n:>5} {t_chain:>10.4f} {t_complete:>11.4f} {t_complete / t_chain:>10.1f} "
              f"{m_chain / 2**20:>12.2f} {m_complete / 2**20:>13.2f} {m_complete / m_chain:>12.1f}")
    lengths = [r[0] for r in rows]
    print("log-log slopes (time ~ T^p): chained", round(loglog_slope(lengths, [r[1] for r in rows]), 2),
          "complete", round(loglog_slope(lengths, [r[2] for r in rows]), 2))
    print("log-log slopes (memory ~ T^p): chained", round(loglog_slope(lengths, [r[3] for r in rows]), 2),
          "complete", round(loglog_slope(lengths, [r[4] for r in rows]), 2))


if __name__ == "__main__":
    main()

"""Generation speed of every world and DIS flow error per preset, measured side by side in one run.

    .venv/bin/python benchmarks/worlds.py [--clips 8] [--preset quick]

Prints, per world, generated frames per second (no disk cache; target: at least 500 at quick
sizes on the 2-core reference machine) and the end-point error of each DIS preset against the
ground-truth forward flow, with its time per frame pair.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from amodalkit.data import WORLDS, load_world
from amodalkit.data.flow import PRESETS, end_point_error, estimate_flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--preset", default="quick", choices=("quick", "paper"))
    args = parser.parse_args()
    print(f"{'world':12} {'frames/s':>9} " + " ".join(f"{p + ' EPE':>14} {'ms/pair':>8}" for p in PRESETS))
    for name in sorted(WORLDS):
        world = load_world(name, "test", seed=0, n_clips=args.clips, preset=args.preset, cache=False)
        start = time.perf_counter()
        clips = [world[i] for i in range(len(world))]
        fps = sum(c.n_frames for c in clips) / (time.perf_counter() - start)
        cells = []
        for preset in PRESETS:
            start = time.perf_counter()
            errors = [end_point_error(estimate_flow(c.frames, preset)[0][:-1], c.flow_fwd[:-1]) for c in clips]
            pairs = sum(2 * (c.n_frames - 1) for c in clips)  # forward and backward
            cells.append(f"{np.mean(errors):>14.3f} {1000 * (time.perf_counter() - start) / pairs:>8.2f}")
        print(f"{name:12} {fps:>9.0f} " + " ".join(cells))


if __name__ == "__main__":
    main()

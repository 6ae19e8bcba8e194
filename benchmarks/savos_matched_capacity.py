"""Table 2 at matched size: PCNet-M widened to the SaVos network's parameters (issue 13, item 8).

Table 2 of the SaVos supplement compares the SaVos architecture with Self-Deocclusion's PCNet-M, both trained with
Self-Deocclusion's loss, each at its own size; at the quick profile's size the SaVos network has about 20 times
PCNet-M's parameters. This script trains the row `deocc_arch_matched` (PCNet-M widened until it has as many parameters
as the SaVos network) on both worlds for seeds 0-2, exactly as the ablation chapter trains its rows (the chapter's
quick parameters, the same tracks, selection and seeds), and scores it beside the chapter's `savos_arch_deocc_loss`
row (loaded from the model cache when the chapter has run). The chapter shows the file; it does not train the row:
at width 37 a model takes 100-140 s here, about 12 minutes for the six, which the SaVos chapters' share cannot pay.

Writes ``results/savos_matched_capacity.json`` (per-seed occluded and full frame-level mIoU of both rows, their
parameter counts, seconds per seed) and prints a table.

    python benchmarks/savos_matched_capacity.py
    python benchmarks/savos_matched_capacity.py --seeds 0 --worlds fishbowl
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS = ("deocc_arch_matched", "savos_arch_deocc_loss")


def main(argv=None) -> dict:
    from amodalkit import profiles
    from amodalkit.results import atomic_write_json
    from amodalkit.savos import chapter_setup, variant_scores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--worlds", nargs="+", default=["fishbowl", "street"], choices=["fishbowl", "street"])
    parser.add_argument("--out", default=str(ROOT / "results" / "savos_matched_capacity.json"))
    args = parser.parse_args(argv)
    params = profiles.resolve("savos_ablations", "quick")  # the chapter's own parameters: its cached models
    out = dict(profile="quick", seeds=args.seeds, worlds={})
    for world in args.worlds:
        entry = out["worlds"][world] = {"seconds": [], "parameters": {}, **{f"{m}.{row}": [] for row in ROWS
                                                                              for m in ("occ_miou", "full_miou")}}
        for seed in args.seeds:
            start = time.perf_counter()
            data, recipe, key = chapter_setup(world, seed, params)
            for row in ROWS:
                result, scores, _ = variant_scores(row, data, recipe, seed, key)
                entry["parameters"][row] = sum(p.numel() for p in result.model.parameters() if p.requires_grad)
                entry[f"occ_miou.{row}"].append(round(scores.miou("occluded"), 4))
                entry[f"full_miou.{row}"].append(round(scores.miou("full"), 4))
            entry["seconds"].append(round(time.perf_counter() - start, 1))
            print(f"{world} seed {seed}: " + ", ".join(f"{row} {entry[f'occ_miou.{row}'][-1]:.3f}" for row in ROWS),
                  flush=True)
        atomic_write_json(Path(args.out), out)  # after each world: nothing lost on interrupt
    print(f"\n{'world':10} {'row':24} {'parameters':>11} {'occluded mIoU':>16}")
    for world, entry in out["worlds"].items():
        for row in ROWS:
            v = np.array(entry[f"occ_miou.{row}"])
            print(f"{world:10} {row:24} {entry['parameters'][row]:>11,} {v.mean():8.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
    return out


if __name__ == "__main__":
    main()

"""How long must Amodal-VAE's stage 1 train before its convergence gate passes? (issues 15, 33)

The gate of the vae.* claims that read a trained model asks that stage 1's best validation loss improve by less than
1% (relative) over the last 20% of its steps. This script trains stage 1 once for longer, with the chapters' sizes and
data (the `quick` profile of vae_analysis: the whole masks of `stage1_clips` clips; ``--world street``: those of
vae_robustness's world), at ``--lr`` (the paper's 1e-3 unless given; the chapters use the quick profile's ``lr1``):

* the constant-weight schedule, one long run: the training loop draws every batch from (seed, step) and neither Adam
  nor a constant KL weight has a schedule, so the validations of a long run up to step S are exactly those of a run of
  S steps, and the gate can be read for every S;
* the annealed schedule at ``--anneal-steps`` (its start and rate are scaled to the run, so a prefix is not a
  shorter run): the gate and the active dimensions at that length.

Writes ``results/vae_stage1_budget[_WORLD][_lrRATE].json`` (the world when not fishbowl, the rate when not 1e-3) and
prints a table; seconds per step are measured in this run.

    python benchmarks/vae_stage1_budget.py                       # 8000 constant + 4000 annealed steps, seed 0
    python benchmarks/vae_stage1_budget.py --steps 10000 --anneal-steps 0 --lr 8e-3
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


PAPER_LR = 1e-3


def default_out(world: str, lr: float) -> Path:
    """results/vae_stage1_budget[_WORLD][_lrRATE].json: e.g. ``vae_stage1_budget_street_lr8e-3.json``."""
    rate = f"{lr:.0e}".replace("e-0", "e-")
    name = "vae_stage1_budget" + (f"_{world}" if world != "fishbowl" else "") + (f"_lr{rate}" if lr != PAPER_LR else "")
    return ROOT / "results" / f"{name}.json"


def gate_by_length(history: dict, every: int) -> list[tuple[int, float]]:
    """(S, plateau improvement of a run of S steps) for every S whose 80% mark falls on a validation."""
    from amodalkit.train import plateau_improvement

    out = []
    for s in history["val_step"]:
        if s % 5 == 0 and (s * 4 // 5) % every == 0 and s * 4 // 5 >= every:
            prefix = {k: [v for st, v in zip(history["val_step"], history[k]) if st <= s]
                      for k in ("val_step", "val_loss")}
            out.append((s, plateau_improvement(prefix)))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000, help="steps of the constant-weight run (default 8000)")
    parser.add_argument("--anneal-steps", type=int, default=4000, help="steps of the annealed run (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=PAPER_LR, help="stage 1's rate (default: the paper's 1e-3)")
    parser.add_argument("--world", default="fishbowl", choices=("fishbowl", "street"))
    parser.add_argument("--out", default=None, help="default: results/vae_stage1_budget[_WORLD][_lrRATE].json")
    args = parser.parse_args(argv)
    if args.lr <= 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    if args.steps < 100 or (args.anneal_steps and args.anneal_steps < 100):
        parser.error("--steps and --anneal-steps must be at least 100 (the curve has a point every 5% of the run)")

    import torch

    from amodalkit.amodal_vae import chapter_data, recipe_from, scaled_kl_schedule, train_stage1
    from amodalkit.claims import VAE_MAX_PLATEAU
    from amodalkit.profiles import resolve
    from amodalkit.results import atomic_write_bytes
    from amodalkit.train import plateau_improvement

    torch.set_num_threads(2)
    p = resolve("vae_analysis", "quick")
    world, seed = args.world, args.seed
    data = chapter_data(world, seed, p, splits=())
    masks, val_full = data.stage1_masks
    base = dataclasses.replace(recipe_from(p), lr1=args.lr)
    out = dict(world=world, seed=seed, lr1=base.lr1, stage1_masks=len(masks), gate_threshold=VAE_MAX_PLATEAU, runs={})
    runs = [("constant", dataclasses.replace(base, steps1=args.steps, anneal=False))]
    if args.anneal_steps:
        begin, alpha = scaled_kl_schedule(args.anneal_steps)
        runs.append(("anneal", dataclasses.replace(base, steps1=args.anneal_steps, kl_begin=begin, kl_alpha=alpha)))
    for name, recipe in runs:
        start = time.perf_counter()
        result = train_stage1(recipe, masks, val_full, seed=seed, data_key=data.key)
        seconds = time.perf_counter() - start
        h = result.history
        run = dict(steps=recipe.steps1, kl_begin=recipe.kl_begin, kl_alpha=recipe.kl_alpha,
                   gate=plateau_improvement(h), val_step=h["val_step"], val_loss=h["val_loss"],
                   val_active=h["val_active"], val_active_std=h["val_active_std"],
                   seconds=None if result.from_cache else round(seconds, 1),
                   seconds_per_step=None if result.from_cache else round(seconds / recipe.steps1, 4))
        if name == "constant":
            run["gate_by_length"] = gate_by_length(h, max(recipe.steps1 // 20, 1))
            passing = [s for s, g in run["gate_by_length"] if g < VAE_MAX_PLATEAU]
            run["first_passing_length"] = passing[0] if passing else None
        out["runs"][name] = run
        print(f"{name}: {recipe.steps1} steps, gate {run['gate']:.4f} (passes below {VAE_MAX_PLATEAU}), "
              f"active dims (Burda / std < 0.9) at the end {h['val_active'][-1]:.0f} / {h['val_active_std'][-1]:.0f}, "
              f"{run['seconds']} s")
        if name == "constant":
            print("  gate by run length: " + ", ".join(f"{s}: {g:.3f}" for s, g in run["gate_by_length"]))
    atomic_write_bytes(Path(args.out or default_out(world, args.lr)), (json.dumps(out, indent=1) + "\n").encode())
    return out


if __name__ == "__main__":
    main()

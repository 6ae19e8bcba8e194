"""How long must Amodal-VAE's stage 1 train before its convergence gate passes? (issue 15)

The gate of vae.f4.inactive-dims and vae.s31.kl-anneal asks that stage 1's best validation loss improve by less than
1% (relative) over the last 20% of its steps. The chapters' quick profile cannot afford long runs (three seeds of two
schedules plus the street model within 10 minutes), so this script trains stage 1 once for longer, with the chapters'
sizes and data (the `quick` profile of vae_analysis: the whole masks of `stage1_clips` clips):

* the constant-weight schedule, one long run: the training loop draws every batch from (seed, step) and neither Adam
  nor a constant KL weight has a schedule, so the validations of a long run up to step S are exactly those of a run of
  S steps, and the gate can be read for every S;
* the annealed schedule at ``--anneal-steps`` (its start and rate are scaled to the run, so a prefix is not a
  shorter run): the gate and the active dimensions at that length.

Writes ``results/vae_stage1_budget.json`` and prints a table; seconds per step are measured in this run.

    python benchmarks/vae_stage1_budget.py                       # 8000 constant + 4000 annealed steps, seed 0
    python benchmarks/vae_stage1_budget.py --steps 3000 --anneal-steps 0
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
    parser.add_argument("--lr", type=float, default=None, help="stage 1's rate (default: the quick profile's)")
    parser.add_argument("--world", default=None, help="the world (default: vae_analysis's)")
    parser.add_argument("--out", default=str(ROOT / "results" / "vae_stage1_budget.json"))
    args = parser.parse_args(argv)
    if args.steps < 100 or (args.anneal_steps and args.anneal_steps < 100):
        parser.error("--steps and --anneal-steps must be at least 100 (the curve has a point every 5% of the run)")

    import torch

    from amodalkit.amodal_vae import VAERecipe, full_mask_set, load_instances, scaled_kl_schedule, train_stage1
    from amodalkit.claims import VAE_MAX_PLATEAU
    from amodalkit.profiles import resolve
    from amodalkit.results import atomic_write_bytes
    from amodalkit.train import plateau_improvement

    torch.set_num_threads(2)
    p = resolve("vae_analysis", "quick")
    world, seed = args.world or p["world"], args.seed
    masks = full_mask_set(world, seed, n_clips=p["stage1_clips"], every=p["every"], preset=p["preset"])
    val = load_instances(world, "val", seed=seed, n_clips=p["val_clips"], every=p["every"], preset=p["preset"])
    val_full = val.visible[val.visible_ratio >= 1.0]
    key = dict(world=world, seed=seed, preset=p["preset"], clips=(p["train_clips"], p["val_clips"]), every=p["every"])
    base = VAERecipe(width=p["net_width"], hidden=p["hidden"], batch=p["batch"], lr1=args.lr or p.get("lr1", VAERecipe.lr1))
    out = dict(world=world, seed=seed, lr1=base.lr1, stage1_masks=len(masks), gate_threshold=VAE_MAX_PLATEAU, runs={})
    runs = [("constant", dataclasses.replace(base, steps1=args.steps, anneal=False))]
    if args.anneal_steps:
        begin, alpha = scaled_kl_schedule(args.anneal_steps)
        runs.append(("anneal", dataclasses.replace(base, steps1=args.anneal_steps, kl_begin=begin, kl_alpha=alpha)))
    for name, recipe in runs:
        start = time.perf_counter()
        result = train_stage1(recipe, masks, val_full, seed=seed, data_key=key)
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
    atomic_write_bytes(Path(args.out), (json.dumps(out, indent=1) + "\n").encode())
    return out


if __name__ == "__main__":
    main()

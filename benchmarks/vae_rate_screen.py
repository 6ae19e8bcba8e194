"""Which learning rates do the Amodal-VAE chapters train with? Short runs, compared on their validation loss (issue 33).

The rate of each model the convergence gates read is chosen on a short run's validation loss, never on the gate:

* stage 1 (a constant KL weight, the quick profile's sizes and data of `vae_analysis`): ``--stage1-steps`` steps at
  each of ``--stage1-rates`` (the paper's is 1e-3);
* PCNet-M (`vae_robustness`'s sizes and data on `street`): ``--pcnet-steps`` steps at each of ``--pcnet-rates`` (the
  release's is 1e-3, with SGD).

Each rate runs once per seed of ``--seeds`` (each seed its own data and weights, as in the chapters). Writes
``results/vae_rate_screen.json`` (per rate: ``best``, the mean over seeds of each run's best validation loss, and
``per_seed``; seed 0's curve) and prints a table; the chosen rate is the one with the lowest mean. A model whose rates
are not run this time keeps its section of an existing file.

    python benchmarks/vae_rate_screen.py
    python benchmarks/vae_rate_screen.py --stage1-rates 1e-3 8e-3 --pcnet-rates 0   # keeps the file's PCNet-M section
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage1-steps", type=int, default=2000)
    parser.add_argument("--stage1-rates", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3, 8e-3],
                        help="0 alone: no stage-1 runs")
    parser.add_argument("--pcnet-steps", type=int, default=600)
    parser.add_argument("--pcnet-rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3],
                        help="0 alone: no PCNet-M runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "results" / "vae_rate_screen.json"))
    args = parser.parse_args(argv)
    for name, rates in (("--stage1-rates", args.stage1_rates), ("--pcnet-rates", args.pcnet_rates)):
        if len({f"{r:.0e}" for r in rates}) < len(rates):  # the results are keyed by the rate at one digit
            parser.error(f"{name}: two rates with the same one-digit form ({rates})")
    if args.stage1_steps < 20 or args.pcnet_steps < 20:
        parser.error("--stage1-steps and --pcnet-steps must be at least 20 (a validation every 5% of the run)")

    import torch

    from amodalkit.amodal_vae import experiments, train_stage1
    from amodalkit.profiles import resolve
    from amodalkit.results import atomic_write_bytes

    torch.set_num_threads(2)
    out_path = Path(args.out)
    out: dict = json.loads(out_path.read_text()) if out_path.exists() else {}
    out.pop("seed", None)  # files written before --seeds: one seed, 0
    analysis = resolve("vae_analysis", "quick")
    robust = resolve("vae_robustness", "quick")
    run_stage1, run_pcnet = args.stage1_rates != [0], args.pcnet_rates != [0]
    if run_stage1:
        stage1 = out["stage1"] = {}
        base = dataclasses.replace(experiments.recipe_from(analysis), anneal=False)
        out["stage1_setup"] = dict(world=analysis["world"], steps=args.stage1_steps, batch=base.batch,
                                   width=base.width, kl_weight=base.kl_final, seeds=args.seeds)
    if run_pcnet:
        pcnet = out["pcnet"] = {}
        out["pcnet_setup"] = dict(world=experiments.ROBUSTNESS_WORLD, steps=args.pcnet_steps, batch=robust["batch"],
                                  width=robust["deo_width"], size=robust["deo_size"], seeds=args.seeds)
    def write(final: bool) -> None:  # after every seed: an interrupted screen keeps the seeds it finished
        for model, ran in (("stage1", run_stage1), ("pcnet", run_pcnet)):
            if ran:
                for entry in out[model].values():
                    entry["best"] = sum(entry["per_seed"]) / len(entry["per_seed"])
                out[f"{model}_chosen"] = min(out[model], key=lambda r: out[model][r]["best"])
                if final:
                    print(f"{model}: " + ", ".join(f"lr {r}: {v['best']:.4g}" for r, v in out[model].items())
                          + f" -> {out[f'{model}_chosen']}")
        atomic_write_bytes(out_path, (json.dumps(out, indent=1) + "\n").encode())

    for seed in args.seeds:
        if run_stage1:
            data = experiments.chapter_data(analysis["world"], seed, analysis, splits=())
            for rate in args.stage1_rates:
                recipe = dataclasses.replace(base, steps1=args.stage1_steps, lr1=rate)
                h = train_stage1(recipe, *data.stage1_masks, seed=seed, data_key=dict(data.key, screen=True)).history
                _record(stage1, rate, seed, h)
        if run_pcnet:
            street = experiments.chapter_data(experiments.ROBUSTNESS_WORLD, seed, robust, splits=())
            for rate in args.pcnet_rates:
                params = dict(robust, deo_steps=args.pcnet_steps, deo_lr=rate)
                _record(pcnet, rate, seed, experiments.train_pcnet(street, params, seed).history)
        write(final=False)
    write(final=True)
    return out


def _record(section: dict, rate: float, seed: int, history: dict) -> None:
    """Add one run's best validation loss to ``section[rate]`` (and its curve, for the first seed run)."""
    entry = section.setdefault(f"{rate:.0e}", {"per_seed": [], "seeds": []})
    entry["per_seed"].append(min(history["val_loss"]))
    entry["seeds"].append(seed)
    entry.setdefault("val_step", history["val_step"])
    entry.setdefault("val_loss", history["val_loss"])


if __name__ == "__main__":
    main()

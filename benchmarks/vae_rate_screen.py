"""Which learning rates do the Amodal-VAE chapters train with? Short runs, compared on their validation loss (issue 33).

The rate of each model the convergence gates read is chosen on a short run's validation loss, never on the gate:

* stage 1 (a constant KL weight, the quick profile's sizes and data of `vae_analysis`, seed 0): ``--stage1-steps``
  steps at each of ``--stage1-rates`` (the paper's is 1e-3);
* PCNet-M (`vae_robustness`'s sizes and data on `street`, seed 0): ``--pcnet-steps`` steps at each of
  ``--pcnet-rates`` (the release's is 1e-3, with SGD).

Writes ``results/vae_rate_screen.json`` (the best validation loss of each run and its curve) and prints a table; the
chosen rate is the one with the lowest best validation loss.

    python benchmarks/vae_rate_screen.py
    python benchmarks/vae_rate_screen.py --stage1-rates 1e-3 8e-3 --pcnet-rates 0
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
    parser.add_argument("--stage1-rates", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3, 8e-3])
    parser.add_argument("--pcnet-steps", type=int, default=600)
    parser.add_argument("--pcnet-rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3],
                        help="0 alone: no PCNet-M runs")
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
    out: dict = {"seed": 0, "stage1": {}, "pcnet": {}}
    analysis = resolve("vae_analysis", "quick")
    data = experiments.chapter_data(analysis["world"], 0, analysis, splits=())
    base = dataclasses.replace(experiments.recipe_from(analysis), anneal=False)
    out["stage1_setup"] = dict(world=analysis["world"], steps=args.stage1_steps, batch=base.batch, width=base.width,
                               kl_weight=base.kl_final)
    for rate in args.stage1_rates:
        recipe = dataclasses.replace(base, steps1=args.stage1_steps, lr1=rate)
        h = train_stage1(recipe, *data.stage1_masks, seed=0, data_key=dict(data.key, screen=True)).history
        out["stage1"][f"{rate:.0e}"] = dict(best=min(h["val_loss"]), val_step=h["val_step"], val_loss=h["val_loss"])
    if args.pcnet_rates != [0]:
        robust = resolve("vae_robustness", "quick")
        street = experiments.chapter_data(experiments.ROBUSTNESS_WORLD, 0, robust, splits=())
        out["pcnet_setup"] = dict(world=experiments.ROBUSTNESS_WORLD, steps=args.pcnet_steps, batch=robust["batch"],
                                  width=robust["deo_width"], size=robust["deo_size"])
        for rate in args.pcnet_rates:
            params = dict(robust, deo_steps=args.pcnet_steps, deo_lr=rate)
            h = experiments.train_pcnet(street, params, 0).history
            out["pcnet"][f"{rate:.0e}"] = dict(best=min(h["val_loss"]), val_step=h["val_step"], val_loss=h["val_loss"])
    for model in ("stage1", "pcnet"):
        if out[model]:
            out[f"{model}_chosen"] = min(out[model], key=lambda r: out[model][r]["best"])
            print(f"{model}: " + ", ".join(f"lr {r}: {v['best']:.4g}" for r, v in out[model].items())
                  + f" -> {out[f'{model}_chosen']}")
    atomic_write_bytes(Path(args.out), (json.dumps(out, indent=1) + "\n").encode())
    return out


if __name__ == "__main__":
    main()

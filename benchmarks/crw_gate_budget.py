"""How long must CRW train before the correspondence gate passes? (issue 14)

The gate of crw.b / crw.d / crw.g / crw.h asks that the main recipe's relative drop of the validation walk loss on
`vos` exceed, by at least ``CRW_MIN_MARGIN``, the drop the same recipe reaches on videos of independent noise. The
chapters' quick profile cannot afford long runs (every chapter model of 3 seeds within 15 minutes), so this script
trains the main recipe and its noise control once for longer, with the chapter's data, recipe and seeds (at width 16
unless told otherwise: the chapters' width 8 is a budget cut), and reads the
margin off the validation curves: the training loop draws every batch from (seed, step) and Adam has no schedule, so
the validation at step s of a long run is exactly the last-step validation of a run of s steps.

It also scores label propagation (the chapters' J&F on the `vos` test clips) at every validation of the `vos` run
(so the curve says whether the features propagate better as the walk loss falls) and for the final weights against
the untrained network and raw pixels. The J&F is measured inside the validation, which the training loop runs in eval
mode with the global RNG set from the step and restored, so it leaves the training bit for bit as without it. Models
are cached as the chapters cache theirs (the same key for the same recipe). Writes ``results/crw_gate_budget.json``
and prints a table.

    python benchmarks/crw_gate_budget.py --steps 2400 --validate-every 90 --seeds 0   # as recorded: 112 min here
    python benchmarks/crw_gate_budget.py                          # 450 steps, seeds 0-2 (about 55 min here)
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=450, help="training steps of the long run (default 450)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=16,
                        help="ResNet-18 base width (default 16, the issue's 'width 16 or more'; the quick chapters use 8)")
    parser.add_argument("--validate-every", type=int, default=None,
                        help="steps between validations (default steps // 10); 90 keeps the 900-step record's points")
    parser.add_argument("--out", default=str(ROOT / "results" / "crw_gate_budget.json"))
    args = parser.parse_args(argv)
    if args.steps < 10:
        parser.error(f"--steps must be at least 10 (the curve has a point every steps // 10), got {args.steps}")
    if args.validate_every is not None and not 1 <= args.validate_every <= args.steps:
        parser.error(f"--validate-every must be between 1 and --steps ({args.steps}), got {args.validate_every}")

    import torch

    from amodalkit.claims import CRW_MIN_MARGIN
    from amodalkit.crw import (Recipe, feature_fn, initial_model, noise_split, validation_loss, vos_data,
                              walk_loss_on)
    from amodalkit.profiles import resolve
    from amodalkit.propagation import evaluate_clips
    from amodalkit.results import atomic_write_bytes
    from amodalkit.train import train_cached

    p = resolve("crw_ablations", "quick")
    recipe = Recipe(crop=p["crop"], patch=p["patch"], grid=p["grid"], batch=p["batch"], width=args.width, dim=p["dim"],
                    steps=args.steps, lr=p["lr"], stride=p["stride"])
    propagation = dict(radius=p["radius"], topk=p["topk"], context=p["context"], temperature=p["temperature"])
    runs = {}
    for seed in args.seeds:
        start = time.perf_counter()
        data = vos_data(seed, preset=p["preset"], height=p["height"], width=p["width"], n_frames=p["n_frames"],
                        train_clips=p["train_clips"], val_clips=p["val_clips"], test_clips=p["test_clips"])

        def propagation_jf(model) -> float:
            return evaluate_clips(feature_fn(model, "res3", p["test_scale"]), data.test, **propagation)[0].overall["J&F"]

        def run(train_videos, val_videos, key, with_jf: bool) -> dict:
            """As amodalkit.crw.walk_loss_drop, with the validation every --validate-every steps (and J&F with it)."""
            with torch.no_grad():
                before = validation_loss(initial_model(recipe, seed).eval(), val_videos, recipe)
            if with_jf:
                def validate(m):
                    return dict(loss=validation_loss(m, val_videos, recipe), jf=propagation_jf(m))
            else:
                def validate(m):
                    return validation_loss(m, val_videos, recipe)
            # train_crw's cache entry (the same name, config and code), with this validation
            config = dict(method="crw", recipe=dataclasses.asdict(recipe), data=key, seed=seed)
            result = train_cached("crw", config, lambda: initial_model(recipe, seed),
                                  lambda m, step, g: walk_loss_on(m, train_videos, recipe, g), code=("crw.py",),
                                  steps=recipe.steps, lr=recipe.lr, seed=seed, validate=validate,
                                  validate_every=args.validate_every, select=recipe.select,
                                  desc=f"CRW {key.get('videos', 'vos')} seed {seed}")
            return dict(before=before, drop=1 - result.selected_val_loss / before, result=result)

        vos_run = run(data.train, data.val, data.key, with_jf=True)
        noise_train, noise_val, noise_key = noise_split(data, seed)
        noise_run = run(noise_train, noise_val, noise_key, with_jf=False)
        gate = dict(vos=vos_run["drop"], noise=noise_run["drop"], margin=vos_run["drop"] - noise_run["drop"],
                    vos_before=vos_run["before"], noise_before=noise_run["before"],
                    vos_history=vos_run["result"].history, noise_history=noise_run["result"].history)
        seconds = time.perf_counter() - start
        model = vos_run["result"].model
        jf = dict(trained=propagation_jf(model), untrained=propagation_jf(initial_model(recipe, seed)),
                  pixels=propagation_jf(None))
        vos, noise = gate["vos_history"], gate["noise_history"]
        # the margin a run of s steps would reach: drops 1 - L(s) / L(0) on each kind of video, L(0) the initial network's
        margins = [(1 - v / gate["vos_before"]) - (1 - n / gate["noise_before"])
                   for v, n in zip(vos["val_loss"], noise["val_loss"])]
        passes = [s for s, m in zip(vos["val_step"], margins) if m >= CRW_MIN_MARGIN]
        runs[seed] = dict(seconds=round(seconds, 1), val_step=vos["val_step"], vos_val_loss=vos["val_loss"],
                          noise_val_loss=noise["val_loss"], vos_before=gate["vos_before"],
                          noise_before=gate["noise_before"], margin_at_step=margins, margin=gate["margin"],
                          first_passing_step=passes[0] if passes else None, jf=jf,
                          jf_at_step=vos.get("val_jf"))
        print(f"seed {seed}: margin by step " + ", ".join(f"{s}: {m:+.3f}" for s, m in zip(vos["val_step"], margins)))
        print(f"seed {seed}: margin {gate['margin']:+.3f} (vos {gate['vos']:.3f}, noise {gate['noise']:.3f}); "
              f"J&F trained {jf['trained']:.3f}, untrained {jf['untrained']:.3f}, pixels {jf['pixels']:.3f}; "
              f"{seconds:.0f} s", flush=True)
    out = dict(about=__doc__.splitlines()[0], recipe=dataclasses.asdict(recipe), min_margin=CRW_MIN_MARGIN,
               seeds=runs, torch=torch.__version__, threads=torch.get_num_threads())
    atomic_write_bytes(Path(args.out), (json.dumps(out, indent=1) + "\n").encode())
    return out


if __name__ == "__main__":
    main()

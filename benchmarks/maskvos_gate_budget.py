"""How long must Mask-VOS's phase A train before the correspondence gate passes? (issue 17)

The gate of maskvos.c / .b / .s2.seg-helps / .g asks that a learner's relative drop of the phase-A validation loss on
`vos` exceed, by at least ``CRW_MIN_MARGIN``, the drop the same recipe reaches on videos of independent noise. The
chapter's quick profile trains phase A for ``corr_steps`` (150); this script trains it once for longer, with the
chapter's data, recipe and seeds, and reads the margin off the validation curves: every batch is drawn from
(seed, step) and Adam runs without a schedule, so the validation at step s of a long run is the last-step validation
of a run of s steps. It also scores label propagation with the long run's keys (J&F on the chapter's test clips)
beside the initial keys'. Models are cached as the chapter caches its own. Writes ``results/maskvos_gate_budget.json``.

    python benchmarks/maskvos_gate_budget.py                      # L_Corr, 900 steps, seeds 0-2
    python benchmarks/maskvos_gate_budget.py --learners lcorr crw --steps 600 --seeds 0
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
    parser.add_argument("--steps", type=int, default=900, help="phase-A steps of the long run (default 900)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learners", nargs="+", default=["lcorr"], choices=["lcorr", "crw"])
    parser.add_argument("--out", default=str(ROOT / "results" / "maskvos_gate_budget.json"))
    args = parser.parse_args(argv)
    if args.steps < 10:
        parser.error(f"--steps must be at least 10 (the curve has a point every steps // 10), got {args.steps}")

    import torch
    import torch.nn.functional as F

    from amodalkit.claims import CRW_MIN_MARGIN
    from amodalkit.crw import noise_split, to_input, vos_data
    from amodalkit.maskvos import MaskRecipe
    from amodalkit.maskvos.experiments import correspondence_validation, initial_maskvos, train_phase_a
    from amodalkit.profiles import resolve
    from amodalkit.propagation import evaluate_clips
    from amodalkit.results import atomic_write_bytes

    p = resolve("maskvos", "quick")
    recipe = MaskRecipe(crop=p["crop"], clip_len=p["clip_len"], gap=p["gap"], batch=p["batch"], grid=p["grid"],
                        grid_ref=p["grid_ref"], width=p["net_width"], dim=p["dim"], value_dim=p["value_dim"], lr=p["lr"],
                        corr_steps=args.steps, seg_steps=p["seg_steps"], seg_batch=p["seg_batch"],
                        n_clusters=p["n_clusters"], updates=p["updates"], crw_grid=p["crw_grid"], crw_patch=p["crw_patch"])
    propagation = dict(radius=p["radius"], topk=p["topk"], context=p["context"])

    def key_features(model):
        @torch.no_grad()
        def features(frames):
            model.eval()
            x = F.interpolate(to_input(frames), scale_factor=p["test_scale"], mode="bilinear", align_corners=False)
            return torch.cat([model.keys(x[i:i + 8]) for i in range(0, len(x), 8)])
        return features

    runs = {}
    for learner in args.learners:
        for seed in args.seeds:
            start = time.perf_counter()
            data = vos_data(seed, preset=p["preset"], height=p["height"], width=p["width"], n_frames=p["n_frames"],
                            train_clips=p["train_clips"], val_clips=p["val_clips"], test_clips=p["test_clips"])
            noise_train, noise_val, noise_key = noise_split(data, seed)
            curves = {}
            for kind, (train_v, val_v, key) in {"vos": (data.train, data.val, data.key),
                                                "noise": (noise_train, noise_val, noise_key)}.items():
                with torch.no_grad():
                    before = correspondence_validation(initial_maskvos(recipe, seed).eval(), learner, val_v, recipe)
                result = train_phase_a(learner, recipe, train_v, val_v, seed=seed, data_key=key)
                curves[kind] = (before, result)
            (vos_before, vos_run), (noise_before, noise_run) = curves["vos"], curves["noise"]
            steps = vos_run.history["val_step"]
            margins = [(1 - v / vos_before) - (1 - n / noise_before)
                       for v, n in zip(vos_run.history["val_loss"], noise_run.history["val_loss"])]
            passes = [s for s, m in zip(steps, margins) if m >= CRW_MIN_MARGIN]
            jf = {name: evaluate_clips(key_features(model), data.test, **propagation)[0].overall["J&F"]
                  for name, model in (("trained", vos_run.model), ("initial", initial_maskvos(recipe, seed)))}
            seconds = time.perf_counter() - start
            runs[f"{learner}/{seed}"] = dict(learner=learner, seed=seed, seconds=round(seconds, 1), val_step=steps,
                                             vos_val_loss=vos_run.history["val_loss"],
                                             noise_val_loss=noise_run.history["val_loss"], vos_before=vos_before,
                                             noise_before=noise_before, margin_at_step=margins,
                                             first_passing_step=passes[0] if passes else None,
                                             passes_from=next((s for i, s in enumerate(steps)
                                                               if all(m >= CRW_MIN_MARGIN for m in margins[i:])), None),
                                             jf=jf)
            print(f"{learner} seed {seed}: margin by step " + ", ".join(f"{s}: {m:+.3f}" for s, m in zip(steps, margins)))
            print(f"{learner} seed {seed}: J&F with the keys: trained {jf['trained']:.3f}, initial {jf['initial']:.3f}; "
                  f"{seconds:.0f} s", flush=True)
    out = dict(about=__doc__.splitlines()[0], recipe=dataclasses.asdict(recipe), min_margin=CRW_MIN_MARGIN, runs=runs,
               torch=torch.__version__, threads=torch.get_num_threads())
    atomic_write_bytes(Path(args.out), (json.dumps(out, indent=1) + "\n").encode())
    return out


if __name__ == "__main__":
    main()

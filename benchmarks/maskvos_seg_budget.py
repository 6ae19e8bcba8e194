"""How long must Mask-VOS's phase B train before its decoder converges? (issue 35)

The decoder claims (maskvos.c, maskvos.s2.seg-helps) are gated on phase B's convergence: L_Seg on the validation
videos' pseudo masks (``history["val_seg"]`` of :func:`amodalkit.maskvos.train_phase_b`) must improve by less than 1%
(relative) over the last 20% of phase B, read on the validations after the last pseudo-mask update
(:func:`amodalkit.maskvos.seg_plateau`). Phase B re-makes its pseudo masks over its first half, so a prefix of a long
run is not a shorter run: each length in ``--steps`` is a run of its own (the chapter's data, recipe and seeds,
cached as the chapter caches them). For each run this records the gate, the validation curve, the entropy of the
validation pseudo masks' label frequencies (the loss of a decoder that has learned only the label prior) and, on the
chapter's test clips, the decoder's effect as the chapter's gates read it (share of the read-out's foreground it
changes, its foreground area over the read-out's) and J&F (a measurement, never a selection), also with the decoded
masks alone in the memory (``jf_decoded_memory``: this book's earlier inference, for the differences page). Writes
``results/maskvos_seg_budget.json`` after every run (keeping the runs an earlier call recorded) and prints a line per
run.

    python benchmarks/maskvos_seg_budget.py --steps 200 400 --seeds 0           # L_Corr + L_Seg
    python benchmarks/maskvos_seg_budget.py --steps 400 --seeds 0 1 2 --learners lcorr crw
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def label_entropy(labels, n_labels: int) -> float:
    """Entropy (nats) of the label frequencies of ``labels`` (any shape, ints in [0, n_labels))."""
    import torch

    freq = torch.bincount(labels.flatten().long(), minlength=n_labels).double()
    freq = freq[freq > 0] / freq.sum()
    return float(-(freq * freq.log()).sum())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 400], help="phase-B lengths, one run each")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--learners", nargs="+", default=["lcorr"], choices=["lcorr", "crw"])
    parser.add_argument("--out", default=str(ROOT / "results" / "maskvos_seg_budget.json"))
    args = parser.parse_args(argv)
    if min(args.steps) < 10:
        parser.error(f"--steps must be at least 10 (a validation every 10% of the run), got {args.steps}")

    import dataclasses

    from amodalkit.claims import MASKVOS_MAX_PLATEAU
    from amodalkit.data.davis import davis_ids
    from amodalkit.maskvos import decoder_effect, seg_plateau, segment_clip, train_phase_b
    from amodalkit.maskvos.experiments import chapter_data, chapter_recipe, pseudo_masks
    from amodalkit.metrics import evaluate_davis
    from amodalkit.profiles import resolve
    from amodalkit.results import atomic_write_bytes

    params = resolve("maskvos", "quick")
    propagation = dict(radius=params["radius"], topk=params["topk"], context=params["context"])
    out_path = Path(args.out)
    out = {"about": __doc__.splitlines()[0], "gate": MASKVOS_MAX_PLATEAU, "runs": {}}
    if out_path.exists():  # runs of other seeds or lengths are kept (each run is keyed learner/seed/steps)
        out["runs"] = json.loads(out_path.read_text())["runs"]
    for seed in args.seeds:
        data, foreground = chapter_data(params, seed)
        for learner in args.learners:
            for steps in args.steps:
                recipe = dataclasses.replace(chapter_recipe(params), seg_steps=steps)
                start = time.perf_counter()
                result = train_phase_b(learner, "seg", recipe, data, foreground, seed=seed)
                seconds = time.perf_counter() - start
                h = result.history
                model = result.model.eval()
                val_labels = pseudo_masks(model, data.val, recipe, seed=seed)
                preds, truth, plain, decoded, coarse = {}, {}, {}, {}, {}
                for i, clip in enumerate(data.test):
                    ids, name = davis_ids(clip), f"seq{i:04d}"
                    seg = segment_clip(model, clip.frames, ids[0], rounds=params["rounds"], scale=params["test_scale"],
                                       **propagation)
                    preds[name], truth[name], decoded[name], coarse[name] = seg["masks"], ids, seg["decoded"], seg["coarse"]
                    plain[name] = segment_clip(model, clip.frames, ids[0], rounds=params["rounds"],
                                                        scale=params["test_scale"], blend=False, **propagation)["masks"]
                change, keeps = decoder_effect(decoded, coarse)
                run = dict(learner=learner, seed=seed, steps=steps, seconds=round(seconds, 1),
                           gate=seg_plateau(h, recipe),
                           val_step=h["val_step"], val_seg=h["val_seg"],
                           label_entropy=label_entropy(val_labels, recipe.n_objects + 1),
                           decoder_change=change, decoder_keeps=keeps,
                           jf=evaluate_davis(preds, truth).overall["J&F"],
                           jf_decoded_memory=evaluate_davis(plain, truth).overall["J&F"])
                out["runs"][f"{learner}/{seed}/{steps}"] = run
                atomic_write_bytes(out_path, (json.dumps(out, indent=1) + "\n").encode())
                print(f"{learner} seed {seed} {steps:5d} steps: gate {run['gate']:.3f}, L_Seg {h['val_seg'][-1]:.3f} "
                      f"(label entropy {run['label_entropy']:.3f}), decoder changes {run['decoder_change']:.2f} keeps "
                      f"{run['decoder_keeps']:.2f}, J&F {run['jf']:.3f} (decoded memory {run['jf_decoded_memory']:.3f}), {seconds:.0f} s", flush=True)
    return out


if __name__ == "__main__":
    main()

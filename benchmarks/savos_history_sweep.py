"""Does any recipe or world change within reach make SaVos's full model use its history? (issue 13)

For each configuration below, the `full` row is trained on `fishbowl` for seeds 0-2 exactly as the ablation chapter
trains it (same tracks, loss, selection by the self-supervised validation loss), and its reliance probes are measured
(``amodalkit.savos.reliance_probes``: the drop in occluded mIoU when each frame's history is taken from another
clip's track, when the flow is zeroed, when the image is zeroed). The gate of the temporal claims needs a history drop
>= 0.02 on every seed.

Each configuration runs in its own cache folder (``$AMODALKIT_CACHE/history-sweep/<name>``), since world parameters
other than the defaults are set here by overriding the fishbowl defaults for this process. Writes
``results/savos_history_sweep.json`` (per-seed values, settings, seconds) and prints a table.

    python benchmarks/savos_history_sweep.py            # every configuration (over an hour on 2 cores: the 96-clip
                                                        # run alone took about 25 min and ~7 GB of cache)
    python benchmarks/savos_history_sweep.py quick t16  # some of them
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# each configuration changes some of the chapter's quick parameters (profiles.resolve("savos_ablations", "quick"),
# read in run() so that the sweep follows the chapter) or the world's
CONFIGS = {
    "quick": ("the chapter's recipe", {}, {}, "full"),
    "quick_old_world": ("the chapter's recipe, the fishbowl before issue 13 (one-frame flips, depth swaps)", {},
                        "old", "full"),
    "t16": ("600 steps (3x) on whole 16-frame clips", dict(steps=600, window=16), {}, "full"),
    "t16_forward": ("as t16, the forward pass alone (no_bidirectional)", dict(steps=600, window=16), {}, "no_bidirectional"),
    "t16_exact_flow": ("as t16, the world's exact flow as input", dict(steps=600, window=16, flow="truth"), {}, "full"),
    "t16_96_clips": ("as t16, 96 training clips (4x the data)", dict(steps=600, window=16, train_clips=96), {}, "full"),
    "t16_fast_fish": ("as t16, fish twice as fast (speed 2-4 px/frame): occluders pass within a window",
                      dict(steps=600, window=16), dict(speed=(2.0, 4.0)), "full"),
    "t32_long_clips": ("600 steps on whole 32-frame clips", dict(steps=600, window=32), dict(n_frames=32), "full"),
    "t16_crop32": ("as t16, crops of 32 x 64 (4x the pixels; seed 0 only: about 5 min)", dict(steps=600, window=16, crop=32),
                   {}, "full"),
}
SEEDS = {"t16_crop32": (0,)}  # the others: seeds 0-2


def run(name: str, seeds=(0, 1, 2)) -> dict:
    about, recipe, world, row = CONFIGS[name]
    cache = Path(os.environ.get("AMODALKIT_CACHE", Path.home() / ".cache" / "amodalkit")) / "history-sweep" / name
    os.environ["AMODALKIT_CACHE"] = str(cache)
    import amodalkit.data.worlds as worlds
    from amodalkit import profiles
    from amodalkit.savos.experiments import chapter_setup, reliance_probes, variant_scores

    chapter = profiles.resolve("savos_ablations", "quick")  # the chapter's own parameters

    defaults = dict(worlds.FISHBOWL_DEFAULTS)
    overrides = dict(worlds.FISHBOWL_BEFORE_ISSUE_13) if world == "old" else dict(world)
    worlds.WORLDS["fishbowl"]["defaults"] = {**defaults, **overrides}
    try:
        out = dict(about=about, recipe=recipe, world=overrides, row=row, seeds=[], seconds=[], best_step=[],
                   **{k: [] for k in ("intact", "history", "flow", "image")})
        for seed in seeds:
            start = time.perf_counter()
            data, rec, key = chapter_setup("fishbowl", seed, {**chapter, **recipe})
            result, _, _ = variant_scores(row, data, rec, seed, key)
            probes = reliance_probes(result.model, data)
            for k, v in probes.items():
                out[k].append(round(float(v), 4))
            out["seeds"].append(seed)
            out["best_step"].append(int(result.best_step))
            out["seconds"].append(round(time.perf_counter() - start, 1))
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {probes[k]:.3f}" for k in probes), flush=True)
        return out
    finally:
        worlds.WORLDS["fishbowl"]["defaults"] = defaults
        os.environ["AMODALKIT_CACHE"] = str(cache.parent.parent)


def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; expected some of {sorted(CONFIGS)}")
    path = ROOT / "results" / "savos_history_sweep.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    for name in names or list(CONFIGS):
        saved[name] = run(name, SEEDS.get(name, (0, 1, 2)))
        tmp = path.with_suffix(".tmp")  # after each configuration, atomically: nothing lost on interrupt
        tmp.write_text(json.dumps(saved, indent=1) + "\n")
        tmp.replace(path)
    print(f"\n{'configuration':<18} {'intact':>14} {'- history':>14} {'- flow':>14} {'- image':>14}  history drops per seed")
    for name, r in saved.items():
        cells = [f"{np.mean(r[k]):.3f} ± {np.std(r[k], ddof=1) if len(r[k]) > 1 else 0:.3f}" for k in ("intact", "history", "flow", "image")]
        print(f"{name:<18} " + " ".join(f"{c:>14}" for c in cells) + "  " + " / ".join(f"{v:.3f}" for v in r["history"]))


if __name__ == "__main__":
    main(sys.argv[1:])

"""At which crop size can the SaVos network use time? The supervised ladder.

The chapter's SaVos network does not use its history at the quick size (16 x 32 crops, base 8): its history probes
stay under the gate. Is that the size, the architecture or the loss? Here the loss is taken out of the way: each
network is trained on the amodal ground truth (BCE of the completer's output of every frame against the amodal mask,
``Variant(loss="supervised")``) on the ablation chapter's `fishbowl` tracks, windows and selection (the lowest
validation loss, here a supervised one: this is a diagnostic of the architecture, not a row of the paper), at three
sizes:

* ``supervised``: the SaVos network of Table 6, its inputs unchanged;
* ``supervised_no_temporal``: the same without the LSTM (each frame's state from that frame alone);
* ``pcnet_supervised``: Self-Deocclusion's PCNet-M (a U-Net with skips) on [visible mask, other objects' masks];
* diagnostics: ``supervised_release_net`` (the release's GroupNorm with one group, LeakyReLU 0.01, a GroupNorm on the
  joined vectors and its narrower motion encoder: 17,303,124 parameters at 64 x 128, as the release) and
  ``supervised_state_only`` (the completer's own encoder sees zeros, so the shape can only come through the temporal
  state: what the release's completer, which is fed a flow channel in place of the visible mask, has to do).

Each cell (size, row, seed) first picks its learning rate among ``LRS`` by the best validation loss of a short run
(``LR_STEPS`` steps; the pilot saw lr 1e-3 collapse the encoder at 32 x 64), then trains at that rate for
``MAX_STEPS`` steps or as many as ``CELL_SECONDS`` allow at the measured step cost, and records: the occluded mIoU
on the test tracks (the chapter's metric), the reliance probes of the SaVos rows (the drop when the history is another
clip's, the gain of the model's own past over none, the drops without flow and without image), the validation curve
and its plateau statistic (relative improvement of the best validation loss over the last 20% of the steps; under
0.01: plateaued). A cell that has not plateaued reports where its curve stands. Before the cells, the world's own
answer: the share of the scored objects' occluded pixels that are visible in the window's earlier frames (exact
trajectories, no model), on `fishbowl` and `street`.

Every cell is written to ``results/savos_ladder.json`` as it finishes (re-running a finished cell reads its models
from the cache). It runs for hours on 2 cores; run it alone:

    python benchmarks/savos_ladder.py                         # every size, seed 0
    python benchmarks/savos_ladder.py --sizes 32x64 --seeds 1 2
    python benchmarks/savos_ladder.py --sizes 32x64 --rows supervised --lrs 1e-4   # one rate, its own cell
    python benchmarks/savos_ladder.py --world-only --seeds 0 1 2  # what the past can tell, no training
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

OUT = ROOT / "results" / "savos_ladder.json"
# crop height (width twice it), first-layer channels (Table 6: 32 at 64 x 128), windows per batch (the paper's
# FISHBOWL batch is 24; 4 at 64 x 128 keeps a step under a second here)
SIZES = {"16x32": dict(crop=16, base=8, batch=8), "32x64": dict(crop=32, base=16, batch=8),
         "64x128": dict(crop=64, base=32, batch=4)}
ROWS = ("supervised", "supervised_no_temporal", "pcnet_supervised")
# diagnostics (by --rows): the release's normalisation and activations, and a completer that sees no visible mask
DIAGNOSTIC_ROWS = ("supervised_release_net", "supervised_state_only")
LRS = (1e-3, 3e-4, 1e-4)
LR_STEPS = 150
MAX_STEPS = 3000
CELL_SECONDS = 1800
WORLD = "fishbowl"


def _record(key: str, cell: dict) -> None:
    from amodalkit.results import atomic_write_json

    data = json.loads(OUT.read_text()) if OUT.is_file() else {}
    data.setdefault("about", __doc__.splitlines()[0])
    data.setdefault("settings", dict(sizes=SIZES, lrs=LRS, lr_steps=LR_STEPS, max_steps=MAX_STEPS,
                                     cell_seconds=CELL_SECONDS, world=WORLD))
    data.setdefault("cells", {})[key] = cell
    atomic_write_json(OUT, data)


def cell_key(size: str, row: str, seed: int, lrs: tuple[float, ...]) -> str:
    """``size/row/seed`` (the rate chosen among ``LRS``), or ``size/row/seed/lr=X`` for a rate fixed by hand."""
    return f"{size}/{row}/{seed}" + ("" if tuple(lrs) == LRS else "/lr=" + ",".join(f"{lr:g}" for lr in lrs))


def run_cell(size: str, row: str, seed: int, lrs: tuple[float, ...] = LRS) -> dict:
    from amodalkit import profiles
    from amodalkit.savos.experiments import chapter_setup, image_predictions, reliance_probes, score_tracks
    from amodalkit.savos.model import VARIANTS, SaVosNet
    from amodalkit.savos.training import train_variant
    from amodalkit.train import plateau_improvement

    params = {**profiles.resolve("savos_ablations", "quick"), **SIZES[size], "pcnet_width": SIZES[size]["base"]}
    data, recipe, key = chapter_setup(WORLD, seed, params)
    trials, costs = {}, []
    for lr in lrs:  # the rate: the best validation loss of a short run (a single rate given: that one)
        start = time.perf_counter()
        result = train_variant(row, data, dataclasses.replace(recipe, steps=LR_STEPS, lr=lr), seed, key)
        trials[lr] = result.best_val_loss
        if not result.from_cache:
            costs.append((time.perf_counter() - start) / LR_STEPS)  # a step with its share of the validations
    lr = min(trials, key=trials.get)
    earlier = json.loads(OUT.read_text()).get("cells", {}).get(cell_key(size, row, seed, lrs)) if OUT.is_file() else None
    if costs:
        steps = int(min(MAX_STEPS, CELL_SECONDS / min(costs)) // 20 * 20)
    elif earlier:  # the trials came from the cache: the length the cell chose then (its model is cached too)
        steps = earlier["steps"]
    else:
        raise RuntimeError(f"{size}/{row}/{seed}: the rate trials are cached but the cell's length is not recorded "
                           f"in {OUT}; clear those models from the cache to time a step again")
    start = time.perf_counter()
    result = train_variant(row, data, dataclasses.replace(recipe, steps=steps, lr=lr), seed, key)
    seconds = time.perf_counter() - start
    model = result.model
    cell = dict(size=size, row=row, seed=seed, lr=lr, lr_trials={str(k): v for k, v in trials.items()}, steps=steps,
                seconds_per_step=round(min(costs), 4) if costs else (earlier or {}).get("seconds_per_step"),
                seconds=round(seconds, 1), from_cache=result.from_cache, best_step=result.best_step,
                plateau=plateau_improvement(result.history), val_step=result.history["val_step"],
                val_loss=result.history["val_loss"],
                parameters=sum(p.numel() for p in model.parameters()))
    if isinstance(model, SaVosNet):
        cell.update({k: round(float(v), 4) for k, v in reliance_probes(model, data).items()})
    else:
        cell["intact"] = round(float(score_tracks(data, image_predictions(model, VARIANTS[row], data)).miou("occluded")), 4)
    return cell


def world_cell(world: str, seed: int) -> dict:
    """What the past can tell at all on the chapter's tracks (exact trajectories; no model):
    :func:`amodalkit.savos.experiments.history_visibility` for the chapter's window."""
    from amodalkit import profiles
    from amodalkit.savos.experiments import chapter_setup, history_visibility

    params = profiles.resolve("savos_ablations", "quick")
    data, recipe, _ = chapter_setup(world, seed, params)
    return dict(world=world, seed=seed, window=recipe.window, **history_visibility(data, recipe.window))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS + DIAGNOSTIC_ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--lrs", nargs="+", type=float, default=list(LRS),
                        help="the rates a cell chooses among (one rate: that rate, recorded as its own cell)")
    parser.add_argument("--world-only", action="store_true",
                        help="only what the past can tell on the chapter's tracks (fishbowl and street, no training)")
    args = parser.parse_args(argv)
    for world in ("fishbowl", "street"):
        for seed in args.seeds:
            cell = world_cell(world, seed)
            _record(f"world/{world}/{seed}", cell)
            print(f"{world} seed {seed}: {cell['past']:.0%} of the occluded pixels visible in the {cell['window'] - 1} "
                  f"frames before, {cell['past_or_future']:.0%} within {cell['window'] - 1} before or after; occlusions "
                  f"last {cell['occlusion_run']:.1f} frames", flush=True)
    if args.world_only:
        return
    for size in args.sizes:
        for seed in args.seeds:
            for row in args.rows:
                cell = run_cell(size, row, seed, tuple(args.lrs))
                _record(cell_key(size, row, seed, tuple(args.lrs)), cell)
                probes = ", ".join(f"{k} {cell[k]:.3f}" for k in ("intact", "history", "own_history", "flow", "image")
                                   if k in cell)
                print(f"{size} {row} seed {seed}: lr {cell['lr']:g}, {cell['steps']} steps in {cell['seconds']:.0f} s, "
                      f"plateau {cell['plateau']:.3f}; {probes}", flush=True)


if __name__ == "__main__":
    main()

"""Evaluate a results folder on a DAVIS-2017 folder and write the CSVs the official toolkit writes.

``python -m amodalkit evaluate --davis ROOT --results DIR [--set val] [--task semi-supervised|unsupervised]``.

What is read, as davisvideochallenge/davis2017-evaluation reads it:

* the sequences listed in ``ROOT/ImageSets/2017/<set>.txt`` (``2019`` for the unsupervised test sets);
* per sequence, its JPEG frames (they must exist) and the sorted PNGs of ``ROOT/Annotations/480p/<seq>``
  (semi-supervised) or ``ROOT/Annotations_unsupervised/480p/<seq>`` (unsupervised); value 255 (void) counts as
  background, as in the toolkit; one annotation per frame;
* the predictions ``DIR/<seq>/<stem>.png`` for the annotations' file stems: frames 1..T-2 for the
  semi-supervised task, every frame for the unsupervised one. Pixel values are object ids (indexed or grey PNGs).

What is written into ``DIR``: ``global_results-<set>.csv`` (J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean,
F-Recall, F-Decay) and ``per-sequence_results-<set>.csv`` (Sequence, J-Mean, F-Mean; one row per object,
``<seq>_<k>``), with 3 decimals, as the toolkit. One difference on purpose: the toolkit reuses CSVs it finds in
``DIR`` without looking at the masks; here they are always recomputed (and we say so), since a stale CSV silently
reports an earlier run. Where the toolkit stops with a message, this raises an error naming the file.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import progress
from .metrics import DavisResult, evaluate_sequences
from .results import atomic_write_text

TASKS = ("semi-supervised", "unsupervised")
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


class EvaluationError(ValueError):
    """A DAVIS folder or results folder that cannot be evaluated (the message names the file)."""


def csv_paths(results_dir: Path | str, subset: str) -> tuple[Path, Path]:
    """The toolkit's two CSV files in a results folder."""
    results_dir = Path(results_dir)
    return results_dir / f"global_results-{subset}.csv", results_dir / f"per-sequence_results-{subset}.csv"


def _read_ids(path: Path) -> np.ndarray:
    """A PNG's pixel values as the toolkit reads them (``np.array(Image.open(path))``), in their own integer type."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            mode, ids = image.mode, np.array(image)
    except OSError as err:
        raise EvaluationError(f"{path}: cannot be read as a PNG ({err})") from None
    if ids.ndim != 2:
        raise EvaluationError(f"{path}: expected an indexed ('P') or grey PNG of object ids, got an image of mode "
                              f"{mode!r} with shape {ids.shape}")
    return ids


def sequence_names(davis_root: Path | str, subset: str, task: str) -> list[str]:
    """The sequences of ``ImageSets/<year>/<subset>.txt`` (year 2019 for the unsupervised test sets, as the toolkit)."""
    root = Path(davis_root)
    if not root.is_dir():
        raise EvaluationError(f"--davis: no folder at {root}")
    year = "2019" if task == "unsupervised" and subset in ("test-dev", "test-challenge") else "2017"
    listing = root / "ImageSets" / year / f"{subset}.txt"
    if not listing.is_file():
        raise EvaluationError(f"--set {subset}: {listing} is missing (it lists the sequences to evaluate)")
    names = listing.read_text().split()
    if not names:
        raise EvaluationError(f"--set {subset}: {listing} lists no sequence")
    return names


def read_ground_truth(davis_root: Path | str, name: str, task: str, resolution: str = "480p") -> tuple[np.ndarray, list[str]]:
    """A sequence's annotations as the toolkit reads them: ((T, H, W) int ids with 255 set to 0, file stems)."""
    root = Path(davis_root)
    frames = sorted((root / "JPEGImages" / resolution / name).glob("*.jpg"))
    if not frames:
        raise EvaluationError(f"sequence {name!r}: no frames in {root / 'JPEGImages' / resolution / name}")
    folder = root / ("Annotations" if task == "semi-supervised" else "Annotations_unsupervised") / resolution / name
    pngs = sorted(folder.glob("*.png"))
    if not pngs:
        raise EvaluationError(f"sequence {name!r}: no annotations in {folder} (the {task} task reads that folder)")
    if len(pngs) != len(frames):
        raise EvaluationError(f"sequence {name!r}: {len(frames)} frames but {len(pngs)} annotations in {folder}; "
                              f"the evaluation needs one annotation per frame")
    ids = [_read_ids(p) for p in pngs]
    for p, frame_ids in zip(pngs, ids):
        if frame_ids.shape != ids[0].shape:
            raise EvaluationError(f"{p}: {frame_ids.shape}, but {pngs[0].name} is {ids[0].shape}")
    gt = np.stack(ids)
    gt[gt == 255] = 0  # void is background for the toolkit's J and F
    return gt, [p.stem for p in pngs]


def read_predictions(results_dir: Path | str, name: str, stems: list[str], shape: tuple[int, int],
                     max_id: int | None = None) -> np.ndarray:
    """``results_dir/<name>/<stem>.png`` for each stem: (len(stems), H, W) ids. ``max_id``: the largest id allowed
    (the semi-supervised task's number of objects; the toolkit stops on a larger one)."""
    folder = Path(results_dir) / name
    out = None
    for i, stem in enumerate(stems):
        path = folder / f"{stem}.png"
        if not path.is_file():
            raise EvaluationError(f"{path} is missing: the results need one indexed PNG per annotated frame, named as "
                                  f"the annotation ({stem}.png)")
        ids = _read_ids(path)
        if ids.shape != shape:
            raise EvaluationError(f"{path}: {ids.shape}, but the annotation {stem}.png is {shape}")
        if max_id is not None and int(ids.max()) > max_id:
            raise EvaluationError(f"{path} holds object id {int(ids.max())}, but the first annotation has {max_id} "
                                  f"object(s) (ids 1..{max_id})")
        if out is None:
            out = np.zeros((len(stems), *shape), dtype=np.promote_types(ids.dtype, np.uint8))
        out[i] = ids
    return out


def evaluate_folder(davis_root: Path | str, results_dir: Path | str, subset: str = "val",
                    task: str = "semi-supervised", resolution: str = "480p", log=print) -> DavisResult:
    """The toolkit's numbers for a results folder (nothing is written; see :func:`run`). One sequence is in memory at
    a time, as in the toolkit."""
    if task not in TASKS:
        raise EvaluationError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    if not Path(results_dir).is_dir():
        raise EvaluationError(f"--results: no folder at {results_dir}")
    names = sequence_names(davis_root, subset, task)
    bar = progress(names, desc=f"evaluate ({task})")

    def sequences():
        for name in bar:
            ids, stems = read_ground_truth(davis_root, name, task, resolution)
            if task == "semi-supervised":
                if len(stems) < 3:
                    raise EvaluationError(f"sequence {name!r}: {len(stems)} frames; the semi-supervised task scores "
                                          f"frames 1..T-2 and needs at least 3")
                inner = read_predictions(results_dir, name, stems[1:-1], ids.shape[1:], max_id=int(ids[0].max()))
                # the first and last frames are never read: any content keeps the toolkit's numbers
                pred = np.concatenate([np.zeros_like(inner[:1]), inner, np.zeros_like(inner[:1])])
                evaluated = len(stems) - 2
            else:
                pred = read_predictions(results_dir, name, stems, ids.shape[1:])
                evaluated = len(stems)
            if evaluated > 256:
                log(f"warning: {name}: {evaluated} evaluated frames; the toolkit's decay bins wrap above 256 (uint8), "
                    f"so its J-Decay and F-Decay are not meaningful here (written as the toolkit computes them)")
            yield name, ids, pred

    try:
        return evaluate_sequences(sequences(), task)
    except EvaluationError:
        raise
    except ValueError as err:
        raise EvaluationError(str(err)) from None
    finally:
        bar.close()


def _format(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f}"  # pandas' to_csv(float_format="%.3f"): NaN is empty


def write_csvs(result: DavisResult, results_dir: Path | str, subset: str) -> tuple[Path, Path]:
    """The toolkit's CSVs (3 decimals, objects in the toolkit's order and labels), written atomically."""
    global_path, sequence_path = csv_paths(results_dir, subset)
    overall = dict(result.overall, **{"J&F-Mean": result.overall["J&F"]})
    atomic_write_text(global_path, ",".join(GLOBAL_COLUMNS) + "\n" + ",".join(_format(overall[c]) for c in GLOBAL_COLUMNS) + "\n")
    rows = [f"{name}_{k},{_format(o['J'].mean)},{_format(o['F'].mean)}" for (name, k), o in result.objects.items()]
    atomic_write_text(sequence_path, "Sequence,J-Mean,F-Mean\n" + "".join(row + "\n" for row in rows))
    return global_path, sequence_path


def run(davis_root: Path | str, results_dir: Path | str, subset: str = "val", task: str = "semi-supervised",
        log=print) -> DavisResult:
    """Evaluate, write the CSVs into ``results_dir`` and print both tables (the command line's ``evaluate``)."""
    global_path, sequence_path = csv_paths(results_dir, subset)
    stale = [p.name for p in (global_path, sequence_path) if p.is_file()]
    if stale:
        log(f"found {' and '.join(stale)} in {results_dir}: recomputing them from the masks (the official toolkit "
            f"would reuse them as they are)")
        for path in (global_path, sequence_path):  # gone even if the evaluation fails: never a stale report
            path.unlink(missing_ok=True)
    result = evaluate_folder(davis_root, results_dir, subset, task, log=log)
    write_csvs(result, results_dir, subset)
    log(f"--------------------------- Global results for {subset} ---------------------------")
    log(global_path.read_text().rstrip())
    log(f"\n---------- Per sequence results for {subset} ----------")
    log(sequence_path.read_text().rstrip())
    log(f"\nwritten: {global_path}, {sequence_path}")
    return result

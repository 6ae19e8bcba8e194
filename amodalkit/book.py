"""Run the notebooks under a profile, record their results, and build the offline Jupyter Book.

``python -m amodalkit book run``   executes notebooks with papermill, skipping those that are fresh (see below);
``python -m amodalkit book build`` stages the book (sources, executed notebooks, claims page, vendored widget
                                   JavaScript) from what is recorded and builds the HTML: it never runs a notebook;
``python -m amodalkit book status``lists which chapters are fresh, stale (and what changed) or never run;
``python -m amodalkit book vendor`` fetches the pinned widget JavaScript from the npm registry.

Layout (all under the repository root):
    notebooks/<name>.ipynb                  source notebooks, outputs stripped
    results/<profile>/<name>.json           the measurements of the last successful run, with its inputs (hashes of
                                            what it ran) and provenance (commit, device, wall time)
    results/<profile>/<name>.ipynb          the executed notebook of that same run, slimmed (committed for ``quick``)
    build/<profile>/src/                    the staged book sources
    build/<profile>/_build/html/            the HTML book
Running with ``-p`` overrides writes to ``<profile>-custom`` instead, so a one-off exploration never replaces the
profile's recorded results.

A chapter is **fresh** when its recorded run had the inputs it would have now: the notebook's code cells (its prose
is taken from the source notebook at build time), its parameters, the ``amodalkit`` files its code imports (the import
closure, followed through the package), and the benchmark results files it reads. The book's own rendering code
(claims, claims page, this builder, the profiles table) is not an input: the verdict tables a chapter shows are
rendered again from its results at build time, and the names a chapter imports from those modules (a gate's
threshold) count by value. A stale chapter is built from its last run with a warning at its top that says what
changed; ``make regenerate`` re-runs it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import profiles, provenance
from .claims import claims_for
from .claims_page import chapter_box_html, claims_markdown, edition_label, replica_verdicts, verdicts_html
from .prose import ProseError, insert_numbers
from .results import MEASUREMENTS_ENV, TRAINING_LOG_ENV, atomic_write_json, atomic_write_text, load_results

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
RESULTS_DIR = ROOT / "results"
BUILD_DIR = ROOT / "build"
VENDOR_DIR = BUILD_DIR / "vendor"
KERNEL_NAME = "amodalkit"
# a second run of a profile on another floating-point path, kept beside its results: results/<profile><suffix>
REPLICA_SUFFIX = "-kernel-default"
REPLICA_LABEL = "ATEN_CPU_CAPABILITY=default"
# the book's rendering code: what a chapter shows from it is rendered again at build time (see the docstring)
RENDERING_MODULES = ("amodalkit.claims", "amodalkit.claims_page", "amodalkit.book", "amodalkit.profiles")
# the profile whose results the book's pages (book/*.md) quote, whichever profile's chapters are built
PAGES_PROFILE = "quick"
# chapters whose models can be trained in parallel processes before their notebooks run (the gpu edition always;
# any profile with --jobs N > 1): "module:function" giving a chapter's training tasks in waves (amodalkit.crw.gpu_tasks)
WARM_TASKS = {"crw_propagation": "amodalkit.crw:gpu_tasks", "crw_ablations": "amodalkit.crw:gpu_tasks",
              "maskvos": "amodalkit.maskvos.experiments:gpu_tasks",
              "savos_ablations": "amodalkit.savos.experiments:warm_tasks",
              "savos_chewing_gum": "amodalkit.savos.experiments:warm_tasks",
              "vae_analysis": "amodalkit.amodal_vae.experiments:warm_tasks",
              "vae_robustness": "amodalkit.amodal_vae.experiments:warm_tasks"}
# where a `gpu` run without a GPU goes: the same code path at the smoke profile's sizes (what the tests run)
GPU_ON_CPU = "gpu-cpu-smoke"
# other editions whose verdicts the book shows beside its own (when their results are committed)
EDITIONS = ("gpu",)
# the environment variables a notebook run is told its chapter and profile by (the model cache records them)
CHAPTER_ENV, PROFILE_ENV = "AMODALKIT_CHAPTER", "AMODALKIT_PROFILE"

# The widget manager and its module loader, pinned with the registry's integrity hashes. Fetched
# by `make` (npm pack) rather than committed: about 7 MB of minified JavaScript and fonts would
# dwarf the repository, and the hash pins the exact bytes anyway.
WIDGET_PACKAGES = {
    "@jupyter-widgets/html-manager": (
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        # files taken from the package (paths inside it) -> the book's widgets/ folder
        {"package/dist/embed-amd.js": "embed-amd.js", "package/dist/*.woff2": None, "package/dist/*.woff": None,
         "package/dist/*.ttf": None, "package/dist/*.eot": None, "package/dist/*.svg": None,
         "package/dist/embed.js.LICENSE.txt": "LICENSE.html-manager.txt"},
    ),
    "requirejs": (
        "2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        {"package/require.js": "require.js"},
    ),
}


class BookError(RuntimeError):
    """A run or build that cannot go on; the message says what to do."""


# ------------------------------------------------------------------------------------ notebooks


def chapters() -> list[str]:
    """Notebook names in the order of the book's table of contents (``chapters/<name>`` entries)."""
    import yaml

    toc = yaml.safe_load((BOOK_DIR / "_toc.yml").read_text())
    names: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "file" and isinstance(value, str) and value.startswith("chapters/"):
                    names.append(value.split("/", 1)[1].removesuffix(".ipynb"))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return names


def notebook_names() -> list[str]:
    """Notebooks to run, in book order; every source notebook must be a chapter and vice versa."""
    on_disk = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
    order = chapters()
    missing = [n for n in order if n not in on_disk]
    if missing:
        raise BookError(f"book/_toc.yml lists chapters with no notebook in notebooks/: {missing}")
    orphans = [n for n in on_disk if n not in order]
    if orphans:
        raise BookError(f"notebooks not in book/_toc.yml (add them as chapters/<name>): {orphans}")
    return order


def code_cells(nb) -> list[str]:
    """The sources of a notebook's code cells, in order (what a run executes; the prose is not an input)."""
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _read_source(name: str):
    import nbformat

    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


_DATA_FILE = re.compile(r"([A-Za-z0-9_.\-]+\.json)\b")


def chapter_inputs(name: str, params: dict[str, Any]) -> dict[str, str]:
    """What a run of chapter ``name`` with ``params`` depends on, each with a hash (see the module docstring).

    Returns ``{input: hash}`` with the inputs ``notebooks/<name>.ipynb:code`` (its code cells), ``parameters``, every
    file of the import closure (``amodalkit/...py``: its git blob hash), for a rendering module the names imported
    from it (``amodalkit/claims.py:NAME,...``: a hash of their values), and each ``results/<file>.json`` its code
    names that exists.
    """
    import importlib

    cells = code_cells(_read_source(name))
    inputs = {f"notebooks/{name}.ipynb:code": _sha(cells), "parameters": _sha(params)}
    for rel, names in provenance.import_closure(cells, exclude=RENDERING_MODULES).items():
        module = rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        if module in RENDERING_MODULES:
            loaded = importlib.import_module(module)
            values = {n: repr(getattr(loaded, n)) for n in sorted(names)
                      if not callable(getattr(loaded, n, None)) and not isinstance(getattr(loaded, n, None), type(os))}
            if values:
                inputs[f"{rel}:{','.join(values)}"] = _sha(values)
        else:
            inputs[rel] = provenance.blob_hash(ROOT / rel)
    for file in sorted(set(_DATA_FILE.findall("\n".join(cells)))):
        if (RESULTS_DIR / file).is_file():
            inputs[f"results/{file}"] = provenance.blob_hash(RESULTS_DIR / file)
    return inputs


def cache_key(inputs: dict[str, str]) -> str:
    """The key of a run: a hash of its inputs (:func:`chapter_inputs`)."""
    return _sha(inputs)


def changed_inputs(recorded: dict[str, Any], now: dict[str, str], params_now: dict[str, Any]) -> list[str]:
    """What differs between a recorded run (its results file) and a run now: readable items, [] when fresh."""
    before = recorded.get("inputs")
    if before is None:
        return ["the run predates the record of its inputs"]
    changes = []
    for item in sorted(set(before) | set(now)):
        if before.get(item) == now.get(item):
            continue
        if item == "parameters":
            old = recorded.get("parameters", {})
            diffs = [f"{k}: {old.get(k)!r} → {params_now.get(k)!r}" for k in sorted(set(old) | set(params_now))
                     if old.get(k) != params_now.get(k)]
            changes.append("the parameters (" + ", ".join(diffs) + ")" if diffs else "the parameters")
        elif item.endswith(":code"):
            changes.append(f"the code cells of `{item.split(':')[0]}`")
        elif item not in now:
            changes.append(f"`{item}` (no longer used)")
        elif item not in before:
            changes.append(f"`{item}` (newly used)")
        else:
            changes.append(f"`{item}`")
    return changes


def output_profile(profile: str, overrides: dict[str, Any]) -> str:
    return f"{profile}-custom" if overrides else profile


def executed_path(out_profile: str, name: str) -> Path:
    return RESULTS_DIR / out_profile / f"{name}.ipynb"


def results_path(out_profile: str, name: str) -> Path:
    return RESULTS_DIR / out_profile / f"{name}.json"


def _recorded_keys(out_profile: str, name: str) -> tuple[str | None, str | None]:
    """(the executed notebook's key, the results file's key); None for a file that is missing or unreadable."""
    keys = []
    for path, read in ((executed_path(out_profile, name), lambda d: d["metadata"]["amodalkit"]["cache_key"]),
                       (results_path(out_profile, name), lambda d: d["cache_key"])):
        try:
            keys.append(read(json.loads(path.read_text())))
        except (OSError, KeyError, TypeError, json.JSONDecodeError):
            keys.append(None)
    return keys[0], keys[1]


def is_fresh(out_profile: str, name: str, key: str) -> bool:
    """True when the executed copy and the recorded results both come from a run with ``key``."""
    nb_key, res_key = _recorded_keys(out_profile, name)
    return nb_key == key == res_key


def ensure_kernel() -> str:
    """A kernel spec that runs this very Python, so papermill never picks up another interpreter."""
    kernel_dir = Path(sys.prefix) / "share" / "jupyter" / "kernels" / KERNEL_NAME
    spec = {
        # log level ERROR: ipykernel warns on every start that its loopback TCP is unencrypted
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--IPKernelApp.log_level=ERROR"],
        "display_name": "Python (amodalkit)",
        "language": "python",
    }
    target = kernel_dir / "kernel.json"
    if not target.is_file() or json.loads(target.read_text()) != spec:
        atomic_write_json(target, spec)
    return KERNEL_NAME


@dataclass
class RunReport:
    name: str
    status: str  # "ran", "skipped", "failed"
    seconds: float


def _describe_failure(name: str, err: Exception, failed_copy: Path) -> str:
    cell = getattr(err, "exec_count", None)
    index = getattr(err, "cell_index", None)
    source = getattr(err, "source", "") or ""
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    head = "\n".join("    " + line for line in source.splitlines()[:8])
    where = (f"cell [{cell}] (index {index} of the executed notebook)" if index is not None
             else "kernel start-up")
    return (f"notebook {name!r} failed in {where}:\n{head}\n{ename}: {evalue}\n"
            f"the executed notebook with the traceback: {failed_copy}")


def run_device() -> str:
    """The device the chapters' models run on, in words (CUDA's device name, else the CPU and its cores)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


def _resolve(name: Any):
    """The object a "module:attribute" string names."""
    import importlib

    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _restore_environment(previous: dict[str, str | None]) -> None:
    for k, v in previous.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _warm_worker(threads: int, training_log: str) -> None:
    """Each warm-up worker once, as it starts: its torch threads, the training log its models go to (appended line
    by line, as a notebook's are), and no progress bars of its own (they would interleave in one terminal: the
    wave's bar stands for them; a failure still reaches the parent as the task's exception)."""
    import torch

    torch.set_num_threads(threads)
    os.environ[TRAINING_LOG_ENV] = training_log
    sys.stderr = open(os.devnull, "w")


def _warm_task(function: str, kwargs: dict) -> float:
    """Run one training task of the parallel warm-up in a worker; returns its seconds."""
    start = time.perf_counter()
    _resolve(function)(**kwargs)
    return time.perf_counter() - start


def warm_up(names: list[str], params: dict[str, dict], jobs: int, out=sys.stdout,
            env: dict[str, str] | None = None) -> dict[str, dict]:
    """Train the models of the chapters ``names`` into the model cache in ``jobs`` parallel processes, chapter by
    chapter and wave by wave (each chapter's ``WARM_TASKS`` function; a task an earlier chapter already ran is not
    run again). Returns, per chapter, its warm-up's wall seconds and the models it trained (``{"seconds", "models"}``,
    from the training log its tasks write; its row in the wall-time record adds them). ``env``: environment variables
    the workers start with (the replica's kernels and model cache: they must hold before a worker loads torch).

    Raises:
        BookError: a task failed (names it and the error).
    """
    warmed: dict[str, dict] = {}
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    previous = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})  # spawned workers (started as tasks are submitted) inherit the environment
    try:
        _warm_chapters(names, params, jobs, out, threads, warmed)
    finally:
        _restore_environment(previous)
    return warmed


def _warm_chapters(names: list[str], params: dict[str, dict], jobs: int, out, threads: int,
                   warmed: dict[str, dict]) -> None:
    """:func:`warm_up`'s pool: fills ``warmed`` chapter by chapter."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    done: set[str] = set()
    logs = BUILD_DIR / "warm-up"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "training.jsonl"  # one log for the pool; each chapter's models are the lines it added
    log.unlink(missing_ok=True)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_warm_worker, initargs=(threads, str(log))) as pool:
        for name in (n for n in names if n in WARM_TASKS):
            start, before = time.perf_counter(), training_summary(log)["trained"]
            waves = _resolve(WARM_TASKS[name])(name, params[name])
            for i, wave in enumerate(waves):
                tasks = {}
                for function, kwargs in wave:
                    task_id = function + json.dumps(kwargs, sort_keys=True)
                    if task_id not in done:
                        tasks[task_id] = (function, kwargs)
                done.update(tasks)
                futures = {pool.submit(_warm_task, f, kw): (f, kw) for f, kw in tasks.values()}
                for future in tqdm(as_completed(futures), total=len(futures),
                                   desc=f"{name}: models, wave {i + 1} of {len(waves)}", unit="model", file=out):
                    try:
                        future.result()
                    except Exception as err:  # a worker's failure, with the task that failed
                        function, kwargs = futures[future]
                        shown = {k: v for k, v in kwargs.items() if k != "params"}
                        raise BookError(f"training task {function}({shown}) failed: {type(err).__name__}: {err}") from None
            warmed[name] = dict(seconds=round(time.perf_counter() - start, 2), models=training_summary(log)["trained"] - before)


def run(profile: str = "quick", only: list[str] | None = None, overrides: dict[str, Any] | None = None,
        force: bool = False, record_times: bool = False, replica: bool = False, jobs: int | None = None,
        out=sys.stdout) -> list[RunReport]:
    """Execute notebooks under ``profile``; see the module docstring. Raises :class:`BookError` on failure.

    ``record_times``: write each chapter that ran into the profile's wall-time record (:mod:`amodalkit.wall_times`).
    Profile ``gpu`` (:data:`amodalkit.profiles.GPU_CHAPTERS` only), or any profile with ``jobs`` > 1: the models of
    the chapters in :data:`WARM_TASKS` are first trained in ``jobs`` parallel processes (:func:`warm_up`; gpu
    default: one per CPU core up to 16 on CUDA, 2 on the CPU), then the notebooks run and load them. Without CUDA it runs the same code path at the smoke profile's sizes into
    ``results/gpu-cpu-smoke`` (what the tests run), never into ``results/gpu``.
    ``replica``: the same run on PyTorch's default CPU kernels (``ATEN_CPU_CAPABILITY=default``, another floating-point
    path) with a model cache of its own, into ``results/<profile>-kernel-default/`` (the claims page compares them).
    """
    import nbformat
    import papermill
    from tqdm import tqdm

    from .train import models_dir

    overrides = overrides or {}
    names = profiles.chapters_of(profile, notebook_names())
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise BookError(f"--only: unknown notebook(s) {unknown} for profile {profile!r}; expected some of {names}")
        names = [n for n in names if n in only]
    sizes = profile
    if profile == "gpu" and run_device().startswith("CPU"):
        print(f"no CUDA device: the gpu profile's code path runs at the smoke profile's sizes into "
              f"results/{GPU_ON_CPU}/ (a test of the edition, not the edition)", file=out)
        sizes = "smoke"
    # validate every parameter of every selected notebook before any work starts
    params = {name: profiles.resolve(name, sizes, overrides) for name in names}
    out_profile = (output_profile(GPU_ON_CPU if sizes != profile else profile, overrides)
                   + (REPLICA_SUFFIX if replica else ""))
    replica_env = {}
    if replica:  # its own models: the cache keys do not know the kernels, and a shared cache would hand over ours
        replica_env = {"ATEN_CPU_CAPABILITY": "default", "AMODALKIT_CACHE": str(models_dir().parent / "kernel-default")}
    cache_was_empty = not any((Path(replica_env["AMODALKIT_CACHE"]) / "models" if replica else models_dir()).glob("*.pt"))
    device = run_device()
    warmed: dict[str, dict] = {}
    if profile == "gpu" or (jobs or 1) > 1:
        pending = [n for n in names if n in WARM_TASKS
                   and (force or not is_fresh(out_profile, n, cache_key(chapter_inputs(n, params[n]))))]
        if pending:
            jobs = jobs or (2 if device.startswith("CPU") else min(16, os.cpu_count() or 1))
            warmed = warm_up(pending, params, jobs, out, env=replica_env)
    kernel = ensure_kernel()
    reports: list[RunReport] = []
    bar = tqdm(names, desc=f"notebooks ({out_profile})", unit="nb", file=out)
    for name in bar:
        bar.set_postfix_str(name)
        inputs = chapter_inputs(name, params[name])
        key = cache_key(inputs)
        if not force and is_fresh(out_profile, name, key):
            reports.append(RunReport(name, "skipped", 0.0))
            continue
        work = BUILD_DIR / out_profile / "work"
        work.mkdir(parents=True, exist_ok=True)
        measurements = work / f"{name}.measurements.json"
        measurements.unlink(missing_ok=True)
        training_log = work / f"{name}.training.jsonl"
        training_log.unlink(missing_ok=True)
        executed_tmp = work / f"{name}.ipynb"
        origin = dict(provenance.describe(), device=device,
                      dirty_inputs=provenance.uncommitted([i.split(":")[0] for i in inputs if i != "parameters"]))
        start = time.perf_counter()
        env = {MEASUREMENTS_ENV: str(measurements), TRAINING_LOG_ENV: str(training_log), CHAPTER_ENV: name,
               PROFILE_ENV: out_profile, **replica_env}
        previous = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            papermill.execute_notebook(
                str(NOTEBOOK_DIR / f"{name}.ipynb"), str(executed_tmp), parameters=params[name],
                kernel_name=kernel, progress_bar=False, cwd=str(NOTEBOOK_DIR), log_output=False,
            )
        except Exception as err:  # papermill's execution error, a dead kernel, ...
            seconds = time.perf_counter() - start
            failed = BUILD_DIR / out_profile / "failed" / f"{name}.ipynb"
            failed.parent.mkdir(parents=True, exist_ok=True)
            if executed_tmp.is_file():
                shutil.move(str(executed_tmp), failed)
            reports.append(RunReport(name, "failed", seconds))
            bar.close()
            _print_summary(reports, out)
            raise BookError(_describe_failure(name, err, failed)) from None
        finally:
            _restore_environment(previous)
        seconds = time.perf_counter() - start
        recorded = json.loads(measurements.read_text())["measurements"] if measurements.is_file() else {}
        run_meta = {"profile": profile, "parameters": params[name], "cache_key": key, "wall_time_s": round(seconds, 2),
                    "training": training_summary(training_log), "provenance": origin,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "model_cache_empty_at_start": cache_was_empty,
                    **({"warm_up": warmed[name]} if name in warmed else {})}
        nb = nbformat.read(executed_tmp, as_version=4)
        slim_executed(nb)
        nb.metadata["amodalkit"] = run_meta
        # the executed copy first: a crash between the two writes leaves keys that differ, which the build refuses
        atomic_write_text(executed_path(out_profile, name), nbformat.writes(nb))
        atomic_write_json(results_path(out_profile, name), dict(run_meta, notebook=name, measurements=recorded,
                                                                inputs=inputs))
        executed_tmp.unlink()
        reports.append(RunReport(name, "ran", seconds))
    bar.close()
    _print_summary(reports, out)
    if record_times and any(r.status == "ran" for r in reports):
        from .wall_times import record

        record(out_profile, [r.name for r in reports if r.status == "ran"], RESULTS_DIR)
    return reports


def training_summary(log: Path) -> dict[str, float]:
    """Models a chapter trained and loaded from the cache, and the seconds spent training (from the training log)."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []
    trained = [e for e in lines if not e["from_cache"]]
    return {"trained": len(trained), "loaded": len(lines) - len(trained),
            "train_seconds": round(sum(e["seconds"] for e in trained), 2)}


def _print_summary(reports: list[RunReport], out) -> None:
    if not reports:
        return
    width = max(len(r.name) for r in reports + [RunReport("notebook", "", 0)])
    print(f"\n  {'notebook'.ljust(width)}  {'status'.ljust(8)}  wall time", file=out)
    for r in reports:
        wall = f"{r.seconds:8.1f} s" if r.status != "skipped" else "  (unchanged)"
        print(f"  {r.name.ljust(width)}  {r.status.ljust(8)}  {wall}", file=out)
    print(f"  {'total'.ljust(width)}  {'':8}  {sum(r.seconds for r in reports):8.1f} s", file=out)


@dataclass
class ChapterStatus:
    """Where a chapter's recorded run stands: ``state`` "fresh", "stale" (``changes`` says what changed since),
    "no executed notebook" (results only), "executed notebook of another run", or "not run" (no results)."""

    name: str
    state: str
    changes: list[str]


def status(profile: str = "quick") -> list[ChapterStatus]:
    """Every chapter's :class:`ChapterStatus` under ``profile`` (nothing runs)."""
    out = []
    for name in notebook_names():
        params = profiles.resolve(name, profile)
        inputs = chapter_inputs(name, params)
        nb_key, res_key = _recorded_keys(profile, name)
        if res_key is None:
            out.append(ChapterStatus(name, "not run", []))
            continue
        recorded = json.loads(results_path(profile, name).read_text())
        changes = [] if res_key == cache_key(inputs) else changed_inputs(recorded, inputs, params)
        if nb_key is None:
            out.append(ChapterStatus(name, "no executed notebook", changes))
        elif nb_key != res_key:
            out.append(ChapterStatus(name, "executed notebook of another run", changes))
        else:
            out.append(ChapterStatus(name, "stale" if changes else "fresh", changes))
    return out


# ------------------------------------------------------------------------------------ executed copies


WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_MODEL_REF = re.compile(r"IPY_MODEL_([0-9A-Za-z]+)")


def _smaller_png(encoded: str) -> str:
    """A base64 PNG re-encoded with the same pixels: RGB when every pixel is opaque, optimised compression."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    if image.mode == "RGBA" and image.getextrema()[3][0] == 255:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    smaller = base64.b64encode(buffer.getvalue()).decode()
    return smaller if len(smaller) < len(encoded) else encoded


def slim_executed(nb) -> None:
    """Keep of an executed notebook (in place) only what its page shows, once:

    * no per-cell execution metadata (papermill's timings, paths of this machine);
    * no ``text/plain`` beside a richer representation of the same output (the page shows the richer one);
    * figures re-encoded losslessly (RGB when opaque, zlib at its best): the same pixels in fewer bytes;
    * widget state only for the widgets an output displays (what they reference, and the links between them), each
      distinct state once:
      models whose state is identical (the layouts of a clip browser's images, a blank overlay) are merged.
    """
    nb.metadata.pop("papermill", None)
    views = []
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and "text/plain" in data and len(data) > 1:
                del data["text/plain"]
            if data and "image/png" in data:
                data["image/png"] = _smaller_png(data["image/png"])
            if data and WIDGET_VIEW in data:
                views.append(data[WIDGET_VIEW]["model_id"])
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state")
    if not state:
        nb.metadata.pop("widgets", None)
        return
    # merge identical models until nothing changes (merging children can make their parents identical)
    alias: dict[str, str] = {}
    while True:
        seen: dict[str, str] = {}
        merged = {}
        for model_id, model in state.items():
            text = json.dumps(model, sort_keys=True)
            if text in seen:
                merged[model_id] = seen[text]
            else:
                seen[text] = model_id
        if not merged:
            break
        alias.update(merged)
        alias = {k: merged.get(v, v) for k, v in alias.items()}
        state = {k: json.loads(_MODEL_REF.sub(lambda m: "IPY_MODEL_" + merged.get(m.group(1), m.group(1)),
                                              json.dumps(v))) for k, v in state.items() if k not in merged}
    refs = {k: set(_MODEL_REF.findall(json.dumps(v["state"]))) for k, v in state.items()}
    # links (jslink) are referenced by nothing shown, yet they are what makes a shown widget react: kept too
    links = {k for k, v in state.items() if v.get("model_name", "").endswith("LinkModel")}
    keep, todo = set(), [alias.get(v, v) for v in views]
    while todo:
        while todo:
            model_id = todo.pop()
            if model_id in keep or model_id not in state:
                continue
            keep.add(model_id)
            todo += refs[model_id]
        todo = [k for k in links - keep if refs[k] & keep]
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view:
                view["model_id"] = alias.get(view["model_id"], view["model_id"])
    nb.metadata["widgets"][WIDGET_STATE]["state"] = {k: v for k, v in state.items() if k in keep}


# ------------------------------------------------------------------------------------ vendoring


def _glob_members(members: list[str], pattern: str) -> list[str]:
    from fnmatch import fnmatch

    return [m for m in members if fnmatch(m, pattern)]


def vendor_widgets(dest: Path = VENDOR_DIR / "widgets", out=sys.stdout) -> Path:
    """Fetch the pinned widget JavaScript with ``npm pack``, check its integrity, unpack what the book needs.

    Skips the download when ``dest`` already holds the pinned versions.
    """
    stamp = dest / "versions.json"
    wanted = {name: version for name, (version, _, _) in WIDGET_PACKAGES.items()}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise BookError("npm is needed once to fetch the widget JavaScript (install Node.js and npm)")
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "widgets"
        staging.mkdir()
        for name, (version, integrity, files) in WIDGET_PACKAGES.items():
            proc = subprocess.run([npm, "pack", f"{name}@{version}", "--silent", "--pack-destination", tmp],
                                  capture_output=True, text=True, cwd=tmp)
            if proc.returncode != 0:
                raise BookError(f"npm pack {name}@{version} failed:\n{proc.stderr.strip()}")
            tarball = Path(tmp) / proc.stdout.strip().splitlines()[-1]
            algo, expected = integrity.split("-", 1)
            actual = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
            if actual != expected:
                raise BookError(f"{name}@{version}: integrity mismatch (expected {integrity}, got {algo}-{actual})")
            with tarfile.open(tarball) as tar:
                members = tar.getnames()
                for pattern, target in files.items():
                    matched = _glob_members(members, pattern)
                    if not matched:
                        raise BookError(f"{name}@{version}: no file matches {pattern}")
                    for member in matched:
                        data = tar.extractfile(member).read()
                        (staging / (target or Path(member).name)).write_bytes(data)
        atomic_write_json(staging / "versions.json", wanted)
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staging, dest)
    print(f"widget JavaScript vendored into {dest} ({', '.join(f'{k}@{v}' for k, v in wanted.items())})", file=out)
    return dest


# ------------------------------------------------------------------------------------ building


def source_commit(name: str, profile: str, recorded: dict[str, Any]) -> str | None:
    """The commit whose code a chapter's recorded run ran: the commit it ran at when its inputs had no uncommitted
    changes; else the newest commit that wrote its results file and holds exactly the inputs the run recorded (the
    usual case: run, then commit code and results together); else None (the run's code was never committed)."""
    origin = recorded.get("provenance") or {}
    if origin.get("commit") and origin.get("dirty_inputs") == []:
        return origin["commit"]
    inputs = recorded.get("inputs") or {}
    files = {k: v for k, v in inputs.items() if ":" not in k and k != "parameters"}
    code_item = f"notebooks/{name}.ipynb:code"
    for commit in provenance.commits_touching(results_path(profile, name), limit=20):
        if provenance.blobs_at(commit, files) != files:
            continue
        text = provenance.show(commit, f"notebooks/{name}.ipynb")
        if code_item in inputs and (text is None or _sha([c["source"] if isinstance(c["source"], str)
                                                          else "".join(c["source"]) for c in json.loads(text)["cells"]
                                                          if c["cell_type"] == "code"]) != inputs[code_item]):
            continue
        return commit
    return None


def _with_current_prose(executed, source) -> None:
    """Put the source notebook's markdown cells into an executed copy of the same code (in place): prose edits show
    without a re-run. Left alone when the code cells differ (a stale chapter keeps the prose of its run)."""
    runs = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if code_cells(source) != [c.source for c in runs if c.cell_type == "code"]:
        return
    ran = iter(c for c in runs if c.cell_type == "code")
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    cells = []
    for cell in source.cells:
        if cell.cell_type == "code":
            cells.append(next(ran))
            if "parameters" in cell.metadata.get("tags", []):
                cells += injected
        else:
            cells.append(cell)
    executed.cells = cells


def chapter_page(name: str, profile: str, results: dict[str, Any]) -> tuple[Any, str]:
    """The notebook a chapter's page is made of, and a MyST notice for its top ("" for a fresh chapter).

    The executed copy of the recorded run, with the source's current prose; a chapter whose executed copy is not
    there is its source notebook without outputs, and says so.

    Raises:
        BookError: the executed copy and the results file come from different runs (their keys differ).
    """
    import nbformat

    source = _read_source(name)
    executed = executed_path(profile, name)
    recorded = results.get(name)
    if not executed.is_file():
        where = (f"its numbers on the claims page are those of `results/{profile}/{name}.json` "
                 f"(run of {recorded.get('finished', '?')})" if recorded else "it has no recorded results yet")
        return source, (f"```{{warning}}\nThis chapter has not been run under the **{profile}** profile since its "
                        f"executed notebook was first kept beside its results, so this page shows its code without "
                        f"outputs; {where}. `make regenerate` runs it.\n```")
    nb = nbformat.read(executed, as_version=4)
    nb_key = nb.metadata.get("amodalkit", {}).get("cache_key")
    if recorded is None or recorded.get("cache_key") != nb_key:
        raise BookError(f"{executed} and {results_path(profile, name)} come from different runs (keys "
                        f"{str(nb_key)[:12]} and {str((recorded or {}).get('cache_key'))[:12]}): re-run the chapter "
                        f"(`python -m amodalkit book run --profile {profile} --only {name}`) or restore both files "
                        f"from one commit")
    _with_current_prose(nb, source)
    params = profiles.resolve(name, profile) if profile in profiles.PROFILES else recorded.get("parameters", {})
    changes = changed_inputs(recorded, chapter_inputs(name, params), params)
    if not changes:
        return nb, ""
    commit = source_commit(name, profile, recorded)
    since = f"its run at commit `{commit[:10]}`" if commit else f"its run of {recorded.get('finished', '?')}"
    return nb, (f"```{{warning}}\nThis chapter is **stale**: since {since}, these changed: {'; '.join(changes)}. "
                f"Its numbers, figures and verdicts are those of that run; `make regenerate` runs it again.\n```")


def stage(profile: str) -> Path:
    """Assemble the book sources of ``profile`` in ``build/<profile>/src``, from what is recorded (nothing runs).

    Each chapter (:func:`chapter_page`) is copied with what the reader needs first: a notice when it is stale or
    not run, a box of its claims and verdicts after the title, code cells collapsed behind a toggle (``hide-input``;
    a cell tagged ``show-input`` stays open), the parameters papermill injected summarised in one line with the
    run's commit and device (the notebook's own default parameters cell is removed), and its verdict table rendered
    again from its results. The ``{{ ... }}`` placeholders of the pages, the chapters' prose and the claims' notes are
    filled in from the results (:mod:`amodalkit.prose`); one that names no recorded value stops the build.
    """
    import nbformat

    names = notebook_names()
    src = BUILD_DIR / profile / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(BOOK_DIR, src)
    (src / "chapters").mkdir(exist_ok=True)
    results = load_results(RESULTS_DIR / profile)
    replica_dir = RESULTS_DIR / f"{profile}{REPLICA_SUFFIX}"
    replica_results = load_results(replica_dir) if replica_dir.is_dir() else None
    replica = replica_verdicts(results, replica_results)[0] if replica_results else None
    editions = [(edition_label(name, r), r) for name in EDITIONS if name != profile
                for r in [load_results(RESULTS_DIR / name)] if r]

    def numbers(text: str, page: str, of: str = profile) -> str:  # the {{ ... }} placeholders, from the results
        try:
            return insert_numbers(text, results if of == profile else load_results(RESULTS_DIR / of),
                                  results_dir=RESULTS_DIR, profile=of, page=page)
        except ProseError as err:
            raise BookError(f"{err} (fill it from results/{of}/ or results/*.json, or change the page)") from None

    for page in sorted(src.glob("*.md")):  # the pages quote the committed quick run, whatever profile is built
        page.write_text(numbers(page.read_text(), f"book/{page.name}", PAGES_PROFILE))
    for name in names:
        nb, notice = chapter_page(name, profile, results)
        prepare_chapter(nb, name, profile, results, replica, notice, editions)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                cell.source = numbers(cell.source, f"notebooks/{name}.ipynb (cell {i})")
            elif "show_verdicts(" in cell.source:  # the claims' notes in the verdict table
                for output in cell.get("outputs", []):
                    if "text/html" in output.get("data", {}):
                        output["data"]["text/html"] = numbers(output["data"]["text/html"], f"the verdicts of {name}")
        nbformat.write(nb, src / "chapters" / f"{name}.ipynb")
    (src / "claims.md").write_text(numbers(claims_markdown(results, profile, set(names), replica_results,
                                                           REPLICA_LABEL, f"results/{replica_dir.name}/", editions),
                                           "the claims page"))
    shutil.copytree(vendor_widgets(), src / "_vendor" / "widgets")
    return src


def run_line(name: str, profile: str, meta: dict[str, Any], commit: str | None) -> str:
    """The one line under a chapter's parameters: :func:`amodalkit.profiles.summary` plus where the run was made."""
    line = profiles.summary(name, meta.get("parameters", {}), meta.get("profile", profile), meta.get("wall_time_s"),
                            meta.get("training"))
    origin = meta.get("provenance") or {}
    where = [f"on {meta['finished'][:10]}"] if meta.get("finished") else []
    if origin.get("device"):
        where.append(f"on {origin['device']}")
    where.append(f"with the code of commit `{commit[:10]}`" if commit else "with code that was not committed")
    return line.removesuffix(".") + "; run " + " ".join(where) + "."


def prepare_chapter(nb, name: str, profile: str, results: dict[str, Any], replica: dict[str, str] | None,
                    notice: str = "", editions: list[tuple[str, dict]] | None = None) -> None:
    """Edit a chapter's notebook (in place) for the book: see :func:`stage`."""
    import nbformat

    meta = nb.metadata.get("amodalkit", {})
    commit = source_commit(name, profile, results[name]) if name in results and meta else None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags:
            tags.append("remove-cell")  # the quick defaults; the injected cell holds what the run used
        elif not {"show-input", "remove-input", "remove-cell", "hide-input"} & set(tags):
            tags.append("hide-input")
        if "injected-parameters" in tags:
            line = run_line(name, profile, meta, commit)
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": line, "text/plain": line})]
        if "show_verdicts(" in cell.source and name in results:
            # the verdicts as the claims page computes them now (the rules may have changed since the run)
            table = verdicts_html({name: results[name]}, claims_for(name))
            cell.outputs = [o for o in cell.outputs if o.output_type == "stream"] + [
                nbformat.v4.new_output("display_data", data={"text/html": table})]
    top = [("```{raw} html\n" + box + "\n```")
           for box in [chapter_box_html(results, name, replica, REPLICA_LABEL, editions)] if box]
    if notice:
        top.insert(0, notice)
    if not top:
        return
    # right under the title: the title line of the first markdown cell is split off
    at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), None)
    if at is None:  # no markdown at all: the notice and box go first
        nb.cells[:0] = [nbformat.v4.new_markdown_cell(t) for t in top]
        return
    first = nb.cells[at]
    if first.source.startswith("# "):
        title, _, rest = first.source.partition("\n")
        first.source = title
        if rest.strip():
            nb.cells.insert(at + 1, nbformat.v4.new_markdown_cell(rest.strip("\n")))
    nb.cells[at + 1:at + 1] = [nbformat.v4.new_markdown_cell(t) for t in top]


def build(profile: str = "quick", out=sys.stdout) -> Path:
    """Build the HTML book of ``profile``; returns the path of its index.html."""
    src = stage(profile)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(src),
               "--path-output", str(BUILD_DIR / profile), "--builder", "html", "--warningiserror", "--keep-going"]
    proc = subprocess.run(command, capture_output=True, text=True)
    log = BUILD_DIR / profile / "build.log"
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BookError(f"jupyter-book build failed (full log: {log}):\n{tail}")
    index = BUILD_DIR / profile / "_build" / "html" / "index.html"
    size = sum(p.stat().st_size for p in index.parent.rglob("*") if p.is_file())
    print(f"book built: {index} ({size / 2**20:.1f} MiB)", file=out)
    return index


# ------------------------------------------------------------------------------------ the README's measured block


README = ROOT / "README.md"
README_BEGIN = ("<!-- measured: begin. Written by `python -m amodalkit book readme` from the committed results; edit that "
                "command, not this block. -->")
README_END = "<!-- measured: end -->"


def readme_block(profile: str = "quick") -> str:
    """The README's measured numbers, from the committed results: how long `make book` and `make regenerate` take
    (per chapter), the size of the committed executed notebooks, the verdicts, and what a re-run on another
    floating-point path changed."""
    from collections import Counter

    from .claims import CLAIMS, VERDICTS
    from .claims_page import _same_runs, measurement_changes
    from .wall_times import path_for, table_markdown

    results = load_results(RESULTS_DIR / profile)
    lines = [README_BEGIN, ""]
    build_time = RESULTS_DIR / "make_book_time.json"
    if build_time.is_file():
        b = json.loads(build_time.read_text())
        lines += [f"`make book` from a fresh clone took {b['seconds'] / 60:.1f} min here ({b['date']}, commit "
                  f"`{b['commit'][:10]}`: {b['venv_seconds'] / 60:.1f} min of it setting up `.venv`; "
                  f"`benchmarks/make_book_time.py`); the HTML is {b['html_mib']:.0f} MiB.", ""]
    times = path_for(profile, RESULTS_DIR)
    if times.is_file():
        lines += [f"`make regenerate` re-runs the stale chapters; each chapter's latest run (`{times.relative_to(ROOT)}`; "
                  "minutes on this machine, 2 cores and no GPU; the budgets are for a run from an empty model cache):",
                  "", table_markdown(json.loads(times.read_text())), ""]
    executed = sorted((RESULTS_DIR / profile).glob("*.ipynb"))
    size = sum(p.stat().st_size for p in executed)
    lines += [f"The executed notebooks kept in `results/{profile}/` take {size / 2**20:.1f} MiB ({len(executed)} of "
              f"{len(notebook_names())} chapters).", ""]
    count = Counter(c.verdict(results) for c in CLAIMS)
    lines += [f"Verdicts in `results/{profile}/`: " + ", ".join(f"{count[v]} {v}" for v in VERDICTS if count[v])
              + f" (of {len(CLAIMS)}).", ""]
    replica_dir = RESULTS_DIR / f"{profile}{REPLICA_SUFFIX}"
    if replica_dir.is_dir():
        replica_results = load_results(replica_dir)
        same, stale = _same_runs(results, replica_results)
        changed, compared = measurement_changes({nb: r for nb, r in results.items() if nb in same}, replica_results)
        flips = [(c.id, c.verdict(results), c.verdict(replica_results)) for c in CLAIMS if c.notebook in same
                 and c.verdict(results) != c.verdict(replica_results)]
        lines += [f"The re-run with {REPLICA_LABEL} (`results/{replica_dir.name}/`): {len(same)} of {len(results)} "
                  f"chapters ran the same inputs in both; in them {changed} of {compared} per-seed measurements differ "
                  f"and {len(flips)} of {sum(c.notebook in same for c in CLAIMS)} verdicts"
                  + (": " + "; ".join(f"`{cid}` {a} / {b}" for cid, a, b in flips) if flips else "")
                  + (f". Not compared (run with other inputs): {', '.join(stale)}." if stale else "."), ""]
    return "\n".join(lines + [README_END])


def write_readme(profile: str = "quick", check: bool = False) -> bool:
    """Write :func:`readme_block` between the README's markers; ``check``: only say whether it is current.

    Raises:
        BookError: the README has no markers.
    """
    text = README.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise BookError(f"{README} has no measured block: put the lines {README_BEGIN!r} and {README_END!r} where it "
                        f"goes")
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    new = text[:start] + readme_block(profile) + text[end:]
    if check:
        return new == text
    atomic_write_text(README, new)
    return True

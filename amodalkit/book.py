"""Run the notebooks under a profile, record their results, and build the offline Jupyter Book.

``python -m amodalkit book run``   executes notebooks with papermill (skipping those whose source,
                                   parameters and amodalkit code are unchanged since their last
                                   successful run under the profile);
``python -m amodalkit book build`` stages the book (sources, executed notebooks, claims page,
                                   vendored widget JavaScript) and builds the HTML;
``python -m amodalkit book vendor`` fetches the pinned widget JavaScript from the npm registry.

Layout (all under the repository root):
    notebooks/<name>.ipynb                  source notebooks, outputs stripped
    results/<profile>/<name>.json           recorded measurements of the last successful run
    build/<profile>/executed/<name>.ipynb   executed copies, read by the book
    build/<profile>/src/                    the staged book sources
    build/<profile>/_build/html/            the HTML book
Running with ``-p`` overrides writes to ``<profile>-custom`` instead, so a one-off exploration
never replaces the profile's recorded results.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import profiles
from .claims_page import chapter_box_html, claims_markdown, replica_verdicts
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


def code_hash() -> str:
    """A hash of every amodalkit source file: a change anywhere in the library re-runs notebooks."""
    digest = hashlib.sha256()
    package = ROOT / "amodalkit"
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cache_key(name: str, params: dict[str, Any], library: str) -> str:
    digest = hashlib.sha256()
    digest.update((NOTEBOOK_DIR / f"{name}.ipynb").read_bytes())
    digest.update(json.dumps(params, sort_keys=True).encode())
    digest.update(library.encode())
    return digest.hexdigest()


def output_profile(profile: str, overrides: dict[str, Any]) -> str:
    return f"{profile}-custom" if overrides else profile


def executed_path(out_profile: str, name: str) -> Path:
    return BUILD_DIR / out_profile / "executed" / f"{name}.ipynb"


def results_path(out_profile: str, name: str) -> Path:
    return RESULTS_DIR / out_profile / f"{name}.json"


def is_fresh(out_profile: str, name: str, key: str) -> bool:
    """True when the executed copy and the recorded results both come from a run with ``key``."""
    executed, results = executed_path(out_profile, name), results_path(out_profile, name)
    if not (executed.is_file() and results.is_file()):
        return False
    try:
        nb_key = json.loads(executed.read_text())["metadata"]["amodalkit"]["cache_key"]
        res_key = json.loads(results.read_text())["cache_key"]
    except (KeyError, json.JSONDecodeError):
        return False
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


def run(profile: str = "quick", only: list[str] | None = None, overrides: dict[str, Any] | None = None,
        force: bool = False, out=sys.stdout) -> list[RunReport]:
    """Execute notebooks under ``profile``; see the module docstring. Raises :class:`BookError` on failure."""
    import nbformat
    import papermill
    from tqdm import tqdm

    overrides = overrides or {}
    names = notebook_names()
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise BookError(f"--only: unknown notebook(s) {unknown}; expected some of {names}")
        names = [n for n in names if n in only]
    # validate every parameter of every selected notebook before any work starts
    params = {name: profiles.resolve(name, profile, overrides) for name in names}
    out_profile = output_profile(profile, overrides)
    library = code_hash()
    kernel = ensure_kernel()
    reports: list[RunReport] = []
    bar = tqdm(names, desc=f"notebooks ({out_profile})", unit="nb", file=out)
    for name in bar:
        bar.set_postfix_str(name)
        key = cache_key(name, params[name], library)
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
        start = time.perf_counter()
        previous = {k: os.environ.get(k) for k in (MEASUREMENTS_ENV, TRAINING_LOG_ENV)}
        os.environ[MEASUREMENTS_ENV] = str(measurements)
        os.environ[TRAINING_LOG_ENV] = str(training_log)
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
            for k, v in previous.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        seconds = time.perf_counter() - start
        recorded = json.loads(measurements.read_text())["measurements"] if measurements.is_file() else {}
        atomic_write_json(results_path(out_profile, name), {
            "notebook": name, "profile": profile, "parameters": params[name], "measurements": recorded,
            "cache_key": key, "wall_time_s": round(seconds, 2), "training": training_summary(training_log),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
        nb = nbformat.read(executed_tmp, as_version=4)
        nb.metadata["amodalkit"] = {"profile": profile, "parameters": params[name], "cache_key": key,
                                    "wall_time_s": round(seconds, 2), "training": training_summary(training_log)}
        atomic_write_text(executed_path(out_profile, name), nbformat.writes(nb))
        executed_tmp.unlink()
        reports.append(RunReport(name, "ran", seconds))
    bar.close()
    _print_summary(reports, out)
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


def stage(profile: str) -> Path:
    """Assemble the book sources of ``profile`` in ``build/<profile>/src``.

    Each executed chapter is copied with what the reader needs first: a box of its claims and verdicts after the
    title, code cells collapsed behind a toggle (``hide-input``; a cell tagged ``show-input`` stays open), and the
    parameters papermill injected summarised in one line (the notebook's own default parameters cell is removed).
    """
    import nbformat

    names = notebook_names()
    missing = [n for n in names if not executed_path(profile, n).is_file()]
    if missing:
        raise BookError(f"no executed copy of {missing} under profile {profile!r}: "
                        f"run `python -m amodalkit book run --profile {profile}` first")
    src = BUILD_DIR / profile / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(BOOK_DIR, src)
    (src / "chapters").mkdir(exist_ok=True)
    results = load_results(RESULTS_DIR / profile)
    replica_dir = RESULTS_DIR / f"{profile}{REPLICA_SUFFIX}"
    replica_results = load_results(replica_dir) if replica_dir.is_dir() else None
    replica = replica_verdicts(results, replica_results)[0] if replica_results else None
    for name in names:
        nb = nbformat.read(executed_path(profile, name), as_version=4)
        prepare_chapter(nb, name, profile, results, replica)
        nbformat.write(nb, src / "chapters" / f"{name}.ipynb")
    (src / "claims.md").write_text(claims_markdown(results, profile, set(names), replica_results, REPLICA_LABEL,
                                                   f"results/{replica_dir.name}/"))
    shutil.copytree(vendor_widgets(), src / "_vendor" / "widgets")
    return src


def prepare_chapter(nb, name: str, profile: str, results: dict[str, Any], replica: dict[str, str] | None) -> None:
    """Edit an executed notebook (in place) for the book: see :func:`stage`."""
    import nbformat

    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags:
            tags.append("remove-cell")  # the quick defaults; the injected cell holds what the run used
        elif not {"show-input", "remove-input", "remove-cell", "hide-input"} & set(tags):
            tags.append("hide-input")
        if "injected-parameters" in tags:
            meta = nb.metadata.get("amodalkit", {})
            line = profiles.summary(name, meta.get("parameters", {}), meta.get("profile", profile), meta.get("wall_time_s"),
                                    meta.get("training"))
            cell.outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": line, "text/plain": line})]
    box = chapter_box_html(results, name, replica, REPLICA_LABEL)
    if box:  # right under the title: the title line of the first markdown cell is split off
        at = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), None)
        if at is None:  # no markdown at all: the box goes first
            nb.cells.insert(0, nbformat.v4.new_markdown_cell("```{raw} html\n" + box + "\n```"))
            return
        first = nb.cells[at]
        if first.source.startswith("# "):
            title, _, rest = first.source.partition("\n")
            first.source = title
            if rest.strip():
                nb.cells.insert(at + 1, nbformat.v4.new_markdown_cell(rest.strip("\n")))
        nb.cells.insert(at + 1, nbformat.v4.new_markdown_cell("```{raw} html\n" + box + "\n```"))


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

"""The runner and the build: every notebook under smoke, caching, failures, the claims page."""
import json
import os
from pathlib import Path

import nbformat
import pytest

from amodalkit import book, profiles
from amodalkit.claims import claims_for


@pytest.mark.slow
def test_every_notebook_runs_under_smoke_and_records_its_claims(smoke_run):
    assert [r.name for r in smoke_run] == book.notebook_names()
    assert all(r.status == "ran" for r in smoke_run)
    for name in book.notebook_names():
        results = json.loads(book.results_path("smoke", name).read_text())
        assert results["parameters"] == profiles.resolve(name, "smoke")
        recorded = set(results["measurements"])
        for claim in claims_for(name):
            needed = {m.split("/", 1)[1] for m in claim.measures()}
            assert needed <= recorded, f"{claim.id}: {sorted(needed - recorded)} not recorded by {name}"
        executed = nbformat.read(book.executed_path("smoke", name), as_version=4)
        assert executed.metadata["amodalkit"]["cache_key"] == results["cache_key"]
        errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors


@pytest.mark.slow
def test_unchanged_notebooks_are_skipped(smoke_run):
    again = book.run("smoke")
    assert all(r.status == "skipped" for r in again)


@pytest.mark.slow
def test_claims_page_and_html(smoke_book):
    html_dir = smoke_book.parent
    claims_html = (html_dir / "claims.html").read_text()
    assert "savos.thm1.exact" in claims_html and "not run yet" in claims_html
    assert (html_dir / "widgets" / "embed-amd.js").is_file()
    chapter = (html_dir / "chapters" / "savos_theorem1.html").read_text()
    assert "widgets/embed-amd.js" in chapter and "cdn" not in chapter.split("embed-amd.js")[0][-300:]
    # the chapter leads with its claims; code is collapsed; the run's parameters are summarised
    assert chapter.index("Claims tested in this chapter") < chapter.index("tag_hide-input")
    assert 'id="claim-savos-thm1-exact"' in chapter and "Ran with the <strong>smoke</strong> profile" in chapter
    assert "tag_parameters" not in chapter


@pytest.mark.slow
def test_a_failing_notebook_names_itself_its_cell_and_the_error(scratch_book):
    scratch_book("from amodalkit.results import Recorder\nrec = Recorder('scratch')\nrec.add('q', 1 / divisor, seed=0)\nrec.save()")
    with pytest.raises(book.BookError) as err:
        book.run("quick", overrides={"divisor": 0})
    message = str(err.value)
    assert "notebook 'scratch' failed in cell [4]" in message
    assert "rec.add('q', 1 / divisor, seed=0)" in message and "ZeroDivisionError" in message
    assert not book.results_path("quick-custom", "scratch").exists(), "no results from a failed run"
    assert (book.BUILD_DIR / "quick-custom" / "failed" / "scratch.ipynb").is_file()


@pytest.mark.slow
def test_cache_follows_source_parameters_and_records_results(scratch_book):
    scratch_book("from amodalkit.results import Recorder\nrec = Recorder('scratch')\nrec.add('q', 1 / divisor, seed=0)\nrec.save()")
    assert [r.status for r in book.run("quick")] == ["ran"]
    assert json.loads(book.results_path("quick", "scratch").read_text())["measurements"]["q"]["values"] == [1.0]
    assert [r.status for r in book.run("quick")] == ["skipped"]
    assert [r.status for r in book.run("quick", overrides={"divisor": 4})] == ["ran"]
    assert json.loads(book.results_path("quick-custom", "scratch").read_text())["measurements"]["q"]["values"] == [0.25]
    assert [r.status for r in book.run("quick")] == ["skipped"], "a custom run leaves the profile's results alone"
    scratch_book("pass  # edited")
    assert [r.status for r in book.run("quick")] == ["ran"]
    assert [r.status for r in book.run("quick", force=True)] == ["ran"]


def test_unknown_only_name_is_an_error():
    with pytest.raises(book.BookError, match="unknown notebook"):
        book.run("smoke", only=["no_such_notebook"])


def test_every_chapter_has_a_notebook_and_vice_versa():
    assert set(book.notebook_names()) == set(profiles.NOTEBOOKS)


def test_prepare_chapter_puts_claims_first_and_collapses_code():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\nIntro text."), nbformat.v4.new_code_cell("seeds = 3"),
                nbformat.v4.new_code_cell("seeds = 1"), nbformat.v4.new_code_cell("import numpy"),
                nbformat.v4.new_code_cell("shown()")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nb.cells[2].metadata["tags"] = ["injected-parameters"]
    nb.cells[4].metadata["tags"] = ["show-input"]
    nb.metadata["amodalkit"] = {"profile": "quick", "parameters": {"seeds": 1, "trials": 5}, "wall_time_s": 12.3,
                                "training": {"trained": 2, "loaded": 1, "train_seconds": 9.6}}
    book.prepare_chapter(nb, "crw_theory", "quick", {}, None)
    assert [c.cell_type for c in nb.cells[:3]] == ["markdown"] * 3
    assert nb.cells[0].source == "# Title" and "Claims tested in this chapter" in nb.cells[1].source
    assert 'id="claim-crw-a-identical-negatives"' in nb.cells[1].source and nb.cells[2].source == "Intro text."
    params, injected, imports, shown = nb.cells[3:]
    assert "remove-cell" in params.metadata.tags and "hide-input" in injected.metadata.tags
    line = injected.outputs[0]["data"]["text/markdown"]
    assert line.startswith("Ran with the **quick** profile: seeds 1, trials 5") and "in 12 s (2 models trained, 10 s of it; 1 loaded" in line
    assert "hide-input" in imports.metadata.tags and "hide-input" not in shown.metadata.tags


def test_prepare_chapter_without_markdown_puts_the_box_first():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    book.prepare_chapter(nb, "crw_theory", "quick", {}, None)
    assert nb.cells[0].cell_type == "markdown" and "Claims tested in this chapter" in nb.cells[0].source


@pytest.mark.slow
def test_the_gpu_edition_runs_its_code_path_on_the_cpu_at_smoke_size():
    """`book run --profile gpu` without CUDA: its chapters' models are trained first by the parallel warm-up, so the
    notebooks then load every model they use; the results go to results/gpu-cpu-smoke, never to results/gpu."""
    if not book.run_device().startswith("CPU"):
        pytest.skip("a CUDA device is present: this tests the CPU path")
    edition = {n: book.results_path("gpu", n) for n in profiles.GPU_CHAPTERS}
    before = {n: p.stat().st_mtime_ns for n, p in edition.items() if p.is_file()}
    reports = book.run("gpu", force=True, jobs=2)
    assert [r.name for r in reports] == list(profiles.GPU_CHAPTERS) and all(r.status == "ran" for r in reports)
    for name in profiles.GPU_CHAPTERS:
        results = json.loads(book.results_path(book.GPU_ON_CPU, name).read_text())
        assert results["parameters"] == profiles.resolve(name, "smoke")
        assert results["training"]["trained"] == 0 and results["training"]["loaded"] > 0, name
    assert {n: p.stat().st_mtime_ns for n, p in edition.items() if p.is_file()} == before, "results/gpu untouched"


def test_gpu_tasks_name_each_model_once():
    crw_params = profiles.resolve("crw_ablations", "smoke")
    [wave] = __import__("amodalkit.crw", fromlist=["gpu_tasks"]).gpu_tasks("crw_ablations", crw_params)
    # every stride's run and the noise control, per seed
    assert len(wave) == crw_params["seeds"] * (len(crw_params["strides"]) + 1)
    [main] = __import__("amodalkit.crw", fromlist=["gpu_tasks"]).gpu_tasks("crw_propagation",
                                                                           profiles.resolve("crw_propagation", "smoke"))
    assert all(task in wave for task in main), "crw_propagation's model is one of crw_ablations' tasks"
    from amodalkit.maskvos.experiments import gpu_tasks

    first, second = gpu_tasks("maskvos", profiles.resolve("maskvos", "smoke"))
    assert {t[1]["phase"] for t in first} == {"a"} and {t[1]["phase"] for t in second} == {"b"}


def test_a_claim_shows_the_gpu_editions_verdict_beside_its_own():
    from amodalkit.claims_page import claims_table_html, edition_label

    seeds = [0, 1, 2]
    quick = {"crw_propagation": {"measurements": {"jf.local": {"values": [0.6, 0.61, 0.62], "seeds": seeds},
                                                  "jf.global": {"values": [0.5, 0.5, 0.5], "seeds": seeds}}}}
    gpu = {"crw_propagation": {"provenance": {"device": "NVIDIA H200"}, "measurements": {
        "jf.local": {"values": [0.4, 0.41, 0.42], "seeds": seeds}, "jf.global": {"values": [0.5, 0.5, 0.5], "seeds": seeds}}}}
    label = edition_label("gpu", gpu)
    assert label == "gpu profile on NVIDIA H200"
    claim = [c for c in claims_for("crw_propagation") if c.id == "crw.f.local-attention"]
    html = claims_table_html(quick, claim, set(), editions=[(label, gpu)])
    assert "✓ reproduced" in html and "gpu profile on NVIDIA H200: " in html and "✗ not reproduced" in html
    assert "gpu profile" not in claims_table_html(quick, claim, set(), editions=[(label, {})])


def _environment_tasks(chapter, params):
    """A warm-up task list for the test below: one task that writes what its worker's environment holds."""
    return [[("test_book:_write_environment", dict(path=params["path"]))]]


def _write_environment(path):
    from amodalkit.results import TRAINING_LOG_ENV

    Path(path).write_text(json.dumps({k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "AMODALKIT_CACHE",
                                                                      TRAINING_LOG_ENV)}))


def test_the_warm_up_workers_start_in_the_runs_environment(tmp_path, monkeypatch):
    """The replica's kernels and model cache must hold in the workers that train its models (they are read when
    torch loads), and only there: the parent's environment is restored afterwards."""
    monkeypatch.setattr(book, "WARM_TASKS", {"crw_theory": "test_book:_environment_tasks"})
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    env = {"ATEN_CPU_CAPABILITY": "default", "AMODALKIT_CACHE": str(tmp_path / "kernel-default")}
    warmed = book.warm_up(["crw_theory"], {"crw_theory": {"path": str(tmp_path / "env.json")}}, jobs=1, env=env)
    seen = json.loads((tmp_path / "env.json").read_text())
    assert {k: seen[k] for k in env} == env and seen[book.TRAINING_LOG_ENV].endswith("training.jsonl")
    assert warmed["crw_theory"]["models"] == 0 and "ATEN_CPU_CAPABILITY" not in os.environ

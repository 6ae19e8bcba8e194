"""Where results and models come from: chapter keys from the import closure, executed copies kept with their results,
stale chapters named at build time, and the provenance of every trained model (`python -m amodalkit models`)."""
import base64
import io
import json
import subprocess

import nbformat
import numpy as np
import pytest
from PIL import Image

from amodalkit import book, profiles, provenance
from amodalkit.__main__ import main
from amodalkit.provenance import ROOT, blob_hash, import_closure
from amodalkit.viz import png_bytes


def _in_git() -> bool:
    return provenance.git_commit() is not None


def test_blob_hash_is_gits():
    path = ROOT / "amodalkit" / "ops.py"
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True).stdout.strip()
    if not expected:
        pytest.skip("no git here")
    assert blob_hash(path) == expected


def test_import_closure_follows_the_package_and_skips_annotation_only_imports():
    closure = import_closure(["from amodalkit.ops import warp\nimport numpy", "%config X = 1\nfrom amodalkit import progress"])
    assert set(closure) == {"amodalkit/__init__.py", "amodalkit/ops.py"}
    assert closure["amodalkit/ops.py"] == {"warp"} and closure["amodalkit/__init__.py"] == {"progress"}
    # savos's losses import deocclusion (a relative import two levels up), deocclusion imports ops
    closure = import_closure(["from amodalkit.savos.losses import savos_loss"])
    assert {"amodalkit/savos/__init__.py", "amodalkit/savos/losses.py", "amodalkit/deocclusion.py",
            "amodalkit/ops.py", "amodalkit/savos/model.py"} <= set(closure)
    # an excluded module is listed with the names a cell imports from it, and not entered
    closure = import_closure(["from amodalkit.claims import show_verdicts"], exclude={"amodalkit.claims"})
    assert closure == {"amodalkit/__init__.py": set(), "amodalkit/claims.py": {"show_verdicts"}}


def test_a_chapter_key_covers_its_own_code_not_the_rendering_code_nor_other_methods():
    inputs = book.chapter_inputs("crw_theory", profiles.resolve("crw_theory", "quick"))
    assert "amodalkit/crw.py" in inputs and "parameters" in inputs and "notebooks/crw_theory.ipynb:code" in inputs
    files = {k.split(":")[0] for k in inputs}
    for other in ("amodalkit/stemseg/model.py", "amodalkit/savos/model.py", "amodalkit/amodal_vae/model.py",
                  "amodalkit/maskvos/model.py", "amodalkit/book.py", "amodalkit/claims_page.py"):
        assert other not in files
    assert "amodalkit/claims.py" not in inputs, "claims.py counts only by the values of the names imported from it"
    stem = book.chapter_inputs("stem_mixing", profiles.resolve("stem_mixing", "quick"))
    assert "amodalkit/claims.py:STEM_MAX_PLATEAU,STEM_MIN_SPEED_RATIO" in stem


def test_an_edit_to_one_methods_module_leaves_the_other_methods_chapters_fresh(monkeypatch):
    def keys():
        return {name: book.cache_key(book.chapter_inputs(name, profiles.resolve(name, "quick")))
                for name in book.notebook_names()}

    before = keys()
    real = provenance.blob_hash
    edited = {"amodalkit/stemseg/model.py"}
    monkeypatch.setattr(provenance, "blob_hash",
                        lambda path: "edited" if provenance.Path(path).relative_to(ROOT).as_posix() in edited
                        else real(path))
    changed = {name for name, key in keys().items() if key != before[name]}
    assert changed == {"stem_mixing", "stem_losses"}
    edited.clear()
    edited.add("amodalkit/claims_page.py")  # the book's rendering code: no chapter is stale
    edited.add("amodalkit/book.py")
    assert keys() == before


def test_changed_inputs_say_what_changed():
    recorded = {"inputs": {"parameters": "a", "amodalkit/crw.py": "x", "amodalkit/ops.py": "y",
                           "notebooks/n.ipynb:code": "c"}, "parameters": {"steps": 40, "seeds": 3}}
    now = {"parameters": "b", "amodalkit/crw.py": "x2", "notebooks/n.ipynb:code": "c", "results/extra.json": "r"}
    changes = book.changed_inputs(recorded, now, {"steps": 80, "seeds": 3})
    assert changes == ["`amodalkit/crw.py`", "`amodalkit/ops.py` (no longer used)", "the parameters (steps: 40 → 80)",
                       "`results/extra.json` (newly used)"]
    assert book.changed_inputs(recorded, dict(recorded["inputs"]), recorded["parameters"]) == []
    assert book.changed_inputs({}, now, {}) == ["the run predates the record of its inputs"]


def _widget(name, state, buffers=None):
    model = {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0", "model_name": name,
             "state": state}
    if buffers:
        model["buffers"] = buffers
    return model


def test_slim_executed_keeps_each_shown_widget_state_once():
    nb = nbformat.v4.new_notebook()
    shown = nbformat.v4.new_output("display_data", data={
        book.WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0}, "text/plain": "VBox(...)"})
    png = base64.b64encode(png_bytes(np.full((4, 4, 4), 255, dtype=np.uint8))).decode()  # opaque RGBA
    figure = nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})
    cell = nbformat.v4.new_code_cell("show()", outputs=[shown, figure])
    cell.metadata["papermill"] = {"duration": 1.0}
    nb.cells = [cell]
    nb.metadata["papermill"] = {"input_path": "/somewhere/on/this/machine"}
    state = {
        "box": _widget("VBoxModel", {"children": ["IPY_MODEL_img1", "IPY_MODEL_img2"], "layout": "IPY_MODEL_lay0"}),
        "img1": _widget("ImageModel", {"layout": "IPY_MODEL_lay1"}, [{"data": "AAA", "path": ["value"]}]),
        "img2": _widget("ImageModel", {"layout": "IPY_MODEL_lay2"}, [{"data": "AAA", "path": ["value"]}]),
        "lay0": _widget("LayoutModel", {"width": "10px"}),
        "lay1": _widget("LayoutModel", {"width": None}),
        "lay2": _widget("LayoutModel", {"width": None}),
        "orphan": _widget("ImageModel", {"layout": "IPY_MODEL_lay1"}, [{"data": "BBB", "path": ["value"]}]),
        "link": _widget("LinkModel", {"source": ["IPY_MODEL_box", "value"], "target": ["IPY_MODEL_img1", "index"]}),
    }
    nb.metadata["widgets"] = {book.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    book.slim_executed(nb)
    kept = nb.metadata["widgets"][book.WIDGET_STATE]["state"]
    # the two identical layouts become one, which makes the two images identical: one of each is left
    # the link between shown widgets stays (nothing shown references it, but it makes them react); the orphan goes
    assert sorted(m["model_name"] for m in kept.values()) == ["ImageModel", "LayoutModel", "LayoutModel", "LinkModel",
                                                             "VBoxModel"]
    children = kept["box"]["state"]["children"]
    assert children[0] == children[1] and children[0].removeprefix("IPY_MODEL_") in kept
    assert "papermill" not in nb.metadata and "papermill" not in nb.cells[0].metadata
    assert "text/plain" not in shown["data"] and "text/plain" not in figure["data"]
    smaller = Image.open(io.BytesIO(base64.b64decode(figure["data"]["image/png"])))
    assert smaller.mode == "RGB" and (np.asarray(smaller) == 255).all()  # the same pixels, without the alpha


@pytest.mark.slow
def test_the_build_refuses_an_executed_notebook_of_another_run(scratch_book):
    scratch_book("from amodalkit.results import Recorder\nrec = Recorder('scratch')\nrec.add('q', 1 / divisor, seed=0)\nrec.save()")
    book.run("quick")
    results = book.load_results(book.RESULTS_DIR / "quick")
    nb, notice = book.chapter_page("scratch", "quick", results)  # the same run: accepted, fresh
    assert notice == "" and nb.metadata["amodalkit"]["cache_key"] == results["scratch"]["cache_key"]
    path = book.results_path("quick", "scratch")
    other = json.loads(path.read_text())
    other["cache_key"] = "another run"
    path.write_text(json.dumps(other))
    with pytest.raises(book.BookError, match="come from different runs"):
        book.chapter_page("scratch", "quick", book.load_results(book.RESULTS_DIR / "quick"))


@pytest.mark.slow
def test_a_stale_chapter_says_what_changed_and_prose_edits_need_no_rerun(scratch_book, monkeypatch):
    scratch_book("from amodalkit.results import Recorder\nrec = Recorder('scratch')\nrec.add('q', 1 / divisor, seed=0)\nrec.save()")
    book.run("quick")
    source = nbformat.read(book.NOTEBOOK_DIR / "scratch.ipynb", as_version=4)
    source.cells.insert(0, nbformat.v4.new_markdown_cell("# Scratch\n\nNew prose."))
    nbformat.write(source, book.NOTEBOOK_DIR / "scratch.ipynb")
    assert [s.state for s in book.status("quick")] == ["fresh"]
    nb, notice = book.chapter_page("scratch", "quick", book.load_results(book.RESULTS_DIR / "quick"))
    assert notice == "" and nb.cells[0].source == "# Scratch\n\nNew prose."
    assert "injected-parameters" in nb.cells[2].metadata.tags  # after the parameters cell, as papermill put it
    monkeypatch.setitem(profiles.NOTEBOOKS, "scratch", {"divisor": profiles.Param(int, 2, "what to divide by", -5, 5)})
    [state] = book.status("quick")
    assert state.state == "stale" and state.changes == ["the parameters (divisor: 1 → 2)"]
    _, notice = book.chapter_page("scratch", "quick", book.load_results(book.RESULTS_DIR / "quick"))
    assert "**stale**" in notice and "divisor: 1 → 2" in notice


def test_models_lists_a_model_trained_by_train_with_its_commit_and_selection_score(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "crw", "--profile", "smoke", "--steps", "2", "--out", str(out)]) == 0
    record = json.loads((out / "checkpoint.pt.json").read_text())["record"]
    assert record["commit"] == provenance.git_commit() and record["version"]
    # CRW keeps its last weights, as the release evaluates its last checkpoint; the score is that step's validation loss
    assert record["selection"]["rule"] == "last step" and record["selection"]["val_loss"] > 0
    assert json.loads((out / "log.json").read_text())["record"] == record
    capsys.readouterr()
    assert main(["models", str(out), "--no-cache"]) == 0
    listing = capsys.readouterr().out
    assert "crw" in listing and "smoke" in listing and f"{record['selection']['val_loss']:.4g} (last)" in listing
    if _in_git():
        assert record["commit"][:10] in listing
    assert main(["models", str(out), "--no-cache", "--method", "savos"]) == 0
    assert "no trained models" in capsys.readouterr().out
    assert main(["models", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err


def test_cached_models_record_the_chapter_and_profile_that_trained_them(monkeypatch, tmp_path):
    import torch

    from amodalkit.train import list_models, train_cached

    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    monkeypatch.setenv(book.CHAPTER_ENV, "some_chapter")
    monkeypatch.setenv(book.PROFILE_ENV, "quick")
    train_cached("toy", {"seed": 3, "steps": 2}, lambda: torch.nn.Linear(2, 1),
                 lambda m, step, g: m(torch.randn(4, 2, generator=g)).pow(2).mean(), steps=2, lr=1e-2,
                 validate=lambda m: float(m.weight.abs().sum()))
    [entry] = list_models()
    assert (entry.method, entry.profile, entry.seed, entry.steps) == ("toy", "quick", 3, 2)
    assert entry.val_loss is not None and entry.path.parent == tmp_path / "models"

"""The SaVos package's layout promises: cached models are keyed by exactly the code their training runs, and the
release's training-track filter scales to our image sizes."""
import ast
from pathlib import Path

import pytest

from amodalkit import savos
from amodalkit.savos.world_tracks import RELEASE_TRAIN_FILTER, train_filter_args
from amodalkit.train import config_key

PACKAGE = Path(savos.__file__).parent.parent


def _relative_imports(path: Path) -> set[str]:
    """Package files (relative to amodalkit/) that a module imports, at the top or inside functions."""
    out = set()
    here = path.parent.relative_to(PACKAGE)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here
            for _ in range(node.level - 1):
                base = base.parent
            target = base / Path(*(node.module or "").split("."))
            if node.module is None:  # `from . import name`: the named modules
                for alias in node.names:
                    out.add(f"{(target / alias.name).as_posix()}.py")
            else:
                out.add(f"{target.as_posix()}.py" if (PACKAGE / f"{target}.py").is_file() else f"{target.as_posix()}/__init__.py")
    return {p.removeprefix("./") for p in out}


def imported_by(start: str, covered_elsewhere: set[str]) -> set[str]:
    """Package files ``start`` imports, transitively (train.py is a leaf: its helpers do not change what is trained),
    except those in ``covered_elsewhere``."""
    todo, seen = [start], set()
    while todo:
        name = todo.pop()
        if name in seen or name in covered_elsewhere:
            continue
        seen.add(name)
        if name != "train.py":
            todo += sorted(_relative_imports(PACKAGE / name))
    return seen


def test_the_training_key_covers_every_module_the_training_imports():
    # what training runs: training.py and, transitively, what it imports; the tracks come with their own digest
    # (data.key, which hashes world_tracks.py and data/), and train.py counts for every cached model (its own helpers,
    # the progress bar and atomic writes, do not change what is trained)
    keyed = set(savos.TRAINING_CODE) | {"train.py"}
    seen = imported_by("savos/training.py", covered_elsewhere={"savos/world_tracks.py", "savos/__init__.py"})
    assert seen <= keyed, f"imported by the training but not in its cache key: {sorted(seen - keyed)}"
    assert "savos/experiments.py" not in keyed  # an edit to the evaluation does not retrain the rows


def test_an_edit_outside_the_training_modules_keeps_the_key(tmp_path, monkeypatch):
    config = dict(method="savos", variant="full", seed=0)
    before = config_key(config, savos.TRAINING_CODE)
    assert config_key(config, savos.TRAINING_CODE + ("savos/experiments.py",)) != before  # the key does see files
    assert config_key(config, tuple(reversed(savos.TRAINING_CODE))) == before  # and not their order


def test_release_filter_at_the_release_size_and_scaled():
    at_release = train_filter_args(320, 480)
    assert at_release == dict(min_amodal_area=401, min_visible_area=65, border=16, min_change=0.4)  # "> 400", "> 64"
    quick = train_filter_args(64, 96)  # the quick fishbowl: 1/25 of the area, 1/5 of the side
    assert quick == dict(min_amodal_area=17, min_visible_area=3, border=3, min_change=RELEASE_TRAIN_FILTER["change"])


def test_variant_rejects_an_unknown_consistency_form():
    with pytest.raises(ValueError, match="consistency_form"):
        savos.Variant(consistency_form="cumulative")


def test_matched_pcnet_is_the_narrowest_pcnet_as_large_as_the_savos_network():
    from amodalkit.deocclusion import PCNetM

    def count(model):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    recipe = savos.SaVosRecipe(size=(16, 32), base=8, pcnet_width=8)
    width = savos.matched_pcnet_width(recipe)
    target = count(savos.SaVosNet(recipe.size, recipe.base, savos.VARIANTS["full"]))
    assert count(PCNetM(width - 1)) < target <= count(PCNetM(width))
    assert count(savos.make_model(savos.VARIANTS["deocc_arch_matched"], recipe)) == count(PCNetM(width))
    with pytest.raises(ValueError, match="matched_capacity sizes PCNet-M"):
        savos.Variant(matched_capacity=True)


def test_the_warm_up_tasks_train_what_the_chapters_load(tmp_path, monkeypatch):
    """savos_ablations' warm-up: tracks cut once per world, seed and flow source; every row of both worlds; the
    exact-flow rows only where the flow is seen (no_flow's model is the same under either source); and a trained
    task is what the chapter's own call then loads from the cache."""
    from amodalkit import profiles
    from amodalkit.savos import experiments

    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    params = dict(profiles.resolve("savos_ablations", "smoke"), exact_flow_rows=["full", "no_flow"])
    data_wave, model_wave = experiments.warm_tasks("savos_ablations", params)
    assert len(data_wave) == params["seeds"] * 2 * 2  # two worlds, two flow sources
    rows = [(t["world"], t["params"].get("flow"), t["row"]) for _, t in model_wave]
    assert len(rows) == len(set(rows)) == params["seeds"] * (8 + 9 + 2)  # street 8, fishbowl 9, exact flow: full
    assert ("fishbowl", "truth", "full") in rows and ("fishbowl", "truth", "no_flow") not in rows
    assert "supervised" not in {r for _, _, r in rows}  # the ladder's rows are a benchmark's
    function, task = model_wave[0]
    assert function == "amodalkit.savos.experiments:warm"
    experiments.warm(**task)
    data, recipe, key = experiments.chapter_setup(task["world"], task["seed"], dict(params, **task["params"]))
    assert experiments.train_variant(task["row"], data, recipe, task["seed"], key).from_cache
    with pytest.raises(ValueError, match="savos_embeddings"):
        experiments.warm_tasks("savos_embeddings", params)

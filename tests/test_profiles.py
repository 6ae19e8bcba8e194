import ast
import json
from pathlib import Path

import pytest

from amodalkit import profiles
from amodalkit.profiles import ParameterError, resolve

ROOT = Path(__file__).resolve().parents[1]


def parameters_cell(name: str) -> dict:
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{name}: exactly one cell tagged 'parameters'"
    values = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        assert isinstance(node, ast.Assign), f"{name}: the parameters cell holds plain assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


@pytest.mark.parametrize("name", sorted(profiles.NOTEBOOKS))
def test_parameters_cell_holds_the_quick_profile(name):
    assert parameters_cell(name) == resolve(name, "quick")


@pytest.mark.parametrize("name", sorted(profiles.NOTEBOOKS))
@pytest.mark.parametrize("profile", profiles.profile_names())
def test_every_profile_resolves(name, profile):
    resolve(name, profile)


def test_every_notebook_declares_its_parameters():
    on_disk = {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert on_disk == set(profiles.NOTEBOOKS)


@pytest.mark.parametrize("overrides,match", [
    ({"seedz": 3}, r"unknown parameter 'seedz'.*expected one of"),
    ({"seeds": "three"}, r"parameter 'seeds' must be an integer in \[1, 50\], got 'three' \(str\)"),
    ({"seeds": 2.5}, r"'seeds' must be an integer"),
    ({"seeds": True}, r"'seeds' must be an integer"),
    ({"seeds": 0}, r"'seeds' must be an integer in \[1, 50\], got 0"),
    ({"lr": 100.0}, r"'lr' must be a number in \[1e-05, 10.0\]"),
    ({"chain_lengths": [8]}, r"'chain_lengths' must be a list of at least 2 ints"),
    ({"chain_lengths": [8, 1]}, r"each in \[2, 1024\]"),
])
def test_bad_parameters_are_named(overrides, match):
    with pytest.raises(ParameterError, match=match):
        resolve("savos_theorem1", "quick", overrides)


def test_int_is_accepted_for_a_float_and_coerced():
    assert resolve("savos_theorem1", "quick", {"lr": 1})["lr"] == 1.0


def test_unknown_profile_and_notebook():
    with pytest.raises(ParameterError, match="unknown profile 'fast'"):
        resolve("savos_theorem1", "fast")
    with pytest.raises(ParameterError, match="no parameters declared for notebook 'nope'"):
        resolve("nope", "quick")


def test_cli_rejects_bad_parameter_before_any_work(capsys, tmp_path, monkeypatch):
    from amodalkit import __main__ as cli, book

    monkeypatch.setattr(book, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(book, "BUILD_DIR", tmp_path / "build")
    code = cli.main(["book", "run", "--only", "savos_theorem1", "-p", "steps", "-5"])
    assert code == 2
    assert "parameter 'steps' must be an integer in [1, 100000], got -5" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "build").exists()

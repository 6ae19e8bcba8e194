"""pyproject.toml and environment.yml list the same pinned dependencies."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def normalise(requirement: str) -> str:
    name, _, version = requirement.partition("==")
    return f"{re.sub(r'[-_.]+', '-', name.strip().lower())}=={version.strip()}"


def pyproject_pins() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {normalise(r) for r in reqs}


def environment_pins() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {normalise(r) for r in pip if not r.startswith("-e")}


def test_every_dependency_is_pinned_exactly():
    for req in pyproject_pins() | environment_pins():
        assert re.fullmatch(r"[a-z0-9-]+==[0-9][0-9a-z.+]*", req), f"not pinned with ==: {req}"


def test_pyproject_and_environment_agree():
    ours, theirs = pyproject_pins(), environment_pins()
    assert ours == theirs, f"only in pyproject.toml: {sorted(ours - theirs)}; only in environment.yml: {sorted(theirs - ours)}"


def test_environment_python_matches_requires_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == "python=3.11" and ">=3.11" in requires


def test_a_second_make_skips_the_install():
    """`make test` set up .venv for this run; asking again must not reinstall (the stamp matches pyproject.toml)."""
    import shutil
    import subprocess

    import pytest

    import os

    # Only `make test` guarantees that .venv was just set up for this pyproject.toml; a bare
    # pytest after editing pyproject.toml would see a stale stamp that make would mend.
    if "MAKELEVEL" not in os.environ or not (ROOT / ".venv").is_dir() or shutil.which("make") is None:
        pytest.skip("not run by `make test` from the Makefile's .venv")
    dry_run = subprocess.run(["make", "-n", "venv"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "pip install" not in dry_run, dry_run

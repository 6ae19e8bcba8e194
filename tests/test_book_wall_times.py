"""benchmarks/book_wall_times.py: the per-paper sums of a book run's recorded wall times."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import book_wall_times  # noqa: E402


def _result(folder: Path, name: str, seconds: float, trained: int, loaded: int, finished: str) -> None:
    (folder / f"{name}.json").write_text(json.dumps(dict(
        wall_time_s=seconds, finished=finished, training=dict(trained=trained, loaded=loaded, train_seconds=seconds / 2))))


def test_sums_per_paper_and_leaves_out_chapters_of_an_earlier_run(tmp_path):
    _result(tmp_path, "savos_a", 100.0, 4, 0, "2026-12-02T02:00:00Z")
    _result(tmp_path, "savos_b", 50.5, 0, 4, "2026-12-02T02:10:00Z")
    _result(tmp_path, "crw_a", 30.0, 2, 0, "2026-12-01T09:00:00Z")  # finished before the run: not measured
    out = book_wall_times.collect(tmp_path, ["savos_a", "savos_b", "crw_a"], since="2026-12-02T01:00:00Z")
    assert out["papers"] == {"SaVos": dict(wall_time_s=150.5, trained=4, loaded=4, train_seconds=75.25, budget_min=30)}
    assert out["total_wall_time_s"] == 150.5
    assert out["not_measured"] == {"crw_a": "2026-12-01T09:00:00Z"}
    assert book_wall_times.collect(tmp_path, ["savos_a", "crw_a"])["papers"]["CRW"]["wall_time_s"] == 30.0


def test_names_a_missing_chapter_and_an_unknown_prefix(tmp_path):
    with pytest.raises(FileNotFoundError, match="maskvos"):
        book_wall_times.collect(tmp_path, ["maskvos"])
    _result(tmp_path, "other", 1.0, 0, 0, "2026-12-02T02:00:00Z")
    with pytest.raises(ValueError, match="'other'"):
        book_wall_times.collect(tmp_path, ["other"])

"""amodalkit.wall_times: each chapter's latest run, summed per paper against the budget shares."""
import json

import pytest

from amodalkit import wall_times


def _result(folder, name, seconds, trained, loaded, finished, empty):
    (folder / "quick").mkdir(exist_ok=True)
    (folder / "quick" / f"{name}.json").write_text(json.dumps(dict(
        wall_time_s=seconds, finished=finished, model_cache_empty_at_start=empty, provenance=dict(commit="abc"),
        training=dict(trained=trained, loaded=loaded, train_seconds=seconds / 2))))


def test_a_rerun_replaces_its_chapters_rows_and_the_sums_follow(tmp_path):
    _result(tmp_path, "savos_ablations", 100.0, 4, 0, "2026-12-02T02:00:00Z", True)
    _result(tmp_path, "savos_embeddings", 50.5, 0, 4, "2026-12-02T02:10:00Z", True)
    _result(tmp_path, "crw_theory", 30.0, 0, 0, "2026-12-01T09:00:00Z", True)
    first = wall_times.record("quick", ["savos_ablations", "savos_embeddings", "crw_theory"], tmp_path)
    assert first["papers"]["SaVos"] == dict(wall_time_s=150.5, trained=4, loaded=4, train_seconds=75.25, chapters=2,
                                            from_empty_cache=2, budget_min=75)
    assert first["papers"]["data and theory"]["budget_min"] == 25 and first["total_wall_time_s"] == 180.5
    _result(tmp_path, "savos_embeddings", 20.0, 0, 4, "2026-12-03T02:10:00Z", False)  # re-run with a warm cache
    again = wall_times.record("quick", ["savos_embeddings"], tmp_path)
    assert again["papers"]["SaVos"]["wall_time_s"] == 120.0 and again["papers"]["SaVos"]["from_empty_cache"] == 1
    assert again["chapters"]["crw_theory"] == first["chapters"]["crw_theory"]
    assert json.loads((tmp_path / "book_wall_times.json").read_text()) == again
    table = wall_times.table_markdown(again)
    assert "| **SaVos** | **2.0** | 75 | 4 (1.0) | 4 | 1 of 2 chapters |" in table
    assert "| `savos_embeddings` | 0.3 | | 0 (0.2) | 4 | no (2026-12-03) |" in table


def test_a_parallel_warm_up_counts_in_its_chapters_row(tmp_path):
    _result(tmp_path, "savos_ablations", 100.0, 0, 6, "2026-12-03T12:00:00Z", True)
    result = tmp_path / "quick" / "savos_ablations.json"
    result.write_text(json.dumps(dict(json.loads(result.read_text()), warm_up=dict(seconds=400.0, models=5))))
    row = wall_times.record("quick", ["savos_ablations"], tmp_path)["chapters"]["savos_ablations"]
    assert (row["wall_time_s"], row["trained"], row["loaded"], row["train_seconds"]) == (500.0, 5, 1, 450.0)
    assert row["warm_up"] == dict(seconds=400.0, models=5)


def test_the_shares_add_up_and_an_unknown_chapter_is_named():
    assert sum(wall_times.BUDGETS.values()) == wall_times.TOTAL_BUDGET_MIN == 240
    with pytest.raises(ValueError, match="'other'"):
        wall_times.paper_of("other")

"""Book prose that cannot go stale: numbers inserted from the results, comparisons worded by the verdicts' test,
and quotes that are the supplements' words."""
import json
from pathlib import Path

import pytest

from amodalkit import prose
from amodalkit.claims import compare, compare_measures

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"
RESULTS = {"nb": {"measurements": {"a": {"values": [0.50, 0.62, 0.71], "seeds": [0, 1, 2]},
                                   "b": {"values": [0.40, 0.51, 0.62], "seeds": [0, 1, 2]},
                                   "c": {"values": [0.30, 0.70, 0.45], "seeds": [2, 0, 1]}}}}


def _supplements() -> list[str]:
    if not SEEDS.is_dir():
        pytest.skip("../shared/seeds is not beside this clone")
    return [p.read_text() for p in sorted(SEEDS.glob("0*.txt"))]


def test_placeholders_are_filled_from_the_results_and_name_their_source():
    text = prose.insert_numbers("{{ nb/a }}, {{ nb/c@seeds .2f }}, {{ nb/c@seed2 .1f }}, {{ nb/a@range .1% }}, "
                                "{{ nb/b@n }}", RESULTS, html=False)
    assert text == "0.610 ± 0.105, 0.70 / 0.45 / 0.30, 0.3, 50.0%–71.0%, 3"
    rendered = prose.insert_numbers("{{ nb/a@mean .2f }}", RESULTS, page="p.md")
    assert rendered == '<span class="ak-result" title="results/quick/nb.json: a, 3 seeds">0.61</span>'
    with pytest.raises(prose.ProseError, match=r"p\.md: \{\{ nb/zz \}\} cannot be filled in: 'zz' is not recorded"):
        prose.insert_numbers("{{ nb/zz }}", RESULTS, page="p.md")
    with pytest.raises(prose.ProseError, match="unknown statistic @median"):
        prose.insert_numbers("{{ nb/a@median }}", RESULTS)


def test_benchmark_files_and_comparisons(tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps({"fit": {"slope": 0.0291, "curve": [1.0, 2.0, 4.0]}}))
    text = prose.insert_numbers("{{ bench.json:fit.slope .3f }} {{ bench.json:fit.curve@max .0f }}", {},
                                results_dir=tmp_path, html=False)
    assert text == "0.029 4"
    # a - b is +0.10 on every seed: higher by the verdicts' paired test
    assert prose.insert_numbers("{{ cmp:nb/a>nb/b }}", RESULTS, html=False).startswith("higher (paired Δ +0.1")
    assert compare_measures(RESULTS, "nb/a", "nb/b").word == "higher"
    assert compare_measures(RESULTS, "nb/b", "nb/a").word == "lower"
    assert compare([0.5, 0.6], [0.55, 0.5], paired=True).phrase().startswith("within noise")


def test_the_quote_check_fails_on_a_made_up_quote_and_passes_the_real_one():
    supplement = "Our model is trained\nuntil the model con-\nverges on the validation set, with the “cold” region."
    real = {"note": "The supplement says 'until the model converges on the validation set'."}
    assert prose.unverified_quotes(real, [supplement]) == []
    made_up = {"note": "Supplement 3.1: 'until convergence of every stage'."}
    assert prose.unverified_quotes(made_up, [supplement]) == [("note", "until convergence of every stage")]
    # on a book page every quote counts, attributed or not, except the book's own words
    page = {"p.md": 'the paper trains "until convergence"; see "What moved the probes" and the "cold" region'}
    assert prose.unverified_quotes({}, [supplement], page, own=["What moved the probes"]) == [
        ("p.md", "until convergence")]
    assert prose.occurs_in("trained ... validation set", supplement)
    assert not prose.occurs_in("validation set ... trained", supplement)


def test_every_quote_attributed_to_a_supplement_is_its_words():
    texts, pages, own = prose.collect_prose(ROOT)
    assert prose.unverified_quotes(texts, _supplements(), pages, own) == []


def _effect_cells(text: str):
    """(row label, effect cell, the rest of the row) of every table row of a page with a 'measured effect' column."""
    column = None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if column is None:
            column = next((i for i, c in enumerate(cells) if "effect" in c), None)
            continue
        if column is not None and len(cells) > column and not set("".join(cells)) <= set("- "):
            yield cells[0], cells[column], " ".join(c for i, c in enumerate(cells) if i != column)


def _typed_numbers(text: str) -> list[str]:
    """The decimals of a page's 'measured effect' cells that are typed: not a placeholder filled from the results,
    nor a setting stated in the same row, a gate's threshold, or a paper's own number ("the paper: 8.65", "KINS: 6.2")."""
    import re

    from amodalkit import claims

    thresholds = {float(v) for v in vars(claims).values() if isinstance(v, float)} | {0.02, 0.01, 0.1}
    typed = []
    for label, effect, rest in _effect_cells(text):
        bare = re.sub(r"`[^`]*`", "", prose.PLACEHOLDER.sub("", effect))
        settings = {float(x) for x in re.findall(r"\d+\.\d+", rest)}
        for match in re.finditer(r"\d+\.\d+", bare):
            value = float(match.group(0))
            if value in settings or value in thresholds or re.search(r"paper|KINS", bare[max(0, match.start() - 14):match.start()]):
                continue
            typed.append(f"row '{label}': {bare[max(0, match.start() - 40):match.end() + 10]!r}")
    return typed


def test_the_typed_number_check_finds_a_typed_result():
    page = ("| difference | paper | this book | measured effect |\n| --- | --- | --- | --- |\n"
            "| lr | 1e-4 | threshold 0.2 | {{ nb/a }} against 0.384, above 0.2 (the paper: 0.72; gate 0.02) |\n")
    assert _typed_numbers(page) == ["row 'lr': ' against 0.384, above 0.'"]  # only the typed 0.384


def test_no_measured_number_of_the_pages_is_typed_by_hand():
    assert [f"{page.name}, {t}" for page in sorted((ROOT / "book").glob("*.md")) for t in _typed_numbers(page.read_text())] == []


def test_every_placeholder_of_the_pages_and_chapters_is_filled_from_the_committed_results():
    from amodalkit.results import load_results

    results = load_results(ROOT / "results" / "quick")
    _, pages, _ = prose.collect_prose(ROOT)  # the book's pages and the chapters' markdown cells
    for where, text in pages.items():
        prose.insert_numbers(text, results, results_dir=ROOT / "results", page=where)


def test_the_readmes_measured_block_is_what_the_committed_results_give():
    from amodalkit import book

    assert book.write_readme(check=True), "run `python -m amodalkit book readme` and commit README.md"

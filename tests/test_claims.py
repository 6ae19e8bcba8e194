import math
import re
from pathlib import Path

import pytest

from amodalkit import __main__ as cli
from amodalkit.claims import (CLAIMS, CLAIMS_BY_ID, NOT_REPRODUCED, NOT_RUN, NOT_TESTABLE, REPRODUCED, WITHIN_NOISE,
                              AllOf, AtLeast, Between, Claim, Gate, Greater, combine, mean_std,
                              t_test_greater)
from amodalkit.claims_page import anchor, chapter_box_html, claims_markdown
from amodalkit.results import atomic_write_json

SHARED_CLAIMS = Path(__file__).resolve().parents[2] / "shared" / "claims.md"


def results(**measures):
    out = {}
    for key, values in measures.items():
        notebook, name = key.split("__")
        out.setdefault(notebook, {"measurements": {}})["measurements"][name] = {"values": values, "seeds": list(range(len(values)))}
    return out


def test_mean_std_is_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([5.0]) == (5.0, 0.0)


@pytest.mark.parametrize("values,verdict", [([0.995, 0.999], REPRODUCED), ([0.98, 0.97], NOT_REPRODUCED),
                                            ([0.999, 0.98], WITHIN_NOISE)])
def test_at_least(values, verdict):
    assert AtLeast("nb/x", 0.99).verdict(results(nb__x=values)) == verdict


def test_missing_measurement_is_not_run():
    assert AtLeast("nb/x", 0.99).verdict({}) == NOT_RUN
    assert Greater("nb/a", "nb/b").verdict(results(nb__a=[1.0])) == NOT_RUN


def test_paired_t_by_hand():
    # d = [1, 2, 3]: mean 2, sd 1, t = 2 / (1 / sqrt 3); with 2 degrees of freedom the t CDF is
    # 1/2 + t / (2 sqrt(2 + t^2)), so the one-sided p is 1/2 - t / (2 sqrt(2 + t^2))
    test = t_test_greater([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], paired=True)
    t = 2 * math.sqrt(3)
    assert test["t"] == pytest.approx(t) and test["df"] == 2
    assert test["p_greater"] == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), rel=1e-9)
    assert test["p_less"] == pytest.approx(1 - test["p_greater"])


def test_welch_t_by_hand():
    # a = [1, 2, 3] (variance 1), b = [1, 1, 1, 1] (variance 0): se^2 = 1/3, df = (1/3)^2 / ((1/3)^2 / 2) = 2
    test = t_test_greater([1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0], paired=False)
    assert test["diff"] == pytest.approx(1.0) and test["df"] == pytest.approx(2.0)
    assert test["t"] == pytest.approx(math.sqrt(3))
    assert test["p_greater"] == pytest.approx(0.5 - math.sqrt(3) / (2 * math.sqrt(5)), rel=1e-9)
    assert t_test_greater([1.0], [0.0, 1.0], paired=False) is None  # one value: no test


@pytest.mark.parametrize("a,b,verdict", [
    ([0.70, 0.72, 0.71], [0.60, 0.61, 0.62], REPRODUCED),     # differences 0.1 ± 0.01: t = 17
    ([0.70, 0.80, 0.60], [0.65, 0.66, 0.64], WITHIN_NOISE),   # differences 0.05 ± 0.09: t = 0.96
    ([0.50, 0.51, 0.52], [0.60, 0.61, 0.62], NOT_REPRODUCED), # every seed the other way (no spread)
])
def test_greater_is_a_one_sided_t_test(a, b, verdict):
    assert Greater("nb/a", "nb/b").verdict(results(nb__a=a, nb__b=b)) == verdict


def test_mean_above_spread_is_no_longer_enough():
    # the old rule (mean difference > its std) passed this: t = 1.9 on 2 df, p = 0.098 > 0.05
    a, b = [0.61, 0.71, 0.51], [0.5, 0.5, 0.5]
    outcome = Greater("nb/a", "nb/b").evaluate(results(nb__a=a, nb__b=b))
    assert outcome.verdict == WITHIN_NOISE and 0.05 < outcome.p < 0.11
    assert "paired t = 1.91" in " ".join(outcome.details)


def test_one_seed_is_within_noise():
    assert Greater("nb/a", "nb/b").verdict(results(nb__a=[0.9], nb__b=[0.1])) == WITHIN_NOISE


def test_greater_is_paired_on_matching_seeds_and_unpaired_otherwise():
    # seed-to-seed variation is large, but every seed's difference is about +0.05
    a, b = [0.30, 0.50, 0.20], [0.25, 0.44, 0.16]
    assert Greater("nb/a", "nb/b").verdict(results(nb__a=a, nb__b=b)) == REPRODUCED  # t = 8.7, p = 0.007
    unpaired = results(nb__a=a, nb__b=b)
    unpaired["nb"]["measurements"]["b"]["seeds"] = [7, 8, 9]  # different seeds: Welch
    assert Greater("nb/a", "nb/b").verdict(unpaired) == WITHIN_NOISE  # t = 0.41
    assert Greater("nb/b", "nb/a").verdict(results(nb__a=a, nb__b=b)) == NOT_REPRODUCED


def test_all_of_and_between():
    r = results(nb__a=[1.0, 1.02], nb__b=[3.0, 3.5])
    assert AllOf((Between("nb/a", 0.8, 1.2), Between("nb/b", 1.8, 2.2))).verdict(r) == NOT_REPRODUCED
    assert AllOf((Between("nb/a", 0.8, 1.2), AtLeast("nb/b", 3.2))).verdict(r) == WITHIN_NOISE
    assert AllOf((Between("nb/a", 0.8, 1.2), AtLeast("nb/missing", 0))).verdict(r) == NOT_RUN


def test_all_of_headline_names_the_deciding_part():
    r = results(nb__a=[0.9, 0.91, 0.92], nb__b=[0.1, 0.1, 0.1], nb__x=[0.2, 0.3, 0.25])
    outcome = AllOf((Greater("nb/a", "nb/b"), AtLeast("nb/x", 0.5))).evaluate(r)
    assert outcome.verdict == NOT_REPRODUCED and outcome.headline.startswith("x: 0.25 ± 0.05 (n=3)")


@pytest.mark.parametrize("comparison,gates,verdict", [
    (NOT_REPRODUCED, ["pass"], NOT_REPRODUCED),  # the gate passes: the comparison speaks
    (REPRODUCED, ["pass", "pass"], REPRODUCED),
    (REPRODUCED, ["pass", "fail"], NOT_TESTABLE),  # a failing gate withholds a pass ...
    (NOT_REPRODUCED, ["fail"], NOT_TESTABLE),      # ... and a failure alike
    (REPRODUCED, ["missing"], NOT_RUN),
    (NOT_RUN, ["pass"], NOT_RUN),
    (WITHIN_NOISE, [], WITHIN_NOISE),
])
def test_gate_combinator(comparison, gates, verdict):
    assert combine(comparison, gates) == verdict


def _gated(**measures):
    claim = Claim("t.gated", "P", "S", "a beats b", "fig", "nb", Greater("nb/a", "nb/b"),
                  gates=(Gate(AtLeast("nb/uses_input", 0.02), "the model uses the input"),))
    return claim, claim.evaluate(results(**measures))


def test_gated_claim_verdicts():
    win, lose = dict(nb__a=[0.8, 0.81, 0.82], nb__b=[0.5, 0.5, 0.5]), dict(nb__a=[0.5, 0.5, 0.5], nb__b=[0.8, 0.81, 0.82])
    assert _gated(**lose, nb__uses_input=[0.05, 0.06, 0.04])[1].verdict == NOT_REPRODUCED
    assert _gated(**win, nb__uses_input=[0.05, 0.06, 0.04])[1].verdict == REPRODUCED
    claim, outcome = _gated(**win, nb__uses_input=[0.05, 0.001, 0.04])  # fails on one seed
    assert outcome.verdict == NOT_TESTABLE and outcome.comparison.verdict == REPRODUCED
    assert outcome.gates[0].status == "fail" and outcome.gates[0].values == [0.05, 0.001, 0.04]
    assert _gated(**lose, nb__uses_input=[0.0, 0.0, 0.0])[1].verdict == NOT_TESTABLE
    assert _gated(**win)[1].verdict == NOT_RUN  # gate not recorded
    assert set(claim.measures()) == {"nb/a", "nb/b", "nb/uses_input"}


def test_every_claim_names_its_notebook_in_its_measures():
    for claim in CLAIMS:
        assert claim.rule.measures(), claim.id
        assert all(m.startswith(claim.notebook + "/") for m in claim.measures()), claim.id


def test_gate_thresholds_are_written_in_the_claims_notes():
    for claim in CLAIMS:
        for gate in claim.gates:
            threshold = gate.bound.low if gate.bound.low is not None else gate.bound.high
            written = (re.escape(f"{threshold:g}"), re.escape(f"{threshold:.0%}"))
            assert any(re.search(rf"(?<![\d.]){w}(?![\d])", claim.note) for w in written), claim.id
            assert gate.why, claim.id


def test_alpha_needs_a_clear_rise():
    claim = CLAIMS_BY_ID["savos.f1a.alpha"]
    small = {"savos_embeddings": {"measurements": {n: {"values": [0.002, 0.003, 0.002], "seeds": [0, 1, 2]}
                                                   for n in ("alpha.forward_rise", "alpha.backward_fall")}}}
    assert claim.verdict(small) == NOT_REPRODUCED
    clear = {"savos_embeddings": {"measurements": {n: {"values": [0.08, 0.1, 0.07], "seeds": [0, 1, 2]}
                                                   for n in ("alpha.forward_rise", "alpha.backward_fall")}}}
    assert claim.verdict(clear) == REPRODUCED
    assert "increasing rapidly" in claim.note  # the paper's words behind the threshold


@pytest.mark.skipif(not SHARED_CLAIMS.is_file(), reason="shared/claims.md is not beside this checkout")
def test_registry_holds_every_claim_of_shared_claims_md():
    ids = set(re.findall(r"^\| ([a-z0-9]+\.[a-z0-9.\-]+) \|", SHARED_CLAIMS.read_text(), flags=re.M))
    assert ids == {c.id for c in CLAIMS}


def test_claims_page_shows_not_run_yet_without_results():
    page = claims_markdown({}, "quick", set())
    assert page.count('<span class="ak-verdict ak-not-run">… not run yet</span>') == len(CLAIMS)
    assert f"0 reproduced, 0 not reproduced, 0 within noise, 0 not testable at this budget, {len(CLAIMS)} not run yet" in page


def _row(page: str, claim_id: str) -> str:
    start = page.index(f'<tr id="{anchor(claim_id)}"')
    return page[start:page.index("</tr>", page.index('class="ak-details"', start))]


def test_claims_page_computes_verdicts_from_results():
    r = {"savos_theorem1": {"measurements": {"exact.min_iou": {"values": [1.0, 0.995, 0.999], "seeds": [0, 1, 2]}}}}
    page = claims_markdown(r, "quick", {"savos_theorem1"})
    row = _row(page, "savos.thm1.exact")
    assert "✓ reproduced" in row and "0.998 ± 0.0026 (n=3)" in row
    assert 'href="chapters/savos_theorem1.html#claim-savos-thm1-exact"' in row
    assert "<details>" in row and "min IoU over objects" in row  # the note, behind the details toggle


def test_claims_page_shows_failing_gate_values_beside_not_testable():
    seeds = [0, 1, 2]
    m = {f"{w}.occ_miou.{v}": {"values": x, "seeds": seeds} for w in ("fishbowl", "street")
         for v, x in (("full", [0.5, 0.52, 0.51]), ("no_temporal", [0.4, 0.41, 0.42]))}
    m.update({f"{w}.reliance.history": {"values": [0.003, 0.05, 0.04], "seeds": seeds} for w in ("fishbowl", "street")})
    r = {"savos_ablations": {"measurements": m}}
    assert CLAIMS_BY_ID["savos.t1.temporal"].verdict(r) == NOT_RUN  # the own-history gate is not recorded
    m.update({f"{w}.reliance.own_history": {"values": [0.03, 0.05, 0.04], "seeds": seeds} for w in ("fishbowl", "street")})
    assert CLAIMS_BY_ID["savos.t1.temporal"].verdict(r) == NOT_TESTABLE
    row = _row(claims_markdown(r, "quick", {"savos_ablations"}), "savos.t1.temporal")
    assert "⊘ not testable at this budget" in row and "gate <code>fishbowl.reliance.history</code>: 0.031 ± 0.02" in row
    assert "fails on 1 of 3 seeds (needs ≥ 0.02)" in row


def test_re_run_flips_are_marked_not_settled_and_stale_notebooks_left_out():
    main = {"crw_propagation": {"cache_key": "k1", "measurements": {
        "jf.local": {"values": [0.6, 0.61, 0.62], "seeds": [0, 1, 2]}, "jf.global": {"values": [0.5, 0.5, 0.5], "seeds": [0, 1, 2]}}}}
    rerun = {"crw_propagation": {"cache_key": "k1", "measurements": {
        "jf.local": {"values": [0.6, 0.45, 0.62], "seeds": [0, 1, 2]}, "jf.global": {"values": [0.5, 0.5, 0.5], "seeds": [0, 1, 2]}}}}
    page = claims_markdown(main, "quick", {"crw_propagation"}, rerun, "ATEN_CPU_CAPABILITY=default", "results/x/")
    assert "⚠ not settled" in _row(page, "crw.f.local-attention")
    flips = page[page.index('<table class="ak-flips">'):]
    assert '<a href="#claim-crw-f-local-attention"><code>crw.f.local-attention</code></a>' in flips
    assert flips.index("✓ reproduced") < flips.index("≈ within noise") < flips.index("</table>")
    assert "1 of 1 chapters ran the same code" in page and "changed 1 of 6 recorded per-seed measurements" in page
    rerun["crw_propagation"]["cache_key"] = "other code"
    page = claims_markdown(main, "quick", {"crw_propagation"}, rerun, "ATEN_CPU_CAPABILITY=default", "results/x/")
    assert "⚠ not settled" not in page and "Not compared (the re-run is of other code or parameters): `crw_propagation`" in page


def test_chapter_box_lists_its_claims_with_anchors():
    box = chapter_box_html({}, "crw_ablations")
    for claim in (c for c in CLAIMS if c.notebook == "crw_ablations"):
        assert f'id="{anchor(claim.id)}"' in box and f'href="../claims.html#{anchor(claim.id)}"' in box
    assert chapter_box_html({}, "data_worlds") == ""


def test_claims_diff_command(tmp_path, capsys):
    seeds = [0, 1, 2]
    for folder, local in (("a", [0.6, 0.61, 0.62]), ("b", [0.4, 0.41, 0.42])):
        atomic_write_json(tmp_path / folder / "crw_propagation.json", {"cache_key": "k", "measurements": {
            "jf.local": {"values": local, "seeds": seeds}, "jf.global": {"values": [0.5, 0.5, 0.5], "seeds": seeds}}})
    assert cli.main(["claims", "diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "verdicts: 1 of" in out and "crw.f.local-attention  reproduced  ->  not reproduced" in out
    assert "measurements: 3 of 6 per-seed values differ" in out
    assert cli.main(["claims", "diff", str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "no results" in capsys.readouterr().err


def test_an_empty_re_run_folder_is_no_re_run():
    page = claims_markdown({}, "quick", set(), {}, "ATEN_CPU_CAPABILITY=default", "results/x/")
    assert "Does a verdict survive a re-run?" not in page


def test_re_run_counts_only_notebooks_run_with_the_same_code():
    seeds = [0, 1, 2]
    main = {"crw_propagation": {"cache_key": "k1", "measurements": {"jf.local": {"values": [0.6, 0.61, 0.62], "seeds": seeds},
                                                                      "jf.global": {"values": [0.5] * 3, "seeds": seeds}}}}
    rerun = {"crw_propagation": {"cache_key": "other", "measurements": {"jf.local": {"values": [0.1] * 3, "seeds": seeds},
                                                                          "jf.global": {"values": [0.5] * 3, "seeds": seeds}}}}
    page = claims_markdown(main, "quick", set(), rerun, "ATEN_CPU_CAPABILITY=default", "results/x/")
    assert "0 of 1 chapters ran the same code" in page and "changed 0 of 0" in page
    assert "No claim could be compared." in page and "No verdict changed" not in page


def test_all_of_headline_takes_the_weakest_direction_first_on_a_tie():
    r = results(nb__a=[0.9, 0.91, 0.92], nb__b=[0.1, 0.1, 0.1], nb__c=[0.5, 0.52, 0.51], nb__d=[0.1, 0.1, 0.1])
    outcome = AllOf((Greater("nb/a", "nb/b"), Greater("nb/c", "nb/d"))).evaluate(r)
    assert outcome.verdict == REPRODUCED and outcome.headline.startswith("c − d:")  # the larger p of the two
    same = AllOf((AtLeast("nb/a", 0.5), AtLeast("nb/c", 0.5))).evaluate(r)
    assert same.headline.startswith("a:")  # a tie (two bounds): the first part

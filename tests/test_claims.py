import re
from pathlib import Path

import pytest

from amodalkit.claims import (CLAIMS, NOT_REPRODUCED, NOT_RUN, REPRODUCED, WITHIN_NOISE, AllOf, AtLeast, Between,
                              Greater, claims_markdown, mean_std)

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


@pytest.mark.parametrize("a,b,verdict", [
    ([0.70, 0.72, 0.71], [0.60, 0.61, 0.62], REPRODUCED),     # diff 0.1, spread ~0.014
    ([0.70, 0.80, 0.60], [0.65, 0.66, 0.64], WITHIN_NOISE),   # diff 0.05, spread ~0.1
    ([0.50, 0.51, 0.52], [0.60, 0.61, 0.62], NOT_REPRODUCED), # opposite beyond the spread
])
def test_greater_beyond_spread(a, b, verdict):
    assert Greater("nb/a", "nb/b").verdict(results(nb__a=a, nb__b=b)) == verdict


def test_all_of_and_between():
    r = results(nb__a=[1.0, 1.02], nb__b=[3.0, 3.5])
    assert AllOf((Between("nb/a", 0.8, 1.2), Between("nb/b", 1.8, 2.2))).verdict(r) == NOT_REPRODUCED
    assert AllOf((Between("nb/a", 0.8, 1.2), AtLeast("nb/b", 3.2))).verdict(r) == WITHIN_NOISE
    assert AllOf((Between("nb/a", 0.8, 1.2), AtLeast("nb/missing", 0))).verdict(r) == NOT_RUN


def test_every_claim_names_its_notebook_in_its_measures():
    for claim in CLAIMS:
        assert claim.rule.measures(), claim.id
        assert all(m.startswith(claim.notebook + "/") for m in claim.rule.measures()), claim.id


@pytest.mark.skipif(not SHARED_CLAIMS.is_file(), reason="shared/claims.md is not beside this checkout")
def test_registry_holds_every_claim_of_shared_claims_md():
    ids = set(re.findall(r"^\| ([a-z0-9]+\.[a-z0-9.\-]+) \|", SHARED_CLAIMS.read_text(), flags=re.M))
    assert ids == {c.id for c in CLAIMS}


def test_claims_page_shows_not_run_yet_without_results():
    page = claims_markdown({}, "quick", set())
    assert page.count("… not run yet") == len(CLAIMS) + 1  # every row, plus the count table
    assert "| ✓ reproduced | 0 |" in page


def test_claims_page_computes_verdicts_from_results():
    r = {"savos_theorem1": {"measurements": {"exact.min_iou": {"values": [1.0, 0.995, 0.999], "seeds": [0, 1, 2]}}}}
    page = claims_markdown(r, "quick", {"savos_theorem1"})
    row = next(line for line in page.splitlines() if line.startswith("| `savos.thm1.exact`"))
    assert "✓ reproduced" in row and "0.998 ± 0.0026 (n=3)" in row and "{doc}`chapters/savos_theorem1`" in row


def test_greater_is_paired_on_matching_seeds_and_unpaired_otherwise():
    # seed-to-seed variation is large, but every seed's difference is about +0.05
    a, b = [0.30, 0.50, 0.20], [0.25, 0.44, 0.16]
    assert Greater("nb/a", "nb/b").verdict(results(nb__a=a, nb__b=b)) == REPRODUCED  # diffs 0.05, 0.06, 0.04
    unpaired = results(nb__a=a, nb__b=b)
    unpaired["nb"]["measurements"]["b"]["seeds"] = [7, 8, 9]  # different seeds: no pairing
    assert Greater("nb/a", "nb/b").verdict(unpaired) == WITHIN_NOISE  # 0.05 < sqrt(0.153^2 + 0.145^2)
    assert Greater("nb/b", "nb/a").verdict(results(nb__a=a, nb__b=b)) == NOT_REPRODUCED

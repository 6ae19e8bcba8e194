"""The claim registry and the rules that turn recorded measurements into verdicts.

Every claim of the five supplements that an experiment can test has an id, its source, the
paper's figure, the section (notebook) that tests it, a rule, and possibly gates. A rule reads
per-seed measurements, named ``"<notebook>/<measurement>"``, from the results of one profile:

* a **bound** (``AtLeast``, ``AtMost``, ``Between``) holds when every seed's value is in range:
  reproduced when all seeds hold, not reproduced when none does, within noise otherwise;
* a **direction** (``Greater``: a > b) is a one-sided t-test at level ``ALPHA`` (95%): paired over
  seeds when both measurements come from the same seeds (a seed is one world draw and one
  initialisation, shared by everything compared), Welch's unpaired test otherwise. Reproduced when
  a > b is significant, not reproduced when b > a is, within noise otherwise (also with one seed);
* ``AllOf`` needs every part: any part not reproduced fails the whole, all reproduced passes it.

A **gate** is a precondition of the test, measured by the same run on every seed (the model
converged, the model uses the input an ablation removes, the features learnt correspondence rather
than a shortcut). A gate that fails on any seed withholds the verdict: "not testable at this budget".
A gate can only withhold a verdict, never turn a failing comparison into a pass. A measurement that
the rule or a gate needs and that is not recorded gives "not run yet".

Verdicts are only ever computed here; nothing types one by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
WITHIN_NOISE = "within noise"
NOT_TESTABLE = "not testable at this budget"
NOT_RUN = "not run yet"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, WITHIN_NOISE, NOT_TESTABLE, NOT_RUN)
ALPHA = 0.05  # one-sided level of every direction test (95%)


def _entry(results: dict[str, dict[str, Any]], measure: str) -> dict | None:
    notebook, _, name = measure.partition("/")
    entry = results.get(notebook, {}).get("measurements", {}).get(name)
    return entry if entry and entry.get("values") else None


def _values(results: dict[str, dict[str, Any]], measure: str) -> list[float] | None:
    entry = _entry(results, measure)
    return None if entry is None else [float(v) for v in entry["values"]]


def _by_seed(results: dict[str, dict[str, Any]], measure: str) -> dict[int, float] | None:
    entry = _entry(results, measure)
    if entry is None or len(entry.get("seeds", [])) != len(entry["values"]):
        return None
    return {int(s): float(v) for s, v in zip(entry["seeds"], entry["values"])}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def describe(values: list[float] | None) -> str:
    if values is None:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.4g} ± {std:.2g} (n={len(values)})"


def _seed_values(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def _short(measure: str) -> str:
    return measure.split("/", 1)[1]


def _pair_label(a: str, b: str) -> str:
    """'w.m.x' and 'w.m.y' -> 'w.m: x − y' (the shared dotted prefix said once)."""
    pa, pb = _short(a).split("."), _short(b).split(".")
    k = 0
    while k < min(len(pa), len(pb)) - 1 and pa[k] == pb[k]:
        k += 1
    head = ".".join(pa[:k])
    return (f"{head}: " if head else "") + f"{'.'.join(pa[k:])} − {'.'.join(pb[k:])}"


@dataclass(frozen=True)
class Outcome:
    """What a rule found: the verdict, the headline number it tests, and the details behind it.

    p: the one-sided p-value of a direction test (None for bounds), used to find the weakest part of an AllOf.
    """

    verdict: str
    headline: str
    details: tuple[str, ...] = ()
    p: float | None = None
    label: str = ""


def t_test_greater(a: list[float], b: list[float], paired: bool) -> dict[str, float] | None:
    """One-sided t-test of mean(a) > mean(b).

    Paired: t = mean(d) / (sd(d) / sqrt(n)) with d = a - b, df = n - 1. Unpaired (Welch):
    t = (mean(a) - mean(b)) / sqrt(s_a^2/n_a + s_b^2/n_b), Welch-Satterthwaite df.
    Returns dict(diff, spread, t, df, p_greater, p_less) or None when the test is undefined
    (fewer than 2 values on a side, or no spread and no difference).
    """
    from scipy import stats

    if paired:
        d = [x - y for x, y in zip(a, b)]
        n = len(d)
        if n < 2:
            return None
        diff, sd = mean_std(d)
        se, df, spread = sd / math.sqrt(n), n - 1, sd
    else:
        if len(a) < 2 or len(b) < 2:
            return None
        (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
        va, vb = sa**2 / len(a), sb**2 / len(b)
        diff, se, spread = ma - mb, math.sqrt(va + vb), math.hypot(sa, sb)
        df = (va + vb) ** 2 / ((va**2 / (len(a) - 1)) + (vb**2 / (len(b) - 1))) if va + vb > 0 else len(a) + len(b) - 2
    if se == 0:
        if diff == 0:
            return None
        t = math.copysign(math.inf, diff)
    else:
        t = diff / se
    if math.isfinite(t):
        p_greater, p_less = float(stats.t.sf(t, df)), float(stats.t.cdf(t, df))
    else:  # every seed's difference is the same, nonzero: significant in its direction at any n >= 2
        p_greater, p_less = (0.0, 1.0) if t > 0 else (1.0, 0.0)
    return dict(diff=diff, spread=spread, t=t, df=df, p_greater=p_greater, p_less=p_less)


@dataclass(frozen=True)
class Comparison:
    """How a compares with b by the verdicts' direction test (:func:`compare`).

    word: "higher" (a > b significant at ``ALPHA``), "lower" (b > a significant) or "within noise";
    test: :func:`t_test_greater`'s numbers (None: too few seeds, or no spread and no difference).
    """

    word: str
    paired: bool
    n: tuple[int, int]
    diff: float
    test: dict[str, float] | None

    def phrase(self, digits: int = 3) -> str:
        """The word with its evidence, e.g. 'higher (paired Δ +0.034 ± 0.012, n=3, one-sided p = 0.022)'."""
        kind = "paired " if self.paired else ""
        n = f"n={self.n[0]}" if self.paired else f"n={self.n[0]}/{self.n[1]}"
        if self.test is None:
            return f"{self.word} ({kind}Δ {self.diff:+.{digits}g}, {n}, no test)"
        p = self.test["p_greater"] if self.word != "lower" else self.test["p_less"]
        return (f"{self.word} ({kind}Δ {self.diff:+.{digits}g} ± {self.test['spread']:.2g}, {n}, "
                f"one-sided p = {p:.2g})")


def compare(a: list[float], b: list[float], paired: bool) -> Comparison:
    """Is a higher than b, lower, or within noise? The one test behind every direction verdict (:class:`Greater`)
    and every sentence of the book that states a comparison.

    Example:
        >>> compare([0.5, 0.6, 0.7], [0.4, 0.5, 0.6], paired=True).word   # the same gap on every seed
        'higher'
        >>> compare([0.5, 0.6], [0.55, 0.5], paired=True).word
        'within noise'
    """
    test = t_test_greater(a, b, paired)
    if test is None:
        return Comparison(WITHIN_NOISE, paired, (len(a), len(b)), mean_std(a)[0] - mean_std(b)[0], None)
    word = "higher" if test["p_greater"] < ALPHA else "lower" if test["p_less"] < ALPHA else WITHIN_NOISE
    return Comparison(word, paired, (len(a), len(b)), test["diff"], test)


def compare_measures(results: dict[str, dict[str, Any]], a: str, b: str) -> Comparison | None:
    """:func:`compare` of two recorded measurements ``"<notebook>/<name>"``: paired when both were measured on the
    same seeds (in seed order). None when either is not recorded."""
    va, vb = _values(results, a), _values(results, b)
    if va is None or vb is None:
        return None
    sa, sb = _by_seed(results, a), _by_seed(results, b)
    paired = sa is not None and sb is not None and sa.keys() == sb.keys()
    if paired:
        va, vb = [sa[k] for k in sorted(sa)], [sb[k] for k in sorted(sa)]
    return compare(va, vb, paired)


@dataclass(frozen=True)
class Bound:
    """Every seed's value of ``measure`` lies in [low, high] (either end may be open: None)."""

    measure: str
    low: float | None = None
    high: float | None = None

    def measures(self) -> tuple[str, ...]:
        return (self.measure,)

    def condition(self) -> str:
        if self.high is None:
            return f"≥ {self.low:g}"
        if self.low is None:
            return f"≤ {self.high:g}"
        return f"in [{self.low:g}, {self.high:g}]"

    def text(self) -> str:
        return f"`{self.measure}` {self.condition()} for every seed"

    def holds(self, x: float) -> bool:
        return (self.low is None or x >= self.low) and (self.high is None or x <= self.high)

    def evaluate(self, results) -> Outcome:
        label = _short(self.measure)
        v = _values(results, self.measure)
        if v is None:
            return Outcome(NOT_RUN, "–", (f"`{self.measure}`: not recorded",), label=label)
        holds = [self.holds(x) for x in v]
        verdict = REPRODUCED if all(holds) else NOT_REPRODUCED if not any(holds) else WITHIN_NOISE
        detail = (f"`{self.measure}` {self.condition()} for every seed: {describe(v)}, seeds {_seed_values(v)}, "
                  f"{sum(holds)} of {len(v)} hold")
        return Outcome(verdict, describe(v), (detail,), label=label)

    def verdict(self, results) -> str:
        return self.evaluate(results).verdict


def AtLeast(measure: str, threshold: float) -> Bound:  # noqa: N802 (reads as a rule name)
    return Bound(measure, low=threshold)


def AtMost(measure: str, threshold: float) -> Bound:  # noqa: N802
    return Bound(measure, high=threshold)


def Between(measure: str, low: float, high: float) -> Bound:  # noqa: N802
    return Bound(measure, low=low, high=high)


@dataclass(frozen=True)
class Greater:
    """a > b, judged by a one-sided t-test at level ``ALPHA`` (see the module docstring).

    Paired when both are measured on the same seeds (the two numbers of a seed share their data);
    Welch's unpaired test otherwise.
    """

    a: str
    b: str

    def measures(self) -> tuple[str, ...]:
        return (self.a, self.b)

    def text(self) -> str:
        return (f"`{self.a}` > `{self.b}`: one-sided t-test at {1 - ALPHA:.0%} (paired over seeds when both are "
                "measured on the same seeds, else Welch's)")

    def evaluate(self, results) -> Outcome:
        label = _pair_label(self.a, self.b)
        va, vb = _values(results, self.a), _values(results, self.b)
        if va is None or vb is None:
            missing = [m for m, v in ((self.a, va), (self.b, vb)) if v is None]
            return Outcome(NOT_RUN, "–", tuple(f"`{m}`: not recorded" for m in missing), label=label)
        comparison = compare_measures(results, self.a, self.b)
        paired, test = comparison.paired, comparison.test
        if paired:
            sa_, sb_ = _by_seed(results, self.a), _by_seed(results, self.b)
            va, vb = [sa_[k] for k in sorted(sa_)], [sb_[k] for k in sorted(sa_)]
        sides = f"`{self.a}` {describe(va)}; `{self.b}` {describe(vb)}"
        if paired:
            sides += f"; differences per seed {_seed_values([x - y for x, y in zip(va, vb)])}"
        if test is None:
            return Outcome(WITHIN_NOISE, f"Δ {comparison.diff:+.3g} (n={len(va)}, no test)",
                           (sides, "too few seeds (or no spread and no difference) for a t-test: within noise"), p=1.0,
                           label=label)
        kind = "paired t" if paired else "Welch t"
        verdict = {"higher": REPRODUCED, "lower": NOT_REPRODUCED}.get(comparison.word, WITHIN_NOISE)
        stat = (f"{kind} = {test['t']:.3g}, df = {test['df']:.3g}, one-sided p = {test['p_greater']:.3g} "
                f"(for a > b; {test['p_less']:.3g} for b > a)")
        n = f"n={len(va)}" if paired else f"n={len(va)}/{len(vb)}"
        headline = f"Δ {test['diff']:+.3g} ± {test['spread']:.2g} ({n}, p={test['p_greater']:.2g})"
        return Outcome(verdict, headline, (sides, stat), p=test["p_greater"], label=label)

    def verdict(self, results) -> str:
        return self.evaluate(results).verdict


@dataclass(frozen=True)
class AllOf:
    """Every sub-rule reproduced; any not reproduced fails the whole; missing data: not run yet.

    Its headline is the part that decides the verdict: the first part that is missing or not reproduced;
    otherwise, among the parts with the claim's verdict, the one with the largest p (a bound counts as p = 1
    when within noise and p = 0 when reproduced), the first on a tie.
    """

    rules: tuple

    def measures(self) -> tuple[str, ...]:
        return tuple(m for r in self.rules for m in r.measures())

    def text(self) -> str:
        return "; and ".join(r.text() for r in self.rules)

    def evaluate(self, results) -> Outcome:
        parts = [r.evaluate(results) for r in self.rules]
        verdicts = [p.verdict for p in parts]
        if NOT_RUN in verdicts:
            verdict = NOT_RUN
        elif NOT_REPRODUCED in verdicts:
            verdict = NOT_REPRODUCED
        elif all(v == REPRODUCED for v in verdicts):
            verdict = REPRODUCED
        else:
            verdict = WITHIN_NOISE
        if verdict in (NOT_RUN, NOT_REPRODUCED):
            deciding = next(p for p in parts if p.verdict == verdict)
        else:
            same = [p for p in parts if p.verdict == verdict]
            bound_p = 1.0 if verdict == WITHIN_NOISE else 0.0
            deciding = max(same, key=lambda p: p.p if p.p is not None else bound_p)  # max keeps the first on a tie
        headline = f"{deciding.label}: {deciding.headline}" if deciding.label else deciding.headline
        if len(parts) > 1:
            headline += f" ({'weakest' if verdict == REPRODUCED else 'deciding'} of {len(parts)})"
        details = tuple(f"{p.label or 'part'} [{p.verdict}]: {d}" for p in parts for d in p.details)
        return Outcome(verdict, headline, details, p=deciding.p, label="")

    def verdict(self, results) -> str:
        return self.evaluate(results).verdict


@dataclass(frozen=True)
class Gate:
    """A precondition of a claim's test, measured by the same run: ``bound`` must hold on every seed.

    why: what the gate shows and why its threshold (chosen before the comparison, the same for every seed).
    """

    bound: Bound
    why: str

    def measures(self) -> tuple[str, ...]:
        return self.bound.measures()

    def evaluate(self, results) -> "GateOutcome":
        verdict = self.bound.verdict(results)  # reproduced = the bound holds on every seed
        status = "missing" if verdict == NOT_RUN else "pass" if verdict == REPRODUCED else "fail"
        return GateOutcome(self, status, _values(results, self.bound.measure))


@dataclass(frozen=True)
class GateOutcome:
    gate: Gate
    status: str  # "pass", "fail", "missing"
    values: list[float] | None

    def text(self) -> str:
        values = "not recorded" if self.values is None else f"{describe(self.values)}, seeds {_seed_values(self.values)}"
        return f"`{self.gate.bound.measure}` {self.gate.bound.condition()} on every seed: {values} → {self.status}"


@dataclass(frozen=True)
class ClaimOutcome:
    """A claim's verdict with the comparison and the gates behind it."""

    verdict: str
    comparison: Outcome
    gates: tuple[GateOutcome, ...] = ()


def combine(comparison: str, gates: list[str]) -> str:
    """The verdict from the comparison's verdict and the gates' statuses ("pass", "fail", "missing").

    Missing data anywhere: not run yet. A failing gate: not testable (whatever the comparison says: a gate
    only withholds). Otherwise the comparison's verdict.
    """
    if comparison == NOT_RUN or "missing" in gates:
        return NOT_RUN
    if "fail" in gates:
        return NOT_TESTABLE
    return comparison


@dataclass(frozen=True)
class Claim:
    """One testable claim: where it comes from, what the paper shows, and how it is judged.

    notebook: the section that tests it (also the prefix of its measurements); paper_figure:
    the paper's number(s) or "qualitative"; short: the claim in a few words (the claims table);
    note: what the rule's tolerance means, and the paper's text behind a threshold; gates:
    preconditions of the test (see :class:`Gate`).
    """

    id: str
    paper: str
    source: str
    text: str
    paper_figure: str
    notebook: str
    rule: Any
    note: str = ""
    gates: tuple[Gate, ...] = ()
    short: str = ""

    def measures(self) -> tuple[str, ...]:
        return self.rule.measures() + tuple(m for g in self.gates for m in g.measures())

    def evaluate(self, results: dict[str, dict[str, Any]]) -> ClaimOutcome:
        comparison = self.rule.evaluate(results)
        gates = tuple(g.evaluate(results) for g in self.gates)
        return ClaimOutcome(combine(comparison.verdict, [g.status for g in gates]), comparison, gates)

    def verdict(self, results: dict[str, dict[str, Any]]) -> str:
        return self.evaluate(results).verdict

    def ours(self, results) -> str:
        """The measured values behind the verdict, mean ± std over seeds, one part per measure."""
        parts = []
        for m in dict.fromkeys(self.measures()):
            v = _values(results, m)
            if v is not None:
                parts.append(f"{_short(m)}: {describe(v)}")
        return "; ".join(parts) if parts else "–"


SAVOS, VAE, STEM, MASKVOS, CRW = (
    "SaVos (000_665905df8e0fd575)",
    "Amodal-VAE (001_2fd3ecd5938206ae)",
    "STEm-Seg (002_f1a06c988e21c213)",
    "Mask-VOS (003_9c038fe6d0f79bee)",
    "CRW (004_0827d3d1edafdb89)",
)

_THM = "savos_theorem1"
_ABL = "savos_ablations"
_WORLDS = ("fishbowl", "street")
RELIANCE_MIN_DROP = 0.02
_RELIANCE_WHAT = {"history": "history (the frames before t) is replaced by another clip's track's (another track of the "
                             "same clip only where the test split has a single clip)",
                  "own_history": "temporal state is computed from the current frame alone (no past at all)",
                  "flow": "flow input is zeroed", "image": "image input is zeroed"}


def _reliance_gates(probe: str, flow: str = "estimated") -> tuple[Gate, ...]:
    """The full model uses what an ablation removes: its occluded mIoU drops when that input is taken away at test time.
    ``flow="exact"``: the gates of the rows trained on the world's exact flow (Table 3's primary rows)."""
    suffix, trained = ("_exact_flow", " (trained on the exact flow)") if flow == "exact" else ("", "")
    # the history claims need both: a wrong past misleads the model (swap) and its own past helps it (own_history)
    probes = ("history", "own_history") if probe == "history" else (probe,)
    return tuple(Gate(AtLeast(f"{_ABL}/{w}{suffix}.reliance.{p}", RELIANCE_MIN_DROP),
                      f"the full model's{trained} occluded mIoU on `{w}` drops by at least {RELIANCE_MIN_DROP} when its "
                      f"{_RELIANCE_WHAT[p]} at test time: a model that does not use an input cannot show what "
                      "removing it costs")
                 for p in probes for w in _WORLDS)


_RELIANCE_NOTE = (f"Gate threshold {RELIANCE_MIN_DROP} (fixed before the comparison, the same for every seed and world): "
                  "about the size of the paper's smaller Table 1 effects (0.015-0.034 on KINS, 0.026-0.071 on FISHBOWL).")
_OWN_HISTORY_NOTE = (" The own-history gate was added (a gate is only ever added or tightened) after a pilot outside the "
                     "book showed that the swap probe alone can pass while the model's past is worth nothing: a "
                     "supervised SaVos network at 16 x 32 lost 0.016 / 0.014 / 0.023 with another clip's history, yet "
                     "the same network without the LSTM scored the same (0.369 against 0.374) and its state from the "
                     "current frame alone cost 0.002-0.004. The swap measures how much a wrong past misleads; the own "
                     "history gain, how much the model's own past helps. The supervised ladder "
                     "(`benchmarks/savos_ladder.py`, `fishbowl`, seed 0; the ablation chapter's table) found no crop "
                     "size up to Table 6's 64 x 128 at which even the network trained on the amodal truth gains 0.02 "
                     "from its own past: {{ savos_ladder.json:cells.16x32/supervised/0.own_history }} at 16 x 32, "
                     "{{ savos_ladder.json:cells.32x64/supervised/0/lr=0.0001.own_history }} at 32 x 64 (lr 1e-4) and "
                     "{{ savos_ladder.json:cells.64x128/supervised/0.own_history }} at 64 x 128.")


_EXACT_FLOW_NOTE = (" Supplement A.3: 'Removing flow input hurts the performance by a large gap up to more than 0.1 "
                    "occluded IoU ... without flow, the network cannot infer object motion'; the rule is the paper's order "
                    "(direction beyond noise, both worlds)."
                    " Table 3 is judged on the rows trained with the world's exact flow as input (the paper's FlowNet2 on "
                    "full-size frames is far closer to exact than OpenCV's DIS on the quick profile's small frames: "
                    "Algorithm 1 at k = 3 keeps less than half its occluded mIoU with DIS, chapter savos_rule_baseline); "
                    "the rows on estimated flow are shown beside them, not judged.")


def _savos_ablation(name: str, better: str, worse: str, figure: str, text: str, source: str, short: str,
                    probe: str, flow: str = "estimated") -> Claim:
    suffix = "_exact_flow" if flow == "exact" else ""
    note = ((_RELIANCE_NOTE if probe else "") + (_OWN_HISTORY_NOTE if probe == "history" else "")
            + (_EXACT_FLOW_NOTE if flow == "exact" else ""))
    return Claim(
        name, SAVOS, source, text, figure, _ABL,
        AllOf(tuple(Greater(f"{_ABL}/{world}{suffix}.occ_miou.{better}", f"{_ABL}/{world}{suffix}.occ_miou.{worse}")
                    for world in _WORLDS)),
        note=note.strip(), gates=_reliance_gates(probe, flow) if probe else (), short=short,
    )


CRW_MIN_MARGIN = 0.1
_CRW_GATE = (Gate(AtLeast("crw_ablations/gate.correspondence_margin", CRW_MIN_MARGIN),
                  "the main model's relative drop of the validation walk loss on `vos` exceeds the drop the same "
                  "recipe reaches on videos of independent noise (nothing to track: a drop there is a shortcut) by "
                  f"at least {CRW_MIN_MARGIN}"),)
_CRW_NOTE = (f"Gate threshold {CRW_MIN_MARGIN} (fixed before the comparison): a tenth of the initial walk loss; it asks "
             "that some of the loss reduction on `vos` needs correspondence. The seed spread of the drops: "
             "{{ crw_ablations/gate.walk_drop.vos@std .3f }} on `vos`, {{ crw_ablations/gate.walk_drop.noise@std .3f }} "
             "on noise.")
VAE_MAX_PLATEAU = 0.01


def _vae_gates(*arms: str) -> tuple[Gate, ...]:
    return tuple(Gate(AtMost(f"vae_analysis/gate.stage1_plateau.{arm}", VAE_MAX_PLATEAU),
                      f"stage 1 ({arm}) converged: its best validation loss improved by less than "
                      f"{VAE_MAX_PLATEAU:.0%} (relative) over the last 20% of its steps")
                 for arm in arms)


def _robustness_gates(pcnet: bool) -> tuple[Gate, ...]:
    gates = (Gate(AtMost("vae_robustness/gate.stage1_plateau", VAE_MAX_PLATEAU),
                  f"Amodal-VAE's stage 1 on street converged (best validation loss improved by less than "
                  f"{VAE_MAX_PLATEAU:.0%} over the last 20% of its steps)"),)
    if pcnet:
        gates += (Gate(AtMost("vae_robustness/gate.pcnet_plateau", VAE_MAX_PLATEAU),
                       f"PCNet-M converged (best validation loss improved by less than {VAE_MAX_PLATEAU:.0%} over the "
                       "last 20% of its steps)"),)
    return gates


STEM_MAX_PLATEAU = 0.01  # the same convergence rule as Amodal-VAE's stage 1
STEM_MIN_SPEED_RATIO = 2.0


def _stem_gates(*models: str) -> tuple[Gate, ...]:
    """Convergence gates of STEm-Seg models (``world.mixing``, ``with_images`` or ``reid``)."""
    return tuple(Gate(AtMost(f"stem_mixing/gate.plateau.{name}", STEM_MAX_PLATEAU),
                      f"{name} converged: its best validation loss improved by less than {STEM_MAX_PLATEAU:.0%} "
                      "(relative) over the last 20% of its steps")
                 for name in models)


_STEM_NOTE = (f"Gates: every compared model converged on every seed (relative improvement of the best validation loss "
              f"over the last 20% of the steps at most {STEM_MAX_PLATEAU:.0%}); a model still improving would be "
              "compared on how far it got, not on what its mixing function or data can do.")

DECODER_MIN_CHANGE = 0.05
DECODER_MIN_KEEP = 0.5
# phase B's decoder trained to its plateau (issue 35): at 80 steps it had learned only the label prior (L_Seg over its
# last 40 steps 0.845 against the entropy of the label frequencies, 0.834)
MASKVOS_MAX_PLATEAU = 0.01  # the same convergence rule as Amodal-VAE's stage 1


def _maskvos_gates(*learners: str, decoder: bool = False) -> tuple[Gate, ...]:
    """The correspondence gate of each learner's keys and, with ``decoder``, the check that L_Seg was learned."""
    gates = tuple(Gate(AtLeast(f"maskvos/gate.correspondence_margin.{learner}", CRW_MIN_MARGIN),
                       f"{learner}'s keys learned correspondence: its phase-A validation loss drops on `vos` by at least "
                       f"{CRW_MIN_MARGIN} more (relative to the initial loss) than on noise videos")
                  for learner in learners)
    if decoder:
        for learner in learners:
            gates += (Gate(AtLeast(f"maskvos/gate.decoder_change.{learner}", DECODER_MIN_CHANGE),
                           f"the decoder of {learner} + L_Seg changes at least {DECODER_MIN_CHANGE:.0%} of the "
                           "foreground pixels of the coarse read-out (else L_Seg has not been learned)"),
                      Gate(AtLeast(f"maskvos/gate.decoder_keeps.{learner}", DECODER_MIN_KEEP),
                           f"and keeps the objects: its foreground area is at least {DECODER_MIN_KEEP:.0%} of the coarse "
                           "read-out's (a decoder that erases every object changes everything and has learned nothing)"),
                      Gate(AtMost(f"maskvos/gate.seg_plateau.{learner}", MASKVOS_MAX_PLATEAU),
                           f"the decoder of {learner} + L_Seg converged: L_Seg on the validation videos' pseudo masks "
                           f"improves by less than {MASKVOS_MAX_PLATEAU:.0%} (relative) over the last 20% of phase B "
                           "(validations after the last pseudo-mask update)"))
    return gates


_MASKVOS_NOTE = (f"Gates (fixed before the comparison): the correspondence margin of the CRW chapter ({CRW_MIN_MARGIN}) "
                 "for the learned keys; for claims about the decoder, at least "
                 f"{DECODER_MIN_CHANGE:.0%} of the foreground pixels changed by it while its foreground keeps at least "
                 f"{DECODER_MIN_KEEP:.0%} of the read-out's area (the decoder's own masks, before the release's "
                 "averaging with the read-out), and the decoder converged (L_Seg on the validation videos improves by "
                 f"less than {MASKVOS_MAX_PLATEAU:.0%} over the last 20% of phase B; added in issue 35, a tightening: at "
                 "80 steps the decoder had learned only the label prior, L_Seg 0.845 against the label entropy 0.834).")

_VAE_NOTE = ("Gate: a converged stage 1 (relative improvement of the best validation loss over the last 20% of the "
             f"steps below {VAE_MAX_PLATEAU:.0%}, every seed): inactive dimensions and posterior collapse are "
             "properties of a VAE trained to convergence (supplement 3.1 trains every stage 'until the model converges "
             "on the validation set').")

# the claims that read the trained model's completions or posteriors (issue 33): they get stage 1's gate too, since
# an unconverged decoder decides their numbers (the tuned threshold of a half-trained decoder sat at 0.72 against 0.1)
_VAE_MODEL_NOTE = ("Gate: a converged stage 1 (annealed; relative improvement of the best validation loss over the last "
                   f"20% of the steps below {VAE_MAX_PLATEAU:.0%}, every seed). Supplement 3.1: 'We train all three "
                   "steps described in Sec 4.1 of the main text until the model converges on the validation set': "
                   "completions, posteriors and thresholds are those of a converged model (gate added in issue 33, "
                   "before the re-run it judges).")

_ROBUST_NOTE = ("Gates: the compared models converged on every seed (relative improvement of the best validation loss "
                f"over the last 20% of the steps below {VAE_MAX_PLATEAU:.0%}: Amodal-VAE's stage 1, and PCNet-M where "
                "it is compared).")

CLAIMS: tuple[Claim, ...] = (
    # ---------------------------------------------------------------- SaVos
    Claim("savos.t1.full-best", SAVOS, "Table 1",
       "the full model (consistency + bi-directional + temporal embedding) has the best occluded mIoU on each dataset",
       "FISHBOWL 0.7155, KINS 0.3132 (occluded mIoU, best of 4 rows)", _ABL,
       AllOf(tuple(Greater(f"{_ABL}/{w}.occ_miou.full", f"{_ABL}/{w}.occ_miou.{v}")
                   for w in _WORLDS for v in ("no_consistency", "no_bidirectional", "no_temporal"))),
       note=_RELIANCE_NOTE + _OWN_HISTORY_NOTE, gates=_reliance_gates("history"),
       short="the full model is the best row of Table 1"),
    _savos_ablation("savos.t1.consistency", "full", "no_consistency", "0.7155 vs 0.6447 (FISHBOWL), 0.3132 vs 0.2982 (KINS)",
                    "removing the consistency loss L_C lowers occluded mIoU", "Table 1", "L_C helps", "history"),
    _savos_ablation("savos.t1.bidirectional", "full", "no_bidirectional", "0.7155 vs 0.6849 (FISHBOWL), 0.3132 vs 0.2962 (KINS)",
                    "removing bi-directional prediction lowers occluded mIoU", "Table 1", "bi-directional prediction helps",
                    "history"),
    _savos_ablation("savos.t1.temporal", "full", "no_temporal", "0.7155 vs 0.6894 (FISHBOWL), 0.3132 vs 0.2792 (KINS)",
                    "removing the temporal embedding lowers occluded mIoU", "Table 1", "the temporal embedding helps",
                    "history"),
    _savos_ablation("savos.t2.architecture", "savos_arch_deocc_loss", "deocc_arch_deocc_loss",
                    "0.6826 vs 0.6502 (FISHBOWL), 0.2040 vs 0.1790 (KINS)",
                    "with the Self-Deocclusion loss, the SaVos architecture beats the Self-Deocclusion architecture (occluded mIoU)",
                    "Table 2", "SaVos's architecture beats PCNet-M (same loss)", ""),
    _savos_ablation("savos.t2.loss", "full", "savos_arch_deocc_loss", "0.7155 vs 0.6826 (FISHBOWL), 0.3132 vs 0.2040 (KINS)",
                    "on the SaVos architecture, the SaVos loss beats the Self-Deocclusion loss", "Table 2",
                    "SaVos's loss beats Self-Deocclusion's (same network)", ""),
    Claim("savos.t3.flow", SAVOS, "Table 3", "removing the flow input hurts most (below removing the image)",
       "no flow 0.6188 < no image 0.6634 (FISHBOWL); 0.1525 < 0.2172 (KINS)", _ABL,
       AllOf(tuple(Greater(f"{_ABL}/{w}_exact_flow.occ_miou.no_image", f"{_ABL}/{w}_exact_flow.occ_miou.no_flow")
                   for w in _WORLDS)),
       note=_RELIANCE_NOTE + _EXACT_FLOW_NOTE, gates=_reliance_gates("flow", "exact"), short="removing the flow hurts most"),
    _savos_ablation("savos.t3.image", "full", "no_image", "0.7155 vs 0.6634 (FISHBOWL), 0.3132 vs 0.2172 (KINS)",
                    "removing the image input hurts (below full)", "Table 3", "removing the image hurts", "image",
                    flow="exact"),
    Claim("savos.t4.rule-baseline", SAVOS, "Table 4, Alg. 1", "SaVos beats rule-based temporal aggregation for k = 3 and k = 5",
       "0.7155 vs 0.3937 / 0.3860 (FISHBOWL); 0.3132 vs 0.1522 / 0.1487 (KINS)", "savos_rule_baseline",
       AllOf(tuple(Greater(f"savos_rule_baseline/{w}.occ_miou.savos_exact_flow",
                           f"savos_rule_baseline/{w}.occ_miou.rule_gt_k{k}")
                   for w in _WORLDS for k in (3, 5))),
       note="Supplement A.4: 'As shown in the below Table 4, SaVos outperforms this temporal baseline' (for k = 3 and "
            "k = 5, on both datasets): every pair must be a direction beyond noise. "
            "Both sides on the world's exact flow: SaVos trained with it as input, Algorithm 1 warping with it (the "
            "paper's FlowNet2 is far closer to exact than DIS on our small frames). The same comparison on DIS flow "
            "is shown in the chapter, not judged.",
       short="SaVos beats Algorithm 1 (k = 3, 5)"),
    Claim("savos.t4.k3-vs-k5", SAVOS, "Table 4", "with estimated flow, k = 3 is not worse than k = 5",
       "k=3 0.3937 vs k=5 0.3860 (FISHBOWL); 0.1522 vs 0.1487 (KINS)", "savos_rule_baseline",
       AllOf(tuple(AtLeast(f"savos_rule_baseline/{w}.occ_miou.k3_minus_k5", 0.0) for w in _WORLDS)),
       note="k3_minus_k5 is the per-seed difference; ≥ 0 for every seed. Judged on the estimated (DIS) flow, as the claim "
            "is about estimated flow: the paper reads k = 3's edge as the cost of warping through noisy flow, which exact "
            "flow does not have (its difference is recorded as gt_k3_minus_k5, not judged).",
       short="Algorithm 1: k = 3 not worse than k = 5"),
    Claim("savos.f1a.alpha", SAVOS, "Fig. 1a",
       "the forward alpha is low at the start of a clip and rises clearly (by at least 0.05); the backward alpha mirrors it",
       "qualitative (curve)", "savos_embeddings",
       AllOf((AtLeast("savos_embeddings/alpha.forward_rise", 0.05), AtLeast("savos_embeddings/alpha.backward_fall", 0.05))),
       note="rise = mean alpha over the last third minus the first third of frames. The threshold 0.05 (was 0) follows "
            "the supplement's text on Fig. 1a: the forward alpha is 'low at the beginning, increasing rapidly to get "
            "out of the cold region', a clear rise, not any rise. With two passes the fusion weights sum to 1, so "
            "backward_fall equals forward_rise by construction.",
       short="the forward alpha rises clearly along a clip"),
    Claim("savos.f1b.type-clusters", SAVOS, "Fig. 1b, D",
       "spatiotemporal embeddings cluster by object type (kNN type accuracy and silhouette far above chance)",
       "qualitative (tSNE)", "savos_embeddings",
       AllOf((Greater("savos_embeddings/types.knn_accuracy", "savos_embeddings/types.chance_accuracy"),
              AtLeast("savos_embeddings/types.silhouette", 0.1))), short="embeddings cluster by object type"),
    Claim("savos.thm1.superset", SAVOS, "Thm. 1, C.1",
       "with L_M = L_C = 0 and assumptions 1-3, the predicted region contains the amodal mask",
       "proof (no numbers)", _THM,
       AtLeast(f"{_THM}/superset.min_recall", 0.99),
       note="world with assumption 4 broken (glued exterior square); min over objects, frames and both initialisations",
       short="assumptions 1-3: a superset of the amodal mask"),
    Claim("savos.thm1.exact", SAVOS, "Thm. 1, C.1", "adding assumption 4, the prediction equals the amodal mask",
       "proof (no numbers)", _THM, AtLeast(f"{_THM}/exact.min_iou", 0.99),
       note="assumptions 1-4 hold; min IoU over objects, frames and both initialisations",
       short="assumptions 1-4: exactly the amodal mask"),
    Claim("savos.thm1.lm-insufficient", SAVOS, "C.1 (Eq. 9)", "L_M alone leaves the occluded region unconstrained",
       "proof (no numbers)", _THM,
       AllOf((AtLeast(f"{_THM}/lm_only.free_pixels_at_init", 0.99), AtLeast(f"{_THM}/lm_only.occluded_recall_gap", 0.5))),
       note="free pixels keep their starting value; the occluded part found differs between the two initialisations",
       short="L_M alone leaves the occluded part free"),
    Claim("savos.thm1.violations", SAVOS, "Thm. 1",
       "breaking assumption 3 (a pixel never visible) or 4 (a co-moving exterior point never in background) breaks exact recovery where the theorem says",
       "proof (no numbers)", _THM,
       AllOf((AtLeast(f"{_THM}/violations.never_visible_match", 0.95), AtLeast(f"{_THM}/violations.glued_match", 0.95))),
       note="IoU between the pixels left undetermined and the pixels the theorem predicts (never visible / co-moving never background)",
       short="broken assumptions fail exactly where predicted"),
    Claim("savos.b.chain-cost", SAVOS, "B", "the chained consistency loss costs O(T) where L_complete costs O(T^2)",
       "argument (no numbers)", _THM,
       AllOf((Between(f"{_THM}/cost.chain_memory_slope", 0.8, 1.2), Between(f"{_THM}/cost.complete_memory_slope", 1.8, 2.2),
              AtMost(f"{_THM}/cost.chain_time_slope", 1.3), AtLeast(f"{_THM}/cost.complete_time_slope", 1.6))),
       note="log-log slopes of autograd memory and time against T", short="chained L_C is O(T), L_complete O(T²)"),
    Claim("savos.t5.subsets", SAVOS, "Table 5, D",
       "occluded mIoU on objects that break the 'every pixel visible in some frame' assumption is not much lower than on the rest",
       "0.3104 (breaking) vs 0.3250 (rest)", "savos_subsets",
       AtMost("savos_subsets/street.occ_miou.rest_minus_breaking", 0.05), note="a gap of at most 0.05 counts as not much lower",
       short="assumption-breaking objects score about as well"),
    Claim("savos.t7t8.metrics-agree", SAVOS, "Tables 7, 8", "frame-level and object-level mIoU rank the methods the same",
       "same ranking in both tables", _ABL, AtLeast(f"{_ABL}/metrics.rank_agreement", 1.0),
       note="1 when the two metrics give the same ranking of methods", short="frame- and object-level mIoU agree"),
    Claim("savos.f2.classless", SAVOS, "F.2",
       "on classless data (Chewing Gum) an image-level method fails where SaVos completes the mask",
       "qualitative (Fig. 4)", "savos_chewing_gum",
       Greater("savos_chewing_gum/occ_miou.savos", "savos_chewing_gum/occ_miou.deocclusion"),
       short="Chewing Gum: SaVos beats an image-level method"),
    # ---------------------------------------------------------------- Amodal-VAE
    Claim("vae.f3.prior-samples", VAE, "Fig. 3", "decoded prior samples look like the training shapes",
       "qualitative", "vae_analysis",
       Greater("vae_analysis/prior.two_sample_accuracy.untrained",
               "vae_analysis/prior.two_sample_accuracy.trained"),
       note="Supplement 1: 'The masks obtained by sampling from the prior resemble diverse car-like and pedestrian-like "
            "shapes. This validates that Amodal-VAE correctly learnt a generative model of realistic instance masks': "
            "samples that resemble the training shapes (and are diverse) are hard to tell from them. "
            "Measured by a classifier two-sample test (Lopez-Paz & Oquab 2017): the held-out accuracy of a logistic "
            "regression telling the binarised prior samples from as many held-out whole masks (the VAE's 28 x 28 "
            "tight crops), about 0.5 when they cannot be told apart, 1.0 when they always can. The trained decoder's "
            "samples must be harder to tell apart than the same network's at initialisation. The earlier measure (best "
            "IoU with a training shape) rewarded a decoder that draws one filled box (seed 0's untrained decoder scored "
            "0.86); it is still recorded as best_train_iou, not judged.",
       short="prior samples look like training shapes"),
    Claim("vae.f4.posterior-width", VAE, "Fig. 4", "on active latent dimensions the posterior std grows with occlusion: none < 1-50% < >50%",
       "qualitative (bar plot)", "vae_analysis",
       AllOf((Greater("vae_analysis/posterior_std.occ_1_50", "vae_analysis/posterior_std.occ_0"),
              Greater("vae_analysis/posterior_std.occ_50_100", "vae_analysis/posterior_std.occ_1_50"))),
       note=_VAE_MODEL_NOTE, gates=_vae_gates("anneal"), short="the posterior widens with occlusion"),
    Claim("vae.f4.inactive-dims", VAE, "Fig. 4", "most latent dimensions are inactive, std ≈ 1 whatever the occlusion",
       "qualitative", "vae_analysis", AtLeast("vae_analysis/latent.inactive_fraction_burda", 0.5),
       note=_VAE_NOTE + " Active as Burda et al. (2016) define it: the variance over the data of the posterior mean "
       "exceeds 0.01 (the 0.9-std view is shown beside it).",
       gates=_vae_gates("anneal"), short="most latent dimensions are inactive"),
    Claim("vae.f1.best-of-20", VAE, "Fig. 1", "the best of 20 posterior samples beats the posterior mode in mIoU",
       "curve above the mode's at every visible ratio", "vae_analysis",
       Greater("vae_analysis/miou.best_of_samples", "vae_analysis/miou.mode"), note=_VAE_MODEL_NOTE,
       gates=_vae_gates("anneal"), short="best of 20 samples beats the mode"),
    Claim("vae.f1.gap-shrinks", VAE, "Fig. 1", "that gap shrinks as the visible ratio grows", "qualitative", "vae_analysis",
       Greater("vae_analysis/gap.low_visibility", "vae_analysis/gap.high_visibility"), note=_VAE_MODEL_NOTE,
       gates=_vae_gates("anneal"), short="that gap shrinks with visibility"),
    Claim("vae.t1.beats-deocclusion", VAE, "Table 1",
       "from predicted (imperfect) visible masks, Amodal-VAE beats Self-Deocclusion on full and invisible mIoU",
       "full 86.03 vs 84.94, invisible 60.71 vs 52.93", "vae_robustness",
       AllOf((Greater("vae_robustness/pred.full_miou.vae", "vae_robustness/pred.full_miou.deocclusion"),
              Greater("vae_robustness/pred.inv_miou.vae", "vae_robustness/pred.inv_miou.deocclusion"))),
       note=_ROBUST_NOTE, gates=_robustness_gates(pcnet=True), short="beats Self-Deocclusion from predicted masks"),
    Claim("vae.t1.robust", VAE, "Table 1", "going from ground-truth to predicted visible masks, invisible mIoU drops less than full mIoU",
       "full drops 8.65, invisible 2.14 (points)", "vae_robustness",
       Greater("vae_robustness/drop.full_miou", "vae_robustness/drop.inv_miou"),
       note=_ROBUST_NOTE, gates=_robustness_gates(pcnet=False), short="invisible mIoU is robust to predicted masks"),
    Claim("vae.s31.kl-anneal", VAE, "3.1", "KL annealing avoids posterior collapse: it completes masks better than a "
       "constant KL weight (full and invisible mIoU; each schedule selected by its own validation loss)",
       "stated, no numbers", "vae_analysis",
       AllOf((Greater("vae_analysis/anneal.miou", "vae_analysis/constant.miou"),
              Greater("vae_analysis/anneal.inv_miou", "vae_analysis/constant.inv_miou"))),
       note=_VAE_NOTE + " The rule follows supplement 3.1: 'To prevent posterior collapse during training in the first "
       "stage, we slowly anneal the KL weight ... This improved the performance on the mask completion task': the claim is about completion, so "
       "both full and invisible mIoU must be higher; active dimensions (Burda et al.) are shown beside it as evidence, "
       "not judged.",
       gates=_vae_gates("anneal", "constant"), short="KL annealing avoids posterior collapse"),
    Claim("vae.s31.threshold", VAE, "3.1", "the binarisation threshold tuned on validation is low (paper: 0.1)", "0.1",
       "vae_analysis", AtMost("vae_analysis/threshold.tuned", 0.3),
       note="low = at most 0.3. The chapter shows the threshold an annotated validation set would pick, the mIoU "
       "curves over thresholds and how sharp the decoder is (a sharp decoder needs no low threshold). " + _VAE_MODEL_NOTE,
       gates=_vae_gates("anneal"), short="the tuned threshold is low"),
    # ---------------------------------------------------------------- STEm-Seg
    Claim("stem.lovasz.iou", STEM, "I",
       "the Lovasz hinge is a convex surrogate of IoU: with ±1 logits it equals 2(1 - IoU), and training with it gives a better IoU than cross-entropy under class imbalance",
       "identity + qualitative", "stem_losses",
       AllOf((AtMost("stem_losses/identity.max_abs_error", 1e-6),
              Greater("stem_losses/imbalanced.iou.lovasz", "stem_losses/imbalanced.iou.bce"))),
       short="Lovasz hinge: IoU surrogate, beats BCE"),
    Claim("stem.ti.free-dims", STEM, "Table I", "at equal embedding size, a free dimension beats a temporal coordinate (DAVIS-like data)",
       "xyf 62.8 vs xyt 62.6; xyff 64.4 vs xytf 64.2 (J&F)", "stem_mixing",
       Greater("stem_mixing/davis_like.jf.xyff", "stem_mixing/davis_like.jf.xytf"),
       note="The rule follows supplement IV: 'for the same number of total embedding dimensions (E), having a free "
            "dimension is more beneficial than having a temporal coordinate dimension' (xyff against xytf, E = 4). "
            + _STEM_NOTE,
       gates=_stem_gates("davis_like.xyff", "davis_like.xytf"), short="a free dimension beats time (DAVIS-like)"),
    Claim("stem.ti.time-on-fast-motion", STEM, "Table I",
       "on fast-motion data with objects entering and leaving (KITTI-MOTS-like), the temporal coordinate is competitive",
       "xyt 72.5 / 48.9 vs xyff 73.2 / 47.3 (sMOTSA car / pedestrian)", "stem_mixing",
       AtMost("stem_mixing/fast_motion.gap.xyff_minus_xyt", 0.02),
       note="competitive = within 0.02. The rule follows supplement IV: 'For KITTI-MOTS, however, the trend differs. "
            "In particular, we obtain similar performance with φxyt ... and φxyff'. " + _STEM_NOTE + f" Also: the fast-motion world's objects move at least "
            f"{STEM_MIN_SPEED_RATIO:g} times as fast as the DAVIS-like world's (mean centroid displacement per frame, "
            "relative to the frame diagonal), the property of KITTI-MOTS the claim rests on.",
       gates=_stem_gates("fast_motion.xyff", "fast_motion.xyt")
       + (Gate(AtLeast("stem_mixing/world.speed_ratio", STEM_MIN_SPEED_RATIO),
               f"the fast-motion world is at least {STEM_MIN_SPEED_RATIO:g}x as fast as the DAVIS-like world"),),
       short="time is competitive on fast motion"),
    Claim("stem.aug.image-sequences", STEM, "II", "adding sequences synthesised from static images improves results",
       "stated", "stem_mixing", Greater("stem_mixing/aug.jf.with_images", "stem_mixing/aug.jf.video_only"),
       note="Supplement II: 'We experimentally verified the performance benefit of incorporating such data'; equal "
            "steps, the videos-only arm is the Table I xyff model. " + _STEM_NOTE, gates=_stem_gates("davis_like.xyff", "with_images"), short="image-synthesised sequences help"),
    Claim("stem.iii.baselines", STEM, "III", "STEm-Seg beats the OF-Tracker and RI-Tracker baselines", "main paper Sec. 4.4",
       "stem_mixing", AllOf((Greater("stem_mixing/baselines.jf.stemseg", "stem_mixing/baselines.jf.of_tracker"),
                             Greater("stem_mixing/baselines.jf.stemseg", "stem_mixing/baselines.jf.ri_tracker"))),
       note="The three link the same per-frame proposals' model (STEm-Seg's own embeddings). " + _STEM_NOTE,
       gates=_stem_gates("davis_like.xyff", "reid"), short="beats the OF- and RI-Tracker baselines"),
    # ---------------------------------------------------------------- Mask-VOS
    Claim("maskvos.c.refinement", MASKVOS, "C, Fig. S5", "J&F improves from round 0 to 1 to 2 of recurrent refinement",
       "qualitative (Fig. S5; main Table 5e)", "maskvos",
       AllOf((Greater("maskvos/jf.round1", "maskvos/jf.round0"), Greater("maskvos/jf.round2", "maskvos/jf.round1"))),
       note="Supplement C: 'It can be observed that the segmentation quality is progressively improved with iterative "
            "refinement' (Fig. S5): each round must beat the one before (the L_Corr + L_Seg model). " + _MASKVOS_NOTE,
       gates=_maskvos_gates("lcorr", decoder=True), short="recurrent refinement improves J&F"),
    Claim("maskvos.b.pseudo-updates", MASKVOS, "B, Figs. S1-S4", "online pseudo-mask updates improve the pseudo masks (IoU to ground truth)",
       "qualitative", "maskvos", Greater("maskvos/pseudo_iou.final", "maskvos/pseudo_iou.initial"),
       note="Supplement B: 'the pseudo masks are continuously improved with online updating, e.g., background are "
            "suppressed and foreground are progressively highlighted': the masks after the updates must overlap the true "
            "foreground better than the initial ones. " + _MASKVOS_NOTE,
       gates=_maskvos_gates("lcorr"), short="online updates improve pseudo masks"),
    Claim("maskvos.s2.overhead", MASKVOS, "Table S2", "adding L_Seg costs under about 10% more training time per epoch",
       "about 8%", "maskvos", AtMost("maskvos/time.seg_overhead", 0.10),
       note="Supplement F: 'our method brings only slight training speed delay (around 8%)'; under about 10% = at most "
            "0.10 on every timed round, per step at equal batch (the online pseudo-mask updates not counted). Timed at "
            "the release's size (benchmarks/maskvos_paper_timing.py: ResNet-18 width 64, crop 256, 5-frame clips; both "
            "batches scaled alike to fit this machine), where the backbone dominates as in the paper's; each timed "
            "round is one entry (the chapter's own sizes are shown beside, not judged).",
       short="L_Seg costs < 10% time"),
    Claim("maskvos.s2.faster-than-crw", MASKVOS, "Table S2", "per epoch it trains faster than CRW at equal backbone",
       "Table S2", "maskvos", Greater("maskvos/time.crw_epoch", "maskvos/time.maskvos_epoch"),
       note="Table S2: L_Corr + L_Seg 5.5 min/epoch against CRW's 223.8 (one A100, ResNet-18): the full method's epoch "
            "must take less time than CRW's at the same backbone, crop and batch; timed at the release's size "
            "(benchmarks/maskvos_paper_timing.py, each timed round one entry), equal data per epoch for both.",
       short="trains faster than CRW"),
    Claim("maskvos.s2.seg-helps", MASKVOS, "Table S2", "adding L_Seg improves J&F over correspondence alone, for L_Corr and for CRW",
       "L_Corr 68.8 → 74.5, CRW 67.6 → 71.8 (J&F)", "maskvos",
       AllOf((Greater("maskvos/jf.with_seg", "maskvos/jf.correspondence_only"),
              Greater("maskvos/crw.jf.with_seg", "maskvos/crw.jf.correspondence_only"))),
       note="Table S2 (CRW 67.6 -> 71.8, L_Corr 68.8 -> 74.5) and supplement F: L_Seg brings 'remarkable performance "
            "improvement'; the paper shows it for both learners, so both must improve. Equal phase-B steps for both arms "
            "of each learner, from the same phase-A weights. " + _MASKVOS_NOTE,
       gates=_maskvos_gates("lcorr", "crw", decoder=True), short="L_Seg improves J&F"),
    Claim("maskvos.g.clustering", MASKVOS, "G", "optimal-transport (Sinkhorn) clustering vs k-means for pseudo masks (the authors' future work)",
       "future work (no numbers)", "maskvos", Greater("maskvos/pseudo_iou.sinkhorn", "maskvos/pseudo_iou.kmeans"),
       note="Supplement G: 'The k-means clustering, though simple, is less efficient compared with some more advanced "
            "ones, such as [10, 11] which consider clustering from the perspective of optimal transport'. Both cluster the "
            "same phase-A keys (same k, same k-means++ seeding); the rule asks whether the authors' proposed alternative "
            "gives better pseudo masks. " + _MASKVOS_NOTE,
       gates=_maskvos_gates("lcorr"), short="Sinkhorn clustering vs k-means"),
    # ---------------------------------------------------------------- CRW
    Claim("crw.a.identical-negatives", CRW, "A",
       "false negatives identical to the positive never flip the sign of the positive's gradient (lambda_u >= 0), checked with autograd",
       "proof", "crw_theory",
       AllOf((AtLeast("crw_theory/lambda_u.min", -1e-9), AtMost("crw_theory/lambda_u.max_abs_error", 1e-5))),
       note="lambda_u read off the autograd gradient in float64; >= 0 up to rounding (1e-9)",
       short="identical negatives never flip the gradient"),
    Claim("crw.c.shortcut", CRW, "C", "a single shared feature map lets the network solve the walk by a shortcut (even on random-noise videos)",
       "qualitative", "crw_shortcut",
       AllOf((Greater("crw_shortcut/loss_drop.single_map", "crw_shortcut/loss_drop.patches"),
              AtMost("crw_shortcut/jf_gain.single_map", 0.02))), short="one shared map allows a shortcut"),
    Claim("crw.d.frame-rate", CRW, "D", "an intermediate frame rate is best; the same image repeated (infinite rate) is worst",
       "2: 65.9, 4: 67.5, 8: 67.6, 30: 62.3, ∞: 57.5 (J&F)", "crw_ablations",
       AllOf((Greater("crw_ablations/frame_rate.jf.intermediate", "crw_ablations/frame_rate.jf.densest"),
              Greater("crw_ablations/frame_rate.jf.densest", "crw_ablations/frame_rate.jf.repeated"))),
       note=_CRW_NOTE + " The gate is measured on the main model (the intermediate stride).", gates=_CRW_GATE,
       short="an intermediate frame rate is best"),
    Claim("crw.f.local-attention", CRW, "F", "restricting sources to a spatial radius improves J&F", "+4% (ImageNet baseline)",
       "crw_propagation", Greater("crw_propagation/jf.local", "crw_propagation/jf.global"), short="a spatial radius helps"),
    Claim("crw.f.joint-topk", CRW, "F", "top-k over all source nodes at once beats top-k per frame", "+3% (ImageNet baseline)",
       "crw_propagation", Greater("crw_propagation/jf.joint_topk", "crw_propagation/jf.per_frame_topk"),
       short="joint top-k beats per-frame top-k"),
    Claim("crw.f1.context", CRW, "F.1", "more context frames improve J&F", "curve rising with m", "crw_propagation",
       Greater("crw_propagation/jf.context_max", "crw_propagation/jf.context_min"), short="more context frames help"),
    Claim("crw.g.res3", CRW, "G", "res3 features propagate labels at least as well as res4", "stated", "crw_ablations",
       AtLeast("crw_ablations/res3_minus_res4.jf", 0.0), note=_CRW_NOTE, gates=_CRW_GATE,
       short="res3 propagates at least as well as res4"),
    Claim("crw.h.test-time-training", CRW, "H", "test-time training improves J&F", "main paper", "crw_ablations",
       Greater("crw_ablations/jf.test_time_training", "crw_ablations/jf.no_test_time_training"), note=_CRW_NOTE,
       gates=_CRW_GATE, short="test-time training helps"),
    Claim("crw.b.beats-untrained", CRW, "B", "trained CRW features beat untrained features and raw pixels for label propagation",
       "67.6 J&F (trained, DAVIS-17 val)", "crw_ablations",
       AllOf((Greater("crw_ablations/jf.trained", "crw_ablations/jf.untrained"),
              Greater("crw_ablations/jf.trained", "crw_ablations/jf.pixels"))), note=_CRW_NOTE, gates=_CRW_GATE,
       short="trained features beat untrained and pixels"),
)

CLAIMS_BY_ID = {c.id: c for c in CLAIMS}
if len(CLAIMS_BY_ID) != len(CLAIMS):
    raise RuntimeError("duplicate claim ids in the registry")


def claims_for(notebook: str) -> list[Claim]:
    return [c for c in CLAIMS if c.notebook == notebook]


def verdicts(results: dict[str, dict[str, Any]], claims=CLAIMS) -> dict[str, str]:
    """{claim id: verdict} for one folder's results."""
    return {c.id: c.verdict(results) for c in claims}


def diff(results_a: dict[str, dict[str, Any]], results_b: dict[str, dict[str, Any]], claims=CLAIMS) -> list[tuple[str, str, str]]:
    """Claims whose verdict differs between two sets of results: [(id, verdict in a, verdict in b)]."""
    va, vb = verdicts(results_a, claims), verdicts(results_b, claims)
    return [(cid, va[cid], vb[cid]) for cid in va if va[cid] != vb[cid]]


def measurement_changes(results_a, results_b, rel: float = 1e-9) -> tuple[int, int]:
    """(changed, compared): recorded measurement values (per seed) present in both and differing beyond ``rel``."""
    changed = compared = 0
    for notebook, res in results_a.items():
        other = results_b.get(notebook, {}).get("measurements", {})
        for name, entry in res.get("measurements", {}).items():
            if name not in other:
                continue
            b = dict(zip(other[name].get("seeds", []), other[name]["values"]))
            for seed, x in zip(entry.get("seeds", []), entry["values"]):
                if seed in b:
                    compared += 1
                    changed += not math.isclose(float(x), float(b[seed]), rel_tol=rel, abs_tol=1e-12)
    return changed, compared


def show_verdicts(recorder):
    """The verdicts of one notebook's claims, from its in-memory measurements (an HTML table for the notebook)."""
    from IPython.display import HTML

    from .claims_page import verdicts_html

    return HTML(verdicts_html({recorder.notebook: recorder.as_results()}, claims_for(recorder.notebook)))

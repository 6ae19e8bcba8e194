"""The claims as the book shows them: the claims page, each chapter's box of its own claims, the verdict table at
the end of a notebook, and the comparison of two result folders (``python -m amodalkit claims diff``).

Everything here renders what :mod:`amodalkit.claims` computes; nothing is judged here. The tables are HTML
(inside MyST ``{raw} html`` blocks on the claims page) so that each claim can carry a collapsible ``<details>``
row with its measurements, rule and gates, and so that the table's column widths are fixed: it never grows wider
than the page's text column.
"""
from __future__ import annotations

import html
import re
from collections import Counter
from pathlib import Path
from typing import Any

from .claims import (CLAIMS, NOT_REPRODUCED, NOT_RUN, NOT_TESTABLE, REPRODUCED, VERDICTS, WITHIN_NOISE, Claim,
                     ClaimOutcome, claims_for, diff, mean_std, measurement_changes)

# symbols from common text fonts (DejaVu has them), not emoji: the offline book may have no emoji font
SYMBOL = {REPRODUCED: "✓", NOT_REPRODUCED: "✗", WITHIN_NOISE: "≈", NOT_TESTABLE: "⊘", NOT_RUN: "…"}
CSS_CLASS = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not-reproduced", WITHIN_NOISE: "within-noise",
             NOT_TESTABLE: "not-testable", NOT_RUN: "not-run"}
NOT_SETTLED = "not settled"


def mark(verdict: str) -> str:
    """'✓ reproduced' and so on: the verdict with its symbol (plain text)."""
    return f"{SYMBOL[verdict]} {verdict}"


def anchor(claim_id: str) -> str:
    """The HTML id of a claim's row, on the claims page and in its chapter's box."""
    return "claim-" + re.sub(r"[^a-z0-9]+", "-", claim_id.lower()).strip("-")


def _inline(text: str) -> str:
    """Escape text for HTML and turn `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text), quote=False))


def _verdict_html(verdict: str) -> str:
    return f'<span class="ak-verdict ak-{CSS_CLASS[verdict]}">{SYMBOL[verdict]} {html.escape(verdict)}</span>'


def _failing_gates_html(outcome: ClaimOutcome) -> str:
    """One short line per failing gate: its measurement, mean ± std over seeds, the seeds that fail, the threshold."""
    lines = []
    for g in outcome.gates:
        if g.status == "fail":
            mean, std = mean_std(g.values)
            failing = sum(not g.gate.bound.holds(v) for v in g.values)
            lines.append(f'<div class="ak-gate">gate <code>{html.escape(g.gate.bound.measure.split("/", 1)[1])}</code>: '
                         f"{mean:.2g} ± {std:.1g}, fails on {failing} of {len(g.values)} seeds "
                         f"(needs {html.escape(g.gate.bound.condition())})</div>")
    return "".join(lines)


def _details_html(claim: Claim, outcome: ClaimOutcome, results, settled_note: str = "") -> str:
    items = [f"<li><b>Claim</b> ({html.escape(claim.source)}): {_inline(claim.text)}.</li>",
             f"<li><b>Rule</b>: {_inline(claim.rule.text())}.</li>"]
    items += [f"<li>{_inline(d)}</li>" for d in outcome.comparison.details]
    for g in outcome.gates:
        items.append(f"<li><b>Gate</b> ({_inline(g.gate.why)}): {_inline(g.text())}</li>")
    if claim.note:
        items.append(f"<li><b>Note</b>: {_inline(claim.note)}</li>")
    items.append(f"<li><b>All measurements</b>: {_inline(claim.ours(results))}</li>")
    if settled_note:
        items.append(f"<li><b>Re-run</b>: {_inline(settled_note)}</li>")
    return f"<details><summary>measurements, rule and gates</summary><ul>{''.join(items)}</ul></details>"


def _link(claim: Claim, chapters: set[str], prefix: str) -> str:
    """The claim's id, linked to its chapter's box (claims page) or to the claims page (prefix ending in '#')."""
    code = f"<code>{html.escape(claim.id)}</code>"
    if prefix.endswith("#"):
        return f'<a href="{prefix}{anchor(claim.id)}">{code}</a>'
    if claim.notebook in chapters:
        return f'<a href="{prefix}{claim.notebook}.html#{anchor(claim.id)}">{code}</a>'
    return code


def edition_label(profile: str, results: dict[str, dict[str, Any]]) -> str:
    """'gpu profile on NVIDIA H200': an edition's profile and the device its chapters ran on (from their provenance)."""
    devices = sorted({(r.get("provenance") or {}).get("device") for r in results.values()} - {None})
    return f"{profile} profile" + (f" on {', '.join(devices)}" if devices else "")


def _edition_html(claim: Claim, editions: list[tuple[str, dict]] | None) -> str:
    """The claim's verdict in other editions (the gpu profile's results), each labelled, under the main verdict."""
    lines = []
    for label, results in editions or []:
        if claim.notebook in results:
            lines.append(f'<div class="ak-edition">{html.escape(label)}: {_verdict_html(claim.verdict(results))}</div>')
    return "".join(lines)


def claims_table_html(results: dict[str, dict[str, Any]], claims: list[Claim], chapters: set[str],
                      replica: dict[str, str] | None = None, replica_label: str = "", link_prefix: str = "chapters/",
                      editions: list[tuple[str, dict]] | None = None) -> str:
    """One table of claims: claim (id linked to its chapter, short text), paper, ours (the headline number the rule
    tests), verdict (with the failing gates' values); under each, a full-width collapsible details row.

    Args:
        link_prefix: ids link to ``<prefix><notebook>.html#<anchor>`` (chapters listed in ``chapters``), or to
            ``<prefix><anchor>`` when the prefix ends in '#' (a chapter's box linking to the claims page).
        replica: {claim id: verdict} of a re-run (another floating-point path); a claim whose verdict differs is
            marked not settled. replica_label: how that run differs (shown in the mark).
        editions: [(label, results)] of other profiles (the gpu edition): a claim whose chapter they ran shows their
            verdict beside this one, labelled with the profile and device.
    """
    rows = []
    for claim in claims:
        outcome = claim.evaluate(results)
        verdict_cell = _verdict_html(outcome.verdict) + _failing_gates_html(outcome)
        settled_note = ""
        if replica is not None and claim.id in replica and replica[claim.id] != outcome.verdict:
            other = replica[claim.id]
            settled_note = f"{outcome.verdict} here, {other} in the re-run ({replica_label}): not settled"
            verdict_cell = (f'<span class="ak-verdict ak-not-settled">⚠ {NOT_SETTLED}</span>'
                            f'<div class="ak-gate">here {html.escape(mark(outcome.verdict))}; {html.escape(replica_label)}: '
                            f"{html.escape(mark(other))}</div>" + _failing_gates_html(outcome))
        verdict_cell += _edition_html(claim, editions)
        short = claim.short or claim.text
        rows.append(
            f'<tr id="{anchor(claim.id)}" class="ak-claim ak-row-{CSS_CLASS[outcome.verdict]}">'
            f"<td>{_link(claim, chapters, link_prefix)}<div>{_inline(short)}</div></td>"
            f"<td>{_inline(claim.paper_figure)}</td>"
            f"<td>{_inline(outcome.comparison.headline)}</td>"
            f"<td>{verdict_cell}</td></tr>"
            f'<tr class="ak-details"><td colspan="4">{_details_html(claim, outcome, results, settled_note)}</td></tr>')
    return ('<table class="ak-claims"><colgroup><col class="ak-c-claim"><col class="ak-c-paper"><col class="ak-c-ours">'
            '<col class="ak-c-verdict"></colgroup><thead><tr><th>claim</th><th>paper</th><th>ours</th><th>verdict</th>'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def verdict_bars_html(counts: dict[str, Counter], unsettled: dict[str, int] | None = None) -> str:
    """A small stacked bar per paper: how many of its claims got each verdict (HTML and CSS, no image)."""
    rows = []
    for paper, count in counts.items():
        total = sum(count.values()) or 1
        segments = "".join(
            f'<span class="ak-seg ak-{CSS_CLASS[v]}" style="width:{100 * count[v] / total:.2f}%" '
            f'title="{html.escape(mark(v))}: {count[v]}">{count[v]}</span>' for v in VERDICTS if count[v])
        extra = f" · {unsettled[paper]} not settled" if unsettled and unsettled.get(paper) else ""
        rows.append(f'<div class="ak-bar-row"><span class="ak-bar-label">{html.escape(paper.split(" (")[0])}'
                    f'<small> {sum(count.values())} claims{extra}</small></span><span class="ak-bar">{segments}</span></div>')
    legend = "".join(f'<span class="ak-legend"><span class="ak-swatch ak-{CSS_CLASS[v]}"></span>{html.escape(mark(v))}</span>'
                     for v in VERDICTS)
    return f'<div class="ak-bars">{"".join(rows)}<div class="ak-legends">{legend}</div></div>'


def _raw(block: str) -> str:
    return "```{raw} html\n" + block + "\n```\n"


def _same_runs(results, replica_results) -> tuple[set[str], list[str]]:
    """Notebooks run with the same code and parameters in both folders (equal cache keys), and those that were not."""
    same = {nb for nb, r in results.items()
            if nb in replica_results and r.get("cache_key") and r.get("cache_key") == replica_results[nb].get("cache_key")}
    return same, sorted(nb for nb in results if nb in replica_results and nb not in same)


def replica_verdicts(results, replica_results) -> tuple[dict[str, str], list[str]]:
    """Verdicts of the re-run for the claims whose notebook ran the same code with the same parameters in both folders
    (equal cache keys), and the notebooks left out because they did not."""
    same, stale = _same_runs(results, replica_results)
    return {c.id: c.verdict(replica_results) for c in CLAIMS if c.notebook in same}, stale


def claims_markdown(results: dict[str, dict[str, Any]], profile: str, chapters: set[str],
                    replica_results: dict[str, dict[str, Any]] | None = None, replica_label: str = "",
                    replica_dir: str = "", editions: list[tuple[str, dict]] | None = None) -> str:
    """The book's claims page (MyST markdown with raw HTML tables) for the results of one profile.

    Args:
        results: ``{notebook: results}`` as from :func:`amodalkit.results.load_results`.
        profile: the profile the results come from (named on the page).
        chapters: the notebooks that are chapters of this book (linked from the table).
        replica_results: the same profile run again on another floating-point path (e.g.
            ``ATEN_CPU_CAPABILITY=default``); claims whose verdict differs are marked not settled.
        replica_label, replica_dir: how the re-run differs, and where its results are (named on the page).
        editions: [(label, results)] of other profiles (the gpu edition), shown beside each verdict they have.
    """
    outcomes = {c.id: c.evaluate(results) for c in CLAIMS}
    replica_results = replica_results or None  # an empty folder is no re-run
    replica, stale = replica_verdicts(results, replica_results) if replica_results else (None, [])
    papers = list(dict.fromkeys(c.paper for c in CLAIMS))
    counts = {p: Counter(outcomes[c.id].verdict for c in CLAIMS if c.paper == p) for p in papers}
    unsettled = {p: sum(1 for c in CLAIMS if c.paper == p and replica and c.id in replica
                        and replica[c.id] != outcomes[c.id].verdict) for p in papers}
    total = Counter(o.verdict for o in outcomes.values())
    lines = [
        "# Claims and verdicts", "",
        f"Every testable claim of the five supplements, with the paper's figure, ours and a verdict computed by "
        f"`amodalkit.claims` from the recorded results of the **{profile}** profile (`results/{profile}/`). Nothing on "
        "this page is typed by hand: it is generated when the book is built. Click a claim's id for the chapter that "
        "tests it, and *measurements, rule and gates* for everything behind a verdict.", "",
        "Book-wide: " + ", ".join(f"{total[v]} {v}" for v in VERDICTS) + f" (of {len(CLAIMS)}).", "",
        _raw(verdict_bars_html(counts, unsettled if replica else None)),
        "## How a verdict is computed", "",
        "Each claim has a rule over per-seed measurements (a seed is one world draw and one initialisation, shared by "
        "everything a claim compares) and may have gates:", "",
        "- a **direction** (A > B) is a one-sided t-test at 95%: paired over seeds when both sides come from the same "
        "seeds, Welch's test otherwise. **Reproduced** when A > B is significant (p < 0.05), **not reproduced** when "
        "B > A is, **within noise** otherwise (with one seed there is no test; the same nonzero difference on every "
        "seed counts as significant). *Ours* shows the mean difference ± its spread (paired: the std of the per-seed "
        "differences; unpaired: √(s_A² + s_B²)), n and p;",
        "- a **bound** (a value at least, at most or between thresholds) must hold for every seed: reproduced when all "
        "seeds hold, not reproduced when none does, within noise when they disagree. *Ours* shows mean ± std (n);",
        "- a claim with several parts needs all of them; *ours* shows the part that decides the verdict;",
        "- a **gate** is a precondition of the test, measured by the same run (the model converged; it uses the input "
        "an ablation removes; its features learnt correspondence rather than a shortcut). A gate that fails on any "
        "seed gives **not testable at this budget** whatever the comparison says, and its values are shown beside the "
        "verdict. A gate only withholds a verdict; it never turns a failing comparison into a pass. Thresholds are "
        "written in the claim's note with the reason, fixed before the comparison, the same for every seed;",
        "- **not run yet**: a measurement the rule or a gate needs has not been recorded.", "",
    ]
    if replica_results is not None:
        lines += _replica_section(results, replica_results, replica, stale, replica_label, replica_dir, outcomes)
    for paper in papers:
        claims = [c for c in CLAIMS if c.paper == paper]
        lines += [f"## {paper}", "", _raw(claims_table_html(results, claims, chapters, replica, replica_label,
                                                            editions=editions))]
    return "\n".join(lines) + "\n"


def _replica_section(results, replica_results, replica, stale, label, where, outcomes) -> list[str]:
    same, _ = _same_runs(results, replica_results)
    flips = [(cid, outcomes[cid].verdict, v) for cid, v in replica.items() if v != outcomes[cid].verdict]
    changed, compared = measurement_changes({nb: r for nb, r in results.items() if nb in same}, replica_results)
    lines = ["## Does a verdict survive a re-run?", "",
             f"The same profile was run again at the same code from an empty cache with {label} (another floating-point "
             f"path on the same kind of machine; results in `{where}`). {len(same)} of {len(results)} chapters ran the "
             f"same code with the same parameters in both; in them the re-run changed {changed} of {compared} recorded "
             "per-seed measurements. A claim whose verdict differs between the two runs is **not settled**: its verdict "
             "depends on rounding, and the tables below mark it.", ""]
    if stale:
        lines += [f"Not compared (the re-run is of other code or parameters): {', '.join(f'`{s}`' for s in stale)}.", ""]
    if flips:  # raw HTML: the anchors are the tables' row ids, which Sphinx does not know
        rows = "".join(f'<tr><td><a href="#{anchor(cid)}"><code>{html.escape(cid)}</code></a></td>'
                       f"<td>{_verdict_html(a)}</td><td>{_verdict_html(b)}</td></tr>" for cid, a, b in flips)
        lines += [_raw(f'<table class="ak-flips"><thead><tr><th>claim</th><th>this run</th><th>re-run ({html.escape(label)})'
                       f"</th></tr></thead><tbody>{rows}</tbody></table>")]
    elif replica:
        lines += [f"No verdict changed between the two runs ({len(replica)} claims compared)."]
    else:
        lines += ["No claim could be compared."]
    return lines + [""]


def chapter_box_html(results: dict[str, dict[str, Any]], notebook: str, replica: dict[str, str] | None = None,
                     replica_label: str = "", editions: list[tuple[str, dict]] | None = None) -> str:
    """The box a chapter opens with: its claims, ours and the verdicts (anchors for the claims page's links)."""
    claims = claims_for(notebook)
    if not claims:
        return ""
    table = claims_table_html(results, claims, set(), replica, replica_label, link_prefix="../claims.html#",
                              editions=editions)
    return (f'<div class="admonition ak-chapter-claims"><p class="admonition-title">Claims tested in this chapter</p>'
            f'<div class="ak-box-body">{table}<p>All claims, and how a verdict is computed: '
            '<a href="../claims.html">Claims and verdicts</a>.</p></div></div>')


def verdicts_html(results: dict[str, dict[str, Any]], claims: list[Claim]) -> str:
    """The verdict table shown at the end of a notebook (its own in-memory measurements; no anchors)."""
    return re.sub(r' id="claim-[^"]*"', "", claims_table_html(results, claims, set()))


def diff_report(dir_a: Path | str, dir_b: Path | str) -> str:
    """Text report of verdict changes between two result folders (``python -m amodalkit claims diff A B``)."""
    from .results import load_results

    a, b = load_results(dir_a), load_results(dir_b)
    if not a:
        raise FileNotFoundError(f"no results (*.json) in {dir_a}")
    if not b:
        raise FileNotFoundError(f"no results (*.json) in {dir_b}")
    flips = diff(a, b)
    changed, compared = measurement_changes(a, b)
    keys = [nb for nb in sorted(set(a) & set(b)) if a[nb].get("cache_key") != b[nb].get("cache_key")]
    lines = [f"A: {dir_a}", f"B: {dir_b}",
             f"measurements: {changed} of {compared} per-seed values differ",
             f"notebooks run with other code or parameters: {', '.join(keys) if keys else 'none'}",
             f"verdicts: {len(flips)} of {len(CLAIMS)} differ"]
    width = max((len(cid) for cid, _, _ in flips), default=0)
    lines += [f"  {cid.ljust(width)}  {x}  ->  {y}" for cid, x, y in flips]
    return "\n".join(lines)

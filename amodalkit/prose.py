"""The book's prose and the recorded results: numbers inserted when the book is built, and quotes that are the
supplements' words.

**Inserted numbers.** A page (``book/*.md``, a chapter's markdown cell, the README's measured block) writes
``{{ SOURCE [FORMAT] }}`` where a number from the results belongs; the builder replaces it with the number and a
hover title naming where it comes from. SOURCE is one of:

* ``notebook/measurement`` : mean ± std over the seeds of ``results/<profile>/<notebook>.json``;
  ``notebook/measurement@STAT`` with STAT ``mean``, ``std``, ``min``, ``max``, ``range`` (min–max), ``seeds``
  (each seed's value, in seed order, joined by " / "), ``n`` (how many seeds) or ``seedK`` (seed K's value);
  a measurement name with ``*`` pools the values of every measurement it matches (``@mean``, ``@min``, ...);
* ``file.json:key.path`` : a value of a benchmark's ``results/file.json`` (dotted keys, list indices as numbers;
  ``@STAT`` as above on a list of numbers);
* ``cmp:notebook/a>notebook/b`` : the comparison of two measurements worded by the verdicts' own test
  (:func:`amodalkit.claims.compare_measures`): "higher (paired Δ ..., p = ...)", "lower (...)" or "within noise (...)".

FORMAT is a Python format spec (``.3f``, ``.1%``, ``,.0f``); the default shows three decimals below 10 and none above.

**Quotes.** :func:`unverified_quotes` lists the quoted passages attributed to a supplement that do not occur in its
text (ignoring case, whitespace, hyphens, quotes' markup and elisions "..."), so a paraphrase keeps no quotation marks.

Example:
    >>> results = {"nb": {"measurements": {"x": {"values": [0.5, 0.7], "seeds": [0, 1]}}}}
    >>> insert_numbers("x is {{ nb/x }} ({{ nb/x@seeds .1f }})", results, html=False)
    'x is 0.600 ± 0.141 (0.5 / 0.7)'
"""
from __future__ import annotations

import html as html_module
import json
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)(?:\s+([^{}\s]+))?\s*\}\}")
STATS = ("mean", "std", "min", "max", "range", "seeds", "n")


class ProseError(ValueError):
    """A placeholder that names no recorded value (the message names the page and the placeholder)."""


def _format(value: float, spec: str | None) -> str:
    if spec:
        return format(value, spec)
    return format(value, ".3f" if abs(value) < 10 else ",.0f")


def _statistic(values: list[float], seeds: list[int] | None, stat: str | None, spec: str | None) -> str:
    from .claims import mean_std

    if stat is None:
        mean, std = mean_std(values)
        return f"{_format(mean, spec)} ± {_format(std, spec)}" if len(values) > 1 else _format(mean, spec)
    if stat == "n":
        return str(len(values))
    if stat == "seeds":
        ordered = [v for _, v in sorted(zip(seeds, values))] if seeds else values
        return " / ".join(_format(v, spec) for v in ordered)
    if stat == "range":
        low, high = _format(min(values), spec), _format(max(values), spec)
        return low if low == high else f"{low}{' to ' if min(values) < 0 else '–'}{high}"
    if stat.startswith("seed") and stat[4:].isdigit():
        if not seeds or int(stat[4:]) not in seeds:
            raise KeyError(f"no value for {stat}")
        return _format(values[seeds.index(int(stat[4:]))], spec)
    single = {"mean": lambda: mean_std(values)[0], "std": lambda: mean_std(values)[1], "min": lambda: min(values),
              "max": lambda: max(values)}
    if stat not in single:
        raise KeyError(f"unknown statistic @{stat} (expected one of {', '.join(STATS)} or seedK)")
    return _format(single[stat](), spec)


def _json_value(data: Any, path: str) -> Any:
    """``data`` at a dotted ``path``; a key may itself hold dots (the longest one that exists is taken)."""
    parts = path.split(".")
    while parts:
        if isinstance(data, list):
            data, parts = data[int(parts[0])], parts[1:]
            continue
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in data:
                data, parts = data[".".join(parts[:n])], parts[n:]
                break
        else:
            raise KeyError(f"no key {parts[0]!r}")
    return data


def resolve(source: str, spec: str | None, results: dict[str, dict[str, Any]], results_dir: Path | None = None,
            profile: str = "quick") -> tuple[str, str]:
    """(the text a placeholder stands for, where it comes from). Raises KeyError naming what is missing."""
    from .claims import compare_measures

    if source.startswith("cmp:"):
        a, _, b = source[4:].replace("&gt;", ">").partition(">")  # escaped where the text went through HTML
        comparison = compare_measures(results, a, b)
        if comparison is None:
            raise KeyError(f"{a} or {b} is not recorded in results/{profile}/")
        return comparison.phrase(), f"results/{profile}/: {a} against {b}, the verdicts' one-sided t-test"
    body, _, stat = source.partition("@")
    stat = stat or None
    if ".json:" in body:
        file, _, path = body.partition(":")
        target = (results_dir or Path("results")) / file
        if not target.is_file():
            raise KeyError(f"results/{file} does not exist")
        value = _json_value(json.loads(target.read_text()), path)
        if isinstance(value, list):
            return _statistic([float(v) for v in value], None, stat, spec), f"results/{file}: {path}"
        if stat is not None:
            raise KeyError(f"@{stat} needs a list, {path} is a single value")
        return (_format(float(value), spec) if isinstance(value, (int, float)) else str(value)), f"results/{file}: {path}"
    notebook, _, name = body.partition("/")
    measurements = results.get(notebook, {}).get("measurements", {})
    if "*" in name:  # every matching measurement's values pooled (e.g. a range over the rows of a table)
        matched = sorted(m for m in measurements if fnmatch(m, name) and measurements[m].get("values"))
        if not matched:
            raise KeyError(f"no measurement matches {name!r} in results/{profile}/{notebook}.json")
        if stat is None or stat in ("seeds", "n") or stat.startswith("seed"):
            raise KeyError(f"a pattern pools several measurements: give @mean, @std, @min, @max or @range, not "
                           f"@{stat}")
        values = [float(v) for m in matched for v in measurements[m]["values"]]
        return (_statistic(values, None, stat, spec),
                f"results/{profile}/{notebook}.json: {name} ({len(matched)} measurements, {len(values)} values)")
    entry = measurements.get(name)
    if not entry or not entry.get("values"):
        raise KeyError(f"{name!r} is not recorded in results/{profile}/{notebook}.json")
    values = [float(v) for v in entry["values"]]
    where = f"results/{profile}/{notebook}.json: {name}, {len(values)} seed{'s' if len(values) > 1 else ''}"
    return _statistic(values, entry.get("seeds"), stat, spec), where


def insert_numbers(text: str, results: dict[str, dict[str, Any]], *, results_dir: Path | None = None,
                   profile: str = "quick", page: str = "a page", html: bool = True) -> str:
    """Replace every ``{{ ... }}`` placeholder of ``text`` (see the module docstring); ``html``: wrap each number in a
    ``<span class="ak-result">`` whose title names its source (for the book), else plain text (the README).

    Raises:
        ProseError: a placeholder whose value is not recorded (names ``page`` and the placeholder).
    """
    def replace(match: re.Match) -> str:
        try:
            value, where = resolve(match.group(1), match.group(2), results, results_dir, profile)
        except (KeyError, IndexError, ValueError, TypeError) as err:
            reason = err.args[0] if isinstance(err, KeyError) and err.args else err  # KeyError's str() adds quotes
            raise ProseError(f"{page}: {match.group(0)} cannot be filled in: {reason}") from None
        if not html:
            return value
        return (f'<span class="ak-result" title="{html_module.escape(where)}">{html_module.escape(value)}</span>')

    return PLACEHOLDER.sub(replace, text)


# ------------------------------------------------------------------------------------ quotes


# a single quote opens after a space or bracket (not an apostrophe: "et al.'s", "YouTube-VOS' sampling")
QUOTED = re.compile(r"(?:^|(?<=[\s(\[:]))'(\S[^'\n]{6,}?\S)'(?![A-Za-z])|\"([^\"\n]{8,}?)\"|“([^”]{8,}?)”",
                    re.MULTILINE)
# a quote counts as the supplement's when this comes shortly before it, in the same sentence
ATTRIBUTION = re.compile(r"supplement", re.IGNORECASE)


def normalise(text: str) -> str:
    """Lower case, without whitespace, hyphens, markup (`` ` `` ``*`` ``_``) or typographic variants of quotes."""
    text = text.lower().replace("ﬁ", "fi").replace("ﬂ", "fl")
    return re.sub(r"[\s\-‐‑–—`*_$\\'\"‘’“”]+", "", text)


def quoted_passages(text: str, window: int = 120, every: bool = False) -> list[str]:
    """The passages in quotation marks of ``text`` attributed to a supplement: the word "supplement" occurs in the
    ``window`` characters before the quote, within its sentence (or the quote follows one that was); ``every``: all
    quoted passages of two words or more (a book page, where a quote reads as the paper's)."""
    found = []
    attributed_until = -1
    text = re.sub(r"`[^`\n]*`", "``", text)  # code is not quoted prose (a file name, a parameter value)
    for match in QUOTED.finditer(text):
        quote = next(g for g in match.groups() if g is not None)
        if len(quote.split()) < 2:
            continue
        if every:
            found.append(quote)
            continue
        before = text[max(0, match.start() - window):match.start()]
        sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z])|\n\s*\n", before)[-1]
        if ATTRIBUTION.search(sentence) or match.start() <= attributed_until:
            found.append(quote)
            attributed_until = match.end() + 3  # 'a' and 'b': a quote straight after an attributed one
    return found


def occurs_in(quote: str, source_text: str) -> bool:
    """Whether ``quote`` occurs in ``source_text`` (normalised; "..." and "[...]" elide, each part must occur in order)."""
    parts = [normalise(p) for p in re.split(r"\.\.\.|…|\[[^\]]*\]", quote)]
    haystack, at = normalise(source_text), 0
    for part in (p for p in parts if p):
        at = haystack.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return True


def unverified_quotes(texts: dict[str, str], supplements: list[str], pages: dict[str, str] | None = None,
                      own: list[str] = ()) -> list[tuple[str, str]]:
    """``[(where, quote)]`` of the quotes that occur in none of the ``supplements``' texts: those attributed to a
    supplement in ``texts`` (``{where: text}``: claim notes, notebooks), and every quote of ``pages`` (book pages)
    except the book's own words ``own`` (its headings, its verdicts' names, the papers' titles)."""
    own_text = "\n".join(own)
    checks = [(w, q) for w, t in texts.items() for q in quoted_passages(t)]
    checks += [(w, q) for w, t in (pages or {}).items() for q in quoted_passages(t, every=True)
               if not occurs_in(q, own_text)]
    return [(where, quote) for where, quote in checks if not any(occurs_in(quote, s) for s in supplements)]


def collect_prose(root: Path) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """What :func:`unverified_quotes` checks in the repository at ``root``: (the claims' texts and notes and the
    notebooks' cells, the book pages and the notebooks' markdown cells, the book's own words: verdict names, the
    headings of the pages, notebooks and README, and the papers' titles from the supplements' index)."""
    from .claims import CLAIMS, VERDICTS

    texts: dict[str, str] = {}
    for claim in CLAIMS:
        for field in ("text", "short", "note"):
            if getattr(claim, field, None):
                texts[f"claim {claim.id} ({field})"] = getattr(claim, field)
        for i, gate in enumerate(claim.gates):
            texts[f"claim {claim.id} (gate {i})"] = gate.why
    pages = {path.relative_to(root).as_posix(): path.read_text() for path in sorted((root / "book").glob("*.md"))}
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            where = f"{path.relative_to(root).as_posix()} cell {i}"
            (pages if cell["cell_type"] == "markdown" else texts)[where] = source
    headings = [line.lstrip("#").strip() for text in [*pages.values(), (root / "README.md").read_text()]
                for line in text.splitlines() if line.startswith("#")]
    index = root.parent / "shared" / "seeds" / "README.md"
    return texts, pages, [*VERDICTS, *headings, index.read_text() if index.is_file() else ""]

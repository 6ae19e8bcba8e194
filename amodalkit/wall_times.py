"""How long each chapter of a profile takes to regenerate, against the budget shares of the papers.

``python -m amodalkit book run --record-times`` (what ``make regenerate`` runs) writes every chapter that ran into
``results/book_wall_times.json`` (``book_wall_times_<profile>.json`` for a profile other than ``quick``): its wall time,
the models it trained and loaded from the model cache, the seconds of training, when it finished, the commit, and
whether the model cache was empty when the run began. A row is replaced only when its chapter runs again, so the
file always holds each chapter's latest run; the sums per paper say how many of their rows come from runs that began
with an empty model cache (the budgets are about such runs).

Example:
    >>> paper_of("savos_ablations"), paper_of("crw_theory")
    ('SaVos', 'data and theory')
"""
from __future__ import annotations

import json
from pathlib import Path

# the quick profile's shares (minutes from an empty model cache on the reference machine), by chapter-name prefix;
# the theory chapters (no trained model) share the rest with the data chapter
THEORY = ("data_worlds", "savos_theorem1", "crw_theory")
PAPERS = {"savos_": ("SaVos", 75), "vae_": ("Amodal-VAE", 40), "crw_": ("CRW", 20), "stem_": ("STEm-Seg", 60),
          "maskvos": ("Mask-VOS", 20)}
TOTAL_BUDGET_MIN = 240
BUDGETS = {paper: budget for paper, budget in PAPERS.values()}
BUDGETS["data and theory"] = TOTAL_BUDGET_MIN - sum(BUDGETS.values())
ORDER = ("data and theory", "SaVos", "Amodal-VAE", "CRW", "STEm-Seg", "Mask-VOS")  # the book's order
ROW_FIELDS = ("wall_time_s", "trained", "loaded", "train_seconds")


def paper_of(chapter: str) -> str:
    """The budget share a chapter counts against."""
    if chapter in THEORY:
        return "data and theory"
    for prefix, (paper, _) in PAPERS.items():
        if chapter.startswith(prefix):
            return paper
    raise ValueError(f"wall_times: no paper for chapter {chapter!r}; add its prefix to PAPERS")


def path_for(profile: str, results_dir: Path) -> Path:
    return results_dir / ("book_wall_times.json" if profile == "quick" else f"book_wall_times_{profile}.json")


def summarise(chapters: dict[str, dict], profile: str) -> dict:
    """The record of a profile from its chapter rows: the rows, sums per paper (with their budgets) and the total."""
    papers: dict[str, dict] = {paper: None for paper in ORDER}  # the book's order; papers without rows dropped below
    for name, row in sorted(chapters.items()):
        if papers.get(row["paper"]) is None:
            papers[row["paper"]] = dict({k: 0 for k in ROW_FIELDS}, chapters=0, from_empty_cache=0,
                                        budget_min=BUDGETS.get(row["paper"]) if profile == "quick" else None)
        paper = papers[row["paper"]]
        for k in ROW_FIELDS:
            paper[k] = round(paper[k] + row[k], 2)
        paper["chapters"] += 1
        paper["from_empty_cache"] += bool(row.get("model_cache_empty_at_start"))
    papers = {k: v for k, v in papers.items() if v is not None}
    return dict(profile=profile, chapters=dict(sorted(chapters.items())), papers=papers,
                total_wall_time_s=round(sum(r["wall_time_s"] for r in chapters.values()), 2),
                total_budget_min=TOTAL_BUDGET_MIN if profile == "quick" else None)


def record(profile: str, ran: list[str], results_dir: Path) -> dict:
    """Replace the rows of the chapters in ``ran`` with their latest run (read from ``results/<profile>/``). A chapter
    whose models a parallel warm-up trained first (``book run --jobs N``) counts the warm-up's seconds in its wall
    time, its models and seconds in its training (the warm-up kept beside; its notebook then loads them)."""
    from .results import atomic_write_json

    target = path_for(profile, results_dir)
    chapters = json.loads(target.read_text())["chapters"] if target.is_file() else {}
    for name in ran:
        r = json.loads((results_dir / profile / f"{name}.json").read_text())
        warm = r.get("warm_up") or dict(seconds=0.0, models=0)
        training = dict(r["training"], trained=r["training"]["trained"] + warm["models"],
                        loaded=max(0, r["training"]["loaded"] - warm["models"]),  # its notebook loads what it trained
                        train_seconds=round(r["training"]["train_seconds"] + warm["seconds"], 2))
        chapters[name] = dict(paper=paper_of(name), wall_time_s=round(r["wall_time_s"] + warm["seconds"], 2),
                              finished=r["finished"], commit=(r.get("provenance") or {}).get("commit"),
                              model_cache_empty_at_start=r.get("model_cache_empty_at_start"), **training,
                              **({"warm_up": r["warm_up"]} if r.get("warm_up") else {}))
    summary = summarise(chapters, profile)
    atomic_write_json(target, summary)
    return summary


def table_markdown(summary: dict) -> str:
    """The record as a markdown table, one row per paper then per chapter (the README's block shows it)."""
    lines = ["| paper / chapter | minutes | budget | models trained (min of training) | loaded | from an empty cache |",
             "| --- | --- | --- | --- | --- | --- |"]
    for paper, row in summary["papers"].items():
        budget = "-" if row["budget_min"] is None else str(row["budget_min"])
        lines.append(f"| **{paper}** | **{row['wall_time_s'] / 60:.1f}** | {budget} | {row['trained']} "
                     f"({row['train_seconds'] / 60:.1f}) | {row['loaded']} | {row['from_empty_cache']} of "
                     f"{row['chapters']} chapters |")
        for name, c in summary["chapters"].items():
            if c["paper"] == paper:
                lines.append(f"| `{name}` | {c['wall_time_s'] / 60:.1f} | | {c['trained']} ({c['train_seconds'] / 60:.1f}) "
                             f"| {c['loaded']} | {'yes' if c.get('model_cache_empty_at_start') else 'no'} "
                             f"({c['finished'][:10]}) |")
    total = summary["total_budget_min"]
    lines.append(f"| **total** | **{summary['total_wall_time_s'] / 60:.1f}** | {total if total else '-'} | | | |")
    return "\n".join(lines)

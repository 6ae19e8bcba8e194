"""How long does `make book` take, chapter by chapter, against each paper's share of the 90-minute budget?

Reads the wall times the runner recorded in ``results/<profile>/<chapter>.json`` (each chapter's seconds, and how many
models it trained and loaded from the cache) and writes them, summed per paper, to ``results/book_wall_times.json``.
The figures are budget evidence only when the run started from an empty model cache and nothing else ran beside it:

    AMODALKIT_CACHE=$(mktemp -d) python -m amodalkit book run --profile quick
    python benchmarks/book_wall_times.py --commit "$(git rev-parse --short HEAD)"

A later re-run of a chapter with its models in the cache records a shorter time; run this script after a run from an
empty cache, not after such a re-run. ``--results DIR`` reads another results folder (e.g. a worktree's);
``--since 2026-12-02T01:00:00Z`` counts only the chapters that finished after that time (a run stopped part way):
the others are listed as not measured and left out of the sums.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# each paper's share of the quick profile's 90 minutes (the issues' budgets), by chapter-name prefix
PAPERS = {"savos_": ("SaVos", 30), "vae_": ("Amodal-VAE", 10), "crw_": ("CRW", 15), "stem_": ("STEm-Seg", 15),
          "maskvos": ("Mask-VOS", 15), "data_worlds": ("data worlds", None)}
TOTAL_BUDGET_MIN = 90


def paper_of(chapter: str) -> str:
    for prefix, (paper, _) in PAPERS.items():
        if chapter.startswith(prefix):
            return paper
    raise ValueError(f"book_wall_times: no paper for chapter {chapter!r}; add its prefix to PAPERS")


def collect(results_dir: Path, chapters: list[str], since: str | None = None) -> dict:
    """Per chapter and per paper: wall seconds, models trained / loaded and seconds of training. Chapters that
    finished before ``since`` (an ISO time, as the results record it) are listed under ``not_measured``."""
    missing = [c for c in chapters if not (results_dir / f"{c}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{results_dir}: no results for {missing}; run the book first")
    per_chapter, per_paper, not_measured = {}, {}, {}
    for chapter in chapters:
        r = json.loads((results_dir / f"{chapter}.json").read_text())
        if since is not None and r["finished"] < since:  # the same ISO format: text order is time order
            not_measured[chapter] = r["finished"]
            continue
        row = dict(paper=paper_of(chapter), wall_time_s=r["wall_time_s"], finished=r["finished"], **r["training"])
        per_chapter[chapter] = row
        paper = per_paper.setdefault(row["paper"], dict(wall_time_s=0.0, trained=0, loaded=0, train_seconds=0.0))
        for k in ("wall_time_s", "trained", "loaded", "train_seconds"):
            paper[k] = round(paper[k] + row[k], 2)
    budgets = {paper: budget for paper, budget in PAPERS.values()}
    for paper, row in per_paper.items():
        row["budget_min"] = budgets[paper]
    total = round(sum(r["wall_time_s"] for r in per_chapter.values()), 2)
    return dict(chapters=per_chapter, papers=per_paper, total_wall_time_s=total, total_budget_min=TOTAL_BUDGET_MIN,
                not_measured=not_measured)


def main(argv=None) -> dict:
    from amodalkit.book import notebook_names
    from amodalkit.results import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--results", help="results folder (default results/<profile>)")
    parser.add_argument("--commit", required=True, help="the commit the run was made at (recorded with the times)")
    parser.add_argument("--since", help="count only chapters finished after this ISO time, e.g. 2026-12-02T01:00:00Z")
    parser.add_argument("--out", default=str(ROOT / "results" / "book_wall_times.json"))
    args = parser.parse_args(argv)
    results_dir = Path(args.results) if args.results else ROOT / "results" / args.profile
    summary = dict(profile=args.profile, commit=args.commit, **collect(results_dir, notebook_names(), args.since))
    atomic_write_json(Path(args.out), summary)
    print(f"{'paper':12} {'minutes':>8} {'budget':>7} {'trained':>8} {'loaded':>7} {'training min':>13}")
    for paper, row in summary["papers"].items():
        budget = "-" if row["budget_min"] is None else f"{row['budget_min']}"
        print(f"{paper:12} {row['wall_time_s'] / 60:8.1f} {budget:>7} {row['trained']:8d} {row['loaded']:7d} "
              f"{row['train_seconds'] / 60:13.1f}")
    print(f"{'total':12} {summary['total_wall_time_s'] / 60:8.1f} {TOTAL_BUDGET_MIN:>7}")
    if summary["not_measured"]:
        print("not measured in this run (finished earlier): " + ", ".join(summary["not_measured"]))
    return summary


if __name__ == "__main__":
    main()

"""How long does `make book` take from a fresh clone (virtual environment included)?

Clones the repository's HEAD into a temporary folder, runs `make venv` and then `make book` there (timing both), and
writes ``results/make_book_time.json`` (seconds in all and for the venv, the HTML's size, the commit and the date),
which the README's measured block shows. Run it with nothing else running beside it:

    python benchmarks/make_book_time.py
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> dict:
    from amodalkit.results import atomic_write_json

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        start = time.perf_counter()
        subprocess.run(["make", "venv"], cwd=clone, check=True)
        venv = time.perf_counter() - start
        subprocess.run(["make", "book"], cwd=clone, check=True)
        seconds = time.perf_counter() - start
        html = clone / "build" / "quick" / "_build" / "html"
        size = sum(p.stat().st_size for p in html.rglob("*") if p.is_file())
    record = dict(seconds=round(seconds, 1), venv_seconds=round(venv, 1), html_mib=round(size / 2**20, 1),
                  commit=commit, date=time.strftime("%Y-%m-%d"))
    atomic_write_json(ROOT / "results" / "make_book_time.json", record)
    print(f"make book from a fresh clone: {seconds / 60:.1f} min ({venv / 60:.1f} of it the venv); HTML "
          f"{size / 2**20:.0f} MiB")
    return record


if __name__ == "__main__":
    main()

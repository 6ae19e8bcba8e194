"""``python -m amodalkit propagate`` on a generated full-size DAVIS sequence (480 x 854): seconds per frame and peak
memory, for a short and a twice-as-long video of the same scene measured side by side (memory must not grow with the
length: frames are encoded and written one at a time, and only frame 0 and the context frames are kept).

Each run is its own process (its peak resident memory is its own). Each invocation is kept in
``results/video_propagation.json`` under its arguments (a later one with the same arguments replaces it).

    .venv/bin/python benchmarks/video_propagation.py [--frames 30 60] [--features pixels untrained]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 480, 854


def write_sequence(root: Path, n_frames: int, name: str = "bench", seed: int = 0) -> None:
    """A textured background panning slowly and two textured discs crossing it; frame 0's annotation."""
    from PIL import Image, ImageFilter

    from amodalkit.data.davis import davis_palette

    rng = np.random.default_rng(seed)
    background = np.asarray(Image.fromarray(rng.integers(0, 255, (HEIGHT // 8, (WIDTH + 4 * n_frames) // 8 + 1, 3),
                                                         dtype=np.uint8)).resize(((WIDTH + 4 * n_frames) // 8 * 8 + 8,
                                                                                  HEIGHT), Image.BILINEAR))
    textures = [np.asarray(Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).resize((160, 160)))
                for _ in range(2)]
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    frames_dir = root / "JPEGImages" / "480p" / name
    frames_dir.mkdir(parents=True)
    for t in range(n_frames):
        frame = background[:, 4 * t:4 * t + WIDTH].copy()
        ids = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        for k, (cy, cx, vy, vx) in enumerate(((200, 150, 0.5, 6.0), (300, 700, -0.8, -5.0))):
            y, x = cy + vy * t, cx + vx * t
            disc = (yy - y) ** 2 + (xx - x) ** 2 < 70 ** 2
            ty, tx = np.clip((yy[disc] - y + 80).astype(int), 0, 159), np.clip((xx[disc] - x + 80).astype(int), 0, 159)
            frame[disc] = textures[k][ty, tx]
            ids[disc] = k + 1
        Image.fromarray(frame).filter(ImageFilter.GaussianBlur(0.7)).save(frames_dir / f"{t:05d}.jpg", quality=90)
        if t == 0:
            label = Image.fromarray(ids, mode="P")
            label.putpalette(davis_palette())
            (root / "Annotations" / "480p" / name).mkdir(parents=True)
            label.save(root / "Annotations" / "480p" / name / "00000.png")


def measure(root: Path, features: str, out: Path) -> dict:
    """One propagate run in its own process: wall seconds and peak resident memory (MiB)."""
    code = ("import resource, sys; from amodalkit.__main__ import main; "
            f"rc = main(['propagate', '--davis', {str(root)!r}, '--sequence', 'bench', '--out', {str(out)!r}, "
            f"'--features', {features!r}]); "
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    env = dict(os.environ, AMODALKIT_MEASUREMENTS="1", PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    seconds = time.perf_counter() - start
    peak_kib = int(done.stdout.split("PEAK")[-1].split()[0])
    return dict(seconds=round(seconds, 2), peak_mib=round(peak_kib / 1024, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 60])
    parser.add_argument("--features", nargs="+", default=["pixels", "untrained"])
    args = parser.parse_args()
    results = {"height": HEIGHT, "width": WIDTH, "cpu_threads": os.cpu_count(), "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            write_sequence(Path(tmp) / f"davis{n}", n)
        for features in args.features:
            for n in args.frames:  # the lengths side by side, for each feature kind
                run = measure(Path(tmp) / f"davis{n}", features, Path(tmp) / f"out-{features}-{n}")
                run.update(features=features, frames=n, seconds_per_frame=round(run["seconds"] / n, 3))
                results["runs"].append(run)
                print(f"{features:>9} {n:4d} frames: {run['seconds']:7.1f} s ({run['seconds_per_frame']:.3f} s/frame, "
                      f"process start and model included), peak {run['peak_mib']:.0f} MiB", flush=True)
            runs = [r for r in results["runs"] if r["features"] == features]
            ratio = runs[-1]["peak_mib"] / runs[0]["peak_mib"]
            results.setdefault("peak_ratio_longest_to_shortest", {})[features] = round(ratio, 3)
            print(f"{features:>9}: peak memory {runs[-1]['frames']} / {runs[0]['frames']} frames = {ratio:.3f}")
    target = ROOT / "results" / "video_propagation.json"
    recorded = json.loads(target.read_text()) if target.is_file() else {}
    invocations = recorded.get("invocations", [])
    results["arguments"] = dict(frames=args.frames, features=args.features)
    invocations = [i for i in invocations if i.get("arguments") != results["arguments"]] + [results]
    target.write_text(json.dumps({"invocations": invocations}, indent=1) + "\n")
    print(f"written {target}")


if __name__ == "__main__":
    main()

"""The command line's evaluate and propagate (issue 18): toolkit CSVs on hand-made folders, errors before work."""
import re

import numpy as np
import pytest
import torch
from PIL import Image

from amodalkit.__main__ import main
from amodalkit.data.davis import davis_palette
from amodalkit.metrics import davis_f


def _png(ids, path, mode="P"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(ids, dtype=np.uint8), mode=mode)
    if mode == "P":
        image.putpalette(davis_palette())
    image.save(path)


def _square(t, h=40, w=60, side=10, speed=2):
    ids = np.zeros((h, w), dtype=np.uint8)
    ids[10:10 + side, 5 + speed * t:5 + speed * t + side] = 1
    return ids


def _davis(root, names=("a",), n_frames=5, folder="Annotations", subset="val"):
    for name in names:
        for t in range(n_frames):
            frame = np.full((40, 60, 3), 90, dtype=np.uint8)
            frame[_square(t) == 1] = (200, 40, 40)
            (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=98)
            _png(_square(t), root / folder / "480p" / name / f"{t:05d}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / f"{subset}.txt").write_text("\n".join(names) + "\n")


def test_evaluate_writes_the_toolkits_csvs_with_hand_computed_j(tmp_path, capsys):
    _davis(tmp_path / "davis")
    results = tmp_path / "results"
    # prediction: frame 0's square in every frame (frames 1..3 are scored: the square moved 2, 4, 6 px)
    for t in range(5):
        _png(_square(0), results / "a" / f"{t:05d}.png")
    stale = results / "global_results-val.csv"
    stale.write_text("J&F-Mean,J-Mean\n0.999,0.999\n")  # left by an earlier run: must not be reused
    assert main(["evaluate", "--davis", str(tmp_path / "davis"), "--results", str(results)]) == 0
    assert "recomputing" in capsys.readouterr().out
    j = [(10 - 2 * t) * 10 / ((10 + 2 * t) * 10) for t in (1, 2, 3)]  # overlap / union of two 10x10 squares
    f = [davis_f(_square(0) == 1, _square(t) == 1) for t in (1, 2, 3)]
    # 3 values: bounds round(linspace(1, 3, 5) + 1e-10) - 1 = 0, 1, 1, 2, 2: first bin [0:2], last bin [2:3]
    j_decay = np.mean(j[0:2]) - np.mean(j[2:3])
    f_decay = np.mean(f[0:2]) - np.mean(f[2:3])
    expected = [(np.mean(j) + np.mean(f)) / 2, np.mean(j), np.mean(np.array(j) > 0.5), j_decay, np.mean(f),
                np.mean(np.array(f) > 0.5), f_decay]
    lines = stale.read_text().splitlines()
    assert lines[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"
    assert lines[1] == ",".join(f"{v:.3f}" for v in expected)
    per_sequence = (results / "per-sequence_results-val.csv").read_text().splitlines()
    assert per_sequence == ["Sequence,J-Mean,F-Mean", f"a_1,{np.mean(j):.3f},{np.mean(f):.3f}"]


def test_evaluate_unsupervised_reads_its_own_annotations_and_every_frame(tmp_path):
    _davis(tmp_path / "davis", folder="Annotations_unsupervised")
    results = tmp_path / "results"
    for t in range(5):
        _png(_square(t) * 3, results / "a" / f"{t:05d}.png")  # the right object under another proposal id
    _png(np.zeros((40, 60)), results / "a" / "00000.png")  # lost in frame 0: the unsupervised task scores it
    assert main(["evaluate", "--davis", str(tmp_path / "davis"), "--results", str(results), "--task", "unsupervised"]) == 0
    row = (results / "global_results-val.csv").read_text().splitlines()[1].split(",")
    assert float(row[1]) == pytest.approx(4 / 5, abs=5e-4)  # J-Mean: J = 0 on frame 0, 1 on the other four


@pytest.mark.parametrize("case,message", [
    ("missing_png", r"results/a/00002.png is missing"),
    ("other_size", r"results/a/00001.png: \(20, 60\), but the annotation 00001.png is \(40, 60\)"),
    ("extra_object", r"object id 2, but the first annotation has 1"),
    ("no_listing", r"--set val: .*ImageSets/2017/val.txt is missing"),
    ("rgb", r"00001.png: expected an indexed \('P'\) or grey PNG"),
])
def test_evaluate_errors_name_the_file(tmp_path, capsys, case, message):
    _davis(tmp_path / "davis")
    results = tmp_path / "results"
    for t in range(5):
        _png(_square(t), results / "a" / f"{t:05d}.png")
    if case == "missing_png":
        (results / "a" / "00002.png").unlink()
    elif case == "other_size":
        _png(np.zeros((20, 60)), results / "a" / "00001.png")
    elif case == "extra_object":
        _png(_square(1) * 2, results / "a" / "00001.png")
    elif case == "no_listing":
        (tmp_path / "davis" / "ImageSets" / "2017" / "val.txt").unlink()
    elif case == "rgb":
        Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(results / "a" / "00001.png")
    assert main(["evaluate", "--davis", str(tmp_path / "davis"), "--results", str(results)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (results / "global_results-val.csv").exists()


def _still_video(root, name="still", n_frames=12, h=48, w=64):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    (root / "JPEGImages" / "480p" / name).mkdir(parents=True)
    for t in range(n_frames):
        Image.fromarray(frame).save(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", quality=100)
    ids = np.zeros((h, w), dtype=np.uint8)
    ids[8:24, 8:32], ids[30:44, 40:60] = 1, 3  # ids 1 and 3: id 2 absent, kept absent
    _png(ids, root / "Annotations" / "480p" / name / "00000.png")
    return ids


def test_propagate_on_a_still_video_copies_the_first_mask_and_evaluates_to_one(tmp_path):
    ids = _still_video(tmp_path / "davis")
    out = tmp_path / "out"
    assert main(["propagate", "--davis", str(tmp_path / "davis"), "--sequence", "still", "--out", str(out),
                 "--features", "pixels", "--radius", "3", "--topk", "1"]) == 0
    written = sorted((out / "still").glob("*.png"))
    assert [p.name for p in written] == [f"{t:05d}.png" for t in range(12)]
    for path in written:
        image = Image.open(path)
        assert image.mode == "P" and image.getpalette()[:9] == davis_palette()[:9]
    # with top-1 on identical frames every node copies itself (up to the bilinear round trip at the boundaries)
    agree = np.mean([np.mean(np.asarray(Image.open(p)) == ids) for p in written[1:]])
    assert agree > 0.95


@pytest.mark.parametrize("case,message", [
    ("gap", r"frame 00004.jpg is missing"),
    ("size", r"is 48 x 64 \(H x W\), but frame 00000.jpg is 40 x 64"),
    ("empty", r"00000.png is empty"),
    ("no_annotation", r"the first frame's annotation .*00000.png is missing"),
    ("crw_without_checkpoint", r"--features crw needs --checkpoint"),
    ("truncated_checkpoint", r"model.pt: cannot be read as a PyTorch checkpoint \(1000 bytes"),
    ("other_model", r"model.pt: expected CRW weights"),
    ("context", r"--context must be an integer >= 1, got 0"),
    ("topk", r"--topk 100 exceeds the 48 nodes"),
])
def test_propagate_errors_name_the_file_before_any_work(tmp_path, capsys, case, message):
    root = tmp_path / "davis"
    _still_video(root)
    frames, labels = root / "JPEGImages" / "480p" / "still", root / "Annotations" / "480p" / "still"
    extra = []
    if case == "gap":
        (frames / "00004.jpg").unlink()
    elif case == "size":
        for p in frames.glob("*.jpg"):
            Image.fromarray(np.zeros((40, 64, 3), dtype=np.uint8)).save(p)
    elif case == "empty":
        _png(np.zeros((48, 64)), labels / "00000.png")
    elif case == "no_annotation":
        (labels / "00000.png").unlink()
    elif case == "crw_without_checkpoint":
        extra = ["--features", "crw"]
    elif case == "context":
        extra = ["--context", "0"]
    elif case == "topk":
        extra = ["--topk", "100"]
    else:
        from amodalkit.crw import CRW

        state = CRW(width=4, dim=8).state_dict() if case == "truncated_checkpoint" else torch.nn.Linear(2, 2).state_dict()
        torch.save({"model": state}, tmp_path / "model.pt")
        if case == "truncated_checkpoint":
            (tmp_path / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes()[:1000])
        extra = ["--checkpoint", str(tmp_path / "model.pt")]
    code = main(["propagate", "--davis", str(root), "--sequence", "still", "--out", str(tmp_path / "out"), *extra])
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder


def test_propagate_reads_a_crw_checkpoint_of_any_width(tmp_path):
    from amodalkit.crw import CRW

    _still_video(tmp_path / "davis")
    torch.manual_seed(0)
    torch.save({"model": CRW(width=4, dim=8, padding="reflect").state_dict(), "method": "crw",
                "recipe": {"width": 4, "dim": 8, "padding": "reflect"}}, tmp_path / "crw.pt")
    assert main(["propagate", "--davis", str(tmp_path / "davis"), "--sequence", "still", "--out", str(tmp_path / "out"),
                 "--checkpoint", str(tmp_path / "crw.pt"), "--radius", "2"]) == 0
    assert len(list((tmp_path / "out" / "still").glob("*.png"))) == 12

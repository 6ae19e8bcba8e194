"""``python -m amodalkit train`` (issue 18): the chapters' recipes into a folder, checked before work, resumable."""
import json
import re

import numpy as np
import pytest
import torch

from amodalkit import crw
from amodalkit.__main__ import main
from amodalkit.train import read_checkpoint
from amodalkit.train_cli import frame_folder_videos


def _weights_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("argv,message", [
    (["savos", "-p", "steps", "0"], r"steps"),
    (["savos", "-p", "world", "moon"], r"world"),
    (["savos", "-p", "variant", "no_such_row"], r"variant must be one of"),
    (["stemseg", "-p", "mixing", "zz"], r"mixing must be one of"),
    (["crw", "-p", "no_such", "1"], r"unknown parameter 'no_such'"),
    (["savos", "--frames", "/nowhere"], r"--frames is for the self-supervised methods"),
    (["crw", "--frames", "/nowhere"], r"--frames /nowhere: expected videos in"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["train", *argv, "--profile", "smoke", "--out", str(out)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_interrupted_crw_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, capsys):
    args = ["train", "crw", "--profile", "smoke", "--steps", "4"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    whole = read_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    real = crw.walk_loss_on
    calls = {"n": 0}

    def interrupted(model, videos, recipe, generator):
        calls["n"] += 1
        if calls["n"] == 3:  # during step 2
            raise KeyboardInterrupt
        return real(model, videos, recipe, generator)

    monkeypatch.setattr(crw, "walk_loss_on", interrupted)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "cut" / "checkpoint.pt.partial").is_file()
    monkeypatch.setattr(crw, "walk_loss_on", real)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 2  # without --resume: refused, nothing overwritten
    assert "holds an interrupted run" in capsys.readouterr().err
    assert main([*args, "--seed", "1", "--out", str(tmp_path / "cut"), "--resume"]) == 2  # another run's folder
    assert re.search(r"written by another run \(seed: 0 there, 1 now\)", capsys.readouterr().err)
    assert main([*args, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    resumed = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert _weights_equal(resumed["model"], whole["model"])
    assert resumed["history"] == whole["history"]  # the validation cut short by the interrupt is made up
    assert resumed["method"] == "crw" and resumed["recipe"]["steps"] == 4 and resumed["profile"] == "smoke"
    log = json.loads((tmp_path / "cut" / "log.json").read_text())
    assert log["steps_done"] == 4 and len(log["history"]["loss"]) == 4 and log["seed"] == 0
    assert not (tmp_path / "cut" / "checkpoint.pt.partial").exists()


def test_train_crw_on_a_folder_of_unlabelled_videos_then_propagate_with_it(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "videos"
    for v, n in enumerate((30, 25, 9)):  # the 9-frame video is shorter than a window: skipped
        folder = root / "JPEGImages" / "480p" / f"video{v}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        for t in range(n):
            Image.fromarray(np.roll(base, 2 * t, axis=1)).save(folder / f"{t:05d}.jpg")
    train, val, key = frame_folder_videos(root, 48, 64, 12)
    assert train.shape[1:] == (12, 48, 64, 3) and len(train) + len(val) == 2 + 2 and len(val) == 1
    out = tmp_path / "model"
    assert main(["train", "crw", "--profile", "smoke", "--frames", str(root), "-p", "n_frames", "12", "--out", str(out)]) == 0
    saved = read_checkpoint(out / "checkpoint.pt", method="crw")
    assert saved["data"]["windows"] == 4 and saved["frames"] == str(root)
    # the checkpoint drives propagation on a DAVIS-layout sequence
    seq = tmp_path / "davis"
    (seq / "JPEGImages" / "480p" / "s").mkdir(parents=True)
    for t in range(4):
        Image.fromarray(np.full((40, 56, 3), 30 * t, dtype=np.uint8)).save(seq / "JPEGImages" / "480p" / "s" / f"{t:05d}.jpg")
    (seq / "Annotations" / "480p" / "s").mkdir(parents=True)
    first = np.zeros((40, 56), dtype=np.uint8)
    first[5:20, 5:30] = 1
    Image.fromarray(first, mode="P").save(seq / "Annotations" / "480p" / "s" / "00000.png")
    assert main(["propagate", "--davis", str(seq), "--sequence", "s", "--out", str(tmp_path / "masks"),
                 "--checkpoint", str(out / "checkpoint.pt"), "--radius", "2"]) == 0
    assert len(list((tmp_path / "masks" / "s").glob("*.png"))) == 4
    # Mask-VOS's phase B (pseudo masks by clustering, L_Seg) on the same unlabelled videos; phase A from the cache
    assert main(["train", "maskvos-b", "--profile", "smoke", "--frames", str(root), "-p", "n_frames", "12",
                 "--out", str(tmp_path / "mv")]) == 0
    saved = read_checkpoint(tmp_path / "mv" / "checkpoint.pt", method="maskvos")
    assert saved["data"]["windows"] == 4 and "val_pseudo_iou" not in saved["history"]


def test_a_later_stage_takes_the_earlier_one_from_the_cache(tmp_path, monkeypatch):
    from amodalkit.train import models_dir

    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path / "cache"))  # an empty model cache
    assert main(["train", "vae-stage2", "--profile", "smoke", "--out", str(tmp_path / "s2")]) == 0
    [cached] = models_dir().glob("amodal_vae-*.pt")  # stage 1 was trained into the cache, stage 2 went to --out
    assert read_checkpoint(cached)["config"]["stage"] == 1
    saved = read_checkpoint(tmp_path / "s2" / "checkpoint.pt", method="amodal_vae")
    assert saved["command"] == "vae-stage2" and len(saved["history"]["loss"]) == saved["params"]["steps2"]

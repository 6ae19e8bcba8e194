import numpy as np
import pytest

from amodalkit.metrics import (boundary_map, boundary_tolerance, davis_f, davis_j, davis_statistics, evaluate_davis)


def empty(h=10, w=12):
    return np.zeros((h, w), bool)


def test_empty_masks():
    assert davis_j(empty(), empty()) == 1.0
    assert davis_f(empty(), empty()) == 1.0
    gt = empty(); gt[3:6, 3:6] = True
    assert davis_j(empty(), gt) == 0.0
    assert davis_f(empty(), gt) == 0.0  # P = 1, R = 0
    assert davis_f(gt, empty()) == 0.0  # P = 0, R = 1


def test_one_pixel_masks():
    one = empty(); one[4, 5] = True
    # the pixel and its west, north and north-west neighbours differ from an east/south/south-east neighbour
    assert sorted(zip(*np.nonzero(boundary_map(one)))) == [(3, 4), (3, 5), (4, 4), (4, 5)]
    assert davis_j(one, one) == 1.0 and davis_f(one, one) == 1.0
    shifted = empty(); shifted[4, 6] = True
    assert davis_j(one, shifted) == 0.0
    assert davis_f(one, shifted) == 1.0  # within the 1-pixel tolerance of a 10x12 image
    far = empty(); far[0, 11] = True
    assert davis_f(one, far) == 0.0


def test_boundary_at_the_image_border():
    mask = np.zeros((6, 6), bool)
    mask[:, 5] = True  # the last column
    expected = np.zeros((6, 6), bool)
    expected[:, 4] = True  # its west neighbours differ from their east neighbour; the last column has no south change
    assert np.array_equal(boundary_map(mask), expected)
    corner = np.zeros((6, 6), bool)
    corner[5, 5] = True  # the bottom-right pixel itself is never a boundary
    assert not boundary_map(corner)[5, 5] and boundary_map(corner)[5, 4] and boundary_map(corner)[4, 5]


def test_tolerance():
    assert boundary_tolerance(480, 854) == 8
    assert boundary_tolerance(10, 12) == 1
    assert boundary_tolerance(100, 100, bound_th=3) == 3


def test_f_by_hand():
    gt = np.zeros((40, 40), bool); gt[10:30, 10:30] = True
    pred = np.zeros((40, 40), bool); pred[10:30, 10:20] = True  # the left half: its right edge is 10 px off
    # tolerance ceil(0.008 * 56.6) = 1 px; boundary of gt: 4 sides (80 px incl. the pixels outside the top-left)
    bg, bp = boundary_map(gt), boundary_map(pred)
    from scipy import ndimage
    disk = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    precision = (bp & ndimage.binary_dilation(bg, disk)).sum() / bp.sum()
    recall = (bg & ndimage.binary_dilation(bp, disk)).sum() / bg.sum()
    assert davis_f(pred, gt) == pytest.approx(2 * precision * recall / (precision + recall))
    assert 0.5 < davis_f(pred, gt) < 0.9


def test_statistics_and_decay_bins():
    stats = davis_statistics([0.0, 1, 1, 0.9, 0.5, 0.5, 0.3, 0.0, 0.0, 0.0])
    inner = np.array([1, 1, 0.9, 0.5, 0.5, 0.3, 0.0, 0.0])
    assert stats.mean == pytest.approx(inner.mean())
    assert stats.recall == pytest.approx(3 / 8)
    # bins at round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]: first [0:3], last [5:8]
    assert stats.decay == pytest.approx(np.mean(inner[0:3]) - np.mean(inner[5:8]))
    assert davis_statistics([0, 1, 1, 1, 0]).decay == 0.0
    with pytest.raises(ValueError, match="at least 3 frames"):
        davis_statistics([1.0, 1.0])


def test_evaluate_davis_on_arrays_and_folders(tmp_path):
    from amodalkit.data import load_world
    from amodalkit.data.davis import read_davis, write_davis

    clips = list(load_world("vos", "test", seed=0, n_clips=2))
    write_davis(tmp_path / "gt", clips, "val")
    gt = {s.name: s.masks for s in read_davis(tmp_path / "gt", "val")}
    perfect = evaluate_davis(gt, gt)
    assert perfect.overall["J&F"] == 1.0 and perfect.overall["J-Decay"] == 0.0
    # predicting the first frame for every frame: worse, and the folder route gives the same numbers
    frozen = {name: np.repeat(ids[:1], len(ids), axis=0) for name, ids in gt.items()}
    result = evaluate_davis(frozen, tmp_path / "gt")
    assert result.overall["J&F"] < 1.0
    from PIL import Image

    from amodalkit.data.davis import davis_palette
    for name, ids in frozen.items():
        (tmp_path / "pred" / name).mkdir(parents=True)
        for t, frame in enumerate(ids):
            png = Image.fromarray(frame, mode="P")
            png.putpalette(davis_palette())  # without a palette PIL merges the identical default colours
            png.save(tmp_path / "pred" / name / f"{t:05d}.png")
    assert evaluate_davis(tmp_path / "pred", tmp_path / "gt").overall == pytest.approx(result.overall)
    j_means = [o["J"].mean for o in result.objects.values()]
    f_means = [o["F"].mean for o in result.objects.values()]
    assert result.overall["J&F"] == pytest.approx((np.mean(j_means) + np.mean(f_means)) / 2)
    with pytest.raises(ValueError, match="no predictions for sequences"):
        evaluate_davis({}, gt)


def test_bad_masks_are_named():
    with pytest.raises(ValueError, match="davis_j: pred and gt must be boolean"):
        davis_j(np.zeros((3, 3)), np.zeros((3, 4)))

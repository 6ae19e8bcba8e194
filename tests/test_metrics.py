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


# ---------------------------------------------------------------- unsupervised DAVIS and MOTS (STEm-Seg)
from amodalkit.metrics import evaluate_davis_unsupervised, mots_metrics, toolkit_statistics  # noqa: E402


def _two_objects(n_frames=6, h=24, w=32):
    gt = np.zeros((n_frames, h, w), dtype=np.int64)
    for t in range(n_frames):
        gt[t, 2:10, 2 + t:10 + t] = 1
        gt[t, 14:22, 20 - t:28 - t] = 2
    return gt


def test_unsupervised_davis_is_perfect_for_permuted_ids_and_equals_the_semi_supervised_numbers_when_aligned():
    gt = _two_objects()
    permuted = np.where(gt == 1, 2, np.where(gt == 2, 1, 0))
    assert evaluate_davis_unsupervised({"s": permuted}, {"s": gt}).overall["J&F"] == pytest.approx(1.0)
    noisy = gt.copy()
    noisy[:, 2:4, :] = 0  # damage both objects
    unsup = evaluate_davis_unsupervised({"s": noisy}, {"s": gt}).overall
    semi = evaluate_davis({"s": noisy}, {"s": gt}).overall
    for key in ("J&F", "J-Mean", "J-Recall", "J-Decay", "F-Mean"):
        assert unsup[key] == pytest.approx(semi[key])


def test_unsupervised_davis_assigns_proposals_by_score_whatever_their_ids():
    gt = _two_objects()
    prop = np.where(gt == 1, 3, np.where(gt == 2, 2, 0))
    prop[:, 0:2, 12:20] = 1  # a junk proposal, first in id order
    result = evaluate_davis_unsupervised({"s": prop}, {"s": gt})
    assert result.overall["J&F"] == pytest.approx(1.0)


def test_unsupervised_davis_pads_missing_proposals_and_limits_them_to_twenty():
    gt = _two_objects()
    only_first = np.where(gt == 1, 1, 0)
    result = evaluate_davis_unsupervised({"s": only_first}, {"s": gt})
    assert result.objects["s", 1]["J"].mean == pytest.approx(1.0)
    assert result.objects["s", 2]["J"].mean == pytest.approx(0.0)  # an empty proposal against a present object
    assert result.overall["J-Mean"] == pytest.approx(0.5)
    many = gt.copy()
    many[2, 0, 0] = 21
    with pytest.raises(ValueError, match="20 proposals"):
        evaluate_davis_unsupervised({"s": many}, {"s": gt})
    many[2, 0, 0] = 0
    many[0, 0, 0] = 21  # the unsupervised toolkit reads the first and last frames too
    with pytest.raises(ValueError, match="20 proposals"):
        evaluate_davis_unsupervised({"s": many}, {"s": gt})


def test_unsupervised_davis_scores_every_frame_and_semi_supervised_drops_the_first_and_last():
    gt = _two_objects(n_frames=6)
    wrong_ends = gt.copy()
    wrong_ends[0] = wrong_ends[-1] = 0  # both objects lost in the first and last frames only
    semi = evaluate_davis({"s": wrong_ends}, {"s": gt}).overall
    unsup = evaluate_davis_unsupervised({"s": wrong_ends}, {"s": gt}).overall
    assert semi["J-Mean"] == pytest.approx(1.0)
    assert unsup["J-Mean"] == pytest.approx(4 / 6)  # J = 0 on 2 of 6 frames
    assert unsup["J-Recall"] == pytest.approx(4 / 6)
    # decay bins of 6 values: [0:2], ..., [4:6]: first bin (0, 1) minus last bin (1, 0) = 0
    assert unsup["J-Decay"] == pytest.approx(0.0)


def test_objects_are_ids_up_to_the_first_frames_maximum_as_in_the_toolkit():
    gt = _two_objects(n_frames=5)
    gt[gt == 2] = 3  # ids 1 and 3: id 2 is an object too, empty in ground truth
    result = evaluate_davis({"s": gt}, {"s": gt})
    assert sorted(k for _, k in result.objects) == [1, 2, 3]
    assert result.objects["s", 2]["J"].mean == 1.0  # empty against empty
    lost = gt.copy()
    lost[lost == 3] = 0  # predicted ids may stop short of the maximum: padded with empty masks
    assert evaluate_davis({"s": lost}, {"s": gt}).objects["s", 3]["J"].mean == 0.0
    extra = gt.copy()
    extra[2, 0, 0] = 4
    with pytest.raises(ValueError, match="object id 4, but the first annotation has 3"):
        evaluate_davis({"s": extra}, {"s": gt})


def test_toolkit_statistics_keep_the_uint8_bin_bounds_of_the_toolkit():
    short = toolkit_statistics(np.linspace(1, 0, 100))
    ids = np.round(np.linspace(1, 100, 5) + 1e-10).astype(int) - 1  # 0, 25, 50, 74, 99 (no wrap)
    values = np.linspace(1, 0, 100)
    assert short.decay == pytest.approx(values[ids[0]:ids[1] + 1].mean() - values[ids[3]:ids[4] + 1].mean())
    # 300 values: the last bound 299 wraps to 43 in uint8, the last bin [224:44] is empty, the decay NaN
    assert np.isnan(toolkit_statistics(np.ones(300)).decay)
    assert toolkit_statistics(np.ones(300)).mean == 1.0


def test_mots_metrics_on_hand_made_tracks():
    gt = _two_objects(n_frames=4)
    perfect = mots_metrics(gt, gt)
    assert perfect["sMOTSA"] == pytest.approx(1.0) and perfect["IDS"] == 0 and perfect["n_gt"] == 8
    switched = gt.copy()
    switched[2:][switched[2:] == 1] = 5  # object 1 changes track at frame 2: one ID switch
    m = mots_metrics(switched, gt)
    assert m["IDS"] == 1 and m["TP"] == 8 and m["sMOTSA"] == pytest.approx((8 - 1) / 8)
    fp = gt.copy()
    fp[0, 0, 30:] = 7  # a false positive in frame 0
    assert mots_metrics(fp, gt)["FP"] == 1 and mots_metrics(fp, gt)["MOTSA"] == pytest.approx(7 / 8)
    shrunk = gt.copy()
    shrunk[0][(gt[0] == 1) & (np.arange(32)[None, :] >= 4)] = 0  # object 1 in frame 0 keeps 2 of 8 columns: IoU 0.25
    m = mots_metrics(shrunk, gt)
    assert (m["TP"], m["FN"], m["FP"]) == (7, 1, 1)  # no match at IoU <= 0.5: a miss and a false positive
    assert m["sMOTSA"] == pytest.approx((7 - 1 - 0) / 8)

import numpy as np
import pytest

from amodalkit.data import load_world
from amodalkit.data.flow import end_point_error, estimate_flow, flow_to_rgb


def test_dis_recovers_a_translation():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(70, 90, 3), dtype=np.uint8)
    import cv2
    base = cv2.GaussianBlur(base, (5, 5), 1.0)
    frames = np.stack([base[5:69, 5:85], base[4:68, 3:83]])  # content moves +2 px in x, +1 in y
    forward, backward = estimate_flow(frames)
    assert forward.shape == (2, 2, 64, 80) and not forward[1].any() and not backward[0].any()
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.allclose(forward[0][inner].mean(axis=(1, 2)), [2, 1], atol=0.1)
    assert np.allclose(backward[1][inner].mean(axis=(1, 2)), [-2, -1], atol=0.1)


def test_end_point_error_by_hand():
    a = np.zeros((2, 2, 2)); b = np.zeros((2, 2, 2))
    b[0, 0, 0], b[1, 0, 0] = 3, 4  # one pixel off by 5
    assert end_point_error(a, b) == pytest.approx(5 / 4)
    mask = np.array([[True, False], [False, False]])
    assert end_point_error(a, b, mask) == pytest.approx(5)


def test_dis_is_close_to_ground_truth_on_a_world():
    """On fishbowl, the world whose DIS flow the SaVos chapters use: end-point error 0.32 / 0.48 px (seeds 0 / 1).
    (The video-like vos of issue 14 is harder for DIS on purpose: 0.77 / 1.37 px, against 0.13 / 0.33 for its earlier
    flat look.)"""
    clip = load_world("fishbowl", "test", seed=0, n_clips=1)[0]
    forward, _ = estimate_flow(clip.frames)
    assert end_point_error(forward[:-1], clip.flow_fwd[:-1]) < 0.6


def test_bad_frames_and_colour_map():
    with pytest.raises(ValueError, match=r"frames must be \(T, H, W, 3\) uint8"):
        estimate_flow(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match="at least 2 frames"):
        estimate_flow(np.zeros((1, 8, 8, 3), np.uint8))
    rgb = flow_to_rgb(np.stack([np.ones((4, 4)), np.zeros((4, 4))]))
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert (flow_to_rgb(np.zeros((2, 4, 4))) == 255).all()  # still = white

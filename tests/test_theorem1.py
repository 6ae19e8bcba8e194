"""Theorem 1 on small rigid clips: the free-mask fit recovers what the theorem says, and no more."""
import numpy as np
import pytest

from amodalkit import savos
from amodalkit.data import in_view, load_world, never_background_comoving, never_visible

WORLD = dict(height=40, width=40, n_frames=8)


def fit(clip, init, **kwargs):
    """Fit free masks and threshold them at 0.5.

    The exact comparisons below are robust across CPUs because the fit decides every pixel it speaks about: each
    in-view probability ends within 0.1 of 0 or 1 (measured: within 0.022), far beyond the 1e-6 that another
    floating-point path moves it. The assertion keeps that margin checked.
    """
    visible, weight, flow = savos.theorem_inputs(clip)
    result = savos.fit_free_masks(visible, weight, flow, init_logit=init, steps=400, **kwargs)
    view = np.stack([in_view(clip, k) for k in range(clip.n_objects)])
    assert np.abs(result.probs.numpy() - 0.5)[view].min() > 0.4, "a pixel is left undecided near the 0.5 threshold"
    return result, savos.free_fit_prediction(clip, result.probs)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_recovery_under_assumptions_1_to_4(seed):
    clip = load_world("rigid", "test", seed=seed, n_clips=1, **WORLD)[0]
    for init in (-4.0, 4.0):
        result, _ = fit(clip, init)
        assert savos.free_fit_scores(clip, result.probs)["iou"][clip.evaluated].min() >= 0.99


def test_mask_loss_alone_leaves_occluded_pixels_at_their_start():
    clip = load_world("rigid", "test", seed=0, n_clips=1, **WORLD)[0]
    occluded = (clip.amodal & ~clip.visible).transpose(1, 0, 2, 3)
    _, low = fit(clip, -4.0, use_consistency=False)
    _, high = fit(clip, 4.0, use_consistency=False)
    assert (high & occluded).sum() == occluded.sum()  # all claimed from the all-object start
    assert (low & occluded).sum() < 0.5 * occluded.sum()  # mostly missed from the all-background start


def test_broken_assumption_3_leaves_exactly_the_never_visible_pixels_open():
    clip = load_world("rigid", "test", seed=0, n_clips=1, break_visibility=True, **WORLD)[0]
    ev = clip.evaluated
    _, low = fit(clip, -4.0)
    _, high = fit(clip, 4.0)
    theory = np.stack([never_visible(clip, k, first_frame=1) for k in ev])
    assert theory.any()
    assert np.array_equal(low[ev] != high[ev], theory)


def test_broken_assumption_4_lets_the_glued_exterior_be_claimed():
    clip = load_world("rigid", "test", seed=0, n_clips=1, break_exterior=True, **WORLD)[0]
    ev = clip.evaluated
    amodal = clip.amodal.transpose(1, 0, 2, 3)[ev]
    result_high, high = fit(clip, 4.0)
    assert savos.free_fit_scores(clip, result_high.probs)["recall"][ev].min() >= 0.99  # still a superset
    theory = np.stack([never_background_comoving(clip, k, first_frame=1) for k in ev])
    assert np.array_equal(high[ev] & ~amodal, theory)


def test_soft_iou_consistency_stalls_in_a_strict_superset():
    clip = load_world("rigid", "test", seed=0, n_clips=1, **WORLD)[0]
    result, _ = fit(clip, -4.0, distance="soft_iou")
    scores = savos.free_fit_scores(clip, result.probs)
    assert scores["recall"][clip.evaluated].min() >= 0.99
    assert scores["extra"][clip.evaluated].sum() > 0

import pytest
import torch

from amodalkit.ops import translation_flow
from amodalkit.savos import complete_loss, consistency_loss, mask_loss, visibility_weight, warp_sequence


def two_objects():
    """(T=1, K=2, 4, 4) visible masks: object 0 on the left columns, object 1 on the top-right block."""
    visible = torch.zeros(1, 2, 4, 4)
    visible[0, 0, :, :2] = 1
    visible[0, 1, :2, 2:] = 1
    return visible


def test_visibility_weight_by_hand():
    w = visibility_weight(two_objects())
    # object 0: everything but object 1's pixels; object 1: everything but object 0's pixels
    expected0 = torch.ones(4, 4); expected0[:2, 2:] = 0
    expected1 = torch.ones(4, 4); expected1[:, :2] = 0
    assert torch.equal(w[0, 0], expected0) and torch.equal(w[0, 1], expected1)


def test_visibility_weight_rejects_overlap():
    v = two_objects(); v[0, 1, 0, 0] = 1
    with pytest.raises(ValueError, match="overlap"):
        visibility_weight(v)


def test_mask_loss_is_zero_exactly_when_eq9_holds():
    visible = two_objects()
    weight = visibility_weight(visible)
    v0, w0 = visible[:, 0:1], weight[:, 0:1]  # object 0, shaped (B=1, T'=1, H, W)
    pred = v0.clone()
    pred[0, 0, :2, 2:] = torch.rand(2, 2)  # arbitrary on the other object's visible pixels
    assert mask_loss(pred, v0, w0).item() == 0.0
    on_background = pred.clone(); on_background[0, 0, 3, 3] = 0.3
    on_own = pred.clone(); on_own[0, 0, 0, 0] = 0.7
    assert mask_loss(on_background, v0, w0).item() == pytest.approx(-torch.log(torch.tensor(0.7)).item(), rel=1e-5)
    assert mask_loss(on_own, v0, w0).item() == pytest.approx(-torch.log(torch.tensor(0.7)).item(), rel=1e-5)


def test_consistency_loss_zero_for_rigidly_moving_mask_and_positive_otherwise():
    masks = torch.zeros(1, 3, 8, 8)
    for t in range(3):
        masks[0, t, 2:5, 1 + t:4 + t] = 1  # a 3x3 square moving right by 1 px per frame
    flow = translation_flow(torch.tensor([[1.0, 0.0]]), 8, 8)[:, None].expand(1, 2, 2, 8, 8)
    warped = warp_sequence(masks, flow)
    for distance in ("soft_iou", "l2"):
        assert consistency_loss(warped, masks, distance=distance).item() == pytest.approx(0.0, abs=1e-7)
    wrong = masks.clone(); wrong[0, 2] = masks[0, 1]  # the last frame does not move
    # soft IoU of two 3x3 squares shifted by one column: 6 / 12
    assert consistency_loss(warp_sequence(wrong, flow), wrong).item() == pytest.approx(0.5)
    assert consistency_loss(warp_sequence(wrong, flow), wrong, distance="l2").item() == pytest.approx(6.0)


def test_release_pair_weighting_by_hand_on_four_frames():
    # 1 x 4 masks; pair j compares pred_next[j] (frame j warped) with pred[j + 1]
    pred = torch.tensor([[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)[None, :, None]
    pred_next = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.float32)[None, :, None]
    d = [0.5, 0.75, 0.0]  # 1 - IoU: 1/2, 1/4, 1
    assert consistency_loss(pred_next, pred).item() == pytest.approx(sum(d))
    # the release: running = running + d_j * count_j; total = total + running, so pair j counts T-1-j times
    assert consistency_loss(pred_next, pred, pair_weighting="release").item() == pytest.approx(3 * d[0] + 2 * d[1] + d[2])
    valid = torch.tensor([1.0, 0.0, 1.0])  # the middle pair's frame is padding (count 0)
    assert consistency_loss(pred_next, pred, pair_weighting="release", pair_valid=valid).item() == pytest.approx(3 * d[0])
    with pytest.raises(ValueError, match="pair_weighting"):
        consistency_loss(pred_next, pred, pair_weighting="cumulative")


def test_fused_consistency_runs_forward_and_time_flipped_on_the_fused_masks():
    from amodalkit.savos import Direction, Prediction, fused_consistency

    fused = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float32)[None, :, None]  # (1, 3, 1, 3)
    zero_flow = torch.zeros(1, 3, 2, 1, 3)
    boxes = torch.tensor([0.0, 0.0, 3.0, 1.0]).expand(1, 3, 4)
    pass_ = Direction(fused, fused, zero_flow, torch.zeros(1, 3, 4))
    # identity warps: forward pairs (0,1), (1,2): 1 - IoU = 1/2, 2/3; time-flipped pairs (2,1), (1,0): 2/3, 1/2
    both = Prediction(fused, torch.ones(3, dtype=torch.bool), None, pass_, pass_, fused)
    assert fused_consistency(both, boxes).item() == pytest.approx((2 * 0.5 + 2 / 3) + (2 * 2 / 3 + 0.5), abs=1e-5)
    # forward pass only: frame 0 has no prediction, so only the pair (1, 2) counts, and there is no flipped term
    forward_only = Prediction(fused, torch.tensor([False, True, True]), None, pass_, None, fused)
    assert fused_consistency(forward_only, boxes).item() == pytest.approx(2 / 3, abs=1e-5)


def test_complete_loss_by_hand():
    # T = 3, identity flow: L_complete averages the weighted BCE over the pairs (0,1), (0,2), (1,2)
    pred = torch.full((1, 3, 1, 1), 0.5)
    pred[0, 1] = 0.8
    visible = torch.tensor([0.0, 1.0, 1.0]).reshape(1, 3, 1, 1)
    weight = torch.ones(1, 3, 1, 1)
    flow = torch.zeros(1, 2, 2, 1, 1)
    ln = torch.log
    expected = (-ln(torch.tensor(0.5)) - ln(torch.tensor(0.5)) - ln(torch.tensor(0.8))) / 3
    assert complete_loss(pred, flow, visible, weight).item() == pytest.approx(expected.item(), rel=1e-6)


def test_losses_are_zero_on_ground_truth_of_a_rigid_clip():
    from amodalkit.data import load_world
    from amodalkit.savos import theorem_inputs

    clip = load_world("rigid", "test", seed=3, n_clips=1)[0]
    visible, weight, flow = theorem_inputs(clip)
    amodal = torch.from_numpy(clip.amodal).permute(1, 0, 2, 3).float()
    warped = warp_sequence(amodal, flow)
    # zero up to grid_sample's float32 rounding of integer shifts
    assert mask_loss(warped, visible[:, 1:], weight[:, 1:]).item() < 1e-4
    assert consistency_loss(warped, amodal).item() < 1e-6
    assert complete_loss(amodal, flow, visible, weight).item() < 1e-4

import pytest
import torch

from amodalkit.ops import binary_iou, soft_iou, translation_flow, warp


def test_zero_flow_is_identity():
    # grid_sample's coordinate normalisation rounds in float32: equal up to ~1e-7
    image = torch.rand(2, 3, 7, 9)
    assert torch.allclose(warp(image, torch.zeros(2, 2, 7, 9)), image, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 2), (-2, 1), (3, -1)])
def test_integer_shift_matches_hand_computed(dx, dy):
    image = torch.arange(8 * 10, dtype=torch.float32).reshape(1, 1, 8, 10)
    flow = translation_flow(torch.tensor([[float(dx), float(dy)]]), 8, 10)
    out = warp(image, flow)[0, 0]
    # output(y, x) = image(y - dy, x - dx), with the border repeated outside the image
    for y in range(8):
        for x in range(10):
            sy, sx = min(max(y - dy, 0), 7), min(max(x - dx, 0), 9)
            assert out[y, x].item() == pytest.approx(image[0, 0, sy, sx].item(), abs=1e-4)


def test_half_pixel_shift_averages_neighbours():
    image = torch.zeros(1, 1, 1, 4)
    image[0, 0, 0, 1] = 1.0
    out = warp(image, translation_flow(torch.tensor([[0.5, 0.0]]), 1, 4))
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.0, 0.5, 0.5, 0.0]))


def test_warp_rejects_mismatched_flow():
    with pytest.raises(ValueError, match="flow must be"):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 5))


def test_soft_iou_equals_iou_on_binary_masks():
    a = torch.zeros(5, 5); b = torch.zeros(5, 5)
    a[:3, :3] = 1; b[1:4, 1:4] = 1  # intersection 4, union 14
    assert soft_iou(a, b).item() == pytest.approx(4 / 14)
    assert binary_iou(a, b).item() == pytest.approx(4 / 14, abs=1e-6)
    assert binary_iou(torch.zeros(3, 3), torch.zeros(3, 3)).item() == 1.0

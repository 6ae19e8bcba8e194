"""Self-Deocclusion's PCNet-M: training pairs by hand, the network's shapes, completion in the image."""
import pytest
import torch

from amodalkit import deocclusion as de


def _squares(n=6, size=48):
    masks = torch.zeros(n, size, size)
    masks[:, 8:24, 8:24] = 1  # its context box is [0, 32) x [0, 32): crops of size 32 are exact slices
    return masks


def test_pairs_cut_in_front_and_keep_behind():
    masks = _squares()
    pool = torch.zeros(3, 48, 48)
    pool[:, 0:8, 0:8] = 1
    g = torch.Generator().manual_seed(1)
    # enlarge 4 makes the release's side sqrt(16 * 16 * 4) = 32: without jitter the crops are exact slices
    inputs, targets, eraser = de.deocclusion_pairs(masks, pool, g, p_behind=0.0, size=32, enlarge=4.0, jitter=False)
    assert inputs.shape == (6, 2, 32, 32) and targets.shape == eraser.shape == (6, 1, 32, 32)
    assert torch.allclose(targets[:, 0], masks[:, 0:32, 0:32])
    assert torch.equal(inputs[:, 1:], eraser)
    assert torch.allclose(inputs[:, 0], targets[:, 0] * (1 - inputs[:, 1]), atol=1e-6)  # A minus B
    assert (inputs[:, 0].sum((1, 2)) < targets[:, 0].sum((1, 2))).all()  # B always hides part of A here
    pool[:, 0:20, 0:20] = 1  # larger than A: part of it lies outside A wherever it is laid
    inputs, targets, eraser = de.deocclusion_pairs(masks, pool, torch.Generator().manual_seed(1), p_behind=1.0,
                                                   size=32, enlarge=4.0, jitter=False)
    assert torch.equal(inputs[:, 0], targets[:, 0])  # B behind: the input is A itself
    assert (eraser * targets).sum() < 1e-3 and eraser.sum() > 1  # and the eraser is cut by A (the release)


def test_context_boxes_follow_the_release_formula_and_jitter():
    masks = torch.zeros(2, 40, 40)
    masks[0, 10:14, 5:15] = 1  # w 10, h 4: side max(sqrt(3 * 40), 11, 4.4) = 11
    masks[1, 5:25, 5:25] = 1  # w = h = 20: side sqrt(3) * 20
    box = de.context_boxes(masks)
    side = box[:, 2] - box[:, 0]
    assert torch.allclose(side, torch.tensor([11.0, 20 * 3 ** 0.5])) and torch.allclose(side, box[:, 3] - box[:, 1])
    assert torch.allclose((box[:, :2] + box[:, 2:]) / 2, torch.tensor([[10.0, 12.0], [15.0, 15.0]]))
    jittered = torch.stack([de.context_boxes(masks, generator=torch.Generator().manual_seed(i)) for i in range(200)])
    j_side = jittered[..., 2] - jittered[..., 0]
    shift = (jittered[..., :2] + jittered[..., 2:]) / 2 - (box[:, :2] + box[:, 2:]) / 2
    assert (j_side >= side / 1.2 - 1e-4).all() and (j_side <= side / 0.8 + 1e-4).all()
    assert (shift.abs() <= 0.2 * side[None, :, None] + 1e-4).all() and shift.abs().max() > 0.1 * side.min()


def test_release_threshold_takes_the_probability_as_it_is():
    probs = torch.tensor([[[0.1, 0.2, 0.21, 0.9]]])
    assert de.amodal_masks(probs).tolist() == [[[False, False, True, True]]]
    logits, target = torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2)
    eraser = torch.tensor([[[[1.0, 0.0]]]])  # weights 5 and 1 over 2 pixels: (5 + 1) log 2 / 2
    assert float(de.deocclusion_loss(logits, target, eraser)) == pytest.approx(3 * 0.6931471805599453, rel=1e-6)


def test_network_shapes_and_bad_size():
    model = de.PCNetM(width=4)
    assert model(torch.rand(2, 2, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.rand(1, 2, 30, 30))


def test_complete_pastes_into_the_context_box():
    class Everywhere(torch.nn.Module):  # predicts "object" in the whole crop
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.full_like(x[:, :1], 20.0)

    visible = _squares(1)
    probs = de.complete(Everywhere(), visible, torch.zeros_like(visible), size=32, enlarge=4.0)
    assert probs.shape == (1, 48, 48)
    assert (probs[0, :32, :32] > 0.99).all() and (probs[0, 32:, :] == 0).all() and (probs[0, :, 32:] == 0).all()

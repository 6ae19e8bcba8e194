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
    inputs, targets = de.deocclusion_pairs(masks, pool, g, p_behind=0.0, size=32)
    assert inputs.shape == (6, 2, 32, 32) and targets.shape == (6, 1, 32, 32)
    assert torch.allclose(targets[:, 0], masks[:, 0:32, 0:32])
    assert torch.allclose(inputs[:, 0], targets[:, 0] * (1 - inputs[:, 1]), atol=1e-6)  # A minus B
    assert (inputs[:, 0].sum((1, 2)) < targets[:, 0].sum((1, 2))).all()  # B always hides part of A here
    inputs, targets = de.deocclusion_pairs(masks, pool, torch.Generator().manual_seed(1), p_behind=1.0, size=32)
    assert torch.equal(inputs[:, 0], targets[:, 0])  # B behind: the input is A itself


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
    probs = de.complete(Everywhere(), visible, torch.zeros_like(visible), size=32)
    assert probs.shape == (1, 48, 48)
    assert (probs[0, :32, :32] > 0.99).all() and (probs[0, 32:, :] == 0).all() and (probs[0, :, 32:] == 0).all()

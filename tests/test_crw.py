import math

import pytest
import torch

from amodalkit.crw import contrastive_objective, lambda_u_autograd, lambda_u_closed_form


def test_lambda_u_by_hand():
    q = torch.tensor([1.0, 0.0], dtype=torch.float64)
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    others = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # u.q = 1, v.q = 0; two identical negatives
    expected = 1 - 3 * math.e / (3 * math.e + 1)
    assert lambda_u_closed_form(q, u, 2, others).item() == pytest.approx(expected, rel=1e-12)
    assert lambda_u_autograd(q, u, 2, others).item() == pytest.approx(expected, rel=1e-9)


def test_objective_by_hand_and_vanishing_gradient_without_true_negatives():
    q = torch.tensor([0.5, -1.0], dtype=torch.float64)
    u = torch.tensor([2.0, 1.0], dtype=torch.float64)
    v = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    expected = 0.0 - math.log(math.exp(0.0) + math.exp(-0.5))
    assert contrastive_objective(q, u, v).item() == pytest.approx(expected)
    # only copies of the positive as negatives: the gradient (and lambda_u) is exactly zero
    assert abs(lambda_u_autograd(q, u, 4, torch.zeros(0, 2, dtype=torch.float64)).item()) < 1e-12
    assert lambda_u_closed_form(q, u, 4, torch.zeros(0, 2, dtype=torch.float64)).item() == 0.0


def test_encoder_has_output_stride_8_and_res3_res4_widths():
    from amodalkit.crw import ResNet18Stride8

    out = ResNet18Stride8(width=8)(torch.randn(2, 3, 64, 96))
    assert out["res3"].shape == (2, 32, 8, 12) and out["res4"].shape == (2, 64, 8, 12)
    assert ResNet18Stride8()(torch.randn(1, 3, 32, 32))["res4"].shape == (1, 512, 4, 4)  # the paper's widths


def test_transitions_are_row_stochastic_and_edge_dropout_removes_edges():
    from amodalkit.crw import transitions

    a = torch.nn.functional.normalize(torch.randn(2, 6, 8), dim=-1)
    p = transitions(a, a, temperature=0.1)
    assert torch.allclose(p.sum(-1), torch.ones(2, 6))
    dropped = transitions(a, a, temperature=0.1, edge_dropout=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dropped.sum(-1), torch.ones(2, 6)) and (dropped == 0).float().mean() > 0.3


def test_walk_loss_zero_when_nodes_are_tracked_and_log_n_when_uniform():
    from amodalkit.crw import walk_loss

    nodes = torch.nn.functional.normalize(torch.randn(2, 1, 10, 16), dim=-1).expand(-1, 5, -1, -1).contiguous()
    assert walk_loss(nodes, temperature=0.01).item() < 1e-6  # every node walks back to itself
    assert walk_loss(nodes, temperature=1e6).item() == pytest.approx(math.log(10), abs=1e-4)  # uniform walks
    shuffled = nodes.clone()
    shuffled[:, 2] = shuffled[:, 2, torch.randperm(10)]  # a permutation in the middle is still followed back
    assert walk_loss(shuffled, temperature=0.01).item() < 1e-6
    trainable = torch.randn(1, 4, 6, 8, requires_grad=True)
    walk_loss(torch.nn.functional.normalize(trainable, dim=-1), skip_shortest=False).backward()
    assert trainable.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="need at least 3 frames"):
        walk_loss(nodes[:, :2])

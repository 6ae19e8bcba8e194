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

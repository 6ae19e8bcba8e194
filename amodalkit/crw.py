"""CRW (Jabri et al., NeurIPS 2020): the contrastive objective and its label-noise analysis (App. A).

The encoder, the palindrome walk loss and training come with the CRW chapter; this module starts
with App. A: the gradient of the contrastive objective with respect to the query when some
negatives are identical to the positive.

For a query q, a positive u and negatives V (temperature 1, as in the appendix)

    L(q, u, V) = u.q - log(exp(u.q) + sum_v exp(v.q)),

and with |V-| negatives identical to u the gradient is lambda_u u - sum_{v in V+} (exp(v.q) / Z) v with
lambda_u = 1 - (1 + |V-|) exp(u.q) / Z >= 0: identical negatives can shrink the positive's pull to
zero, never reverse it.
"""
from __future__ import annotations

import torch


def contrastive_objective(q: torch.Tensor, u: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """L(q, u, V) = u.q - log(exp(u.q) + sum_v exp(v.q)) for q, u (d,) and negatives (n, d)."""
    logits = torch.cat([(u @ q)[None], negatives @ q])
    return u @ q - torch.logsumexp(logits, dim=0)


def lambda_u_closed_form(q: torch.Tensor, u: torch.Tensor, n_identical: int, others: torch.Tensor) -> torch.Tensor:
    """The appendix's lambda_u = 1 - (1 + |V-|) exp(u.q) / Z, written as sum_{V+} exp(v.q) / Z (exactly >= 0 in floating point)."""
    s_u = u @ q
    s_v = others @ q
    shift = torch.maximum(s_u, s_v.max()) if len(s_v) else s_u
    positives_mass = (1 + n_identical) * torch.exp(s_u - shift)
    others_mass = torch.exp(s_v - shift).sum()
    return others_mass / (positives_mass + others_mass)


def lambda_u_autograd(q: torch.Tensor, u: torch.Tensor, n_identical: int, others: torch.Tensor) -> torch.Tensor:
    """lambda_u read off the autograd gradient of the objective with respect to q.

    The gradient is lambda_u u minus a combination of the other negatives; solving it by least squares
    on the basis [u, others] (independent for d > 1 + |V+|) recovers lambda_u.
    """
    q = q.detach().clone().requires_grad_(True)
    negatives = torch.cat([u.expand(n_identical, -1), others])
    (grad,) = torch.autograd.grad(contrastive_objective(q, u, negatives), q)
    basis = torch.cat([u[None], others]).T  # (d, 1 + |V+|)
    coefficients = torch.linalg.lstsq(basis, grad[:, None]).solution[:, 0]
    return coefficients[0]

"""CRW (Jabri et al., NeurIPS 2020): the contrastive objective and its label-noise analysis (App. A).

This module holds App. A (the gradient of the contrastive objective with respect to the query when
some negatives are identical to the positive), the encoder (ResNet-18 at output stride 8) and the
palindrome random-walk loss. Patch extraction, the training recipe and the chapters come next.

For a query q, a positive u and negatives V (temperature 1, as in the appendix)

    L(q, u, V) = u.q - log(exp(u.q) + sum_v exp(v.q)),

and with |V-| negatives identical to u the gradient is lambda_u u - sum_{v in V+} (exp(v.q) / Z) v with
lambda_u = 1 - (1 + |V-|) exp(u.q) / Z >= 0: identical negatives can shrink the positive's pull to
zero, never reverse it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


# ---------------------------------------------------------------------------------- the encoder

class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convolutions with batch norm, plus a (projected) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Identity() if stride == 1 and in_channels == channels else nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18Stride8(nn.Module):
    """ResNet-18 with layer3 and layer4 at stride 1 (Table 4 of the supplement): output stride 8.

    ``forward(x)`` with x (B, 3, H, W) returns {"res3": (B, 256, H/8, W/8), "res4": (B, 512, H/8, W/8)}.
    Written here because torchvision does not import beside the pinned torch build.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        channels = [width, 2 * width, 4 * width, 8 * width]
        strides = [1, 2, 1, 1]
        layers, previous = [], width
        for c, s in zip(channels, strides):
            layers.append(nn.Sequential(BasicBlock(previous, c, s), BasicBlock(c, c, 1)))
            previous = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.layer2(self.layer1(self.stem(x)))
        res3 = self.layer3(x)
        return {"res3": res3, "res4": self.layer4(res3)}


# ------------------------------------------------------------------------------ the random walk


def transitions(a: torch.Tensor, b: torch.Tensor, temperature: float, edge_dropout: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Row-stochastic transitions from nodes ``a`` to nodes ``b``: softmax over b of a.b / temperature.

    Args:
        a: (B, N, D), b: (B, M, D) L2-normalised node embeddings.
        edge_dropout: fraction of affinities set to -inf before the softmax (the release's edge dropout).

    Returns:
        (B, N, M), each row summing to 1.
    """
    affinity = a @ b.transpose(1, 2) / temperature
    if edge_dropout > 0:
        drop = torch.rand(affinity.shape, generator=generator, device=affinity.device) < edge_dropout
        affinity = affinity.masked_fill(drop, float("-inf"))
    return torch.softmax(affinity, dim=-1)


def walk_loss(nodes: torch.Tensor, temperature: float = 0.05, edge_dropout: float = 0.0, skip_shortest: bool = True,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The palindrome walk loss: walks t0 -> ... -> t_i -> ... -> t0 must return every node to itself.

    Args:
        nodes: (B, T, N, D) L2-normalised node embeddings of T frames.
        skip_shortest: leave out the walk of length 1 (t0 -> t1 -> t0), as the release does.

    Returns:
        scalar: the cross-entropy of log(P + 1e-20) against the identity, averaged over walk lengths
        (and nodes and batch).
    """
    b, t_len, n, _ = nodes.shape
    if t_len < 2 or (skip_shortest and t_len < 3):
        raise ValueError(f"walk_loss: need at least {3 if skip_shortest else 2} frames, got {t_len}")
    forward = [transitions(nodes[:, t], nodes[:, t + 1], temperature, edge_dropout, generator) for t in range(t_len - 1)]
    backward = [transitions(nodes[:, t + 1], nodes[:, t], temperature, edge_dropout, generator) for t in range(t_len - 1)]
    target = torch.arange(n, device=nodes.device).repeat(b)
    losses = []
    walk = None
    for i in range(t_len - 1):  # the walk out to frame i + 1 and straight back
        walk = forward[i] if walk is None else walk @ forward[i]
        back = backward[i]
        for j in range(i - 1, -1, -1):
            back = back @ backward[j]
        if skip_shortest and i == 0:
            continue
        round_trip = walk @ back  # (B, N, N)
        losses.append(F.nll_loss(torch.log(round_trip + 1e-20).reshape(b * n, n), target))
    return torch.stack(losses).mean()

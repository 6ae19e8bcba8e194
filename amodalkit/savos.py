"""SaVos (Yao et al., NeurIPS 2022): its losses, and the free-mask optimisation of Theorem 1.

The network itself (Table 6) comes with the SaVos chapter; the pieces here are the ones the
theorem is about and the model reuses:

* :func:`visibility_weight` W = (1 - sum_i V_i) + V_k (background plus the object's own pixels),
* :func:`mask_loss` L_M, BCE between the warped prediction and the next visible mask, weighted by W,
* :func:`consistency_loss` L_C, 1 - soft IoU between the warped prediction and the next prediction,
* :func:`complete_loss` L_complete of App. B, Eq. 1 (every later frame, O(T^2) warps),
* :func:`fit_free_masks`, which optimises free per-frame mask logits (no network) against
  L_M (+ L_C) with given motion: the setting of Theorem 1.

Shapes: B batch (objects), T frames, H x W pixels. Masks are float probabilities in [0, 1].
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .ops import soft_iou, warp


def visibility_weight(visible: torch.Tensor) -> torch.Tensor:
    """W_k = (1 - sum_i V_i) + V_k for every object k at once.

    Args:
        visible: (..., K, H, W) visible masks in {0, 1}, disjoint across K.

    Returns:
        (..., K, H, W): 1 on the background and on object k's own visible pixels, 0 on the
        pixels where another object is visible (the only place L_M says nothing).
    """
    visible = visible.float()
    background = 1 - visible.sum(dim=-3, keepdim=True)
    if (background < -1e-6).any():
        raise ValueError("visibility_weight: visible masks overlap; they must be disjoint across objects")
    return background + visible


def warp_sequence(masks: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Warp each frame's mask to the next frame: output[:, t] predicts frame t+1 from frame t.

    Args:
        masks: (B, T, H, W).
        flow: (B, T-1, 2, H, W), the object's forward flow from t to t+1.

    Returns:
        (B, T-1, H, W).
    """
    b, t_len, h, w = masks.shape
    if flow.shape != (b, t_len - 1, 2, h, w):
        raise ValueError(f"warp_sequence: flow must be (B, T-1, 2, H, W) = {(b, t_len - 1, 2, h, w)}, got {tuple(flow.shape)}")
    out = warp(masks[:, :-1].reshape(b * (t_len - 1), 1, h, w), flow.reshape(b * (t_len - 1), 2, h, w))
    return out.reshape(b, t_len - 1, h, w)


def mask_loss(pred_next: torch.Tensor, visible_next: torch.Tensor, weight_next: torch.Tensor) -> torch.Tensor:
    """L_M: BCE(pred, V) weighted by W, summed over pixels, averaged over batch and frames.

    Args:
        pred_next: (B, T', H, W) predicted amodal probabilities of frames 1..T' (already warped).
        visible_next: (B, T', H, W) the object's visible mask in those frames.
        weight_next: (B, T', H, W) W of those frames (see :func:`visibility_weight`).

    Returns:
        scalar. It is exactly 0 iff pred = 1 on the visible pixels and 0 on the background
        (Eq. 9 of the supplement); pixels of other objects are free.
    """
    if not (pred_next.shape == visible_next.shape == weight_next.shape):
        raise ValueError(
            f"mask_loss: shapes differ: pred {tuple(pred_next.shape)}, visible {tuple(visible_next.shape)}, "
            f"weight {tuple(weight_next.shape)}"
        )
    bce = F.binary_cross_entropy(pred_next.clamp(0, 1), visible_next.float(), reduction="none")
    return (bce * weight_next).sum(dim=(-2, -1)).mean()


def consistency_loss(
    pred_next: torch.Tensor, pred: torch.Tensor, distance: str = "soft_iou", pair_weighting: str = "sum"
) -> torch.Tensor:
    """L_C: the distance between each warped prediction and the next prediction, summed over pairs.

    Args:
        pred_next: (B, T-1, H, W) the predictions of frames 0..T-2 warped to frames 1..T-1.
        pred: (B, T, H, W) the predictions themselves.
        distance: "soft_iou" (the paper's main text and the release: 1 - softIoU per pair) or
            "l2" (the pixel-wise d of the proof, Eq. 12: squared differences summed over pixels).
        pair_weighting: "sum" (the paper's plain sum) or "cumulative" (the release weights pair j
            by j + 1, so later pairs count more).

    Returns:
        scalar, averaged over the batch; 0 iff every warped prediction equals the next
        prediction (for binary masks, with either distance).
    """
    if pred_next.shape[1] != pred.shape[1] - 1:
        raise ValueError(f"consistency_loss: pred_next must have T-1 frames, got {pred_next.shape[1]} for T = {pred.shape[1]}")
    if distance == "soft_iou":
        per_pair = 1 - soft_iou(pred_next, pred[:, 1:])  # (B, T-1)
    elif distance == "l2":
        per_pair = ((pred_next - pred[:, 1:]) ** 2).sum(dim=(-2, -1))
    else:
        raise ValueError(f"consistency_loss: distance must be 'soft_iou' or 'l2', got {distance!r}")
    if pair_weighting == "sum":
        weights = torch.ones(per_pair.shape[1], dtype=per_pair.dtype)
    elif pair_weighting == "cumulative":
        weights = torch.arange(1, per_pair.shape[1] + 1, dtype=per_pair.dtype)
    else:
        raise ValueError(f"consistency_loss: pair_weighting must be 'sum' or 'cumulative', got {pair_weighting!r}")
    return (per_pair * weights.to(per_pair.device)).sum(dim=1).mean()


def complete_loss(pred: torch.Tensor, flow: torch.Tensor, visible: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L_complete (App. B, Eq. 1): each prediction compared with the visible mask of every later frame.

    The prediction of frame t is carried to frame l > t by chaining the per-frame warps, so the
    loss needs T(T-1)/2 warps and keeps all of them for the backward pass: O(T^2) time and memory,
    where the chained L_M + L_C need T-1.

    Args:
        pred: (B, T, H, W); flow: (B, T-1, 2, H, W); visible, weight: (B, T, H, W).

    Returns:
        scalar, BCE weighted by W_l, summed over pixels, averaged over batch and pairs (t, l).
    """
    b, t_len, h, w = pred.shape
    total, pairs = pred.new_zeros(()), 0
    for t in range(t_len - 1):
        carried = pred[:, t : t + 1]
        for l in range(t + 1, t_len):
            carried = warp(carried, flow[:, l - 1])
            bce = F.binary_cross_entropy(carried[:, 0].clamp(0, 1), visible[:, l].float(), reduction="none")
            total = total + (bce * weight[:, l]).sum(dim=(-2, -1)).mean()
            pairs += 1
    return total / max(pairs, 1)


@dataclass
class FreeMaskFit:
    """Result of :func:`fit_free_masks`.

    probs: (B, T, H, W) final mask probabilities; init_probs: the same at initialisation;
    history: per step, (L_M, L_C) as floats.
    """

    probs: torch.Tensor
    init_probs: torch.Tensor
    history: list[tuple[float, float]]


def fit_free_masks(
    visible: torch.Tensor,
    weight: torch.Tensor,
    flow: torch.Tensor,
    *,
    use_consistency: bool = True,
    distance: str = "l2",
    init_logit: float = 0.0,
    init_noise: float = 0.0,
    steps: int = 600,
    lr: float = 0.1,
    consistency_weight: float = 1.0,
    seed: int = 0,
    progress=None,
) -> FreeMaskFit:
    """Optimise free per-frame mask logits against L_M (+ L_C), with the motion given.

    This is Theorem 1's setting: no network, ground-truth visible masks and motion; what the
    losses alone pin down is what the optimum shows.

    Args:
        visible: (B, T, H, W) each object's visible masks.
        weight: (B, T, H, W) W for each object and frame.
        flow: (B, T-1, 2, H, W) each object's forward flow.
        use_consistency: add L_C (False: L_M alone).
        distance: L_C's distance, "l2" (the proof's pixel-wise d) or "soft_iou" (the release's);
            see :func:`consistency_loss`.
        init_logit: the starting logit of every pixel (e.g. -4: all background, +4: all object).
        init_noise: std of Gaussian noise added to the starting logits.
        progress: optional callable(step) for a progress bar.

    Returns:
        :class:`FreeMaskFit`.
    """
    if visible.dim() != 4 or visible.shape != weight.shape:
        raise ValueError(f"fit_free_masks: visible and weight must both be (B, T, H, W), got {tuple(visible.shape)} and {tuple(weight.shape)}")
    if steps < 0:
        raise ValueError(f"fit_free_masks: steps must be >= 0, got {steps}")
    gen = torch.Generator().manual_seed(seed)
    logits = torch.full(visible.shape, float(init_logit)) + init_noise * torch.randn(visible.shape, generator=gen)
    logits.requires_grad_(True)
    init_probs = torch.sigmoid(logits.detach()).clone()
    optimiser = torch.optim.Adam([logits], lr=lr)
    history = []
    for step in range(steps):
        probs = torch.sigmoid(logits)
        warped = warp_sequence(probs, flow)
        l_m = mask_loss(warped, visible[:, 1:], weight[:, 1:])
        l_c = consistency_loss(warped, probs, distance=distance) if use_consistency else probs.new_zeros(())
        loss = l_m + consistency_weight * l_c
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append((l_m.item(), l_c.item()))
        if progress is not None:
            progress(step)
    return FreeMaskFit(torch.sigmoid(logits.detach()), init_probs, history)


def theorem_inputs(clip) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors for :func:`fit_free_masks` from a clip, one batch row per object.

    Each object's flow is its ground-truth motion over the whole image (the motion an amodal mask
    needs, occluded part included), as assumption 1 of Theorem 1 grants.

    Returns:
        visible (K, T, H, W), weight (K, T, H, W), flow (K, T-1, 2, H, W).
    """
    visible = torch.from_numpy(clip.visible).float()  # (T, K, H, W)
    weight = visibility_weight(visible)
    flow = torch.from_numpy(clip.motion_field()).permute(1, 0, 2, 3, 4).contiguous()  # (K, T-1, 2, H, W)
    return visible.permute(1, 0, 2, 3).contiguous(), weight.permute(1, 0, 2, 3).contiguous(), flow


def free_fit_prediction(clip, probs: torch.Tensor, view: np.ndarray | None = None) -> np.ndarray:
    """(K, T, H, W) bool: the fitted masks (probs > 0.5) on the pixels whose points stay in view.

    ``view`` (K, T, H, W) is computed from the clip when not given.
    """
    if view is None:
        from .data import in_view

        view = np.stack([in_view(clip, k) for k in range(clip.n_objects)])
    return (probs > 0.5).numpy() & view


def free_fit_scores(clip, probs: torch.Tensor) -> dict[str, np.ndarray]:
    """Score a free-mask fit against the ground truth, on the pixels Theorem 1 speaks about.

    Pixels whose point leaves the image in some frame (moving with the object) are left out:
    their chain of warps is cut, so no loss constrains them (see ``amodalkit.data.in_view``).

    Args:
        clip: a rigid-world clip; probs: (K, T, H, W) fitted probabilities.

    Returns:
        dict of (K, T) arrays: "iou" and "recall" (|pred & amodal| / |amodal|) of the prediction
        (probs > 0.5) against the amodal mask, and "extra" (the predicted pixels outside it).
    """
    from .data import in_view

    view = np.stack([in_view(clip, k) for k in range(clip.n_objects)])
    pred = free_fit_prediction(clip, probs, view)
    amodal = clip.amodal.transpose(1, 0, 2, 3) & view
    inter = (pred & amodal).sum(axis=(-2, -1))
    union = (pred | amodal).sum(axis=(-2, -1))
    return {
        "iou": (inter + 1e-6) / (union + 1e-6),
        "recall": (inter + 1e-6) / (amodal.sum(axis=(-2, -1)) + 1e-6),
        "extra": (pred & ~amodal).sum(axis=(-2, -1)),
    }


def chain_cost_problem(n_frames: int, size: int, seed: int = 0):
    """A random problem for comparing the cost of the chained losses with L_complete (App. B).

    Returns:
        (logits, flow, visible, weight): logits (1, T, size, size) requiring grad, a random
        translation per frame as flow (1, T-1, 2, size, size), random visible masks and W.
    """
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, n_frames, size, size, generator=gen).requires_grad_(True)
    shifts = torch.randint(-2, 3, (n_frames - 1, 2), generator=gen).float()
    flow = shifts[None, :, :, None, None].expand(1, n_frames - 1, 2, size, size).contiguous()
    visible = (torch.rand(1, n_frames, size, size, generator=gen) > 0.5).float()
    weight = (torch.rand(1, n_frames, size, size, generator=gen) > 0.3).float()
    return logits, flow, visible, weight


def chained_loss(logits, flow, visible, weight) -> torch.Tensor:
    """L_M + L_C over a clip: T-1 warps, each prediction compared with the next frame only."""
    probs = torch.sigmoid(logits)
    warped = warp_sequence(probs, flow)
    return mask_loss(warped, visible[:, 1:], weight[:, 1:]) + consistency_loss(warped, probs)


# ================================================================================ the network
#
# Table 6 of the supplement and the release (reference-facts): a spatiotemporal embedding (a
# 6-layer CNN on RGB + visible mask + flow, then an LSTM), an amodal completer (its own CNN on the
# visible mask, joined with the embedding, decoded by the mirrored transposed CNN into a mask and
# an alpha logit) and a motion predictor (a CNN on the observed flow, joined with the embedding,
# decoded into a residual flow). Everything runs on object-centred crops of (h, w) = (64, 128) at
# paper size; a crop (h, 2h) with h a power of two >= 16 keeps the same layers (the last kernel
# covers what is left: 4 x 4 at 64 x 128).

PAPER_SIZE = (64, 128)
_FLOW_INPUT_SCALE = 0.25  # flow (crop pixels) fed to the CNNs at about unit scale


def check_crop_size(size: tuple[int, int]) -> tuple[int, int]:
    """(h, w) with w = 2h and h a power of two >= 16 (64 x 128 is the paper's); raises ValueError otherwise."""
    h, w = (int(v) for v in size)
    if w != 2 * h or h < 16 or h & (h - 1):
        raise ValueError(f"SaVos crop size must be (h, 2h) with h a power of two >= 16 (paper: 64 x 128), got {tuple(size)}")
    return h, w


def layer_specs(size: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int]]]:
    """(kernel, stride, padding) of the 6 encoder layers for crops of ``size`` (Table 6 at 64 x 128)."""
    h, w = check_crop_size(size)
    specs = [((4, 4), (2, 2), (1, 1))] * 4 + [((3, 4), (1, 2), (1, 1))]
    for k, s, p in specs:
        h, w = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    return specs + [((h, w), (1, 1), (0, 0))]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, min(8, channels // 4)), channels)


def tower_channels(base: int) -> list[int]:
    """The hidden channels of the 6 layers: 32, 64, 128, 256, 256, 512 for ``base`` = 32."""
    return [base * m for m in (1, 2, 4, 8, 8, 16)]


class ConvTower(nn.Module):
    """The 6-layer CNN of Table 6 with GroupNorm + LeakyReLU: (N, C, h, w) -> (N, 16 base)."""

    def __init__(self, in_channels: int, base: int, size: tuple[int, int]):
        super().__init__()
        chans = [in_channels] + tower_channels(base)
        layers = []
        for i, (k, s, p) in enumerate(layer_specs(size)):
            layers += [nn.Conv2d(chans[i], chans[i + 1], k, s, p), _norm(chans[i + 1]), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class DeconvTower(nn.Module):
    """The mirrored transposed CNN: (N, 16 base) -> (N, out, h, w); no norm or activation after the last layer."""

    def __init__(self, out_channels: int, base: int, size: tuple[int, int]):
        super().__init__()
        chans = [out_channels] + tower_channels(base)
        layers = []
        for i, (k, s, p) in reversed(list(enumerate(layer_specs(size)))):
            layers.append(nn.ConvTranspose2d(chans[i + 1], chans[i], k, s, p))
            if i > 0:
                layers += [_norm(chans[i]), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


@dataclass(frozen=True)
class Variant:
    """One row of the ablation tables: what the model sees and how it is trained.

    consistency: add L_C to L_M (off: L_M alone, Table 1 row 2).
    bidirectional: a backward pass over the reversed clip, fused with the forward one by the
        alpha channel (off: the forward pass alone, alpha ignored; Table 1 row 3).
    temporal: the LSTM over the frame embeddings (off: each frame's embedding is a function of that
        frame alone, a Linear + tanh in place of the LSTM; Table 1 row 1).
    flow_input: the observed flow is an input (off: the flow channels of the embedding CNN and the
        motion predictor's input are zeros and the base flow is 0, so the motion predictor must
        find the motion from the image and mask crops alone; Table 3 row 1).
    image_input: the RGB crop is an input (off: zeros; Table 3 row 2).
    loss: "savos" (L_M + L_C) or "deocclusion" (Self-Deocclusion's self-supervision on the
        completer's output, Table 2 row 2; see :func:`deocclusion_window_loss`).
    architecture: "savos" or "pcnet" (Self-Deocclusion's PCNet-M on the same crops, Table 2 row 1).
    """

    consistency: bool = True
    bidirectional: bool = True
    temporal: bool = True
    flow_input: bool = True
    image_input: bool = True
    loss: str = "savos"
    architecture: str = "savos"


VARIANTS: dict[str, Variant] = {
    "full": Variant(),
    "no_consistency": Variant(consistency=False),
    "no_bidirectional": Variant(bidirectional=False),
    "no_temporal": Variant(temporal=False),
    "no_flow": Variant(flow_input=False),
    "no_image": Variant(image_input=False),
    "savos_arch_deocc_loss": Variant(consistency=False, loss="deocclusion"),
    "deocc_arch_deocc_loss": Variant(consistency=False, bidirectional=False, temporal=False, loss="deocclusion",
                                     architecture="pcnet"),
}


@dataclass
class Direction:
    """One pass over a clip (forward, or backward in reversed time).

    mask_logits, alpha_logits: (N, T, h, w), the amodal mask of frame t in crop t and its alpha;
    flow: (N, T, 2, h, w) the full flow of frame t (base + residual) in crop-t pixels;
    embedding: (N, T, E) the spatiotemporal embedding h_t.
    """

    mask_logits: torch.Tensor
    alpha_logits: torch.Tensor
    flow: torch.Tensor
    embedding: torch.Tensor


def base_flow(visible: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """The observed flow on the visible pixels and the mean visible flow elsewhere.

    Args:
        visible: (N, T, h, w) in [0, 1]; flow: (N, T, 2, h, w).

    Returns:
        (N, T, 2, h, w); the mean is weighted by ``visible`` (0 for an empty mask).
    """
    weight = visible[:, :, None]
    mean = (flow * weight).sum((-2, -1), keepdim=True) / weight.sum((-2, -1), keepdim=True).clamp(min=1e-6)
    inside = (weight > 0.5).to(flow.dtype)
    return inside * flow + (1 - inside) * mean


class SaVosNet(nn.Module):
    """The SaVos network: :meth:`direction` runs one pass; :func:`predict` does both and the fusion.

    Args:
        size: crop (h, w), (64, 128) at paper size; base: channels of the first layer (32 in
        Table 6; the embedding and LSTM width is 8 base = 256); variant: the inputs and the
        temporal module (see :class:`Variant`).
    """

    def __init__(self, size: tuple[int, int] = PAPER_SIZE, base: int = 32, variant: Variant = Variant()):
        super().__init__()
        self.size, self.base, self.variant = check_crop_size(size), int(base), variant
        if base < 1 or base & (base - 1):
            raise ValueError(f"SaVosNet: base must be a power of two, got {base}")
        top, emb = 16 * base, 8 * base
        self.embed_tower, self.embed_fc = ConvTower(6, base, size), nn.Linear(top, emb)
        self.temporal = nn.LSTM(emb, emb, batch_first=True) if variant.temporal else nn.Sequential(nn.Linear(emb, emb), nn.Tanh())
        self.mask_tower, self.mask_fc = ConvTower(1, base, size), nn.Linear(top, emb)
        self.mask_join, self.mask_decoder = nn.Linear(2 * emb, top), DeconvTower(2, base, size)
        self.flow_tower, self.flow_fc = ConvTower(2, base, size), nn.Linear(top, emb)
        self.flow_join, self.flow_decoder = nn.Linear(2 * emb, top), DeconvTower(2, base, size)

    def embed(self, frames: torch.Tensor, visible: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """The per-frame embeddings e_t fed to the temporal module: (N, T, 8 base), inputs zeroed as the variant says."""
        n, t = visible.shape[:2]
        if frames.shape[-2:] != self.size or visible.shape[-2:] != self.size:
            raise ValueError(f"SaVosNet: crops must be {self.size}, got frames {tuple(frames.shape)}, visible {tuple(visible.shape)}")
        if not self.variant.image_input:
            frames = torch.zeros_like(frames)
        if not self.variant.flow_input:
            flow = torch.zeros_like(flow)
        x = torch.cat([frames, visible[:, :, None], flow * _FLOW_INPUT_SCALE], dim=2).flatten(0, 1)
        return self.embed_fc(self.embed_tower(x)).view(n, t, -1)

    def history_states(self, e: torch.Tensor, donor: torch.Tensor | None = None) -> torch.Tensor:
        """h_t for every frame (N, T, E). With ``donor`` (N, T', E), T' >= T - 1, the history of frame t (the frames
        before it) is the donor's first t embeddings instead of its own: the reliance probe of the temporal module."""
        if not self.variant.temporal:
            return self.temporal(e)  # each frame's state is a function of that frame alone: no history to swap
        if donor is None:
            return self.temporal(e)[0]
        return torch.stack([self.temporal(torch.cat([donor[:, :t], e[:, t:t + 1]], 1))[0][:, -1]
                            for t in range(e.shape[1])], 1)

    def direction(self, frames: torch.Tensor, visible: torch.Tensor, flow: torch.Tensor,
                  donor_embedding: torch.Tensor | None = None) -> Direction:
        """One pass in the given time order.

        Args:
            frames: (N, T, 3, h, w) float RGB in [-0.5, 0.5]; visible: (N, T, h, w) in [0, 1];
            flow: (N, T, 2, h, w) the observed flow of each frame to the next in this order, crop pixels.
            donor_embedding: (N, T, E) another clip's embeddings in the same time order, to replace each
                frame's history (see :meth:`history_states`); None: the clip's own.
        """
        n, t = visible.shape[:2]
        e = self.embed(frames, visible, flow)
        if not self.variant.flow_input:
            flow = torch.zeros_like(flow)
        h = self.history_states(e, donor_embedding)
        hf = h.flatten(0, 1)
        m = self.mask_fc(self.mask_tower(visible.flatten(0, 1)[:, None]))
        out = self.mask_decoder(F.leaky_relu(self.mask_join(torch.cat([m, hf], 1)), 0.2)).view(n, t, 2, *self.size)
        f = self.flow_fc(self.flow_tower(flow.flatten(0, 1) * _FLOW_INPUT_SCALE))
        residual = self.flow_decoder(F.leaky_relu(self.flow_join(torch.cat([f, hf], 1)), 0.2)).view(n, t, 2, *self.size)
        return Direction(out[:, :, 0], out[:, :, 1], base_flow(visible, flow) + residual, h)


# ------------------------------------------------------------------------------ crops and warps


def crop_warp(values: torch.Tensor, flow: torch.Tensor, box_src: torch.Tensor, box_dst: torch.Tensor) -> torch.Tensor:
    """Backward-warp crop-space maps of frame s into the crop of frame d (the next frame in a pass).

    A crop pixel q of the destination is the image point p; the source map is read at
    p - F(p), with F the flow of frame s sampled at p (the release's grid_sample warp: bilinear,
    border padding, align_corners=False), all in the source crop's pixels.

    Args:
        values: (N, C, h, w) in the source crop; flow: (N, 2, h, w) the source frame's flow in
            source-crop pixels; box_src, box_dst: (N, 4) the crops' (x0, y0, x1, y1) image boxes.

    Returns:
        (N, C, h, w) in the destination crop. With equal boxes this is ``ops.warp``.
    """
    n, _, h, w = values.shape
    dtype, dev = values.dtype, values.device
    box_src, box_dst = box_src.to(dev, dtype), box_dst.to(dev, dtype)
    scale_src = torch.stack([(box_src[:, 2] - box_src[:, 0]) / w, (box_src[:, 3] - box_src[:, 1]) / h], 1)  # image px per crop px
    scale_dst = torch.stack([(box_dst[:, 2] - box_dst[:, 0]) / w, (box_dst[:, 3] - box_dst[:, 1]) / h], 1)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype, device=dev), torch.arange(w, dtype=dtype, device=dev), indexing="ij")
    q = torch.stack([xs, ys], 0)[None]  # (1, 2, h, w) crop pixel centres
    # crop pixel j of a box covers [x0 + j a, x0 + (j + 1) a): crop coordinate u <-> image x0 + (u + 0.5) a - 0.5
    image = box_dst[:, :2, None, None] + (q + 0.5) * scale_dst[:, :, None, None]
    c = (image - box_src[:, :2, None, None]) / scale_src[:, :, None, None] - 0.5  # (N, 2, h, w) in source crop pixels

    def sample(x, coords):
        grid = torch.stack([(2 * coords[:, 0] + 1) / w - 1, (2 * coords[:, 1] + 1) / h - 1], dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return sample(values, c - sample(flow, c))


@dataclass
class TrackBatch:
    """Windows of tracks as tensors: frames (N, T, 3, h, w) in [-0.5, 0.5]; visible, others, amodal
    (N, T, h, w); flow_fwd, flow_bwd (N, T, 2, h, w) crop pixels; boxes (N, T, 4) image boxes."""

    frames: torch.Tensor
    visible: torch.Tensor
    others: torch.Tensor
    amodal: torch.Tensor
    flow_fwd: torch.Tensor
    flow_bwd: torch.Tensor
    boxes: torch.Tensor

    def to(self, dev) -> "TrackBatch":
        return TrackBatch(*(getattr(self, f).to(dev) for f in self.__dataclass_fields__))

    @property
    def weight(self) -> torch.Tensor:
        """W = 1 - (the other objects' visible masks): background plus the object's own pixels."""
        return (1 - self.others).clamp(0, 1)


def _track_row(track, index: np.ndarray) -> tuple:
    return (track.frames[index].transpose(0, 3, 1, 2).astype(np.float32) / 255 - 0.5, track.visible[index],
            track.others[index], track.amodal[index], track.flow_fwd[index], track.flow_bwd[index], track.boxes[index])


def _stack(rows: list[tuple]) -> TrackBatch:
    return TrackBatch(*(torch.from_numpy(np.ascontiguousarray(np.stack(col))).float() for col in zip(*rows)))


def track_batch(tracks, starts=None, length: int | None = None) -> TrackBatch:
    """Stack windows [start, start + length) of tracks (whole tracks of one length when not given)."""
    starts = [0] * len(tracks) if starts is None else starts
    return _stack([_track_row(track, np.arange(s, s + (length or len(track.frame_index))))
                   for track, s in zip(tracks, starts)])


def cycled_batch(track, length: int) -> TrackBatch:
    """One track's frames repeated cyclically to ``length`` frames (a donor history for a track of that length)."""
    return _stack([_track_row(track, np.arange(length) % len(track.frame_index))])


def _flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(1)


@dataclass
class Prediction:
    """Both passes and their fusion over a window of T frames.

    fused: (N, T, h, w) the prediction of each frame made without its own visible mask, in that
    frame's crop (probability); valid: (T,) bool, the frames that have one (1..T-2, plus T-1
    forward-only, plus 0 backward-only when bidirectional); weights: (N, T, 2, h, w) the fusion
    weights of the forward and backward predictions; forward, backward: the passes (backward
    re-indexed in original time); masks: (N, T, h, w) the completer's own output (not warped,
    the mean of the two passes).
    """

    fused: torch.Tensor
    valid: torch.Tensor
    weights: torch.Tensor
    forward: Direction
    backward: Direction | None
    masks: torch.Tensor


def predict(model: SaVosNet, batch: TrackBatch, donor: TrackBatch | None = None) -> Prediction:
    """Run the forward (and backward) pass and fuse: each pass's mask of frame t is warped to its
    next frame (t + 1 forward, t - 1 backward) and the two predictions of a frame are mixed by a
    softmax over their warped alpha logits.

    donor: windows of other tracks, as long as ``batch``'s: each frame's history in each pass is
    taken from them (the history-swap probe; see :func:`reliance_probes`).
    """
    n, t_len, h, w = batch.visible.shape
    boxes = batch.boxes
    donor_fwd = donor_bwd = None
    if donor is not None:
        donor_fwd = model.embed(donor.frames, donor.visible, donor.flow_fwd)
        donor_bwd = model.embed(_flip(donor.frames), _flip(donor.visible), _flip(donor.flow_bwd))
    fwd = model.direction(batch.frames, batch.visible, batch.flow_fwd, donor_fwd)

    def warped(direction: Direction, src: slice, dst: slice) -> torch.Tensor:
        vals = torch.stack([torch.sigmoid(direction.mask_logits), direction.alpha_logits], 2)[:, src]
        out = crop_warp(vals.flatten(0, 1), direction.flow[:, src].flatten(0, 1), boxes[:, src].flatten(0, 1),
                        boxes[:, dst].flatten(0, 1))
        return out.view(n, -1, 2, h, w)

    empty = torch.zeros(n, 1, 2, h, w, device=batch.visible.device)
    empty[:, :, 1] = -1e4  # a missing prediction gets no weight
    fwd_next = torch.cat([empty, warped(fwd, slice(0, -1), slice(1, None))], 1)  # (N, T, 2, h, w), frame 0 missing
    valid = torch.zeros(t_len, dtype=torch.bool)
    valid[1:] = True
    if model.variant.bidirectional:
        raw = model.direction(_flip(batch.frames), _flip(batch.visible), _flip(batch.flow_bwd), donor_bwd)
        bwd = Direction(_flip(raw.mask_logits), _flip(raw.alpha_logits), _flip(raw.flow), _flip(raw.embedding))
        bwd_prev = torch.cat([warped(bwd, slice(1, None), slice(0, -1)), empty], 1)  # frame T-1 missing
        weights = torch.softmax(torch.stack([fwd_next[:, :, 1], bwd_prev[:, :, 1]], 2), dim=2)
        fused = weights[:, :, 0] * fwd_next[:, :, 0] + weights[:, :, 1] * bwd_prev[:, :, 0]
        valid[0] = True
        masks = (torch.sigmoid(fwd.mask_logits) + torch.sigmoid(bwd.mask_logits)) / 2
    else:
        bwd = None
        weights = torch.stack([torch.ones_like(fwd_next[:, :, 0]), torch.zeros_like(fwd_next[:, :, 0])], 2)
        fused = fwd_next[:, :, 0]
        masks = torch.sigmoid(fwd.mask_logits)
    return Prediction(fused, valid, weights, fwd, bwd, masks)


def _pass_consistency(direction: Direction, boxes: torch.Tensor, reverse: bool, pair_weighting: str) -> torch.Tensor:
    """L_C of one pass: each mask warped (flow detached) to the pass's next frame against that frame's mask."""
    probs = torch.sigmoid(direction.mask_logits)
    flow = direction.flow.detach()
    if reverse:  # the backward pass runs in reversed time
        probs, flow, boxes = _flip(probs), _flip(flow), _flip(boxes)
    n, t_len, h, w = probs.shape
    nxt = crop_warp(probs[:, :-1].flatten(0, 1)[:, None], flow[:, :-1].flatten(0, 1), boxes[:, :-1].flatten(0, 1),
                    boxes[:, 1:].flatten(0, 1)).view(n, t_len - 1, h, w)
    return consistency_loss(nxt, probs, pair_weighting=pair_weighting)


def photometric_loss(direction: Direction, batch: TrackBatch) -> torch.Tensor:
    """|warp(I_t) - I_{t+1}| inside warp(V_t) and V_{t+1}, summed over pixels and channels, mean over
    windows and frames (the release's extra term on FISHBOWL, weighted 0.1 there)."""
    n, t_len, h, w = batch.visible.shape
    src, dst = slice(0, -1), slice(1, None)
    vals = torch.cat([batch.frames[:, src], batch.visible[:, src, None]], 2).flatten(0, 1)
    out = crop_warp(vals, direction.flow[:, src].flatten(0, 1), batch.boxes[:, src].flatten(0, 1),
                    batch.boxes[:, dst].flatten(0, 1)).view(n, t_len - 1, 4, h, w)
    inside = out[:, :, 3:] * batch.visible[:, dst, None]
    return ((out[:, :, :3] - batch.frames[:, dst]).abs() * inside).sum((-3, -2, -1)).mean()


def savos_loss(model: SaVosNet, batch: TrackBatch, *, photometric: float = 0.0, pair_weighting: str = "sum") -> torch.Tensor:
    """L_M on the fused predictions (+ L_C on each pass when the variant has it, + the photometric term).

    Returns:
        scalar; L_M sums over pixels and averages over windows and valid frames.
    """
    pred = predict(model, batch)
    valid = pred.valid.to(batch.visible.device)
    loss = mask_loss(pred.fused[:, valid], batch.visible[:, valid], batch.weight[:, valid])
    if model.variant.consistency:
        loss = loss + _pass_consistency(pred.forward, batch.boxes, False, pair_weighting)
        if pred.backward is not None:
            loss = loss + _pass_consistency(pred.backward, batch.boxes, True, pair_weighting)
    if photometric:
        loss = loss + photometric * photometric_loss(pred.forward, batch)
    return loss


# --------------------------------------------------------------------- Self-Deocclusion on crops


def erasers(visible: torch.Tensor, generator: torch.Generator, p_behind: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-Deocclusion's erasers for windows of crops, one per window, fixed in crop coordinates.

    Another window's visible mask (a random frame of a random window of the batch) is laid over the
    window's middle frame as in :func:`amodalkit.ops.synthetic_occlusion`. With probability
    ``1 - p_behind`` it is in front (the input loses those pixels), otherwise behind (the eraser is
    cut by the mask and the input is unchanged). The target is always the uncut mask.

    Args:
        visible: (N, T, h, w).

    Returns:
        cut (N, T, h, w) the input masks, eraser (N, T, h, w) the eraser as the network would see it
        (where it covers the object in front, or its part outside the mask behind).
    """
    from .ops import synthetic_occlusion

    n, t_len, h, w = visible.shape
    pick = torch.randint(t_len, (n,), generator=generator)
    pool = visible[torch.arange(n), pick]
    _, occluder = synthetic_occlusion(visible[:, t_len // 2], pool, generator, min_visible=0.0)
    occluder = occluder[:, None].expand(n, t_len, h, w)
    behind = (torch.rand(n, generator=generator) < p_behind).to(visible.device)[:, None, None, None]
    cut = torch.where(behind, visible, visible * (1 - occluder))
    eraser = torch.where(behind, occluder * (1 - visible), occluder)
    return cut, eraser


def weighted_deocclusion_loss(logits: torch.Tensor, target: torch.Tensor, eraser: torch.Tensor, inside: float = 5.0) -> torch.Tensor:
    """Self-Deocclusion's loss: BCE weighted ``inside`` in the eraser and 1 outside, mean over pixels."""
    weight = 1 + (inside - 1) * eraser
    return (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).mean()


def deocclusion_window_loss(model: nn.Module, batch: TrackBatch, generator: torch.Generator) -> torch.Tensor:
    """Self-Deocclusion's self-supervision for either architecture (Table 2's first two rows).

    PCNet-M sees [cut mask, eraser] per frame. The SaVos network sees the window with the cut
    masks, the RGB crop painted one random colour inside the eraser (something else is there) and
    the flow zeroed there; its completer's output of every frame (both passes) must give the uncut mask.
    """
    cut, eraser = erasers(batch.visible, generator)
    if isinstance(model, SaVosNet):
        colour = (torch.rand(len(cut), 3, generator=generator) - 0.5).to(cut.device)[:, None, :, None, None]
        inside = (eraser * (cut < batch.visible).float() + eraser * (batch.visible < 0.5).float()).clamp(0, 1)[:, :, None]
        frames = batch.frames * (1 - inside) + colour * inside
        fwd_flow, bwd_flow = batch.flow_fwd * (1 - inside), batch.flow_bwd * (1 - inside)
        logits = model.direction(frames, cut, fwd_flow).mask_logits
        loss = weighted_deocclusion_loss(logits, batch.visible, eraser)
        if model.variant.bidirectional:
            back = _flip(model.direction(_flip(frames), _flip(cut), _flip(bwd_flow)).mask_logits)
            loss = (loss + weighted_deocclusion_loss(back, batch.visible, eraser)) / 2
        return loss
    x = torch.stack([cut, eraser], 2).flatten(0, 1)
    return weighted_deocclusion_loss(model(x)[:, 0], batch.visible.flatten(0, 1), eraser.flatten(0, 1))


# ============================================================== Algorithm 1: rule-based baseline


def splat(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Move each pixel of a boolean (H, W) mask by its flow (2, H, W), to the nearest pixel (forward warping)."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    r = np.rint(rows + flow[1, rows, cols]).astype(int)
    c = np.rint(cols + flow[0, rows, cols]).astype(int)
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    out = np.zeros_like(mask, dtype=bool)
    out[r[inside], c[inside]] = True
    return out


def aggregate(visible: np.ndarray, flow: np.ndarray, k: int) -> np.ndarray:
    """Algorithm 1 in one direction: frame n's mask from the visible masks of frames n-k..n.

    AV = V_{n-k}, ΔAV = ΔV_{n-k}; for t = n-k+1..n: AV = Warp(AV, ΔAV) ∪ V_t; IV = (1 - V_t) ∩ AV;
    ΔAV = ΔV_t on V_t and mean(ΔV_t) on IV. Warp moves the aggregated mask by its flow
    (:func:`splat`). The first frames use what exists (from frame 0).

    Args:
        visible: (T, H, W) bool; flow: (T, 2, H, W), flow[t] from frame t to the next one in
            this order; k: frames aggregated (k = 0: the visible mask).

    Returns:
        (T, H, W) bool.
    """
    if k < 0:
        raise ValueError(f"aggregate: k must be >= 0, got {k}")
    t_len = len(visible)
    out = np.zeros_like(visible, dtype=bool)
    for n in range(t_len):
        start = max(0, n - k)
        av = visible[start].astype(bool)
        dav = flow[start] * av
        for t in range(start + 1, n + 1):
            av = splat(av, dav) | visible[t]
            iv = av & ~visible[t]
            v = visible[t].astype(bool)
            mean = flow[t][:, v].mean(axis=1) if v.any() else np.zeros(2, dtype=flow.dtype)
            dav = flow[t] * v + mean[:, None, None] * iv
        out[n] = av
    return out


def rule_based_completion(visible: np.ndarray, flow_fwd: np.ndarray, flow_bwd: np.ndarray, k: int) -> np.ndarray:
    """The union of Algorithm 1 run forward (frames n-k..n) and backward (frames n+k..n).

    Args:
        visible: (T, H, W) an object's visible masks; flow_fwd, flow_bwd: (T, 2, H, W) t -> t+1 and t -> t-1.

    Returns:
        (T, H, W) bool.
    """
    forward = aggregate(visible, flow_fwd, k)
    backward = aggregate(visible[::-1], flow_bwd[::-1], k)[::-1]
    return forward | backward


# ========================================================================== the experiments
#
# Data, training and evaluation of every row of the SaVos chapters, so the notebooks only choose
# and show. Tracks are cut from the world's clips; the input flow is estimated (OpenCV DIS, as
# the paper's FlowNet2 is an estimate) unless the ground truth is asked for.


@dataclass(frozen=True)
class SaVosRecipe:
    """Sizes and budget of one training run (Table 6 and E.2 at paper size: 64 x 128, base 32,
    Adam 1e-4; batch 64 / 24 / 8 for Chewing Gum / FISHBOWL / KINS)."""

    size: tuple[int, int] = (16, 32)
    base: int = 8
    window: int = 8
    batch: int = 8
    steps: int = 300
    lr: float = 1e-3
    photometric: float = 0.0
    pcnet_width: int = 16
    val_windows: int = 32


@dataclass
class WorldTracks:
    """One world's tracks for one seed: ``tracks[split]`` = list of (clip index, Track), plus the
    clips (for evaluation in image space) and the visible masks the method sees (``visible[split][i]``)."""

    world: str
    seed: int
    tracks: dict
    clips: dict
    visible: dict
    flows: dict


def visible_masks(world: str, clip) -> np.ndarray:
    """(T, K, H, W) the visible masks a method sees: street's degraded "predicted" masks, else the truth."""
    if world == "street":
        return clip.extra["visible_pred"].astype(bool)
    return clip.visible


def load_world_tracks(world: str, seed: int, clips: dict[str, int], *, size=(16, 32), window: int = 8,
                      preset: str = "quick", flow: str = "estimated") -> WorldTracks:
    """Tracks of a world's train / val / test clips.

    Training and validation tracks keep every object present in ``window`` consecutive frames; test
    tracks keep the objects with some frame at 0.1 < occlusion < 0.7 and at least 3 frames (the
    release's test filter; the first and last frame are not scored).

    Args:
        clips: clips per split, e.g. {"train": 24, "val": 4, "test": 8}.
        flow: "estimated" (OpenCV DIS) or "truth" (the world's exact flow) for the input flow.
    """
    import hashlib
    import json
    import os
    import pickle
    from pathlib import Path

    from .data import load_world
    from .data.flow import estimate_flow
    from .data.tracks import object_tracks
    from .data.worlds import _generator_version
    from .results import atomic_write_bytes

    if flow not in ("estimated", "truth"):
        raise ValueError(f"load_world_tracks: flow must be 'estimated' or 'truth', got {flow!r}")
    if window < 3:
        raise ValueError(f"load_world_tracks: window must be >= 3 frames, got {window}")
    check_crop_size(size)
    # the tracks (and the test split's flows, for the rule baseline) are cut once and cached: the
    # flow estimation and the crops take longer than loading them
    package = Path(__file__).parent
    digest = hashlib.sha256(json.dumps(dict(world=world, seed=seed, clips=clips, size=list(size), window=window,
                                            preset=preset, flow=flow, code=_generator_version()), sort_keys=True).encode())
    for name in ("data/tracks.py", "data/flow.py"):
        digest.update((package / name).read_bytes())
    path = Path(os.environ.get("AMODALKIT_CACHE", Path.home() / ".cache" / "amodalkit")) / "savos_tracks" / f"{digest.hexdigest()[:24]}.pkl"
    cached = pickle.loads(path.read_bytes()) if path.is_file() else None
    tracks, kept, masks, flows = {}, {}, {}, {}
    for split, n in clips.items():
        data = load_world(world, split, seed=seed, n_clips=n, preset=preset)
        kept[split] = [data[i] for i in range(len(data))]
        masks[split] = [visible_masks(world, clip) for clip in kept[split]]
        if cached is not None:
            continue
        tracks[split], flows[split] = [], []
        for i, (clip, seen) in enumerate(zip(kept[split], masks[split])):
            motion = estimate_flow(clip.frames) if flow == "estimated" else (clip.flow_fwd, clip.flow_bwd)
            test = split == "test"
            for track in object_tracks(clip, size, flow=motion, visible=seen, min_length=3 if test else window,
                                       occlusion_range=(0.1, 0.7) if test else None):
                tracks[split].append((i, track))
            flows[split].append(tuple(f.astype(np.float16) for f in motion) if test else None)
    if cached is None:
        atomic_write_bytes(path, pickle.dumps((tracks, flows), protocol=pickle.HIGHEST_PROTOCOL))
    else:
        tracks, flows = cached
    for split in clips:
        if not tracks[split]:
            raise ValueError(f"{world} (seed {seed}): no {split} track; use more {split} clips (now {clips[split]})")
    return WorldTracks(world, seed, tracks, kept, masks, flows)


def _windows(tracks, window: int) -> list[tuple[int, int]]:
    return [(j, s) for j, (_, tr) in enumerate(tracks) for s in range(len(tr.frame_index) - window + 1)]


def make_model(variant: Variant, recipe: SaVosRecipe) -> nn.Module:
    """A SaVos network of the recipe's size, or PCNet-M for the Self-Deocclusion architecture."""
    if variant.architecture == "pcnet":
        from .deocclusion import PCNetM

        return PCNetM(recipe.pcnet_width)
    return SaVosNet(recipe.size, recipe.base, variant)


def variant_loss(model: nn.Module, variant: Variant, batch: TrackBatch, generator: torch.Generator,
                 recipe: SaVosRecipe) -> torch.Tensor:
    """The training loss of a variant on a batch of windows (its own self-supervision)."""
    if variant.loss == "deocclusion":
        return deocclusion_window_loss(model, batch, generator)
    return savos_loss(model, batch, photometric=recipe.photometric)


def train_variant(name: str, data: WorldTracks, recipe: SaVosRecipe, seed: int, data_key: dict):
    """Train (or load from the cache) one ablation row on a world's tracks.

    Every row gets the same windows, steps, batch and selection rule: the lowest value of its
    own self-supervised loss on fixed validation windows (no ground truth).

    Returns:
        :class:`amodalkit.train.TrainResult`.
    """
    from .train import device, train_cached

    if name not in VARIANTS:
        raise ValueError(f"unknown SaVos variant {name!r}; expected one of {sorted(VARIANTS)}")
    variant = VARIANTS[name]
    run_device = device()
    train_windows = _windows(data.tracks["train"], recipe.window)
    val_windows = _windows(data.tracks["val"], recipe.window)
    if not train_windows or not val_windows:
        raise ValueError(f"{data.world}: no training or validation window of {recipe.window} frames")
    spread = np.linspace(0, len(val_windows) - 1, min(recipe.val_windows, len(val_windows))).round().astype(int)
    val_batch = track_batch([data.tracks["val"][val_windows[i][0]][1] for i in spread],
                            [val_windows[i][1] for i in spread], recipe.window).to(run_device)

    def loss_fn(model, step, g):
        pick = torch.randint(len(train_windows), (recipe.batch,), generator=g).tolist()
        batch = track_batch([data.tracks["train"][train_windows[i][0]][1] for i in pick],
                            [train_windows[i][1] for i in pick], recipe.window).to(run_device)
        return variant_loss(model, variant, batch, g, recipe)

    def validate(model):
        return float(variant_loss(model, variant, val_batch, torch.Generator().manual_seed(12345), recipe))

    def make():
        torch.manual_seed(seed)
        return make_model(variant, recipe)

    config = dict(method="savos", variant=name, recipe=recipe.__dict__, data=data_key, seed=seed)
    return train_cached(f"savos-{name}", config, make, loss_fn, code=("savos.py", "deocclusion.py", "ops.py"),
                        steps=recipe.steps, lr=recipe.lr, seed=seed, validate=validate, desc=f"{data.world} {name}")


@torch.no_grad()
def crop_predictions(model: nn.Module, variant: Variant, track, donor=None) -> np.ndarray:
    """(N, h, w) amodal probabilities of every frame of a track in its crops.

    SaVos-loss rows: the fused prediction (frames 1..N-2 have both passes; each frame's prediction
    is made without its own visible mask). Self-Deocclusion-loss rows: the completer's output of
    each frame (the SaVos network) or PCNet-M's completion from [visible mask, other objects' masks].
    donor: another track whose frames replace each frame's history (SaVos networks; see :func:`reliance_probes`).
    """
    dev = next(model.parameters()).device
    model.eval()
    batch = track_batch([track]).to(dev)
    if variant.architecture == "pcnet":
        x = torch.stack([batch.visible[0], batch.others[0]], 1)
        return torch.sigmoid(model(x))[:, 0].cpu().numpy()
    pred = predict(model, batch, None if donor is None else cycled_batch(donor, len(track.frame_index)).to(dev))
    out = pred.masks if variant.loss == "deocclusion" else pred.fused
    return out[0].cpu().numpy()


@dataclass
class Scores:
    """Per object-frame scores of one method: keys (M, 3) = (clip, frame, object); full, occluded (M,);
    occlusion (M,) the ground-truth occlusion rate."""

    keys: np.ndarray
    full: np.ndarray
    occluded: np.ndarray
    occlusion: np.ndarray

    def miou(self, metric: str = "occluded", level: str = "frame", select: np.ndarray | None = None) -> float:
        """Frame-level (the paper's) or object-level mIoU of ``metric`` over the selected object-frames."""
        from .metrics import frame_level_miou, object_level_miou

        values = getattr(self, metric)
        keys = self.keys
        if select is not None:
            values, keys = values[select], keys[select]
        if level == "frame":
            return frame_level_miou(values, [tuple(k[:2]) for k in keys])
        if level == "object":
            return object_level_miou(values)
        raise ValueError(f"Scores.miou: level must be 'frame' or 'object', got {level!r}")


def score_tracks(data: WorldTracks, image_predictions) -> Scores:
    """Score image-space predictions of the test tracks with SaVos's metric.

    Args:
        image_predictions: one (N, H, W) probability array per test track (its frames), in order.

    Object-frames are kept where 0.1 < occlusion < 0.7, without the track's first and last frame.
    """
    from .metrics import amodal_ious

    keys, full, occluded, occlusion = [], [], [], []
    unions = [seen.any(axis=1) for seen in data.visible["test"]]  # once per clip, not per track
    for (i, track), prob in zip(data.tracks["test"], image_predictions):
        clip, seen, union = data.clips["test"][i], data.visible["test"][i], unions[i]
        obj = track.object_index
        frames = track.frame_index
        for j in range(1, len(frames) - 1):
            t = frames[j]
            occ = clip.occlusion[t, obj]
            if not 0.1 < occ < 0.7:
                continue
            weight = 1.0 - (union[t] & ~seen[t, obj])
            f, o = amodal_ious(prob[j], seen[t, obj], weight, clip.amodal[t, obj])
            keys.append((i, t, obj))
            full.append(f)
            occluded.append(o)
            occlusion.append(occ)
    return Scores(np.array(keys, dtype=int).reshape(-1, 3), np.array(full), np.array(occluded), np.array(occlusion))


def image_predictions(model: nn.Module, variant: Variant, data: WorldTracks, donors: list | None = None) -> list[np.ndarray]:
    """Each test track's crop predictions pasted back into the image: (N, H, W) per track.

    donors: one donor track per test track, whose frames replace the history (the history-swap probe).
    """
    out = []
    for j, (i, track) in enumerate(data.tracks["test"]):
        h, w = data.clips["test"][i].frames.shape[1:3]
        donor = None if donors is None else donors[j]
        out.append(track.paste(crop_predictions(model, variant, track, donor), h, w))
    return out


RELIANCE_PROBES = {
    "history": "each frame's history (the frames before it, in each pass) taken from a track of another clip",
    "flow": "the flow input zeroed (network input and base flow, as in the no_flow row)",
    "image": "the RGB input zeroed (as in the no_image row)",
}


@contextmanager
def switched_inputs(model: SaVosNet, **switches: bool):
    """Switch a trained SaVos network's inputs off for a test-time probe (``flow_input=False``, ``image_input=False``);
    the variant is restored on exit."""
    unknown = set(switches) - {"flow_input", "image_input"}
    if unknown:
        raise ValueError(f"switched_inputs: only flow_input and image_input can be switched at test time, got {sorted(unknown)}")
    saved = model.variant
    model.variant = replace(saved, **switches)
    try:
        yield model
    finally:
        model.variant = saved


def donor_tracks(data: WorldTracks) -> list:
    """For each test track, a donor: the next test track (in order, cyclically) that comes from another clip, else
    the next other track. Raises ValueError with fewer than two test tracks."""
    tracks = data.tracks["test"]
    if len(tracks) < 2:
        raise ValueError(f"{data.world} (seed {data.seed}): the history probe needs at least 2 test tracks, got {len(tracks)}")
    donors = []
    for j, (clip, _) in enumerate(tracks):
        order = [(j + k) % len(tracks) for k in range(1, len(tracks))]
        pick = next((m for m in order if tracks[m][0] != clip), order[0])
        donors.append(tracks[pick][1])
    return donors


def reliance_probes(model: SaVosNet, data: WorldTracks) -> dict[str, float]:
    """How much a trained SaVos model uses each input: the occluded frame-level mIoU on the test tracks, intact, and
    its drop when one input is taken away at test time (no retraining; see ``RELIANCE_PROBES``).

    A model whose mIoU does not drop without an input does not use it, so ablating that input in training cannot
    show what the input is worth: these drops are the gates of the ablation claims.

    Returns:
        {"intact": mIoU, "history": drop, "flow": drop, "image": drop}; a drop is intact minus probed.
    """
    if not isinstance(model, SaVosNet):
        raise ValueError(f"reliance_probes: needs a SaVos network, got {type(model).__name__}")
    variant = model.variant

    def miou(**kwargs) -> float:
        return score_tracks(data, image_predictions(model, variant, data, **kwargs)).miou("occluded")

    intact = miou()
    out = {"intact": intact, "history": intact - miou(donors=donor_tracks(data))}
    for probe, switch in (("flow", "flow_input"), ("image", "image_input")):
        with switched_inputs(model, **{switch: False}):
            out[probe] = intact - miou()
    return out


def rule_predictions(data: WorldTracks, k: int, flow: str = "estimated") -> list[np.ndarray]:
    """Algorithm 1 (forward ∪ backward, ``k`` frames) on each test track, in image space, with the
    estimated flow the models see or the world's exact flow."""
    out = []
    for i, track in data.tracks["test"]:
        clip, seen = data.clips["test"][i], data.visible["test"][i]
        fwd, bwd = (f.astype(np.float32) for f in data.flows["test"][i]) if flow == "estimated" else (clip.flow_fwd, clip.flow_bwd)
        frames = track.frame_index
        vis = seen[frames, track.object_index]
        out.append(rule_based_completion(vis, fwd[frames], bwd[frames], k).astype(np.float32))
    return out


def chapter_setup(world: str, seed: int, params: dict) -> tuple[WorldTracks, SaVosRecipe, dict]:
    """The tracks, recipe and cache key of one world and seed from a SaVos chapter's parameters.

    Every chapter builds its rows through this function, so the same parameters give the same
    cached models in every chapter (the ablation chapter trains them, the others reuse them).

    Args:
        params: the chapter's parameters: preset, train_clips, val_clips, test_clips, crop (the
            crop height; the width is twice it), base, window, batch, steps, lr, pcnet_width, and
            optionally flow ("estimated", the default, or "truth": the world's exact flow as input).
    """
    size = (int(params["crop"]), 2 * int(params["crop"]))
    recipe = SaVosRecipe(size=size, base=params["base"], window=params["window"], batch=params["batch"],
                         steps=params["steps"], lr=params["lr"], photometric=0.1 if world == "fishbowl" else 0.0,
                         pcnet_width=params["pcnet_width"])
    clips = {"train": params["train_clips"], "val": params["val_clips"], "test": params["test_clips"]}
    flow = params.get("flow", "estimated")
    data = load_world_tracks(world, seed, clips, size=size, window=recipe.window, preset=params["preset"], flow=flow)
    return data, recipe, dict(world=world, seed=seed, clips=clips, preset=params["preset"], flow=flow)


def variant_scores(name: str, data: WorldTracks, recipe: SaVosRecipe, seed: int, key: dict):
    """Train (or load) one row and score it on the test tracks: (TrainResult, Scores, image predictions)."""
    result = train_variant(name, data, recipe, seed, key)
    predictions = image_predictions(result.model, VARIANTS[name], data)
    return result, score_tracks(data, predictions), predictions


def binary_amodal(prob: np.ndarray, seen: np.ndarray, obj: int) -> np.ndarray:
    """(N, H, W) bool: a track's predictions fused with the visible masks as the metric does, for display.

    Args:
        prob: (N, H, W) probabilities of frames ``t`` of the track; seen: (N, K, H, W) the visible
            masks of those frames; obj: the object.
    """
    from .metrics import fuse_with_visible

    weight = 1.0 - (seen.any(axis=1) & ~seen[:, obj])
    return fuse_with_visible(prob, seen[:, obj], weight)

"""SaVos's losses: W, L_M, L_C (the paper's plain sum or the release's running total), L_complete of App. B, and the
training loss of a SaVos network on windows of crops (L_M on the fused predictions + L_C + the photometric term).

Self-Deocclusion's loss on the same windows (Table 2's rows) and the supervised upper bound's are here too.

Shapes: B batch (objects), T frames, H x W pixels. Masks are float probabilities in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..deocclusion import erasers, weighted_deocclusion_loss
from ..ops import soft_iou, warp
from .model import Direction, Prediction, SaVosNet, TrackBatch, _flip, crop_warp, predict


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
    pred_next: torch.Tensor, pred: torch.Tensor, distance: str = "soft_iou", pair_weighting: str = "sum",
    pair_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_C: the distance between each warped prediction and the next prediction, summed over pairs.

    Args:
        pred_next: (B, T-1, H, W) the predictions of frames 0..T-2 warped to frames 1..T-1.
        pred: (B, T, H, W) the predictions themselves.
        distance: "soft_iou" (the paper's main text and the release: 1 - softIoU per pair) or
            "l2" (the pixel-wise d of the proof, Eq. 12: squared differences summed over pixels).
        pair_weighting: "sum" (the paper's plain sum) or "release" (the release's running total:
            each pair term is added to a cumulative sum and the running totals are summed, so pair j
            of T-1 (0-based) counts T-1-j times: the earliest pair most).
        pair_valid: (T-1,) or (B, T-1) 1 for the pairs that count (the release's per-frame counts),
            0 for the others; default all.

    Returns:
        scalar, averaged over the batch; 0 iff every counted warped prediction equals the next
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
    if pair_valid is not None:
        per_pair = per_pair * pair_valid.to(per_pair.device, per_pair.dtype)
    if pair_weighting == "sum":
        total = per_pair.sum(dim=1)
    elif pair_weighting == "release":
        total = torch.cumsum(per_pair, dim=1).sum(dim=1)
    else:
        raise ValueError(f"consistency_loss: pair_weighting must be 'sum' or 'release', got {pair_weighting!r}")
    return total.mean()


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


def _chain_consistency(probs: torch.Tensor, flow: torch.Tensor, boxes: torch.Tensor, pair_weighting: str,
                       valid: torch.Tensor | None = None) -> torch.Tensor:
    """L_C along one time order: each frame's mask (N, T, h, w) warped by its flow (detached) into the next frame's
    crop against that frame's mask; ``valid`` (T,) the frames whose masks count (a pair needs both)."""
    n, t_len, h, w = probs.shape
    flow = flow.detach()
    nxt = crop_warp(probs[:, :-1].flatten(0, 1)[:, None], flow[:, :-1].flatten(0, 1), boxes[:, :-1].flatten(0, 1),
                    boxes[:, 1:].flatten(0, 1)).view(n, t_len - 1, h, w)
    pairs = None if valid is None else (valid[:-1] & valid[1:])
    return consistency_loss(nxt, probs, pair_weighting=pair_weighting, pair_valid=pairs)


def _pass_consistency(direction: Direction, boxes: torch.Tensor, reverse: bool, pair_weighting: str) -> torch.Tensor:
    """L_C of one pass on its own masks (the paper's form): the backward pass runs in reversed time."""
    probs, flow = torch.sigmoid(direction.mask_logits), direction.flow
    if reverse:
        probs, flow, boxes = _flip(probs), _flip(flow), _flip(boxes)
    return _chain_consistency(probs, flow, boxes, pair_weighting)


def fused_consistency(pred: "Prediction", boxes: torch.Tensor, pair_weighting: str = "release") -> torch.Tensor:
    """L_C as the release computes it: on the alpha-fused predictions of the valid frames, once along the forward
    pass's flows and once, time-flipped, along the backward pass's (forward only without a backward pass)."""
    loss = _chain_consistency(pred.fused, pred.forward.flow, boxes, pair_weighting, pred.valid)
    if pred.backward is not None:
        loss = loss + _chain_consistency(_flip(pred.fused), _flip(pred.backward.flow), _flip(boxes), pair_weighting,
                                         pred.valid.flip(0))
    return loss


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


def savos_loss(model: SaVosNet, batch: TrackBatch, *, photometric: float = 0.0) -> torch.Tensor:
    """L_M on the fused predictions (+ L_C when the variant has it, + the photometric term).

    L_C follows the variant's ``consistency_form``: "release" (on the fused predictions, pairs weighted by the
    release's running total, :func:`fused_consistency`) or "paper" (on each pass's own masks, a plain sum).

    Returns:
        scalar; L_M sums over pixels and averages over windows and valid frames.
    """
    pred = predict(model, batch)
    valid = pred.valid.to(batch.visible.device)
    loss = mask_loss(pred.fused[:, valid], batch.visible[:, valid], batch.weight[:, valid])
    if model.variant.consistency and model.variant.consistency_form == "release":
        loss = loss + fused_consistency(pred, batch.boxes, "release")
    elif model.variant.consistency:
        loss = loss + _pass_consistency(pred.forward, batch.boxes, False, "sum")
        if pred.backward is not None:
            loss = loss + _pass_consistency(pred.backward, batch.boxes, True, "sum")
    if photometric:
        loss = loss + photometric * photometric_loss(pred.forward, batch)
    return loss


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


def supervised_window_loss(model: nn.Module, batch: TrackBatch) -> torch.Tensor:
    """The supervised upper bound's loss: BCE of the completer's output of every frame (both passes of a
    bidirectional SaVos network, or PCNet-M on [visible mask, other objects' masks]) against the amodal ground truth
    in the frame's crop, mean over pixels. Uses ground truth: a diagnostic of the architecture, not SaVos."""
    if isinstance(model, SaVosNet):
        logits = model.direction(batch.frames, batch.visible, batch.flow_fwd).mask_logits
        loss = F.binary_cross_entropy_with_logits(logits, batch.amodal)
        if model.variant.bidirectional:
            back = _flip(model.direction(_flip(batch.frames), _flip(batch.visible), _flip(batch.flow_bwd)).mask_logits)
            loss = (loss + F.binary_cross_entropy_with_logits(back, batch.amodal)) / 2
        return loss
    x = torch.stack([batch.visible, batch.others], 2).flatten(0, 1)
    return F.binary_cross_entropy_with_logits(model(x)[:, 0], batch.amodal.flatten(0, 1))

"""Inference with recurrent refinement (Algorithm S1 of supplement 003).

For each query frame the memory (frame 0 and the ``context`` previous frames, the CRW read-out:
:func:`amodalkit.propagation.propagate`) is read with one set of weights for both the value maps V_r (Eq. 7) and the
soft masks Y_r (Eq. 8, the coarse mask). :func:`refine` then runs R rounds: each re-encodes the query with its current
mask, concatenates that encoding with the read-out values and decodes (Eq. 9). Round 0 decodes from the read-out
alone (the query's encoding replaced by zeros), as section C describes it. The release does one pass per frame (no
rounds).

What a frame leaves in the memory follows the release (``infer_mask.py``; the supplement is silent): its mask is the
mean of the decoded mask and the read-out (the coarse mask, upsampled), the value memory encodes that mean, and the
label memory (what later coarse masks are read from) keeps the read-out alone, so a decoder that erases an object does
not erase it from every later read-out. The release averages the decoder's log-odds with the read-out's
probabilities; here both are probabilities (``blend=False``: the decoded mask alone, everywhere, as this book's earlier
editions did).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..crw import to_input
from ..propagation import propagate
from .model import MaskVOS, aggregate


def refine(values: torch.Tensor, coarse: torch.Tensor, encode_query: Callable[[torch.Tensor], torch.Tensor],
           decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], rounds: int) -> list[torch.Tensor]:
    """Algorithm S1's refinement loop for one query frame.

    Args:
        values: (O, D', h, w) read-out values of the O objects (Eq. 7).
        coarse: (O + 1, h, w) read-out soft mask, background first (Eq. 8).
        encode_query: object masks (O, h', w') in [0, 1] -> (O, D', h, w) encodings of the query with them.
        decode: (values, encodings) -> (O, 1, h4, w4) per-object logits.
        rounds: R >= 0.

    Returns:
        the merged soft masks (O + 1, h4, w4) after each round: one entry for R = 0 (read-out alone), else R entries
        (round r decodes with the encoding of round r - 1's mask, round 1 with the coarse mask's).
    """
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"refine: rounds must be an integer >= 0, got {rounds!r}")

    def merged(logits):
        return F.softmax(aggregate(torch.sigmoid(logits[:, 0]), dim=0), dim=0)

    if rounds == 0:
        return [merged(decode(values, torch.zeros_like(values)))]
    mask, out = coarse, []
    for _ in range(rounds):
        mask = merged(decode(values, encode_query(mask[1:])))
        out.append(mask)
    return out


@torch.no_grad()
def segment_clip(model: MaskVOS, frames: np.ndarray, first_mask: np.ndarray, *, rounds: int = 2, scale: float = 1.0,
                 batch: int = 8, blend: bool = True, **propagation) -> dict[str, np.ndarray]:
    """Segment a clip from its first frame's objects with Algorithm S1.

    Args:
        frames: (T, H, W, 3) uint8; first_mask: (H, W) int object ids (0 background, 1..O objects).
        rounds: R of the recurrent refinement (0: decode from the read-out alone).
        scale: frames are resized by this before encoding.
        blend: the release's memory (the module's docstring): a frame's mask is the mean of the decoded and the read-out
            masks and the label memory keeps the read-out; False: the decoded mask alone, in both memories.
        propagation: :func:`amodalkit.propagation.propagate` options (context, topk, radius, temperature).

    Returns:
        {"masks": (T, H, W) predicted ids (the blended masks with ``blend``), "decoded": (T, H, W) ids of the decoder's
        masks alone, "coarse": (T, H, W) ids of each frame's coarse read-out (Eq. 8)}.
    """
    first_mask = np.asarray(first_mask)
    n_objects = int(first_mask.max())
    if n_objects < 1:
        raise ValueError("segment_clip: the first mask has no object (every id is 0)")
    height, width = first_mask.shape
    model.eval()
    run_device = next(model.parameters()).device
    x = to_input(frames)
    if scale != 1.0:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    enc = {k: [] for k in ("key", "res4", "f3", "f2")}
    for i in range(0, len(x), batch):
        out = model.encode(x[i:i + batch].to(run_device))
        for k in enc:
            enc[k].append(out[k].cpu())
    enc = {k: torch.cat(v) for k, v in enc.items()}
    h, w = enc["key"].shape[-2:]
    size = x.shape[-2:]
    one_hot = F.one_hot(torch.from_numpy(first_mask.astype(np.int64)), n_objects + 1).permute(2, 0, 1).float()
    one_hot = F.interpolate(one_hot[None], size=size, mode="bilinear", align_corners=False)[0]
    value_dim = model.value_dim

    def encode_query_at(t):
        def encode(masks):  # (O, h', w') -> (O, D', h, w)
            m = F.interpolate(masks[:, None].float(), size=size, mode="bilinear", align_corners=False)
            v = model.mask_encoder(x[t:t + 1].expand(n_objects, -1, -1, -1).to(run_device), m.to(run_device),
                                   enc["res4"][t:t + 1].expand(n_objects, -1, -1, -1).to(run_device))
            return v.cpu()
        return encode

    def decode_at(t):
        def decode(values, own):
            f3 = enc["f3"][t:t + 1].expand(n_objects, -1, -1, -1)
            f2 = enc["f2"][t:t + 1].expand(n_objects, -1, -1, -1)
            return model.decoder(values.to(run_device), own.to(run_device), f3.to(run_device),
                                 f2.to(run_device)).cpu()
        return decode

    def payload(t, masks, labels=None):  # masks (O + 1, h', w') soft -> stored entry (O D' + O + 1, h, w)
        values = encode_query_at(t)(masks[1:])
        small = F.interpolate((masks if labels is None else labels)[None], size=(h, w), mode="bilinear",
                              align_corners=False)[0]
        return torch.cat([values.reshape(-1, h, w), small])

    finals, decoded, coarse = {0: one_hot}, {0: one_hot}, {0: one_hot}

    def update(t, readout):
        values = readout[:n_objects * value_dim].reshape(n_objects, value_dim, h, w)
        coarse[t] = readout[n_objects * value_dim:]
        decoded[t] = refine(values, coarse[t], encode_query_at(t), decode_at(t), rounds)[-1]
        if not blend:
            finals[t] = decoded[t]
            return payload(t, finals[t])
        up = F.interpolate(coarse[t][None], size=decoded[t].shape[-2:], mode="bilinear", align_corners=False)[0]
        finals[t] = (decoded[t] + up) / 2
        return payload(t, finals[t], labels=coarse[t])

    propagate(enc["key"].float(), payload(0, one_hot), update=update, **propagation)

    def ids(masks):
        return np.stack([F.interpolate(masks[t][None], size=(height, width), mode="bilinear",
                                       align_corners=False)[0].argmax(0).numpy() for t in range(len(frames))])

    out = {"masks": ids(finals), "decoded": ids(decoded), "coarse": ids(coarse)}
    out["masks"][0] = out["decoded"][0] = out["coarse"][0] = first_mask
    return out


def decoder_effect(decoded: dict[str, np.ndarray], coarse: dict[str, np.ndarray]) -> tuple[float, float]:
    """What the decoder did to the read-out, over frames 1.. of every clip (name -> (T, H, W) ids): the share of the
    foreground pixels (of either) where its masks differ from the coarse read-out's, and its foreground area over the
    read-out's (the decoder gates of the Mask-VOS chapter)."""
    changed = area = decoded_area = read_out_area = 0
    for name in decoded:
        d, c = decoded[name][1:], coarse[name][1:]
        changed += int(((d != c) & ((d > 0) | (c > 0))).sum())
        area += int(((d > 0) | (c > 0)).sum())
        decoded_area, read_out_area = decoded_area + int((d > 0).sum()), read_out_area + int((c > 0).sum())
    return changed / max(area, 1), decoded_area / max(read_out_area, 1)

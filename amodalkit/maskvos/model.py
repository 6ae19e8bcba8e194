"""The Mask-VOS network and its two losses (Li et al., CVPR 2023; supplement 003, release 0liliulei/Mask-VOS).

* the visual encoder is the CRW network (:class:`amodalkit.crw.CRW`: the stride-8 ResNet-18 and its linear head), so
  the two correspondence learners of Table S2 share one backbone; the key of a position is the head applied to res4
  there, L2-normalised (Alg. S1: ``key = normalize(MLP(res4))``);
* :class:`MaskEncoder` turns (frame, one object's mask) into values at 1/8, fused with the frame's res4 (the release
  passes the key encoder's res4 into its mask encoder);
* :class:`MaskDecoder` decodes (read-out values, the query's own mask encoding) with skip features at 1/8 and 1/4 into
  one logit map per object; :func:`aggregate` merges the objects' probabilities into background + object logits (the
  release's soft aggregation);
* :func:`correspondence_loss` is L_Corr as the release trains it (Araslanov et al.'s framework, checked in
  ``models/framework.py``); :func:`segmentation_loss` is L_Seg (``models/framework_mask.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..crw import CRW, crops


class MaskEncoder(nn.Module):
    """(frame, mask, res4) -> value map at 1/8: three stride-2 convolutions over the 4-channel (frame, mask) input,
    concatenated with the frame's res4 and mixed by a 3x3 convolution.

    frame (M, 3, H, W), mask (M, 1, H, W) in [0, 1], res4 (M, 8 width, H/8, W/8) -> (M, value_dim, H/8, W/8).
    """

    def __init__(self, width: int, value_dim: int):
        super().__init__()
        c = max(width, 4)
        self.down = nn.Sequential(nn.Conv2d(4, c, 3, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(c, 2 * c, 3, 2, 1),
                                  nn.ReLU(inplace=True), nn.Conv2d(2 * c, 2 * c, 3, 2, 1), nn.ReLU(inplace=True))
        self.fuse = nn.Conv2d(2 * c + 8 * width, value_dim, 3, 1, 1)

    def forward(self, frame: torch.Tensor, mask: torch.Tensor, res4: torch.Tensor) -> torch.Tensor:
        x = self.down(torch.cat([frame, mask], dim=1))
        x = F.interpolate(x, size=res4.shape[-2:], mode="bilinear", align_corners=False) if x.shape[-2:] != res4.shape[-2:] else x
        return self.fuse(torch.cat([x, res4], dim=1))


class MaskDecoder(nn.Module):
    """(read-out, query encoding, f3 at 1/8, f2 at 1/4) -> one object's mask logits at 1/4.

    readout, query (M, value_dim, h, w); f3 (M, 2 width, h, w); f2 (M, width, 2h, 2w) -> (M, 1, 2h, 2w).
    """

    def __init__(self, width: int, value_dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(2 * width, 16)
        self.compress = nn.Sequential(nn.Conv2d(2 * value_dim, hidden, 3, 1, 1), nn.ReLU(inplace=True))
        self.skip3 = nn.Conv2d(2 * width, hidden, 1)
        self.mix8 = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1), nn.ReLU(inplace=True))
        self.skip2 = nn.Conv2d(width, hidden, 1)
        self.mix4 = nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(hidden, 1, 3, 1, 1)

    def forward(self, readout, query, f3, f2) -> torch.Tensor:
        x = self.mix8(self.compress(torch.cat([readout, query], dim=1)) + self.skip3(f3))
        x = F.interpolate(x, size=f2.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(self.mix4(x + self.skip2(f2)))


class MaskVOS(nn.Module):
    """The whole model: ``crw`` (visual encoder with key head), ``mask_encoder``, ``decoder``."""

    def __init__(self, width: int = 64, dim: int = 128, value_dim: int = 128, padding: str = "reflect"):
        super().__init__()
        self.crw = CRW(width, dim, padding)
        self.mask_encoder = MaskEncoder(width, value_dim)
        self.decoder = MaskDecoder(width, value_dim)
        self.value_dim = value_dim

    def encode(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """(M, 3, H, W) -> {"key": (M, dim, H/8, W/8) L2-normalised, "res4": (M, 8w, H/8, W/8),
        "f3": (M, 2w, H/8, W/8) (layer2), "f2": (M, w, H/4, W/4) (layer1)}."""
        enc = self.crw.encoder
        f2 = enc.layer1(enc.stem(frames))
        f3 = enc.layer2(f2)
        res4 = enc.layer4(enc.layer3(f3))
        return {"key": self.key_of(res4), "res4": res4, "f3": f3, "f2": f2}

    def key_of(self, res4: torch.Tensor) -> torch.Tensor:
        """res4 (M, 8w, h, w) -> keys (M, dim, h, w): the head at every position, L2-normalised."""
        return F.normalize(self.crw.head(res4.movedim(1, -1)).movedim(-1, 1), dim=1)

    def keys(self, frames: torch.Tensor) -> torch.Tensor:
        """(M, 3, H, W) -> (M, dim, H/8, W/8) L2-normalised keys (the visual encoder only)."""
        return self.key_of(self.crw.encoder(frames)["res4"])


def aggregate(prob: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Soft aggregation of per-object probabilities into background + object logits (the release's ``aggregate``).

    prob (..., O, ...) along ``dim`` -> logits (..., O + 1, ...): background probability prod(1 - p_o), each
    probability clamped to [1e-7, 1 - 1e-7], logit = log(p / (1 - p)). A softmax over ``dim`` gives the merged mask.
    """
    merged = torch.cat([torch.prod(1 - prob, dim=dim, keepdim=True), prob], dim).clamp(1e-7, 1 - 1e-7)
    return torch.log(merged / (1 - merged))


# ---------------------------------------------------------------------------------------------------- L_Corr

def grid_index(h: int, w: int, grid: int, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """Anchor positions on a grid x grid lattice of an (h, w) map with one random offset per map (the release's
    ``_sample_index``): rows ``arange(0, h, h // grid)``, columns likewise, offsets uniform in the lattice cell.

    Returns (count, grid * grid) flat indices y * w + x (row-major).
    """
    sy, sx = max(h // grid, 1), max(w // grid, 1)
    ys = torch.arange(0, sy * grid, sy)[:grid]
    xs = torch.arange(0, sx * grid, sx)[:grid]
    oy = torch.randint(0, sy, (count, 1, 1), generator=generator)
    ox = torch.randint(0, sx, (count, 1, 1), generator=generator)
    return ((ys[None, :, None] + oy).clamp(max=h - 1) * w + (xs[None, None, :] + ox).clamp(max=w - 1)).flatten(1)


def zoom_boxes(count: int, size: int, zoom: tuple[float, float], flip: bool, generator: torch.Generator) -> torch.Tensor:
    """View 1's boxes inside a size x size view 2: a square of side zoom x size (zoom uniform in ``zoom``), placed
    uniformly, flipped horizontally with probability 1/2 when ``flip`` (the release's random zoom and guided flip).

    Returns (count, 4) boxes (centre x, centre y, width, height) for :func:`amodalkit.crw.crops` (negative width: flip).
    """
    side = torch.empty(count).uniform_(*zoom, generator=generator) * size
    x0 = torch.rand(count, generator=generator) * (size - side)
    y0 = torch.rand(count, generator=generator) * (size - side)
    width = side.clone()
    if flip:
        width = torch.where(torch.rand(count, generator=generator) < 0.5, -side, side)
    return torch.stack([x0 + side / 2, y0 + side / 2, width, side], dim=-1)


def align_to_view2(maps: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Warp view-1 maps into view 2's coordinates (nearest; zero outside the box), the release's ``_align``.

    maps (M, C, h, w) computed on view 1 (the crop ``boxes`` (M, 4) of a size x size view 2) -> (M, C, h, w).
    """
    m, _, h, w = maps.shape
    ys = (2 * torch.arange(h, dtype=maps.dtype) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=maps.dtype) + 1) / w - 1
    b = boxes.to(maps.dtype)
    cx, cy = 2 * b[:, 0] / size - 1, 2 * b[:, 1] / size - 1
    sx, sy = b[:, 2] / size, b[:, 3] / size  # a negative sx undoes the flip
    gx = (xs[None, None, :] - cx[:, None, None]) / sx[:, None, None]
    gy = (ys[None, :, None] - cy[:, None, None]) / sy[:, None, None]
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1).to(maps.device)
    return F.grid_sample(maps, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def correspondence_loss(model: MaskVOS, clips: torch.Tensor, generator: torch.Generator, *, grid: int = 8,
                        grid_ref: int = 4, temperature: float = 0.05, ce_ref: float = 0.1,
                        zoom: tuple[float, float] = (0.5, 1.0), flip: bool = True,
                        return_parts: bool = False):
    """L_Corr of one batch, as the release trains it (Araslanov et al.'s ``Framework.forward``).

    clips (B, T, 3, S, S) are view 2 (the release's un-augmented copy). View 1 is a random zoom (and flip) of each clip,
    the same box for all its frames. Anchors: a grid x grid lattice (random offset) of view 1's keys in frame 0, from
    every clip of the batch (other clips' anchors are negatives). Every position of every frame of view 1 is classified
    against the anchors (dot product / temperature) and warped into view 2's coordinates; its target is the argmax of
    view 2's softmax over the same clip's anchors (view 2 computed without gradient except its frame 0, the release's
    stop-gradient with its shared reference). The loss is the cross-entropy on frames 1..T-1 plus ``ce_ref`` x the
    cross-view key loss: at a grid_ref x grid_ref lattice of frame 0, each aligned view-1 key must pick out the view-2
    key of its own position among all of them.

    Returns the scalar loss (and, with ``return_parts``, a dict with the two terms).
    """
    b, t, _, s, _ = clips.shape
    boxes = zoom_boxes(b, s, zoom, flip, generator)
    view1 = crops(clips.flatten(0, 1), boxes.repeat_interleave(t, 0)[:, None].to(clips.device), (s, s))[:, 0]
    # view 2's reference frames go through the network with view 1 (with gradient); the rest without
    first = model.keys(torch.cat([view1, clips[:, 0]]))
    k1, k2_ref = first[:b * t], first[b * t:]
    with torch.no_grad():
        k2_rest = model.keys(clips[:, 1:].flatten(0, 1)) if t > 1 else k2_ref[:0]
    dim, h, w = k1.shape[1:]
    k2 = torch.cat([k2_ref[:, None], k2_rest.reshape(b, t - 1, dim, h, w)], dim=1).flatten(0, 1)
    boxes_t = boxes.repeat_interleave(t, 0)
    # anchors from view 1's frame 0
    index = grid_index(h, w, grid, b, generator).to(k1.device)  # (B, N)
    ref1 = k1.reshape(b, t, dim, h * w)[:, 0]  # (B, D, hw)
    anchors = ref1.gather(2, index[:, None].expand(-1, dim, -1)).transpose(1, 2).reshape(-1, dim)  # (B N, D)
    n = index.shape[1]

    def scores(keys):  # (BT, D, h, w) -> (BT, BN, h, w)
        return torch.einsum("mdhw,ad->mahw", keys, anchors) / temperature

    logits = align_to_view2(scores(k1), boxes_t, s)
    with torch.no_grad():
        target_scores = scores(k2.detach())
        own = torch.eye(b, device=k1.device).repeat_interleave(n, 1).repeat_interleave(t, 0)  # (BT, BN): same clip
        probs = F.softmax(target_scores, dim=1) * own[:, :, None, None]
        pseudo = probs.argmax(1)  # (BT, h, w)
    errors = F.cross_entropy(logits, pseudo, reduction="none").reshape(b, t, h, w)
    temporal = errors[:, 1:].mean() if t > 1 else errors.sum() * 0
    # cross-view key loss on the reference frames (both aligned to view 2's coordinates)
    a1 = align_to_view2(k1.reshape(b, t, dim, h, w)[:, 0], boxes, s).reshape(b, dim, h * w)
    a2 = k2.reshape(b, t, dim, h, w)[:, 0].reshape(b, dim, h * w)
    ref_index = grid_index(h, w, grid_ref, b, generator).to(k1.device)
    x1 = a1.gather(2, ref_index[:, None].expand(-1, dim, -1)).transpose(1, 2).reshape(-1, dim)
    y1 = a2.gather(2, ref_index[:, None].expand(-1, dim, -1)).transpose(1, 2).reshape(-1, dim)
    cross = F.cross_entropy(x1 @ y1.T / temperature, torch.arange(len(x1), device=x1.device))
    loss = ce_ref * cross + temporal
    return (loss, {"temporal": float(temporal.detach()), "cross_key": float(cross.detach())}) if return_parts else loss


# ----------------------------------------------------------------------------------------------------- L_Seg

def bootstrapped_cross_entropy(logits: torch.Tensor, target: torch.Tensor, step: int, start: int = 2000,
                               end: int = 12000, top_p: float = 0.15) -> torch.Tensor:
    """The release's ``BootstrappedCE``: plain cross-entropy before ``start``; after, the mean of the largest
    p-fraction of the per-pixel losses, p going linearly from 1 at ``start`` to ``top_p`` at ``end``.
    (Defined in the release's framework_mask.py, but its call is commented out there: it trains with plain CE.)"""
    if step < start:
        return F.cross_entropy(logits, target)
    raw = F.cross_entropy(logits, target, reduction="none").reshape(-1)
    p = top_p if step > end else top_p + (1 - top_p) * (end - step) / (end - start)
    return torch.topk(raw, max(int(raw.numel() * p), 1), sorted=False).values.mean()


def memory_affinity(memory_keys: torch.Tensor, query_keys: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Softmax over all memory positions of key . query / temperature (training read-out, the release's
    ``batched_affinity``). memory_keys (B, N, D, h, w), query_keys (B, D, h, w) -> (B, N h w, h w)."""
    mk = memory_keys.transpose(1, 2).flatten(2)  # (B, D, N h w)
    qk = query_keys.flatten(2)  # (B, D, hw)
    return F.softmax(torch.einsum("bdm,bdq->bmq", mk, qk) / temperature, dim=1)


def segmentation_loss(model: MaskVOS, frames: torch.Tensor, labels: torch.Tensor, *, n_objects: int,
                      temperature: float = 0.05, step: int = 0, bootstrap: bool = False) -> torch.Tensor:
    """L_Seg of one batch of 3-frame clips, as the release's ``FrameworkMask.forward``.

    frames (B, 3, 3, H, W) normalised; labels (B, 3, H, W) int pseudo masks (0 background, 1..n_objects objects).
    Frame 1 is segmented from frame 0's memory, frame 2 from frames 0 and 1: the memory values encode the pseudo masks,
    the query is encoded with the coarse mask (the memory's one-hot masks read out with the same affinity, argmax,
    no gradient); the decoder's per-object logits are merged by :func:`aggregate` and scored by cross-entropy against
    the pseudo mask (0.5 per frame). ``bootstrap`` uses :func:`bootstrapped_cross_entropy` (the release does not).
    """
    b, t, _, height, width = frames.shape
    if t != 3:
        raise ValueError(f"segmentation_loss: clips must have 3 frames, got {t}")
    enc = model.encode(frames.flatten(0, 1))
    key, res4, f3, f2 = (enc[k].reshape(b, t, *enc[k].shape[1:]) for k in ("key", "res4", "f3", "f2"))
    h, w = key.shape[-2:]
    one_hot = F.one_hot(labels.long(), n_objects + 1).movedim(-1, 2).float()  # (B, 3, L, H, W)
    small = F.interpolate(one_hot.flatten(0, 1), size=(h, w), mode="bilinear", align_corners=False)
    small = small.reshape(b, t, n_objects + 1, h, w)

    def values_of(i: int, masks: torch.Tensor) -> torch.Tensor:  # masks (B, O, H, W) -> (B, O, D', h, w)
        m = masks.flatten(0, 1)[:, None]
        v = model.mask_encoder(frames[:, i].repeat_interleave(n_objects, 0), m, res4[:, i].repeat_interleave(n_objects, 0))
        return v.reshape(b, n_objects, *v.shape[1:])

    memory_values = [values_of(0, one_hot[:, 0, 1:])]
    total = 0.0
    for query in (1, 2):
        affinity = memory_affinity(key[:, :query], key[:, query], temperature)  # (B, q h w, h w)
        with torch.no_grad():  # the coarse mask: the memory's masks read out, hardened
            ctx = small[:, :query].transpose(1, 2).flatten(2)  # (B, L, q h w)
            coarse = torch.bmm(ctx, affinity).argmax(1)  # (B, hw)
            coarse = F.one_hot(coarse, n_objects + 1).transpose(1, 2).reshape(b, n_objects + 1, h, w).float()
            coarse = F.interpolate(coarse[:, 1:], size=(height, width), mode="bilinear", align_corners=False)
        own = values_of(query, coarse)  # (B, O, D', h, w)
        mem = torch.stack(memory_values, dim=2)  # (B, O, q, D', h, w)
        mem = mem.permute(0, 1, 3, 2, 4, 5).flatten(3)  # (B, O, D', q h w)
        readout = torch.einsum("bodm,bmq->bodq", mem, affinity).reshape(b, n_objects, -1, h, w)
        f3q = f3[:, query].repeat_interleave(n_objects, 0)
        f2q = f2[:, query].repeat_interleave(n_objects, 0)
        logits = model.decoder(readout.flatten(0, 1), own.flatten(0, 1), f3q, f2q).reshape(b, n_objects, *f2.shape[-2:])
        merged = aggregate(torch.sigmoid(logits), dim=1)  # (B, L, H/4, W/4)
        target = F.interpolate(labels[:, query, None].float(), size=f2.shape[-2:], mode="nearest")[:, 0].long()
        ce = bootstrapped_cross_entropy(merged, target, step) if bootstrap else F.cross_entropy(merged, target)
        total = total + 0.5 * ce
        if query == 1:  # frame 1 enters the memory with its pseudo mask, as the release
            memory_values.append(values_of(1, one_hot[:, 1, 1:]))
    return total

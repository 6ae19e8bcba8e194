"""CRW (Jabri et al., NeurIPS 2020): the contrastive objective and its label-noise analysis (App. A).

This module holds App. A (the gradient of the contrastive objective with respect to the query when
some negatives are identical to the positive), the encoder (ResNet-18 at output stride 8, reflect
padding as the release), node extraction (a jittered patch grid, or one shared feature map for the
shortcut of App. C), the palindrome random-walk loss with the release's edge dropout, clip sampling
with a frame stride (App. D) and a random resized crop per frame, and the training recipe of Table E
scaled by profile (:func:`train_crw`, the last step evaluated as the release evaluates its last
checkpoint). Label propagation is in :mod:`amodalkit.propagation`.

For a query q, a positive u and negatives V (temperature 1, as in the appendix)

    L(q, u, V) = u.q - log(exp(u.q) + sum_v exp(v.q)),

and with |V-| negatives identical to u the gradient is lambda_u u - sum_{v in V+} (exp(v.q) / Z) v with
lambda_u = 1 - (1 + |V-|) exp(u.q) / Z >= 0: identical negatives can shrink the positive's pull to
zero, never reverse it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
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
    Written here because torchvision does not import beside the pinned torch build. ``padding="reflect"``
    pads every padded convolution (stem and residual blocks) by reflection, as the release trains from
    scratch; the max-pool keeps its own padding.
    """

    def __init__(self, width: int = 64, padding: str = "zeros"):
        super().__init__()
        if padding not in ("zeros", "reflect"):
            raise ValueError(f"ResNet18Stride8: padding must be 'zeros' or 'reflect', got {padding!r}")
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        channels = [width, 2 * width, 4 * width, 8 * width]
        strides = [1, 2, 1, 1]
        layers, previous = [], width
        for c, s in zip(channels, strides):
            layers.append(nn.Sequential(BasicBlock(previous, c, s), BasicBlock(c, c, 1)))
            previous = c
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and sum(module.padding) > 0:
                module.padding_mode = padding

    def forward(self, x: torch.Tensor, upto: str = "res4") -> dict[str, torch.Tensor]:
        """``upto="res3"`` stops before layer4 (half the work at full resolution) and returns only res3."""
        x = self.layer2(self.layer1(self.stem(x)))
        res3 = self.layer3(x)
        return {"res3": res3} if upto == "res3" else {"res3": res3, "res4": self.layer4(res3)}


# ------------------------------------------------------------------------------ the random walk


DROPPED = -1e20  # the release's value for a dropped edge (finite: a row with every edge dropped stays a distribution)


def drop_edges(shape: tuple[int, ...], rate: float, generator: torch.Generator | None, device) -> torch.Tensor:
    """A bool mask of dropped edges: each entry independently with probability ``rate``."""
    return (torch.rand(shape, generator=generator) < rate).to(device)


def transitions(a: torch.Tensor, b: torch.Tensor, temperature: float, edge_dropout: float = 0.0,
                generator: torch.Generator | None = None, dropped: torch.Tensor | None = None) -> torch.Tensor:
    """Row-stochastic transitions from nodes ``a`` to nodes ``b``: softmax over b of a.b / temperature.

    Args:
        a: (B, N, D), b: (B, M, D) L2-normalised node embeddings.
        edge_dropout: fraction of affinities dropped (set to -1e20) before the softmax (the release's edge dropout).
        dropped: (B, N, M) bool, edges dropped in any case (on top of the random draw).

    Returns:
        (B, N, M), each row summing to 1.
    """
    affinity = a @ b.transpose(1, 2)
    drop = dropped
    if edge_dropout > 0:
        fresh = drop_edges(affinity.shape, edge_dropout, generator, affinity.device)
        drop = fresh if drop is None else drop | fresh
    if drop is not None:
        affinity = affinity.masked_fill(drop, DROPPED)
    return torch.softmax(affinity / temperature, dim=-1)


def walk_loss(nodes: torch.Tensor, temperature: float = 0.05, edge_dropout: float = 0.0, skip_shortest: bool = True,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The palindrome walk loss: walks t0 -> ... -> t_i -> ... -> t0 must return every node to itself.

    Edge dropout as the release draws it: the forward transitions t -> t+1 drop a random ``edge_dropout`` of their
    edges; the backward transitions t+1 -> t drop the same edges (the release drops in place on the shared
    affinity, which the backward step then transposes) and a fresh random fraction on top.

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
    forward_drops = [drop_edges((b, n, n), edge_dropout, generator, nodes.device) if edge_dropout > 0 else None
                     for _ in range(t_len - 1)]
    forward = [transitions(nodes[:, t], nodes[:, t + 1], temperature, dropped=forward_drops[t]) for t in range(t_len - 1)]
    backward = [transitions(nodes[:, t + 1], nodes[:, t], temperature, edge_dropout, generator,
                            dropped=None if forward_drops[t] is None else forward_drops[t].transpose(1, 2))
                for t in range(t_len - 1)]
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


# ------------------------------------------------------------------------------- inputs and nodes

PIXEL_MEAN, PIXEL_STD = 0.45, 0.225


def to_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 frames (..., H, W, 3) -> normalised float (..., 3, H, W)."""
    x = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    return ((x.float() / 255 - PIXEL_MEAN) / PIXEL_STD).movedim(-1, -3).contiguous()


def crops(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear crops of several boxes per image, resized to ``size``.

    Args:
        images: (M, C, H, W).
        boxes: (M, K, 4) as (centre x, centre y, width, height) in pixels of a continuous frame
            whose pixel i covers [i, i + 1); a negative width flips the crop horizontally.
        size: (h, w) of each crop.

    Returns:
        (M, K, C, h, w). A box with integer corners and the crop's own size reproduces the slice exactly.
    """
    m, c, height, width = images.shape
    k = boxes.shape[1]
    oh, ow = size
    # output pixel centres in [-1, 1] of the crop, mapped into each box, in the image's normalised coordinates
    ys = (2 * torch.arange(oh, dtype=images.dtype, device=images.device) + 1) / oh - 1
    xs = (2 * torch.arange(ow, dtype=images.dtype, device=images.device) + 1) / ow - 1
    b = boxes.to(images.dtype)
    gx = (2 * b[..., 0, None, None] + b[..., 2, None, None] * xs[None, None, None, :]) / width - 1  # (M, K, 1, ow)
    gy = (2 * b[..., 1, None, None] + b[..., 3, None, None] * ys[None, None, :, None]) / height - 1  # (M, K, oh, 1)
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # (M, K, oh, ow, 2)
    # all crops of one image sampled as one tall output image: no copy of the image per crop
    out = F.grid_sample(images, grid.reshape(m, k * oh, ow, 2), mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.reshape(m, c, k, oh, ow).transpose(1, 2)


def patch_boxes(height: int, width: int, grid: int, patch: int, count: int, generator: torch.Generator | None = None,
                jitter: tuple[float, float] | None = (0.7, 0.9), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Boxes of a grid x grid patch grid (row-major), each optionally jittered by a random resized crop.

    The patches of side ``patch`` are spread evenly (first at the top-left corner, last at the
    bottom-right). With ``jitter=(lo, hi)`` each patch is replaced by a random sub-box covering a
    fraction in [lo, hi] of its area with aspect ratio in ``ratio`` (RandomResizedCrop), drawn
    independently for each of ``count`` images. Returns (count, grid * grid, 4) boxes for :func:`crops`.
    """
    if patch > min(height, width):
        raise ValueError(f"patch_boxes: patch side {patch} exceeds the frame {height}x{width}")
    step_y = (height - patch) / max(grid - 1, 1)
    step_x = (width - patch) / max(grid - 1, 1)
    y0 = (torch.arange(grid) * step_y).repeat_interleave(grid)
    x0 = (torch.arange(grid) * step_x).repeat(grid)
    n = grid * grid
    if jitter is None:
        w = h = torch.full((count, n), float(patch))
        ox = oy = torch.zeros(count, n)
    else:
        area = torch.empty(count, n).uniform_(*jitter, generator=generator) * patch**2
        log_r = torch.empty(count, n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
        w = torch.sqrt(area * torch.exp(log_r)).clamp(max=patch)
        h = torch.sqrt(area / torch.exp(log_r)).clamp(max=patch)
        ox = torch.rand(count, n, generator=generator) * (patch - w)
        oy = torch.rand(count, n, generator=generator) * (patch - h)
    return torch.stack([x0 + ox + w / 2, y0 + oy + h / 2, w, h], dim=-1)


class CRW(nn.Module):
    """The CRW network: the stride-8 ResNet-18 and a linear head to ``dim``-d L2-normalised nodes.

    Nodes come either from patches (each encoded on its own, res4 mean-pooled, as the release does)
    or, for the shortcut experiment of App. C, from the positions of one res4 map of the whole frame.
    For propagation, :meth:`features` gives the L2-normalised res3 (or res4) map without the head.
    """

    def __init__(self, width: int = 64, dim: int = 128, padding: str = "zeros"):
        super().__init__()
        self.encoder = ResNet18Stride8(width, padding)
        self.head = nn.Linear(8 * width, dim)

    def patch_nodes(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, T, N, 3, p, p) patches -> (B, T, N, dim) nodes."""
        b, t, n = patches.shape[:3]
        res4 = self.encoder(patches.flatten(0, 2))["res4"].mean(dim=(2, 3))
        return F.normalize(self.head(res4), dim=-1).reshape(b, t, n, -1)

    def map_nodes(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) frames -> (B, T, h * w, dim): one node per position of the shared res4 map."""
        b, t = frames.shape[:2]
        res4 = self.encoder(frames.flatten(0, 1))["res4"]  # (B*T, C, h, w)
        nodes = self.head(res4.flatten(2).transpose(1, 2))
        return F.normalize(nodes, dim=-1).reshape(b, t, nodes.shape[1], -1)

    def features(self, frames: torch.Tensor, layer: str = "res3") -> torch.Tensor:
        """(M, 3, H, W) frames -> (M, C, H/8, W/8) L2-normalised ``layer`` features (no head)."""
        if layer not in ("res3", "res4"):
            raise ValueError(f"CRW.features: layer must be 'res3' or 'res4', got {layer!r}")
        return F.normalize(self.encoder(frames, upto=layer)[layer], dim=1)


def pixel_features(frames: torch.Tensor, stride: int = 8) -> torch.Tensor:
    """The raw-pixel baseline: each stride x stride x 3 block, minus the frame's mean colour, L2-normalised.

    frames: (M, 3, H, W) normalised -> (M, 3 * stride**2, H // stride, W // stride).
    """
    centred = frames - frames.mean(dim=(2, 3), keepdim=True)
    blocks = F.unfold(centred, stride, stride=stride)  # (M, 3 s^2, L)
    m, _, height, width = frames.shape
    return F.normalize(blocks, dim=1).reshape(m, -1, height // stride, width // stride)


# ------------------------------------------------------------------------------- clips and training


def clip_starts(n_frames: int, clip_len: int, stride: int) -> int:
    """Number of valid start frames of a clip of ``clip_len`` frames ``stride`` apart (stride 0: one frame repeated)."""
    span = (clip_len - 1) * stride + 1
    if span > n_frames:
        raise ValueError(f"a clip of {clip_len} frames at stride {stride} spans {span} frames; videos have {n_frames}")
    return n_frames - span + 1


def random_resized_boxes(count: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                         generator: torch.Generator, tries: int = 10) -> torch.Tensor:
    """``count`` boxes drawn as torchvision's RandomResizedCrop draws one: area a fraction in ``scale`` of the frame,
    aspect ratio log-uniform in ``ratio``, sides rounded to pixels; the first of ``tries`` draws that fits in the frame
    is placed uniformly, and if none fits, the centred box of the frame's aspect clamped to ``ratio``.

    Returns:
        (count, 4) boxes (centre x, centre y, width, height) for :func:`crops`.
    """
    area = torch.empty(count, tries).uniform_(*scale, generator=generator) * height * width
    aspect = torch.exp(torch.empty(count, tries).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((count,), -1))
    # the fallback: the frame's aspect clamped to the allowed ratios, centred
    frame_ratio = width / height
    if frame_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif frame_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    pick = first.clamp(min=0)[:, None]
    bw = torch.where(first >= 0, w.gather(1, pick)[:, 0], torch.tensor(float(fw)))
    bh = torch.where(first >= 0, h.gather(1, pick)[:, 0], torch.tensor(float(fh)))
    # the top-left corner uniform over the integer positions that keep the box inside (centred for the fallback)
    x0 = torch.floor(torch.rand(count, generator=generator) * (width - bw + 1))
    y0 = torch.floor(torch.rand(count, generator=generator) * (height - bh + 1))
    x0 = torch.where(first >= 0, x0, torch.tensor(float((width - fw) // 2)))
    y0 = torch.where(first >= 0, y0, torch.tensor(float((height - fh) // 2)))
    return torch.stack([x0 + bw / 2, y0 + bh / 2, bw, bh], dim=-1)


def sample_clips(videos: torch.Tensor, batch: int, clip_len: int, stride: int, crop: int,
                 generator: torch.Generator, scale: tuple[float, float] = (0.8, 0.95),
                 ratio: tuple[float, float] = (0.7, 1.3), per_frame: bool = True, flip: bool = False) -> torch.Tensor:
    """Training clips: random video and start; each frame cropped (RandomResizedCrop) and resized to crop x crop.

    Args:
        videos: (V, T, H, W, 3) uint8 frames (kept as bytes: a quarter of the memory of floats).
        stride: frames between clip frames; 0 repeats one frame ``clip_len`` times (App. D's
            infinite frame rate: only the crops and the patch jitter differ between frames).
        scale, ratio: RandomResizedCrop's area fraction and aspect range (the release: (0.8, 0.95), (0.7, 1.3)).
        per_frame: an independent crop for every frame, as the release; False: one crop for the whole clip.
        flip: flip each clip horizontally with probability 1/2 (the release does not).

    Returns:
        (batch, clip_len, 3, crop, crop).
    """
    n_videos, n_frames, height, width, _ = videos.shape
    starts = clip_starts(n_frames, clip_len, stride)
    video = torch.randint(n_videos, (batch,), generator=generator)
    start = torch.randint(starts, (batch,), generator=generator)
    index = start[:, None] + stride * torch.arange(clip_len)[None]  # (batch, clip_len)
    frames = to_input(videos[video[:, None].to(videos.device), index.to(videos.device)])  # (batch, clip_len, 3, H, W)
    boxes = random_resized_boxes(batch * clip_len if per_frame else batch, height, width, scale, ratio, generator)
    if not per_frame:
        boxes = boxes.repeat_interleave(clip_len, 0)
    if flip:
        sign = torch.where(torch.rand(batch, generator=generator) < 0.5, -1.0, 1.0).repeat_interleave(clip_len)
        boxes[:, 2] *= sign
    out = crops(frames.flatten(0, 1), boxes[:, None].to(videos.device), (crop, crop))
    return out.reshape(batch, clip_len, *out.shape[2:])


def clip_nodes(model: CRW, clips: torch.Tensor, nodes: str, grid: int, patch: int,
               generator: torch.Generator | None, jitter: tuple[float, float] | None = (0.7, 0.9)) -> torch.Tensor:
    """Nodes of training clips (B, T, 3, S, S): ``"patches"`` (jittered grid) or ``"map"`` (one shared map)."""
    if nodes == "map":
        return model.map_nodes(clips)
    if nodes != "patches":
        raise ValueError(f"nodes must be 'patches' or 'map', got {nodes!r}")
    b, t, _, size, _ = clips.shape
    boxes = patch_boxes(size, size, grid, patch, b * t, generator, jitter).to(clips.device)
    patches = crops(clips.flatten(0, 1), boxes, (patch, patch))  # (B*T, N, 3, p, p)
    return model.patch_nodes(patches.reshape(b, t, *patches.shape[1:]))


@dataclass(frozen=True)
class Recipe:
    """The CRW training recipe (Table E of the supplement), with the sizes scaled by profile.

    The paper's values: 256-pixel crops, a 7x7 grid of 64-pixel patches, clip length 4, tau 0.05,
    edge dropout 0.1, batch 20, Adam 1e-4, ResNet-18 (width 64), 128-d head. The release's: every frame
    its own RandomResizedCrop (scale 0.8-0.95, ratio 0.7-1.3), no flip, reflect padding, the last
    checkpoint evaluated. :data:`CRW_BEFORE_ISSUE_14` holds the quick profile's earlier choices.
    """

    crop: int = 256
    grid: int = 7
    patch: int = 64
    clip_len: int = 4
    stride: int = 1
    temperature: float = 0.05
    edge_dropout: float = 0.1
    batch: int = 20
    lr: float = 1e-4
    width: int = 64
    dim: int = 128
    steps: int = 1000
    nodes: str = "patches"
    skip_shortest: bool = True
    padding: str = "reflect"
    crop_scale: tuple[float, float] = (0.8, 0.95)
    crop_ratio: tuple[float, float] = (0.7, 1.3)
    per_frame_crops: bool = True
    flip: bool = False
    select: str = "last"

    def __post_init__(self):
        if self.nodes not in ("patches", "map"):
            raise ValueError(f"Recipe: nodes must be 'patches' or 'map', got {self.nodes!r}")
        if self.padding not in ("zeros", "reflect"):
            raise ValueError(f"Recipe: padding must be 'zeros' or 'reflect', got {self.padding!r}")
        if self.select not in ("best", "last"):
            raise ValueError(f"Recipe: select must be 'best' (lowest validation walk loss) or 'last', got {self.select!r}")
        for name, low in (("crop_scale", 0.0), ("crop_ratio", 0.0)):
            pair = getattr(self, name)
            if not (len(pair) == 2 and low < pair[0] <= pair[1]) or (name == "crop_scale" and pair[1] > 1):
                raise ValueError(f"Recipe: {name} must be a (min, max) pair with 0 < min <= max"
                                 f"{' <= 1' if name == 'crop_scale' else ''}, got {pair!r}")
        if self.patch > self.crop:
            raise ValueError(f"Recipe: patch ({self.patch}) must not exceed crop ({self.crop})")
        for name in ("crop", "grid", "patch", "clip_len", "batch", "width", "dim", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"Recipe: {name} must be >= 1, got {getattr(self, name)}")
        if self.stride < 0:
            raise ValueError(f"Recipe: stride must be >= 0 (0 = one frame repeated), got {self.stride}")


# the quick profile's recipe before issue 14 (one crop per clip with flips, zero padding, the best validation step)
CRW_BEFORE_ISSUE_14 = dict(padding="zeros", crop_scale=(0.3, 1.0), crop_ratio=(1.0, 1.0), per_frame_crops=False, flip=True,
                           select="best")


def walk_loss_on(model: CRW, videos: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """One batch of the walk loss: sample clips from ``videos`` (V, T, H, W, 3) uint8, make nodes, walk."""
    clips = sample_clips(videos, recipe.batch, recipe.clip_len, recipe.stride, recipe.crop, generator, recipe.crop_scale,
                         recipe.crop_ratio, recipe.per_frame_crops, recipe.flip)
    nodes = clip_nodes(model, clips, recipe.nodes, recipe.grid, recipe.patch, generator)
    return walk_loss(nodes, recipe.temperature, recipe.edge_dropout, recipe.skip_shortest, generator)


@torch.no_grad()
def validation_loss(model: CRW, videos: torch.Tensor, recipe: Recipe, seed: int = 12345, batches: int = 4) -> float:
    """The walk loss on fixed clips of ``videos`` (no edge dropout): the self-supervised selection criterion."""
    plain = dataclasses.replace(recipe, edge_dropout=0.0)
    losses = [float(walk_loss_on(model, videos, plain, torch.Generator().manual_seed(seed + i))) for i in range(batches)]
    return sum(losses) / len(losses)


def initial_model(recipe: Recipe, seed: int) -> CRW:
    """The network every run of ``seed`` starts from (also the "untrained" baseline)."""
    torch.manual_seed(seed)
    return CRW(recipe.width, recipe.dim, recipe.padding)


def train_crw(recipe: Recipe, train_videos: torch.Tensor, val_videos: torch.Tensor, *, seed: int, data_key: dict,
              validate_every: int | None = None):
    """Train CRW with ``recipe`` on ``train_videos`` (V, T, H, W, 3) uint8, selecting by the walk loss
    on ``val_videos``; cached by (recipe, data_key, seed). Returns a :class:`amodalkit.train.TrainResult`."""
    from .train import device, train_cached

    run_device = device()
    train_videos, val_videos = train_videos.to(run_device), val_videos.to(run_device)

    config = dict(method="crw", recipe=dataclasses.asdict(recipe), data=data_key, seed=seed)
    return train_cached("crw", config, lambda: initial_model(recipe, seed), lambda m, step, g: walk_loss_on(m, train_videos, recipe, g),
                        code=("crw.py",), steps=recipe.steps, lr=recipe.lr, seed=seed,
                        validate=lambda m: validation_loss(m, val_videos, recipe), validate_every=validate_every,
                        select=recipe.select,
                        desc=f"CRW {recipe.nodes} stride {recipe.stride} seed {seed}")


# ------------------------------------------------------------------------------- chapter helpers


@dataclass
class VosData:
    """One seed's data for the CRW chapters: train/val videos (V, T, H, W, 3) uint8, the test
    clips (with ground truth, for J&F only) and a key naming the data (for the model cache)."""

    train: torch.Tensor
    val: torch.Tensor
    test: list
    key: dict


def vos_data(seed: int, *, height: int, width: int, n_frames: int, train_clips: int, val_clips: int,
             test_clips: int, preset: str = "quick") -> VosData:
    """Load the ``vos`` world's three splits for one world seed (generated once, cached on disk)."""
    from .data import load_world
    from .data.worlds import generator_version

    world = dict(height=height, width=width, n_frames=n_frames)
    splits = {split: load_world("vos", split, seed=seed, n_clips=n, preset=preset, **world)
              for split, n in (("train", train_clips), ("val", val_clips), ("test", test_clips))}
    videos = {s: torch.from_numpy(np.stack([c.frames for c in splits[s]])) for s in ("train", "val")}
    key = dict(world="vos", seed=seed, preset=preset, train_clips=train_clips, val_clips=val_clips, **world,
               world_code=generator_version("vos"))
    return VosData(videos["train"], videos["val"], list(splits["test"]), key)


def noise_videos(like: torch.Tensor, seed: int) -> torch.Tensor:
    """Random videos (App. C) shaped like ``like`` (V, T, H, W, 3): every frame independent uniform noise."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, tuple(like.shape), generator=g, dtype=torch.uint8)


def walk_loss_drop(recipe: Recipe, train_videos: torch.Tensor, val_videos: torch.Tensor, *, seed: int,
                   data_key: dict) -> dict:
    """Train (or load) one run and measure how far it solves the walk: the relative drop of the validation walk loss
    from the run's initial weights to its selected weights, 1 - L_trained / L_init.

    Returns:
        dict(before, after, drop, result), result the :class:`amodalkit.train.TrainResult`.
    """
    with torch.no_grad():
        before = validation_loss(initial_model(recipe, seed).eval(), val_videos, recipe)
    result = train_crw(recipe, train_videos, val_videos, seed=seed, data_key=data_key)
    after = result.selected_val_loss  # the selected weights' validation walk loss, recorded by the training loop
    return dict(before=before, after=after, drop=1 - after / before, result=result)


def noise_split(data: "VosData", seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Noise videos shaped like a seed's training and validation videos, and their cache key (App. C's control)."""
    return (noise_videos(data.train, seed + 10_000), noise_videos(data.val, seed + 20_000),
            {**data.key, "videos": "noise"})


def correspondence_margin(recipe: Recipe, data: "VosData", seed: int) -> dict:
    """The gate of the claims about trained CRW features: did the run learn correspondence or a shortcut?

    Noise videos hold nothing to track, so the walk-loss drop the same recipe reaches on them is what the loss
    gains without correspondence. Returns dict(vos, noise, margin, vos_before, noise_before, vos_history,
    noise_history): margin = drop on vos - drop on noise, the initial network's validation walk loss on each, and
    the two runs' training histories (their validation curves).
    """
    vos = walk_loss_drop(recipe, data.train, data.val, seed=seed, data_key=data.key)
    noise = noise_walk_loss_drop(recipe, data, seed)
    return dict(vos=vos["drop"], noise=noise["drop"], margin=vos["drop"] - noise["drop"], vos_before=vos["before"],
                noise_before=noise["before"], vos_history=vos["result"].history, noise_history=noise["result"].history)


def noise_walk_loss_drop(recipe: Recipe, data: "VosData", seed: int) -> dict:
    """:func:`walk_loss_drop` of the same recipe on noise videos shaped like ``data``'s (the gate's control)."""
    train_noise, val_noise, key = noise_split(data, seed)
    return walk_loss_drop(recipe, train_noise, val_noise, seed=seed, data_key=key)


# ------------------------------------------------------------------------------- a chapter's recipe, data and models


def chapter_recipe(params: dict) -> Recipe:
    """The main recipe of the CRW chapters from their parameters (the notebooks, ``train crw`` and the GPU edition
    build it here, so the same parameters name the same cached models everywhere)."""
    return Recipe(crop=params["crop"], patch=params["patch"], grid=params["grid"], batch=params["batch"],
                  width=params["net_width"], dim=params["dim"], steps=params["steps"], lr=params["lr"],
                  stride=params["stride"])


def chapter_data(params: dict, seed: int, test_clips: int | None = None) -> "VosData":
    """One seed's ``vos`` data from a CRW chapter's parameters (``test_clips`` overrides the parameter's)."""
    return vos_data(seed, preset=params["preset"], height=params["height"], width=params["width"],
                    n_frames=params["n_frames"], train_clips=params["train_clips"], val_clips=params["val_clips"],
                    test_clips=params["test_clips"] if test_clips is None else test_clips)


def gpu_tasks(chapter: str, params: dict) -> list[list[tuple[str, dict]]]:
    """The models a gated CRW chapter trains, as independent training tasks for the GPU edition's parallel warm-up
    (:func:`amodalkit.book.run`): one wave of ``("amodalkit.crw:warm", kwargs)``, kwargs naming the recipe, the data
    and the seed, so two chapters' identical models are one task. ``crw_ablations``: every stride's run and the
    main recipe's noise control; ``crw_propagation``: the main run."""
    recipe = chapter_recipe(params)
    data = {k: params[k] for k in ("preset", "height", "width", "n_frames", "train_clips", "val_clips")}
    strides = params["strides"] if chapter == "crw_ablations" else [params["stride"]]
    tasks = [dict(recipe=dataclasses.asdict(dataclasses.replace(recipe, stride=s)), data=data, seed=seed, noise=False)
             for seed in range(params["seeds"]) for s in strides]
    if chapter == "crw_ablations":
        tasks += [dict(recipe=dataclasses.asdict(recipe), data=data, seed=seed, noise=True) for seed in range(params["seeds"])]
    return [[("amodalkit.crw:warm", t) for t in tasks]]


def warm(recipe: dict, data: dict, seed: int, noise: bool) -> None:
    """Train (into the model cache) one model of :func:`gpu_tasks`: the recipe on the seed's ``vos`` data, or on its
    noise control."""
    recipe = Recipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in recipe.items()})
    videos = chapter_data(dict(data, test_clips=1), seed)
    if noise:
        noise_walk_loss_drop(recipe, videos, seed)
    else:
        train_crw(recipe, videos.train, videos.val, seed=seed, data_key=videos.key)


def feature_fn(model: CRW | None, layer: str = "res3", scale: float = 1.0, batch: int = 8):
    """``frames (T, H, W, 3) uint8 -> (T, C, h, w)`` features for :func:`amodalkit.propagation.evaluate_clips`.

    ``model=None`` gives the raw-pixel baseline. ``scale`` resizes frames before encoding (the
    paper trains on 256-pixel crops and tests on 480p frames, about 2x).
    """
    @torch.no_grad()
    def features(frames: np.ndarray) -> torch.Tensor:
        x = to_input(frames)
        if scale != 1.0:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        if model is None:
            return pixel_features(x)
        model.eval()
        run_device = next(model.parameters()).device
        return torch.cat([model.features(x[i:i + batch].to(run_device), layer).cpu() for i in range(0, len(x), batch)])

    return features


def test_time_train(model: CRW, frames: np.ndarray, recipe: Recipe, *, steps: int, lr: float, seed: int) -> CRW:
    """Test-time training (App. H): a copy of ``model`` fine-tuned with the walk loss on clips of the
    test video itself (its frames only, no labels). The release has no such code; this follows the
    text with one fine-tuning per video (the paper re-tunes every 5 frames on a window of +-10)."""
    import copy

    from .train import train

    tuned = copy.deepcopy(model)
    video = torch.from_numpy(np.asarray(frames))[None].to(next(model.parameters()).device)
    stride = min(recipe.stride, (video.shape[1] - 1) // max(recipe.clip_len - 1, 1))
    local = dataclasses.replace(recipe, stride=stride)
    train(tuned, lambda m, step, g: walk_loss_on(m, video, local, g), steps=steps, lr=lr, seed=seed,
          desc="test-time training")
    return tuned.eval()

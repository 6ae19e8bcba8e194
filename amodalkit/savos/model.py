"""The SaVos network (Table 6), its crops and warps, and the bidirectional prediction with alpha fusion."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


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


def _norm(channels: int, groups: int = 8) -> nn.GroupNorm:
    """GroupNorm with up to ``groups`` groups (the book's 8; the release's 1), at least 4 channels a group."""
    return nn.GroupNorm(max(1, min(groups, channels // 4)), channels)


# the normalisation and activation of the towers: the book's (GroupNorm 8 groups, LeakyReLU 0.2) and the release's
# (GroupNorm 1 group, LeakyReLU 0.01, which also normalises the joined vector before the decoders and builds the
# motion predictor's encoder narrower: 16, 32, 64, 128, 256, 256 channels at base 32); Table 6 names GroupNorm and
# LeakyReLU without their settings. flow_channels: the motion encoder's channels as multiples of base.
NETS = {"book": dict(groups=8, slope=0.2, join_norm=False, flow_channels=(1, 2, 4, 8, 8, 16)),
        "release": dict(groups=1, slope=0.01, join_norm=True, flow_channels=(0.5, 1, 2, 4, 8, 8))}


def tower_channels(base: int) -> list[int]:
    """The hidden channels of the 6 layers: 32, 64, 128, 256, 256, 512 for ``base`` = 32."""
    return [base * m for m in (1, 2, 4, 8, 8, 16)]


class ConvTower(nn.Module):
    """The 6-layer CNN of Table 6 with GroupNorm + LeakyReLU: (N, C, h, w) -> (N, 16 base)."""

    def __init__(self, in_channels: int, base: int, size: tuple[int, int], groups: int = 8, slope: float = 0.2,
                 channels: list[int] | None = None):
        super().__init__()
        chans = [in_channels] + (channels or tower_channels(base))
        layers = []
        for i, (k, s, p) in enumerate(layer_specs(size)):
            layers += [nn.Conv2d(chans[i], chans[i + 1], k, s, p), _norm(chans[i + 1], groups), nn.LeakyReLU(slope)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class DeconvTower(nn.Module):
    """The mirrored transposed CNN: (N, 16 base) -> (N, out, h, w); no norm or activation after the last layer."""

    def __init__(self, out_channels: int, base: int, size: tuple[int, int], groups: int = 8, slope: float = 0.2):
        super().__init__()
        chans = [out_channels] + tower_channels(base)
        layers = []
        for i, (k, s, p) in reversed(list(enumerate(layer_specs(size)))):
            layers.append(nn.ConvTranspose2d(chans[i + 1], chans[i], k, s, p))
            if i > 0:
                layers += [_norm(chans[i], groups), nn.LeakyReLU(slope)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


@dataclass(frozen=True)
class Variant:
    """One row of the ablation tables: what the model sees and how it is trained.

    consistency: add L_C to L_M (off: L_M alone, Table 1 row 2).
    consistency_form: "release" (L_C on the fused predictions, pairs weighted by the release's running
        total; see :func:`fused_consistency`) or "paper" (on each pass's own masks, the plain sum of Eq. 5).
    bidirectional: a backward pass over the reversed clip, fused with the forward one by the
        alpha channel (off: the forward pass alone, alpha ignored; Table 1 row 3).
    temporal: the LSTM over the frame embeddings (off: each frame's embedding is a function of that
        frame alone, a Linear + tanh in place of the LSTM; Table 1 row 1).
    flow_input: the observed flow is an input (off: the flow channels of the embedding CNN and the
        motion predictor's input are zeros and the base flow is 0, so the motion predictor must
        find the motion from the image and mask crops alone; Table 3 row 1).
    image_input: the RGB crop is an input (off: zeros; Table 3 row 2).
    loss: "savos" (L_M + L_C) or "deocclusion" (Self-Deocclusion's self-supervision on the
        completer's output, Table 2 row 2; see :func:`deocclusion_window_loss`), or "supervised" (the completer's
        output against the amodal ground truth: an upper bound for the architecture, never a row of the paper's
        tables; see :func:`supervised_window_loss`).
    architecture: "savos" or "pcnet" (Self-Deocclusion's PCNet-M on the same crops, Table 2 row 1).
    matched_capacity: PCNet-M only: widen it until it has at least as many parameters as the SaVos network of the
        same recipe (Table 2 at matched size; see :func:`amodalkit.savos.matched_pcnet_width`).
    net: the towers' normalisation and activation, "book" or "release" (see ``NETS``).
    completer_input: what the amodal completer's own encoder sees: "visible" (the frame's visible mask, as the paper
        says) or "none" (zeros: the shape must come through the temporal state h_t, a diagnostic; the release feeds
        it a flow channel, its issue #9).
    """

    consistency: bool = True
    consistency_form: str = "release"
    bidirectional: bool = True
    temporal: bool = True
    flow_input: bool = True
    image_input: bool = True
    loss: str = "savos"
    architecture: str = "savos"
    matched_capacity: bool = False
    net: str = "book"
    completer_input: str = "visible"

    def __post_init__(self):
        for field, value, allowed in (("consistency_form", self.consistency_form, ("release", "paper")),
                                      ("net", self.net, tuple(NETS)),
                                      ("completer_input", self.completer_input, ("visible", "none")),
                                      ("loss", self.loss, ("savos", "deocclusion", "supervised")),
                                      ("architecture", self.architecture, ("savos", "pcnet"))):
            if value not in allowed:
                raise ValueError(f"Variant: {field} must be one of {allowed}, got {value!r}")
        if self.matched_capacity and self.architecture != "pcnet":
            raise ValueError("Variant: matched_capacity sizes PCNet-M; it needs architecture='pcnet'")


VARIANTS: dict[str, Variant] = {
    "full": Variant(),
    "no_consistency": Variant(consistency=False),
    "paper_consistency": Variant(consistency_form="paper"),
    "no_bidirectional": Variant(bidirectional=False),
    "no_temporal": Variant(temporal=False),
    "no_flow": Variant(flow_input=False),
    "no_image": Variant(image_input=False),
    "savos_arch_deocc_loss": Variant(consistency=False, loss="deocclusion"),
    "deocc_arch_deocc_loss": Variant(consistency=False, bidirectional=False, temporal=False, loss="deocclusion",
                                     architecture="pcnet"),
    "deocc_arch_matched": Variant(consistency=False, bidirectional=False, temporal=False, loss="deocclusion",
                                  architecture="pcnet", matched_capacity=True),
    # supervised upper bounds (the ladder benchmark): what each architecture learns when the loss is not in the way
    "supervised": Variant(consistency=False, loss="supervised"),
    "supervised_no_temporal": Variant(consistency=False, temporal=False, loss="supervised"),
    "pcnet_supervised": Variant(consistency=False, bidirectional=False, temporal=False, loss="supervised",
                                architecture="pcnet"),
    "supervised_release_net": Variant(consistency=False, loss="supervised", net="release"),
    "supervised_state_only": Variant(consistency=False, loss="supervised", completer_input="none"),
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
        self.no_past = False  # the own-history probe: each frame's state from that frame alone (see without_past)
        if base < 1 or base & (base - 1):
            raise ValueError(f"SaVosNet: base must be a power of two, got {base}")
        top, emb = 16 * base, 8 * base
        net = NETS[variant.net]
        style = dict(groups=net["groups"], slope=net["slope"])
        self.slope = net["slope"]
        flow_channels = [max(1, int(base * m)) for m in net["flow_channels"]]
        self.embed_tower, self.embed_fc = ConvTower(6, base, size, **style), nn.Linear(top, emb)
        self.temporal = nn.LSTM(emb, emb, batch_first=True) if variant.temporal else nn.Sequential(nn.Linear(emb, emb), nn.Tanh())
        self.mask_tower, self.mask_fc = ConvTower(1, base, size, **style), nn.Linear(top, emb)
        self.mask_join, self.mask_decoder = nn.Linear(2 * emb, top), DeconvTower(2, base, size, **style)
        self.flow_tower = ConvTower(2, base, size, **style, channels=flow_channels)
        self.flow_fc = nn.Linear(flow_channels[-1], emb)
        self.flow_join, self.flow_decoder = nn.Linear(2 * emb, top), DeconvTower(2, base, size, **style)
        # the release normalises the joined vector before each decoder (GroupNorm with one group over 16 base)
        self.mask_join_norm = nn.GroupNorm(1, top) if net["join_norm"] else nn.Identity()
        self.flow_join_norm = nn.GroupNorm(1, top) if net["join_norm"] else nn.Identity()

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
        before it) is the donor's first t embeddings instead of its own: the reliance probe of the temporal module.
        With ``self.no_past`` (:func:`without_past`) h_t is the LSTM's state after frame t alone, from a zero state:
        the own-history probe."""
        if not self.variant.temporal:
            return self.temporal(e)  # each frame's state is a function of that frame alone: no history to swap
        if self.no_past:
            n, t = e.shape[:2]
            return self.temporal(e.reshape(n * t, 1, -1))[0].view(n, t, -1)
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
        completer_sees = visible if self.variant.completer_input == "visible" else torch.zeros_like(visible)
        m = self.mask_fc(self.mask_tower(completer_sees.flatten(0, 1)[:, None]))
        joined = self.mask_join_norm(self.mask_join(torch.cat([m, hf], 1)))
        out = self.mask_decoder(F.leaky_relu(joined, self.slope)).view(n, t, 2, *self.size)
        f = self.flow_fc(self.flow_tower(flow.flatten(0, 1) * _FLOW_INPUT_SCALE))
        joined = self.flow_join_norm(self.flow_join(torch.cat([f, hf], 1)))
        residual = self.flow_decoder(F.leaky_relu(joined, self.slope)).view(n, t, 2, *self.size)
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

"""Self-Deocclusion's PCNet-M (Zhan et al., CVPR 2020): the amodal baseline of SaVos and Amodal-VAE.

PCNet-M learns amodal completion from visible masks alone. A training pair takes an instance's
visible mask A and another instance's mask B laid at a random place near A:

* with probability ``1 - p_behind`` B is **in front**: the input is A minus B, and the target is A
  (the network learns to extend a mask into the pixels its occluder covers);
* otherwise B is **behind**: the input is A unchanged, and the target is A too (the network learns
  not to grow a mask into an occluder that does not hide it).

The network sees the (cut) mask and the eraser in a crop around the instance and predicts the
completed mask. At test time the input is the visible mask and, as the eraser, the union of the other
objects' visible masks (the release uses the occluders its order network puts in front, or with
``ours_nog`` every neighbour; we have no order network).

The release's recipe (XiaohangZhan/deocclusion, checked in its code): crops of the box enlarged 3 times
(side max(sqrt(3 w h), 1.1 w, 1.1 h)) with centre and scale jitter and flips at training; in the
behind case the eraser is cut by the mask; cross-entropy weighted 5 inside the eraser; at test the
completion probability above 0.2, used as it is.

It is usable two ways: as an architecture (:class:`PCNetM`, :func:`complete`, :func:`amodal_masks`) and as a
loss (:func:`deocclusion_pairs` + :func:`deocclusion_loss` can train any network mapping (mask,
eraser) to mask logits, e.g. SaVos's completer for Table 2's mixed row).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import crop_to_box, mask_boxes, paste_from_box, synthetic_occlusion  # B placed as in Amodal-VAE's stage 2


class PCNetM(nn.Module):
    """A small U-Net: (B, 2, S, S) [mask, occluder] -> (B, 1, S, S) logits of the completed mask (S divisible by 4)."""

    def __init__(self, width: int = 32, in_channels: int = 2):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.down1, self.down2 = block(in_channels, width), block(width, 2 * width)
        self.bottom = block(2 * width, 4 * width)
        self.up2, self.up1 = block(6 * width, 2 * width), block(3 * width, width)
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"PCNetM: the input side must be divisible by 4, got {tuple(x.shape[-2:])}")
        d1 = self.down1(x)
        d2 = self.down2(F.max_pool2d(d1, 2))
        b = self.bottom(F.max_pool2d(d2, 2))
        u2 = self.up2(torch.cat([F.interpolate(b, scale_factor=2.0), d2], dim=1))
        u1 = self.up1(torch.cat([F.interpolate(u2, scale_factor=2.0), d1], dim=1))
        return self.out(u1)


RELEASE_ENLARGE = 3.0  # the release's enlarge_box
RELEASE_THRESHOLD = 0.2  # the release's amodal threshold in its evaluation scripts (--amodal-th 0.2)
ERASER_WEIGHT = 5.0  # the release's inmask_weight: the loss inside the eraser counts 5 times


def context_boxes(masks: torch.Tensor, enlarge: float = RELEASE_ENLARGE, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """The release's square crops around each mask's box (N, 4): side max(sqrt(w h enlarge), 1.1 w, 1.1 h), centred
    on the box. With a ``generator`` (training) the release's jitter: the centre shifted by U(-0.2, 0.2) of the side
    in x and y, and the side divided by U(0.8, 1.2)."""
    box = mask_boxes(masks)
    w, h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    side = torch.maximum(torch.sqrt(w * h * enlarge), torch.maximum(1.1 * w, 1.1 * h))
    centre = (box[:, :2] + box[:, 2:]) / 2
    if generator is not None:
        u = torch.rand(len(masks), 3, generator=generator).to(masks.device)
        centre = centre + (u[:, :2] * 0.4 - 0.2) * side[:, None]
        side = side / (0.8 + 0.4 * u[:, 2])
    return torch.cat([centre - side[:, None] / 2, centre + side[:, None] / 2], dim=1)


def deocclusion_pairs(masks: torch.Tensor, pool: torch.Tensor, generator: torch.Generator, p_behind: float = 0.2,
                      size: int = 32, enlarge: float = RELEASE_ENLARGE, jitter: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCNet-M's self-supervised training pairs, cropped around each instance as the release does.

    An eraser B (another instance's mask, laid as :func:`amodalkit.ops.synthetic_occlusion` lays it) is in front
    with probability ``1 - p_behind``: the input is A minus B. Otherwise B is behind: B is cut by A (the release's
    ``eraser[modal == 1] = 0``) and the input is A unchanged. The target is A in both cases. Crops follow
    :func:`context_boxes` (with its jitter when ``jitter``) and are mirrored left-right with probability 0.5.

    Args:
        masks: (B, H, W) float visible masks A; pool: (M, H, W) masks to draw B from (float or bool).

    Returns:
        inputs (B, 2, size, size) = [input mask, eraser], targets (B, 1, size, size) = A, and the eraser
        (B, 1, size, size) for the loss weights (:func:`weighted_deocclusion_loss`).
    """
    _, occluder = synthetic_occlusion(masks, pool, generator, min_visible=0.0)
    behind = (torch.rand(len(masks), generator=generator) < p_behind).to(masks.device)[:, None, None]
    shown = torch.where(behind, masks, masks * (1 - occluder))
    eraser = torch.where(behind, occluder * (1 - masks), occluder)
    box = context_boxes(masks, enlarge, generator if jitter else None)
    crops = [crop_to_box(m, box, size) for m in (shown, eraser, masks)]
    if jitter:
        flip = (torch.rand(len(masks), generator=generator) < 0.5).to(masks.device)[:, None, None, None]
        crops = [torch.where(flip, c.flip(-1), c) for c in crops]
    shown, eraser, target = crops
    return torch.cat([shown, eraser], dim=1), target, eraser


def deocclusion_loss(logits: torch.Tensor, targets: torch.Tensor, eraser: torch.Tensor) -> torch.Tensor:
    """The release's loss on (B, 1, S, S): cross-entropy weighted :data:`ERASER_WEIGHT` inside the eraser and 1
    outside, divided by the number of pixels (:func:`weighted_deocclusion_loss`)."""
    return weighted_deocclusion_loss(logits, targets, eraser, ERASER_WEIGHT)


@torch.no_grad()
def complete(model: nn.Module, visible: torch.Tensor, occluders: torch.Tensor, size: int = 32,
             enlarge: float = RELEASE_ENLARGE, batch: int = 256) -> torch.Tensor:
    """Amodal completion probabilities (N, H, W) from visible masks and occluder masks (N, H, W), the eraser being
    every occluder pixel (the release erases them from the input, a no-op for disjoint masks), pasted back into the
    image (0 outside the crop)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(visible), batch):
        v, o = visible[i:i + batch].float().to(device), occluders[i:i + batch].float().to(device)
        box = context_boxes(v, enlarge)
        x = torch.cat([crop_to_box(v * (1 - o), box, size), crop_to_box(o, box, size)], dim=1)
        probs = torch.sigmoid(model(x))
        out.append(paste_from_box(probs, box, *v.shape[1:])[:, 0].cpu())
    return torch.cat(out)


def amodal_masks(probs: torch.Tensor, threshold: float = RELEASE_THRESHOLD) -> torch.Tensor:
    """The release's amodal mask: the completion probability above ``threshold`` (0.2 in its evaluation scripts),
    taken as it is (the release neither unites it with the visible mask nor cuts it to the eraser). (N, H, W) bool."""
    return probs > threshold


# --------------------------------------------------------------------- Self-Deocclusion on SaVos's crops


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

"""Self-Deocclusion's PCNet-M (Zhan et al., CVPR 2020): the amodal baseline of SaVos and Amodal-VAE.

PCNet-M learns amodal completion from visible masks alone. A training pair takes an instance's
visible mask A and another instance's mask B laid at a random place near A:

* with probability ``1 - p_behind`` B is **in front**: the input is A minus B, and the target is A
  (the network learns to extend a mask into the pixels its occluder covers);
* otherwise B is **behind**: the input is A unchanged, and the target is A too (the network learns
  not to grow a mask into an occluder that does not hide it).

The network sees the (cut) mask and the occluder mask in a crop around the instance and predicts
the completed mask. At test time the input is the visible mask and the union of the other objects'
visible masks; the completion is the prediction united with the visible mask.

It is usable two ways: as an architecture (:class:`PCNetM`, :func:`complete`) and as a loss
(:func:`deocclusion_pairs` + :func:`deocclusion_loss` can train any network mapping (mask,
occluder) to mask logits, e.g. SaVos's completer for Table 2's mixed row).
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


def context_boxes(masks: torch.Tensor, enlarge: float = 2.0) -> torch.Tensor:
    """Square crops (N, 4) centred on each mask's box, ``enlarge`` times its longer side."""
    box = mask_boxes(masks)
    centre = (box[:, :2] + box[:, 2:]) / 2
    half = enlarge * (box[:, 2:] - box[:, :2]).max(dim=1).values[:, None] / 2
    return torch.cat([centre - half, centre + half], dim=1)


def deocclusion_pairs(masks: torch.Tensor, pool: torch.Tensor, generator: torch.Generator, p_behind: float = 0.2,
                      size: int = 32, enlarge: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """PCNet-M's self-supervised training pairs, cropped around each instance.

    Args:
        masks: (B, H, W) float visible masks A; pool: (M, H, W) float masks to draw B from.

    Returns:
        inputs (B, 2, size, size) = [A minus B (or A), B] and targets (B, 1, size, size) = A.
    """
    cut, occluder = synthetic_occlusion(masks, pool, generator, min_visible=0.0)
    behind = (torch.rand(len(masks), generator=generator) < p_behind).to(masks.device)[:, None, None]
    shown = torch.where(behind, masks, cut)
    box = context_boxes(masks, enlarge)
    inputs = torch.cat([crop_to_box(shown, box, size), crop_to_box(occluder, box, size)], dim=1)
    return inputs, crop_to_box(masks, box, size)


def deocclusion_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the completed-mask logits against A (mean over pixels and batch)."""
    return F.binary_cross_entropy_with_logits(logits, targets)


@torch.no_grad()
def complete(model: nn.Module, visible: torch.Tensor, occluders: torch.Tensor, size: int = 32, enlarge: float = 2.0,
             batch: int = 256) -> torch.Tensor:
    """Amodal completion probabilities (N, H, W) from visible masks and occluder masks (N, H, W),
    pasted back into the image (0 outside the crop)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(visible), batch):
        v, o = visible[i:i + batch].float().to(device), occluders[i:i + batch].float().to(device)
        box = context_boxes(v, enlarge)
        x = torch.cat([crop_to_box(v, box, size), crop_to_box(o, box, size)], dim=1)
        probs = torch.sigmoid(model(x))
        out.append(paste_from_box(probs, box, *v.shape[1:])[:, 0].cpu())
    return torch.cat(out)

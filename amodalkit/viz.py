"""Plots and widgets shared by the chapters.

The widgets are built so that they work in the static book too: every image is rendered in
Python ahead of time, and the controls are linked to what they show in the browser (``jslink``),
so moving a slider needs no kernel.
"""
from __future__ import annotations

import io

import numpy as np

# RGBA colours of the overlay layers
LAYER_COLOURS = {
    "visible": (40, 200, 255),
    "amodal": (255, 220, 0),
    "predicted": (255, 60, 60),
    "ground truth": (40, 200, 255),
    "SaVos": (255, 60, 60),
    "Self-Deocclusion": (90, 255, 90),
}


# small frames stay crisp when the browser scales them up (JupyterLab and the static book alike)
PIXELATED_CSS = ".amodalkit-explorer img { image-rendering: pixelated; }"


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an (H, W, 3) or (H, W, 4) uint8 image as PNG."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"png_bytes: expected (H, W, 3|4) uint8, got {image.shape} {image.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The inner boundary of a boolean (H, W) mask: pixels of the mask with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    interior = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def layer_rgba(mask: np.ndarray, colour: tuple[int, int, int], fill_alpha: int = 70, outline_alpha: int = 255) -> np.ndarray:
    """A transparent (H, W, 4) layer: the mask lightly filled and its outline opaque."""
    out = np.zeros(mask.shape + (4,), dtype=np.uint8)
    out[mask] = (*colour, fill_alpha)
    out[mask_outline(mask)] = (*colour, outline_alpha)
    return out


def overlay(frame: np.ndarray, layers: dict[str, np.ndarray]) -> np.ndarray:
    """Alpha-composite RGBA layers (H, W, 4) over an RGB frame (H, W, 3); returns RGB uint8."""
    out = frame.astype(np.float32)
    for rgba in layers.values():
        alpha = rgba[..., 3:4].astype(np.float32) / 255
        out = out * (1 - alpha) + rgba[..., :3].astype(np.float32) * alpha
    return out.clip(0, 255).astype(np.uint8)


def frame_explorer(frames: np.ndarray, layers: dict[str, np.ndarray], *, scale: int = 4, title: str = "",
                   shown: tuple[str, ...] = ("visible",), step_label: str = "frame"):
    """A clip browser: a frame slider and an on/off toggle per overlay layer.

    Works without a kernel: the frame images and each layer's images are stacked and shown in
    one grid cell, the slider is ``jslink``-ed to every stack's ``selected_index`` and each toggle
    to its layer's visibility stack, so the static book reacts in the browser.

    Args:
        frames: (T, H, W, 3) uint8.
        layers: name -> (T, H, W) bool masks (drawn with :data:`LAYER_COLOURS` when the name is
            known, else grey).
        scale: how many times larger the browser shows the images (pixelated, not smoothed).
        shown: the layers switched on at first.
        step_label: what the slider steps through (frames of a clip, samples of a posterior, ...).

    Returns:
        an ``ipywidgets.VBox`` with the CSS class ``amodalkit-explorer``.
    """
    import ipywidgets as w

    t_len, h, width = frames.shape[:3]
    for name, masks in layers.items():
        if masks.shape != (t_len, h, width):
            raise ValueError(f"frame_explorer: layer {name!r} must be (T, H, W) = {(t_len, h, width)}, got {masks.shape}")
    # images at their own size, scaled by the browser without smoothing (pixelated): about a third of the bytes of
    # upscaled PNGs in the executed notebooks; every image shares one layout
    shown_size = w.Layout(width=f"{width * scale}px", height=f"{h * scale}px")

    def image(rgb_or_rgba):
        return w.Image(value=png_bytes(rgb_or_rgba), format="png", layout=shown_size)

    # labels are HTML widgets, not `description`s: ipywidgets typesets descriptions with the MathJax 2
    # API, which throws on the MathJax 3 pages of the book
    slider = w.IntSlider(value=0, min=0, max=t_len - 1, continuous_update=True)
    frame_stack = w.Stack([image(f) for f in frames], selected_index=0, layout=w.Layout(grid_area="view"))
    per_frame_stacks = [frame_stack]  # each follows the slider
    layer_stacks, toggles = [], []  # each layer: [blank, its per-frame stack], chosen by its toggle
    blank = image(np.zeros((h, width, 4), dtype=np.uint8))  # one widget shown wherever a layer is hidden
    for name, masks in layers.items():
        colour = LAYER_COLOURS.get(name, (200, 200, 200))
        per_frame = w.Stack([image(layer_rgba(m, colour)) for m in masks], selected_index=0)
        on_off = w.Stack([blank, per_frame], selected_index=int(name in shown), layout=w.Layout(grid_area="view"))
        toggle = w.ToggleButtons(options=["hide", "show"], index=int(name in shown), style={"button_width": "56px"})
        w.jslink((toggle, "index"), (on_off, "selected_index"))
        per_frame_stacks.append(per_frame)
        layer_stacks.append(on_off)
        toggles.append(w.HBox([w.HTML(f"<span style='display:inline-block;width:70px'>{name}</span>"), toggle]))
    for stack in per_frame_stacks:
        w.jslink((slider, "value"), (stack, "selected_index"))
    # every stack sits in the same grid cell, so the layers are drawn over the frame
    view = w.GridBox([frame_stack] + layer_stacks,
                     layout=w.Layout(grid_template_areas='"view"', width=f"{width * scale}px"))
    header = [w.HTML(f"<style>{PIXELATED_CSS}</style>" + (f"<b>{title}</b>" if title else ""))]
    box = w.VBox(header + [w.HBox([w.HTML(f"{step_label}&nbsp;"), slider]), w.HBox([view, w.VBox(toggles)])])
    box.add_class("amodalkit-explorer")
    return box

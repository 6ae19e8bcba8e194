"""Optical flow: OpenCV's DIS estimator, end-point error against ground truth, flow colour maps."""
from __future__ import annotations

import numpy as np

PRESETS = ("ultrafast", "fast", "medium", "fine")


def _dis(preset: str):
    import cv2

    if preset not in PRESETS:
        raise ValueError(f"estimate_flow: preset must be one of {PRESETS}, got {preset!r}")
    base = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST}.get(
        preset, cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis = cv2.DISOpticalFlow_create(base)
    if preset == "fine":  # small frames: work down to full resolution with small, dense patches
        dis.setFinestScale(0)
        dis.setPatchSize(6)
        dis.setPatchStride(2)
        dis.setGradientDescentIterations(25)
    return dis


def estimate_flow(frames: np.ndarray, preset: str = "fine") -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward optical flow of a clip with OpenCV's DIS.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        preset: "ultrafast", "fast", "medium" (OpenCV's presets) or "fine" (medium refined down to
            full resolution with 6x6 patches at stride 2, the best on this book's small frames:
            see benchmarks/worlds.py).

    Returns:
        forward (T, 2, H, W) float32, t -> t+1 (frame T-1 zero), and backward (T, 2, H, W),
        t -> t-1 (frame 0 zero); channel 0 = x, 1 = y, in pixels.
    """
    import cv2

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"estimate_flow: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[0] < 2:
        raise ValueError(f"estimate_flow: need at least 2 frames, got {frames.shape[0]}")
    dis = _dis(preset)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    t_len, h, w = frames.shape[:3]
    forward = np.zeros((t_len, 2, h, w), dtype=np.float32)
    backward = np.zeros_like(forward)
    for t in range(t_len - 1):
        forward[t] = dis.calc(gray[t], gray[t + 1], None).transpose(2, 0, 1)
        backward[t + 1] = dis.calc(gray[t + 1], gray[t], None).transpose(2, 0, 1)
    return forward, backward


def end_point_error(flow: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean Euclidean distance between two flows (..., 2, H, W) over ``mask`` (..., H, W) (all pixels if None)."""
    if flow.shape != reference.shape:
        raise ValueError(f"end_point_error: shapes differ, {flow.shape} vs {reference.shape}")
    error = np.linalg.norm(flow - reference, axis=-3)
    if mask is None:
        return float(error.mean())
    if mask.shape != error.shape:
        raise ValueError(f"end_point_error: mask must be {error.shape}, got {mask.shape}")
    return float(error[mask].mean()) if mask.any() else float("nan")


def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code a (2, H, W) flow: hue = direction, saturation = magnitude (white = still). (H, W, 3) uint8."""
    import cv2

    fx, fy = flow[0].astype(np.float32), flow[1].astype(np.float32)
    magnitude, angle = cv2.cartToPolar(fx, fy, angleInDegrees=True)
    top = max_magnitude or max(float(magnitude.max()), 1e-6)
    hsv = np.stack([angle / 2, np.clip(magnitude / top, 0, 1) * 255, np.full_like(angle, 255)], axis=-1).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

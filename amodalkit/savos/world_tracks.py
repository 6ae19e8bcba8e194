"""Tracks of the SaVos worlds (fishbowl, street, chewing gum) for the chapters, cut once and cached.

Tracks are cut from the world's clips; the input flow is estimated (OpenCV DIS, as the paper's FlowNet2 is an
estimate) unless the ground truth is asked for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import check_crop_size


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
    key: str = ""  # a digest of everything that made the tracks (the cached models are keyed by it)
    # the same digest with the flow source left out: a model that ignores the flow input (no_flow) trains the same
    # weights on either flow, bit for bit, so it is keyed by this and trained once
    flow_free_key: str = ""


# The release's training-track filter (FishBowl preprocessing) at 320 x 480: full mask > 400 px and at least 16 px
# from every edge, visible mask > 64 px, more than 20 frames, and some frame whose visible mask differs from the one
# 4 frames earlier by 1 - IoU > 0.4. Areas scale with the image area and the margin with its side here.
RELEASE_TRAIN_FILTER = dict(amodal_area=400, visible_area=64, border=16, change=0.4, reference_area=320 * 480)


def train_filter_args(height: int, width: int) -> dict:
    """:func:`amodalkit.data.tracks.object_tracks` arguments of the release's training-track filter scaled to an
    ``height`` x ``width`` image."""
    f = RELEASE_TRAIN_FILTER
    scale = height * width / f["reference_area"]
    return dict(min_amodal_area=int(np.floor(f["amodal_area"] * scale)) + 1,
                min_visible_area=int(np.floor(f["visible_area"] * scale)) + 1,
                border=int(round(f["border"] * np.sqrt(scale))), min_change=f["change"])


def visible_masks(world: str, clip) -> np.ndarray:
    """(T, K, H, W) the visible masks a method sees: street's degraded "predicted" masks, else the truth."""
    if world == "street":
        return clip.extra["visible_pred"].astype(bool)
    return clip.visible


def load_world_tracks(world: str, seed: int, clips: dict[str, int], *, size=(16, 32), window: int = 8,
                      preset: str = "quick", flow: str = "estimated", boxes: str = "track",
                      train_tracks: str = "release") -> WorldTracks:
    """Tracks of a world's train / val / test clips.

    Training and validation tracks keep the objects present in ``window`` consecutive frames (with
    ``train_tracks="release"`` also the release's filter, :func:`train_filter_args`: fish large enough, away from
    the edges, whose visible mask changes); test tracks keep the objects with some frame at 0.1 < occlusion < 0.7
    and at least 3 frames (the release's test filter; the first and last frame are not scored).

    Args:
        clips: clips per split, e.g. {"train": 24, "val": 4, "test": 8}.
        flow: "estimated" (OpenCV DIS) or "truth" (the world's exact flow) for the input flow.
        boxes: "track" (one crop scale per track) or "frame" (each frame's own box); see
            :func:`amodalkit.data.tracks.object_tracks`.
        train_tracks: "release" (the release's training-track filter) or "all".
    """
    import hashlib
    import json
    import os
    import pickle
    from pathlib import Path

    from ..data import load_world
    from ..data.flow import estimate_flow
    from ..data.tracks import object_tracks
    from ..data.worlds import generator_version
    from ..results import atomic_write_bytes

    if flow not in ("estimated", "truth"):
        raise ValueError(f"load_world_tracks: flow must be 'estimated' or 'truth', got {flow!r}")
    if train_tracks not in ("release", "all"):
        raise ValueError(f"load_world_tracks: train_tracks must be 'release' or 'all', got {train_tracks!r}")
    if window < 3:
        raise ValueError(f"load_world_tracks: window must be >= 3 frames, got {window}")
    check_crop_size(size)
    # the tracks (and the test split's flows, for the rule baseline) are cut once and cached: the
    # flow estimation and the crops take longer than loading them
    package = Path(__file__).parent.parent

    def tracks_digest(flow_source):
        digest = hashlib.sha256(json.dumps(dict(world=world, seed=seed, clips=clips, size=list(size), window=window,
                                                preset=preset, flow=flow_source, boxes=boxes, train_tracks=train_tracks,
                                                code=generator_version(world)), sort_keys=True).encode())
        for name in ("data/tracks.py", "data/flow.py", "savos/world_tracks.py"):
            digest.update((package / name).read_bytes())
        return digest

    digest = tracks_digest(flow)
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
            select = train_filter_args(*clip.amodal.shape[-2:]) if train_tracks == "release" and not test else {}
            for track in object_tracks(clip, size, flow=motion, visible=seen, min_length=3 if test else window, boxes=boxes,
                                       occlusion_range=(0.1, 0.7) if test else None, **select):
                tracks[split].append((i, track))
            flows[split].append(tuple(f.astype(np.float16) for f in motion) if test else None)
    if cached is None:
        atomic_write_bytes(path, pickle.dumps((tracks, flows), protocol=pickle.HIGHEST_PROTOCOL))
    else:
        tracks, flows = cached
    for split in clips:
        if not tracks[split]:
            raise ValueError(f"{world} (seed {seed}): no {split} track; use more {split} clips (now {clips[split]})")
    return WorldTracks(world, seed, tracks, kept, masks, flows, key=digest.hexdigest()[:24],
                       flow_free_key=tracks_digest(None).hexdigest()[:24])

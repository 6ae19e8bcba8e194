"""STEm-Seg: mixing functions, the loss on constructed outputs, clustering and chaining on constructed embeddings,
the trackers on constructed videos, image-to-sequence synthesis and the fast-motion world."""
import math

import numpy as np
import pytest
import torch

from amodalkit.data.worlds import STREET_FAST_MOTION, load_world
from amodalkit.stemseg import (MIXING, STEmSeg, chain_clips, clip_loss, clip_windows, cluster_clip, coordinate_grid, id_map,
                               image_sequence, instance_probability)
from amodalkit.stemseg.model import FREE_DIM_STD
from amodalkit.stemseg.trackers import batch_hard_triplet_loss, of_tracker, ri_tracker


# ------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("mixing", list(MIXING))
def test_coordinate_grid_adds_the_release_coordinates(mixing):
    t, h, w = 3, 4, 8
    grid = coordinate_grid(mixing, t, h, w)
    assert grid.shape == (len(MIXING[mixing]), t, h, w)
    for channel, axis in enumerate(MIXING[mixing]):
        g = grid[channel]
        if axis == "x":  # the longer side spans +-W/H
            assert torch.allclose(g[0, 0], torch.linspace(-2, 2, w)) and torch.equal(g, g[:1, :1].expand_as(g))
        elif axis == "y":
            assert torch.allclose(g[0, :, 0], torch.linspace(-1, 1, h))
        elif axis == "t":
            assert torch.allclose(g[:, 0, 0], torch.linspace(-1, 1, t))
        else:
            assert torch.count_nonzero(g) == 0


def test_coordinate_grid_of_a_tall_frame_spans_the_aspect_ratio_on_y():
    grid = coordinate_grid("xy", 1, 8, 4)
    assert float(grid[0].max()) == pytest.approx(2.0) and float(grid[1].max()) == pytest.approx(1.0)


@pytest.mark.parametrize("mixing", ["xy", "xyt", "xytf", "xyfff"])
def test_model_outputs_have_the_mixing_functions_dimensions_and_fixed_free_precision(mixing):
    torch.manual_seed(0)
    model = STEmSeg(mixing, width=4, stride=4)
    out = model(torch.rand(2, 3, 3, 16, 24))
    e = len(MIXING[mixing])
    assert out["embedding"].shape == (2, e, 3, 4, 6)
    assert out["precision"].shape == (2, e, 3, 4, 6) and out["seediness"].shape == (2, 3, 4, 6)
    assert out["raw_variance"].shape[1] == e - MIXING[mixing].count("f")
    learned = [c for c, axis in enumerate(MIXING[mixing]) if axis != "f"]  # the variance head's channels, in order
    for channel, axis in enumerate(MIXING[mixing]):
        precision = out["precision"][:, channel]
        if axis == "f":
            assert torch.allclose(precision, torch.full_like(precision, 1 / FREE_DIM_STD**2))
        else:
            assert torch.allclose(precision, 10 * out["raw_variance"][:, learned.index(channel)].exp())
    # tanh(0.25 x) stays within 1 of the coordinates
    assert float((out["embedding"] - coordinate_grid(mixing, 3, 4, 6)).detach().abs().max()) < 1
    seediness = out["seediness"].detach()
    assert float(seediness.min()) > 0 and float(seediness.max()) < 1


def test_model_rejects_a_frame_size_off_its_stride():
    with pytest.raises(ValueError, match="multiples of 4"):
        STEmSeg("xy", width=4)(torch.rand(1, 2, 3, 10, 16))


def test_instance_probability_is_the_papers_gaussian():
    e = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    p = instance_probability(e, torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.5]))
    assert p.tolist() == pytest.approx([1.0, math.exp(-0.5 * (2 * 1 + 0.5 * 4))])
    p_release = instance_probability(e, torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.5]), sqrt_distance=True)
    assert float(p_release[1]) == pytest.approx(math.exp(-0.5 * 2.0))


def _ideal_outputs(ids: torch.Tensor, n_dims: int = 2):
    """Outputs whose embeddings put every instance on its own point, far from the background and each other."""
    t, h, w = ids.shape
    centres = torch.tensor([[-5.0, -5.0], [0.0, 0.0], [5.0, 5.0], [5.0, -5.0]])[:, :n_dims]
    embedding = centres[ids].permute(3, 0, 1, 2)[None]  # background on centre 0
    precision = torch.full_like(embedding, 10.0)
    raw_variance = torch.zeros(1, n_dims, t, h, w)
    seediness = (ids > 0).float()[None]
    return dict(embedding=embedding, precision=precision, raw_variance=raw_variance, seediness=seediness)


def test_clip_loss_is_zero_for_ideal_outputs_and_positive_when_instances_are_swapped():
    ids = torch.zeros(2, 6, 6, dtype=torch.long)
    ids[:, :3, :3], ids[:, 3:, 3:] = 1, 2
    masks = torch.stack([ids == 1, ids == 2])
    ideal = clip_loss(_ideal_outputs(ids), [masks])
    assert float(ideal["total"]) == pytest.approx(0.0, abs=1e-6)
    merged = ids.clone()
    merged[merged == 2] = 1  # both instances on one point: each instance's probability covers the other
    bad = clip_loss(_ideal_outputs(merged), [masks])
    assert float(bad["lovasz"]) > 0.5


# --------------------------------------------------------------------------------------- inference
def _constructed(ids: np.ndarray, seeds_at: dict[int, tuple]):
    """Embeddings with one point per instance and seediness 0.9 at one pixel of each (0.5 elsewhere on objects)."""
    out = _ideal_outputs(torch.from_numpy(ids))
    seediness = out["seediness"][0] * 0.5
    for _, (t, y, x) in seeds_at.items():
        seediness[t, y, x] = 0.9
    return out["embedding"][0], out["precision"][0], seediness


def test_cluster_clip_recovers_constructed_instances_and_stops_at_low_seediness():
    ids = np.zeros((2, 6, 8), dtype=np.int64)
    ids[:, 1:3, 1:3], ids[:, 3:6, 4:7] = 1, 2
    emb, prec, seed = _constructed(ids, {1: (0, 1, 1), 2: (1, 4, 5)})
    labels = cluster_clip(emb, prec, seed).numpy()
    # two clusters, each exactly one instance (the first found is the first seed by seediness order)
    assert set(np.unique(labels)) == {0, 1, 2}
    for cluster in (1, 2):
        assert len(np.unique(ids[labels == cluster])) == 1
    assert np.array_equal(labels > 0, ids > 0)
    seed[seed > 0.8] = 0.7  # no pixel reaches min_seediness: no cluster
    assert cluster_clip(emb, prec, seed).max() == 0
    # a cap on the number of instances
    emb, prec, seed = _constructed(ids, {1: (0, 1, 1), 2: (1, 4, 5)})
    assert cluster_clip(emb, prec, seed, max_instances=1).max() == 1


def test_cluster_clip_gives_leftovers_between_the_thresholds_to_the_nearest_cluster():
    # 1-d embeddings (precision 1): a seed at 0 (cluster A), a seed at 10 (cluster B) and leftovers at distance 1.5
    # from A (p = exp(-1.125) = 0.32 > 0.3) and 2 (p = 0.135, unassigned)
    values = torch.tensor([0.0, 10.0, 1.5, -2.0, 8.6])
    emb = values.reshape(1, 1, 1, 5)
    seed = torch.tensor([0.95, 0.9, 0.5, 0.5, 0.5]).reshape(1, 1, 5)
    labels = cluster_clip(emb, torch.ones_like(emb), seed).flatten().tolist()
    # 8.6 is 1.4 from B: p = 0.375 > 0.3 -> B (it is far below 0.5, so not a primary member)
    assert labels == [1, 2, 1, 0, 2]


def test_clip_windows_cover_the_video_with_the_last_clip_aligned_to_the_end():
    assert clip_windows(16, 8, 4) == [0, 4, 8]
    assert clip_windows(14, 8, 4) == [0, 4, 6]
    assert clip_windows(5, 8, 4) == [0]
    with pytest.raises(ValueError, match="overlap"):
        clip_windows(10, 4, 4)


def test_chain_clips_links_tracks_over_overlaps_whatever_the_clusters_numbers():
    h, w = 4, 8
    a = np.zeros((4, h, w), dtype=np.int64)  # frames 0-3: object X (left) = 1, object Y (right) = 2
    a[:, :, :3], a[:, :, 5:] = 1, 2
    b = np.zeros((4, h, w), dtype=np.int64)  # frames 2-5: the same objects numbered the other way, plus a newcomer Z
    b[:, :, :3], b[:, :, 5:] = 2, 1
    b[2:, 0, 3:5] = 3
    video = chain_clips([a, b], [0, 2], 6)
    assert video.shape == (6, h, w)
    left, right = video[:, 1, 0], video[:, 1, 6]
    assert len(set(left.tolist())) == 1 and len(set(right.tolist())) == 1 and left[0] != right[0]
    assert video[4, 0, 3] not in (left[0], right[0], 0)  # Z: a new track
    assert np.array_equal(video[2:4], chain_clips([a], [0], 4)[2:4])  # overlap frames keep the first clip's labels


def test_chain_clips_merges_zero_iou_pairs_only_as_the_release_does():
    a = np.zeros((2, 2, 6), dtype=np.int64)
    a[:, :, :2] = 1
    b = np.zeros((2, 2, 6), dtype=np.int64)
    b[:, :, 4:] = 1  # no overlap with a's object
    release = chain_clips([a, b], [0, 1], 3)
    assert release[2, 0, 5] == release[0, 0, 0] == 1
    strict = chain_clips([a, b], [0, 1], 3, min_iou=0.1)
    assert strict[2, 0, 5] == 2


# ------------------------------------------------------------------------------------------ trackers
def _moving_squares(n_frames=6, seed=0):
    rng = np.random.default_rng(seed)
    h, w = 48, 64
    background = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
    frames, gt = [], []
    for t in range(n_frames):
        f = background.copy()
        ids = np.zeros((h, w), dtype=np.int64)
        for k, (y, x0, colour) in enumerate(((8, 4, (250, 40, 40)), (28, 50, (40, 40, 250)))):
            x = x0 + (2 * t if k == 0 else -2 * t)
            f[y:y + 10, x:x + 10] = colour
            ids[y:y + 10, x:x + 10] = k + 1
        frames.append(f)
        gt.append(ids)
    frames, gt = np.stack(frames), np.stack(gt)
    # per-frame proposals with ids shuffled each frame (linking must undo it)
    proposals = np.stack([np.where(g > 0, 3 - g, 0) if t % 2 else g for t, g in enumerate(gt)])
    return frames, gt, proposals


def _one_track_per_object(tracks, gt):
    return all(len(np.unique(tracks[gt == k])) == 1 for k in (1, 2)) and tracks[gt == 1][0] != tracks[gt == 2][0]


def test_of_tracker_links_proposals_of_moving_objects():
    frames, gt, proposals = _moving_squares()
    assert _one_track_per_object(of_tracker(frames, proposals), gt)


class _MeanColour(torch.nn.Module):
    """A stand-in re-id network: the unit vector of a crop's mean masked colour."""

    def forward(self, x):
        colour = (x[:, :3] * x[:, 3:]).sum((2, 3)) / x[:, 3:].sum((2, 3)).clamp_min(1)
        return torch.nn.functional.normalize(colour, dim=1)


def test_ri_tracker_links_proposals_by_embedding_distance():
    frames, gt, proposals = _moving_squares()
    assert _one_track_per_object(ri_tracker(frames, proposals, _MeanColour(), threshold=0.5), gt)
    # a threshold below every distance keeps nothing linked: every frame starts new tracks (kept: the 20 largest)
    assert len(np.unique(ri_tracker(frames, proposals, _MeanColour(), threshold=-1.0))) - 1 == 2 * len(frames)


def test_batch_hard_triplet_loss_on_a_hand_computed_case():
    e = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchors: 0: pos 1, neg 3 -> relu(1-3+0.2)=0; 1: pos 1, neg 2 -> 0; 2: pos .5, neg 2 -> 0; 3: pos .5, neg 2.5 -> 0
    assert float(batch_hard_triplet_loss(e, labels)) == 0.0
    labels = torch.tensor([0, 1, 0, 1])
    # 0: pos 3, neg 1 -> 2.2; 1: pos 2.5, neg 1 -> 1.7; 2: pos 3, neg .5 -> 2.7; 3: pos 2.5, neg .5 -> 2.2
    assert float(batch_hard_triplet_loss(e, labels)) == pytest.approx((2.2 + 1.7 + 2.7 + 2.2) / 4)


# -------------------------------------------------------------------------------------------- data
def test_image_sequence_moves_masks_with_the_image_and_keeps_the_still():
    image = np.full((32, 48, 3), 30, np.uint8)
    masks = np.zeros((2, 32, 48), bool)
    masks[0, 8:16, 8:18], masks[1, 18:28, 26:40] = True, True
    image[masks[0]] = (250, 0, 0)
    image[masks[1]] = (0, 0, 250)
    torch.manual_seed(0)
    frames, out_masks = image_sequence(image, masks, 6, torch.Generator().manual_seed(0))
    assert frames.shape == (6, 3, 32, 48) and out_masks.shape == (2, 6, 32, 48)
    still = [t for t in range(6) if torch.equal(out_masks[:, t], torch.from_numpy(masks))]
    assert still, "one frame is the unchanged still"
    moved = [t for t in range(6) if t not in still]
    assert moved, "the other frames are transformed"
    for t in moved:
        red = (frames[t, 0] > 0.6) & (frames[t, 2] < 0.4)
        inter = (red & out_masks[0, t]).sum()
        assert inter / (red | out_masks[0, t]).sum() > 0.6  # the mask follows the red object


def test_id_map_numbers_objects_of_the_first_frame_first():
    masks = np.zeros((3, 2, 2, 2), bool)
    masks[0, 1, 0, 0] = True  # appears in frame 1
    masks[1, 0, 1, 1] = True  # in frame 0
    masks[2, :, 0, 1] = True  # in frame 0
    ids = id_map(masks)
    assert ids[0, 1, 1] == 1 and ids[0, 0, 1] == 2 and ids[1, 0, 0] == 3


def test_fast_motion_street_moves_cars_faster_than_the_default_street():
    def speed(params):
        clips = load_world("street", "test", seed=0, n_clips=3, cache=False, **params)
        steps = []
        for clip in clips:
            for k in range(clip.n_objects):
                ys, xs = [], []
                for t in range(clip.n_frames):
                    pts = np.argwhere(clip.amodal[t, k])
                    if len(pts):
                        ys.append(pts.mean(0))
                steps += [np.linalg.norm(b - a) for a, b in zip(ys, ys[1:])]
        return np.mean(steps)

    assert speed(STREET_FAST_MOTION) > 2 * speed({})


def test_paper_recipe_runs_one_step_with_the_release_schedule(tmp_path, monkeypatch):
    """The paper profile's recipe (width 64, the release's decay) builds and trains (on quick-sized data)."""
    import dataclasses

    from amodalkit.profiles import resolve
    from amodalkit.stemseg import StemRecipe, load_stem_data, train_stemseg

    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    p = resolve("stem_mixing", "paper")
    recipe = StemRecipe(width=p["width"], stride=p["stride"], clip_len=p["clip_len"], batch=p["batch"], steps=2,
                        lr=p["lr"], decay_start=p["decay_start"], validate_every=1)
    assert recipe.decay_start < 1  # the release's schedule is on
    data = load_stem_data("davis_like", 0, train_clips=1, image_count=1, val_clips=1, test_clips=1, clip_len=p["clip_len"])
    result = train_stemseg(dataclasses.replace(recipe, image_fraction=0.5), data, seed=0)
    assert len(result.history["loss"]) == 2 and all(math.isfinite(v) for v in result.history["val_loss"])
    with pytest.raises(ValueError, match="decay_start"):
        StemRecipe(decay_start=1.5)


def test_chain_clips_gives_a_newcomer_after_the_overlap_a_new_track():
    a = np.zeros((4, 4, 8), dtype=np.int64)
    a[:, :, :2], a[:, :, 6:] = 1, 2  # X, Y
    b = np.zeros((4, 4, 8), dtype=np.int64)
    b[:, :, :2] = 1  # X again; Y is missed in the overlap ...
    b[2:, :, 3:5] = 2  # ... and Z appears only after it
    video = chain_clips([a, b], [0, 2], 6)
    assert video[4, 0, 0] == video[0, 0, 0]  # X continues
    assert video[4, 0, 3] not in (video[0, 0, 0], video[0, 0, 7])  # Z does not inherit Y's track

"""Mask-VOS: Algorithm S1's refinement loop, the aggregation, L_Corr's alignment and anchors, L_Seg, the clustering
and the pseudo masks, on hand-made cases."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from amodalkit.maskvos import MaskRecipe, MaskVOS, aggregate, correspondence_loss, refine, segment_clip, segmentation_loss
from amodalkit.maskvos.clustering import cluster_video, foreground_iou, objects_from_clusters, sinkhorn
from amodalkit.maskvos.model import align_to_view2, bootstrapped_cross_entropy, grid_index, memory_affinity
from amodalkit.propagation import propagate


def _dilating_parts():
    """encode_query: the mask itself as a 1-channel encoding; decode: logits +-20 of the encoding dilated by one
    cell (3x3 max-pool). So round r of Algorithm S1 grows the coarse mask by r cells."""
    def encode_query(masks):  # (O, h, w) -> (O, 1, h, w)
        return masks[:, None].float()

    def decode(values, own):
        return 40 * (F.max_pool2d(own, 3, 1, 1) - 0.5)

    return encode_query, decode


def test_refinement_rounds_reencode_the_current_mask():
    encode_query, decode = _dilating_parts()
    coarse = torch.zeros(2, 9, 9)
    coarse[1, 4, 4] = 1.0
    coarse[0] = 1 - coarse[1]
    values = torch.randn(1, 1, 9, 9)
    rounds = refine(values, coarse, encode_query, decode, rounds=3)
    assert len(rounds) == 3
    for r, mask in enumerate(rounds, start=1):
        fg = mask.argmax(0) == 1
        expected = torch.zeros(9, 9, dtype=torch.bool)
        expected[4 - r:5 + r, 4 - r:5 + r] = True
        assert torch.equal(fg, expected), f"round {r}"
        assert torch.allclose(mask.sum(0), torch.ones(9, 9))
    # refinement changes the mask from round to round; round 0 decodes with a zero encoding: nothing
    assert not torch.equal(rounds[0].argmax(0), rounds[1].argmax(0))
    (zero,) = refine(values, coarse, encode_query, decode, rounds=0)
    assert (zero.argmax(0) == 0).all()
    with pytest.raises(ValueError, match="rounds"):
        refine(values, coarse, encode_query, decode, rounds=-1)


def test_aggregate_matches_hand_computation():
    prob = torch.tensor([[0.5], [0.2]])  # two objects at one pixel
    logits = aggregate(prob, dim=0)
    background = 0.5 * 0.8
    expected = [math.log(p / (1 - p)) for p in (background, 0.5, 0.2)]
    assert torch.allclose(logits[:, 0], torch.tensor(expected), atol=1e-6)
    clamped = aggregate(torch.tensor([[1.0]]), dim=0)  # p = 1 clamps to 1 - 1e-7; background to 1e-7
    assert torch.isfinite(clamped).all()


def test_align_to_view2_undoes_flip_and_zoom():
    g = torch.randn(1, 3, 4, 4)
    # full frame, flipped: aligning the flipped map gives the map back exactly
    flip_box = torch.tensor([[4.0, 4.0, -8.0, 8.0]])
    full = F.interpolate(g, scale_factor=2, mode="nearest")  # (1, 3, 8, 8)
    assert torch.equal(align_to_view2(full.flip(-1), flip_box, 8), full)
    # the top-left quadrant zoomed to the whole view: aligned back it fills the quadrant, zero elsewhere
    quadrant = torch.tensor([[2.0, 2.0, 4.0, 4.0]])
    aligned = align_to_view2(full, quadrant, 8)
    assert torch.equal(aligned[..., :4, :4], g)
    assert (aligned[..., 4:, :] == 0).all() and (aligned[..., :, 4:] == 0).all()


def test_grid_index_is_a_lattice_with_one_offset_per_map():
    g = torch.Generator().manual_seed(0)
    index = grid_index(8, 8, 4, 5, g)
    assert index.shape == (5, 16)
    for row in index:
        y, x = row // 8, row % 8
        oy, ox = int(y[0]), int(x[0])
        assert 0 <= oy < 2 and 0 <= ox < 2
        assert torch.equal(y.reshape(4, 4), (torch.arange(0, 8, 2)[:, None] + oy).expand(4, 4))
        assert torch.equal(x.reshape(4, 4), (torch.arange(0, 8, 2)[None, :] + ox).expand(4, 4))


def test_memory_affinity_is_a_distribution_over_memory():
    keys = F.normalize(torch.randn(2, 3, 4, 2, 2), dim=2)
    query = F.normalize(torch.randn(2, 4, 2, 2), dim=1)
    a = memory_affinity(keys, query, 0.05)
    assert a.shape == (2, 12, 4)
    assert torch.allclose(a.sum(1), torch.ones(2, 4), atol=1e-6)


def test_correspondence_loss_sums_its_terms_and_trains_only_the_key_encoder():
    torch.manual_seed(0)
    model = MaskVOS(width=4, dim=8, value_dim=4)
    clips = torch.randn(2, 3, 3, 32, 32)
    g = torch.Generator().manual_seed(1)
    loss, parts = correspondence_loss(model, clips, g, grid=2, grid_ref=2, return_parts=True)
    assert torch.isfinite(loss) and set(parts) == {"temporal", "cross_key"}
    assert math.isclose(float(loss.detach()), 0.1 * parts["cross_key"] + parts["temporal"], rel_tol=1e-5)
    loss.backward()
    assert model.crw.encoder.stem[0].weight.grad.abs().sum() > 0
    assert model.decoder.out.weight.grad is None  # L_Corr does not reach the decoder


def test_bootstrapped_cross_entropy_keeps_the_hardest_pixels():
    logits = torch.zeros(1, 2, 1, 10)
    target = torch.zeros(1, 1, 10, dtype=torch.long)
    logits[0, 1, 0, :] = torch.arange(10.0)  # per-pixel CE grows with the index
    plain = F.cross_entropy(logits, target)
    assert torch.allclose(bootstrapped_cross_entropy(logits, target, step=0), plain)
    raw = F.cross_entropy(logits, target, reduction="none").reshape(-1)
    late = bootstrapped_cross_entropy(logits, target, step=20_000, top_p=0.2)  # the 2 hardest of 10
    assert torch.allclose(late, raw.sort().values[-2:].mean())
    middle = bootstrapped_cross_entropy(logits, target, step=7000, start=2000, end=12000, top_p=0.2)  # p = 0.6
    assert torch.allclose(middle, raw.sort().values[-6:].mean())


def test_segmentation_loss_reaches_every_part():
    torch.manual_seed(0)
    model = MaskVOS(width=4, dim=8, value_dim=4)
    frames = torch.randn(2, 3, 3, 32, 32)
    labels = torch.zeros(2, 3, 32, 32, dtype=torch.long)
    labels[:, :, 8:16, 8:16] = 1
    labels[:, :, 20:28, 4:12] = 2
    loss = segmentation_loss(model, frames, labels, n_objects=2)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    for part in (model.decoder.out, model.mask_encoder.fuse, model.crw.head):
        assert part.weight.grad is not None and part.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="3 frames"):
        segmentation_loss(model, frames[:, :2], labels[:, :2], n_objects=2)


def test_sinkhorn_has_equal_columns_and_unit_rows():
    scores = torch.randn(60, 4, dtype=torch.float64)
    q = sinkhorn(scores, epsilon=0.5, iterations=200)
    assert torch.allclose(q.sum(1), torch.ones(60, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(q.sum(0), torch.full((4,), 15.0, dtype=torch.float64), atol=1e-4)


@pytest.mark.parametrize("method", ["kmeans", "sinkhorn"])
def test_clustering_recovers_separated_groups(method):
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 16, generator=g), dim=1)
    ids = torch.arange(4).repeat_interleave(6).reshape(2, 3, 4)  # (T, h, w): 4 groups of 6 positions
    keys = F.normalize(centres[ids] + 0.01 * torch.randn(2, 3, 4, 16, generator=g), dim=-1).permute(0, 3, 1, 2)
    clusters = cluster_video(keys, k=4, every=1, method=method, seed=0)
    # the same partition up to renaming
    pairs = set(zip(ids.reshape(-1).tolist(), clusters.reshape(-1).tolist()))
    assert len(pairs) == 4 and len({a for a, _ in pairs}) == 4 and len({b for _, b in pairs}) == 4


def test_objects_from_clusters_prefers_interior_clusters():
    clusters = torch.zeros(2, 8, 8, dtype=torch.long)  # 0: background on the border
    clusters[:, 2:5, 2:5] = 1  # interior blob
    clusters[:, 5:7, 5:7] = 2  # smaller interior blob
    clusters[:, 0, 3:6] = 3  # a strip on the border
    labels = objects_from_clusters(clusters, k=4, n_objects=2)
    assert set(labels.unique().tolist()) == {0, 1, 2}
    assert (labels[clusters == 1] > 0).all() and (labels[clusters == 2] > 0).all()
    assert (labels[(clusters == 0) | (clusters == 3)] == 0).all()


def test_foreground_iou_hand_case():
    labels = torch.zeros(1, 2, 2, dtype=torch.long)
    labels[0, 0, 0] = 1
    labels[0, 0, 1] = 2
    truth = np.zeros((1, 4, 4), bool)
    truth[0, :2, :2] = True  # cell (0, 0) fully foreground
    truth[0, 2:, 2:] = True  # cell (1, 1)
    assert math.isclose(foreground_iou(labels, truth), 1 / 3)


def test_propagate_stores_what_update_returns():
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(4, 8, 5, 5), dim=1)
    first = torch.rand(3, 5, 5)
    plain = propagate(feats, first, context=2, topk=3, radius=3)
    seen = {}

    def update(t, readout):
        seen[t] = readout.clone()
        return torch.full_like(readout, float(t))

    stored = propagate(feats, first, context=2, topk=3, radius=3, update=update)
    assert torch.allclose(seen[1], plain[1])  # frame 1 reads frame 0 only, as without the hook
    for t in (1, 2, 3):
        assert (stored[t] == t).all()
    # frame 2 reads frame 0 and frame 1's stored constant: not what plain propagation stored
    assert not torch.allclose(seen[2], plain[2])


def test_segment_clip_keeps_frame_zero_and_rejects_an_empty_mask():
    torch.manual_seed(0)
    model = MaskVOS(width=4, dim=8, value_dim=4)
    frames = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    first = np.zeros((32, 32), np.uint8)
    first[8:20, 8:20] = 1
    out = segment_clip(model, frames, first, rounds=2, radius=3.0, topk=3)
    assert out["masks"].shape == (3, 32, 32) and np.array_equal(out["masks"][0], first)
    assert out["coarse"].shape == out["decoded"].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="no object"):
        segment_clip(model, frames, np.zeros((32, 32), np.uint8))


def test_label_memory_keeps_the_read_out_when_the_decoder_erases():
    """The release's memory: a frame's label memory is its read-out, so a decoder that erases the object (all
    background) leaves later read-outs intact; with ``blend=False`` the erased masks fill the memory and the object
    fades from the read-outs of a static clip."""
    torch.manual_seed(0)
    model = MaskVOS(width=4, dim=8, value_dim=4)
    decode = model.decoder.forward
    model.decoder.forward = lambda *args: decode(*args) * 0 - 20.0  # every object probability ~0: erases
    frame = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    frames = np.stack([frame] * 6)  # static: every read-out copies what the memory holds
    first = np.zeros((32, 32), np.uint8)
    first[8:24, 8:24] = 1
    area = (first > 0).sum()
    options = dict(rounds=1, radius=1000.0, topk=10, context=5, scale=2.0)
    kept = segment_clip(model, frames, first, **options)
    erased = segment_clip(model, frames, first, blend=False, **options)
    for out in (kept, erased):
        assert (out["decoded"][1:] == 0).all()  # the decoder erased the object on every frame
        assert (out["masks"][1:] == 0).all()  # and the mean of its masks and the read-out's is background
    # the read-outs still see it (they blur a little from frame to frame: measured 166 of 256 pixels at frame 5); the
    # erased memory has lost it by then (measured 0)
    assert (kept["coarse"][5] > 0).sum() >= 0.5 * area
    assert (erased["coarse"][5] > 0).sum() <= 0.1 * area


@pytest.mark.parametrize("bad, match", [(dict(crop=60), "multiple of 8"), (dict(grid=40), "grid"),
                                        (dict(n_objects=7), "n_objects"), (dict(zoom=(0.0, 1.0)), "zoom"),
                                        (dict(batch=0), "batch")])
def test_recipe_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        MaskRecipe(**bad)


def test_update_schedule_spans_the_first_half_of_phase_b():
    recipe = MaskRecipe(seg_steps=200, updates=9, update_span=0.5)
    assert recipe.update_steps() == [11, 22, 33, 44, 56, 67, 78, 89, 100]


def test_phase_a_cache_key_ignores_phase_b_settings(monkeypatch):
    """A phase-B setting changed must not retrain phase A; a phase-A one must."""
    import amodalkit.train as train_module
    from amodalkit.maskvos.experiments import train_phase_a

    configs = []
    monkeypatch.setattr(train_module, "train_cached", lambda name, config, *a, **k: configs.append(config))
    videos = torch.zeros(1, 8, 32, 32, 3, dtype=torch.uint8)
    base = dict(crop=32, grid=2, grid_ref=2, width=4, dim=8, value_dim=4, crw_patch=16)
    for recipe in (MaskRecipe(**base), MaskRecipe(**base, seg_steps=7, updates=2, seg_batch=3),
                   MaskRecipe(**base, corr_steps=5)):
        train_phase_a("lcorr", recipe, videos, videos, seed=0, data_key={"d": 1})
    assert configs[0] == configs[1] and configs[0] != configs[2]


def test_online_pseudo_masks_make_the_validation_videos_masks_from_the_same_weights(monkeypatch):
    """Each update clusters the training and the validation videos with the weights of that step, once."""
    import amodalkit.maskvos.experiments as ex

    calls = []
    monkeypatch.setattr(ex, "pseudo_masks", lambda model, videos, recipe, method, seed: calls.append(
        (model, len(videos), seed)) or torch.full((len(videos), 1, 1, 1), len(calls)))
    recipe = MaskRecipe(seg_steps=20, updates=2, update_span=0.5)  # updates at steps 5 and 10
    online = ex.OnlinePseudoMasks(recipe, torch.zeros(3, 1), "kmeans", 0, val_videos=torch.zeros(2, 1))
    for step in range(20):
        online.at(f"weights@{step}", step)
    assert [(m, n) for m, n, _ in calls] == [("weights@0", 3), ("weights@0", 2), ("weights@5", 3), ("weights@5", 2),
                                             ("weights@10", 3), ("weights@10", 2)]
    assert len({seed for _, _, seed in calls}) == 6  # every clustering its own seed
    assert int(online.labels.flatten()[0]) == 5 and int(online.val_labels.flatten()[0]) == 6


def test_segmentation_validation_is_fixed_and_reads_the_labels():
    from amodalkit.maskvos import segmentation_validation

    torch.manual_seed(0)
    model = MaskVOS(width=4, dim=8, value_dim=4).eval()
    videos = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 6, 32, 32, 3), dtype=np.uint8))
    labels = torch.zeros(2, 6, 4, 4, dtype=torch.long)
    labels[:, :, 1:3, 1:3] = 1
    recipe = MaskRecipe(crop=32, grid=2, grid_ref=2, crw_patch=16, seg_batch=2)
    first = segmentation_validation(model, videos, labels, recipe, batches=2)
    assert first == segmentation_validation(model, videos, labels, recipe, batches=2)  # the same batches each time
    assert first != segmentation_validation(model, videos, labels.roll(1, dims=-1), recipe, batches=2)


def test_seg_plateau_reads_only_the_validations_against_the_final_pseudo_masks():
    """A low L_Seg measured against older pseudo masks (before the last update) must not count as the early best."""
    from amodalkit.maskvos import seg_plateau

    recipe = MaskRecipe(seg_steps=400, updates=9, update_span=0.5)  # last update at step 200
    steps = list(range(40, 401, 40))
    history = {"val_step": steps, "val_seg": [1.2, 0.9, 0.9, 0.8, 0.5, 0.8, 0.75, 0.70, 0.72, 0.66]}
    # after step 200: best up to step 320 is 0.70, best overall 0.66
    assert seg_plateau(history, recipe) == pytest.approx((0.70 - 0.66) / 0.70)
    with pytest.raises(ValueError, match="after the last pseudo-mask update"):
        seg_plateau({"val_step": [100, 200], "val_seg": [1.0, 0.9]}, recipe)

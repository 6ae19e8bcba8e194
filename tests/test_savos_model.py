"""The SaVos network (Table 6), its crop-to-crop warp, fusion, losses and switches; Algorithm 1;
SaVos's metrics; and one training step of every row at the paper's sizes."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from amodalkit import savos
from amodalkit.data.tracks import crop, crop_flow
from amodalkit.metrics import amodal_ious, frame_level_miou, object_level_miou
from amodalkit.ops import warp


def random_batch(n=2, t=5, size=(16, 32), seed=0, boxes=None):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    visible = (torch.rand(n, t, h, w, generator=g) > 0.5).float()
    box = torch.tensor([0.0, 0.0, w, h]) if boxes is None else boxes
    return savos.TrackBatch(torch.rand(n, t, 3, h, w, generator=g) - 0.5, visible,
                            (torch.rand(n, t, h, w, generator=g) > 0.8).float() * (1 - visible),
                            torch.zeros(n, t, h, w), torch.randn(n, t, 2, h, w, generator=g),
                            torch.randn(n, t, 2, h, w, generator=g), box.expand(n, t, 4).clone())


# ------------------------------------------------------------------------------- the network


def test_layer_specs_are_table_6_at_paper_size():
    specs = savos.layer_specs((64, 128))
    assert [k for k, _, _ in specs] == [(4, 4)] * 4 + [(3, 4), (4, 4)]
    assert [s for _, s, _ in specs] == [(2, 2)] * 4 + [(1, 2), (1, 1)]
    assert [p for _, _, p in specs] == [(1, 1)] * 5 + [(0, 0)]
    assert savos.tower_channels(32) == [32, 64, 128, 256, 256, 512]


@pytest.mark.parametrize("size", [(16, 32), (32, 64), (64, 128)])
def test_towers_reach_one_by_one_and_mirror_back(size):
    enc, dec = savos.ConvTower(6, 4, size), savos.DeconvTower(2, 4, size)
    z = enc(torch.randn(3, 6, *size))
    assert z.shape == (3, 64)
    assert dec(z).shape == (3, 2, *size)


@pytest.mark.parametrize("size", [(16, 16), (24, 48), (8, 16)])
def test_bad_crop_size_is_named(size):
    with pytest.raises(ValueError, match="crop size"):
        savos.SaVosNet(size, 4)


def test_base_flow_by_hand():
    visible = torch.zeros(1, 1, 2, 2)
    visible[0, 0, 0, 0] = visible[0, 0, 0, 1] = 1
    flow = torch.zeros(1, 1, 2, 2, 2)
    flow[0, 0, 0] = torch.tensor([[1.0, 3.0], [7.0, 9.0]])  # x
    out = savos.base_flow(visible, flow)
    assert out[0, 0, 0].tolist() == [[1.0, 3.0], [2.0, 2.0]]  # visible pixels keep theirs, the rest get the mean 2
    assert out[0, 0, 1].abs().max() == 0


# ------------------------------------------------------------------------------------ warps


def test_crop_warp_with_one_box_is_the_plain_warp():
    g = torch.Generator().manual_seed(1)
    values, flow = torch.rand(3, 2, 16, 32, generator=g), 3 * torch.randn(3, 2, 16, 32, generator=g)
    box = torch.tensor([[3.0, 4.0, 35.0, 20.0]] * 3)
    assert torch.allclose(savos.crop_warp(values, flow, box, box), warp(values, flow), atol=1e-6)


def test_crop_warp_moves_a_mask_between_crops_like_the_image():
    """A square translated by (3, 2) px in the image: crop it at t, warp with its flow into the box
    of t+1; the result is the crop of the moved square (boxes of one scale, integer offsets)."""
    h, w = 40, 60
    image = np.zeros((h, w), bool)
    image[10:18, 12:24] = True
    moved = np.roll(np.roll(image, 2, axis=0), 3, axis=1)
    box_src, box_dst = np.array([4.0, 6.0, 36.0, 22.0]), np.array([8.0, 7.0, 40.0, 23.0])  # 2 px per crop px in x and y
    size = (8, 16)
    flow = np.zeros((2, h, w), np.float32)
    flow[0], flow[1] = 3.0, 2.0
    src = torch.from_numpy(crop(image, box_src, size))[None, None]
    f = torch.from_numpy(crop_flow(flow, box_src, size))[None]
    out = savos.crop_warp(src, f, torch.from_numpy(box_src)[None], torch.from_numpy(box_dst)[None])[0, 0].numpy()
    expected = crop(moved, box_dst, size)
    assert np.abs(out - expected).max() < 1e-5


# ------------------------------------------------------------------------------ prediction


def test_fusion_weights_sum_to_one_and_the_ends_have_one_pass():
    model = savos.SaVosNet((16, 32), 2)
    pred = savos.predict(model, random_batch())
    assert torch.allclose(pred.weights.sum(2), torch.ones_like(pred.fused))
    assert pred.valid.all()
    assert torch.allclose(pred.weights[:, 0, 1], torch.ones(2, 16, 32))  # frame 0: backward only
    assert torch.allclose(pred.weights[:, -1, 0], torch.ones(2, 16, 32))  # last frame: forward only
    assert ((pred.fused >= 0) & (pred.fused <= 1)).all()


def test_no_bidirectional_has_no_prediction_of_frame_0():
    model = savos.SaVosNet((16, 32), 2, savos.VARIANTS["no_bidirectional"])
    pred = savos.predict(model, random_batch())
    assert pred.backward is None and not pred.valid[0] and pred.valid[1:].all()


def test_the_prediction_of_a_frame_does_not_see_its_visible_mask():
    """The fused prediction of frame t is made from the other frames: changing V_t changes it only via
    the pass that runs through t, i.e. never for the forward prediction of t from t-1."""
    torch.manual_seed(0)
    model = savos.SaVosNet((16, 32), 2, savos.VARIANTS["no_bidirectional"]).eval()
    batch = random_batch()
    before = savos.predict(model, batch).fused[:, 3]
    batch.visible[:, 3:] = 1 - batch.visible[:, 3:]  # frames 3.. change
    after = savos.predict(model, batch).fused[:, 3]
    assert torch.equal(before, after)


@pytest.mark.parametrize("switch, field", [("no_image", "frames"), ("no_flow", "flow_fwd")])
def test_input_switches_remove_the_input(switch, field):
    torch.manual_seed(0)
    model = savos.SaVosNet((16, 32), 2, savos.VARIANTS[switch]).eval()
    full = savos.SaVosNet((16, 32), 2).eval()
    full.load_state_dict(model.state_dict())
    a, b = random_batch(seed=1), random_batch(seed=1)
    setattr(b, field, getattr(b, field) + 1.0)
    assert torch.equal(savos.predict(model, a).fused, savos.predict(model, b).fused)
    assert not torch.equal(savos.predict(full, a).fused, savos.predict(full, b).fused)


def test_without_temporal_embedding_each_frame_sees_only_itself():
    torch.manual_seed(0)
    flat = savos.SaVosNet((16, 32), 2, savos.VARIANTS["no_temporal"]).eval()
    lstm = savos.SaVosNet((16, 32), 2).eval()
    a, b = random_batch(seed=2), random_batch(seed=2)
    b.frames[:, 0] += 0.3  # only frame 0 changes
    for model, changes in ((flat, False), (lstm, True)):
        ea = model.direction(a.frames, a.visible, a.flow_fwd).embedding[:, 1:]
        eb = model.direction(b.frames, b.visible, b.flow_fwd).embedding[:, 1:]
        assert (not torch.equal(ea, eb)) == changes


# ----------------------------------------------------------------------------------- losses


def test_without_consistency_the_loss_is_l_m_of_the_fused_prediction():
    torch.manual_seed(0)
    model = savos.SaVosNet((16, 32), 2, savos.VARIANTS["no_consistency"])
    batch = random_batch()
    pred = savos.predict(model, batch)
    by_hand = (torch.nn.functional.binary_cross_entropy(pred.fused, batch.visible, reduction="none")
               * (1 - batch.others)).sum((-2, -1)).mean()
    assert torch.allclose(savos.savos_loss(model, batch), by_hand, rtol=1e-5)
    with_lc = savos.SaVosNet((16, 32), 2)
    with_lc.load_state_dict(model.state_dict())
    assert savos.savos_loss(with_lc, batch) > by_hand  # L_C > 0 for a random network


def test_consistency_does_not_train_the_flow_through_its_own_warp():
    """L_C's own warp uses detached flows (the paper's per-pass form: its gradient reaches the masks only). The
    release's form compares the fused predictions, which `predict` warped with the live flow (the release's
    align_and_warp detaches only the flow it returns), so there the flow decoder is trained through the fusion."""
    torch.manual_seed(0)
    model = savos.SaVosNet((16, 32), 2)
    batch = random_batch()
    pred = savos.predict(model, batch)
    loss = savos._pass_consistency(pred.forward, batch.boxes, False, "sum")
    loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in model.flow_decoder.parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.mask_decoder.parameters())
    model.zero_grad(set_to_none=True)
    savos.fused_consistency(savos.predict(model, batch), batch.boxes).backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.flow_decoder.parameters())


def test_erasers_keep_the_target_and_only_remove_pixels():
    g = torch.Generator().manual_seed(0)
    visible = torch.zeros(64, 4, 16, 32)
    visible[:, :, 4:12, 8:24] = 1
    cut, eraser = savos.erasers(visible, g, p_behind=0.2)
    assert (cut <= visible).all()
    behind = (cut == visible).flatten(1).all(1)
    assert 0 < behind.sum() < 64  # both cases happen
    assert (eraser[behind] * visible[behind]).max() == 0  # a behind eraser never covers the mask
    front = ~behind
    assert torch.allclose(cut[front], visible[front] * (1 - eraser[front]))


def test_weighted_deocclusion_loss_by_hand():
    logits, target = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])
    eraser = torch.tensor([[1.0, 0.0]])
    # BCE of logit 0 is log 2 on both pixels; weight 5 and 1: mean = 3 log 2
    assert float(savos.weighted_deocclusion_loss(logits, target, eraser)) == pytest.approx(3 * np.log(2), rel=1e-6)


@pytest.mark.parametrize("name", list(savos.VARIANTS))
def test_one_training_step_of_every_row_at_paper_size(name):
    """Table 6 at 64 x 128 (base 32): one Adam step, a finite loss, weights that move."""
    torch.manual_seed(0)
    recipe = savos.SaVosRecipe(size=(64, 128), base=32, window=3, batch=1, pcnet_width=32, photometric=0.1)
    variant = savos.VARIANTS[name]
    model = savos.make_model(variant, recipe)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = random_batch(n=1, t=3, size=(64, 128))
    loss = savos.variant_loss(model, variant, batch, torch.Generator().manual_seed(0), recipe)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ------------------------------------------------------------------------------ Algorithm 1


def test_splat_by_hand():
    mask = np.zeros((4, 5), bool)
    mask[1, 1] = mask[2, 4] = True
    flow = np.zeros((2, 4, 5))
    flow[0] = 1.0  # one to the right; the pixel at the border leaves the image
    out = savos.splat(mask, flow)
    assert np.argwhere(out).tolist() == [[1, 2]]


def test_aggregation_recovers_a_square_whose_parts_were_seen_before():
    """A 4x4 square moves right 1 px a frame; a column band hides a different part of it in each
    frame. Aggregating k = 3 frames with the true flow restores the whole square in the last frame;
    k = 0 is the visible mask."""
    t_len, h, w = 4, 8, 14
    amodal = np.zeros((t_len, h, w), bool)
    visible = np.zeros_like(amodal)
    for t in range(t_len):
        amodal[t, 2:6, 3 + t:7 + t] = True
        visible[t] = amodal[t]
        visible[t, :, 6 + t - 1 + (t == 0)] = False  # hide one column of the square, a different one each frame
    flow = np.zeros((t_len, 2, h, w))
    flow[:, 0] = 1.0
    out = savos.aggregate(visible, flow, 3)
    assert np.array_equal(out[3], amodal[3])
    assert np.array_equal(savos.aggregate(visible, flow, 0), visible)
    back = np.zeros_like(flow)
    back[:, 0] = -1.0
    both = savos.rule_based_completion(visible, flow, back, 3)
    assert np.array_equal(both[0], amodal[0]) and np.array_equal(both[3], amodal[3])


# ---------------------------------------------------------------------------------- metrics


def test_amodal_ious_by_hand():
    # one row of 6 pixels: object visible on 0-1, another object visible on 2-4, background 5
    visible = np.array([[1, 1, 0, 0, 0, 0]], float)
    weight = np.array([[1, 1, 0, 0, 0, 1]], float)
    amodal = np.array([[1, 1, 1, 1, 0, 0]], bool)
    prob = np.array([[0, 0, 1, 0, 0, 1]], float)  # visible pixels and background are overruled by the fusion
    full, occluded = amodal_ious(prob, visible, weight, amodal)
    assert full == pytest.approx((3 + 1e-6) / (4 + 1e-6))  # prediction {0, 1, 2} against {0, 1, 2, 3}
    assert occluded == pytest.approx((1 + 1e-6) / (2 + 1e-6))  # inside {2, 3, 4}: {2} against {2, 3}


def test_frame_and_object_level_miou_by_hand():
    values = [1.0, 0.0, 0.5]
    frames = [(0, 1), (0, 1), (0, 2)]
    assert frame_level_miou(values, frames) == pytest.approx((0.5 + 0.5) / 2)
    assert object_level_miou(values) == pytest.approx(0.5)
    values = [1.0, 0.0, 0.0]
    assert frame_level_miou(values, frames) == pytest.approx(0.25)
    assert object_level_miou(values) == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------ data


def test_tracks_of_a_world_and_their_scores():
    data = savos.load_world_tracks("chewing_gum", 0, {"train": 1, "val": 1, "test": 2}, size=(16, 32), window=6)
    for i, track in data.tracks["test"]:
        assert ((track.occlusion > 0.1) & (track.occlusion < 0.7)).any()
        assert (track.others * track.visible).max() < 1.0  # another object's pixels are not this object's
    # the ground truth, pasted as the prediction, scores 1 on every kept object-frame (up to the crop's reach)
    truth = [data.clips["test"][i].amodal[tr.frame_index, tr.object_index].astype(np.float32) for i, tr in data.tracks["test"]]
    scores = savos.score_tracks(data, truth)
    assert len(scores.full) > 0
    assert np.allclose(scores.full, 1.0) and np.allclose(scores.occluded, 1.0)
    assert savos.load_world_tracks("chewing_gum", 0, {"train": 1, "val": 1, "test": 2}, size=(16, 32),
                                   window=6).tracks["test"][0][1].frame_index.tolist() == data.tracks["test"][0][1].frame_index.tolist()


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="unknown SaVos variant"):
        savos.train_variant("no_lstm", None, savos.SaVosRecipe(), 0, {})


# ------------------------------------------------------------------------------- reliance probes


def test_history_swap_with_the_own_history_changes_nothing():
    torch.manual_seed(0)
    model = savos.SaVosNet((16, 32), 4).eval()
    batch = random_batch(t=6)
    with torch.no_grad():
        plain = savos.predict(model, batch)
        own = savos.predict(model, batch, donor=batch)  # each frame's history is its own: the same states
        other = savos.predict(model, batch, donor=random_batch(t=6, seed=1))
    assert torch.allclose(plain.fused, own.fused, atol=1e-5)
    assert not torch.allclose(plain.fused, other.fused, atol=1e-5)  # another clip's past moves the prediction
    with torch.no_grad():  # frame 0 has no history: its forward state does not depend on the donor
        e = model.embed(batch.frames, batch.visible, batch.flow_fwd)
        swapped = model.history_states(e, model.embed(*(random_batch(t=6, seed=1).frames, batch.visible, batch.flow_fwd)))
    assert torch.allclose(swapped[:, 0], model.history_states(e)[:, 0], atol=1e-6)


def test_without_past_each_state_is_the_lstm_after_that_frame_alone():
    torch.manual_seed(0)
    model = savos.SaVosNet((16, 32), 4).eval()
    batch = random_batch(t=5)
    with torch.no_grad():
        e = model.embed(batch.frames, batch.visible, batch.flow_fwd)
        with savos.without_past(model):
            alone = model.history_states(e)
        by_hand = torch.stack([model.temporal(e[:, t:t + 1])[0][:, 0] for t in range(5)], 1)
        full = model.history_states(e)
    assert not model.no_past  # restored
    assert torch.allclose(alone, by_hand, atol=1e-6)
    assert torch.allclose(alone[:, 0], full[:, 0], atol=1e-6)  # frame 0 has no past either way
    assert not torch.allclose(alone[:, 1:], full[:, 1:], atol=1e-4)  # later frames lose theirs


def test_the_supervised_loss_is_the_bce_of_the_completers_output_against_the_amodal_masks():
    torch.manual_seed(0)
    batch = random_batch(t=4)
    net = savos.SaVosNet((16, 32), 4, savos.VARIANTS["supervised"])
    with torch.no_grad():
        fwd = net.direction(batch.frames, batch.visible, batch.flow_fwd).mask_logits
        bwd = net.direction(batch.frames.flip(1), batch.visible.flip(1), batch.flow_bwd.flip(1)).mask_logits.flip(1)
        expected = (F.binary_cross_entropy_with_logits(fwd, batch.amodal)
                    + F.binary_cross_entropy_with_logits(bwd, batch.amodal)) / 2
        assert torch.allclose(savos.supervised_window_loss(net, batch), expected)
    from amodalkit.deocclusion import PCNetM

    pcnet = PCNetM(4)
    with torch.no_grad():
        logits = pcnet(torch.stack([batch.visible, batch.others], 2).flatten(0, 1))[:, 0]
        assert torch.allclose(savos.supervised_window_loss(pcnet, batch),
                              F.binary_cross_entropy_with_logits(logits, batch.amodal.flatten(0, 1)))


def test_switched_inputs_equal_the_ablated_variant_and_are_restored():
    torch.manual_seed(0)
    model = savos.SaVosNet((16, 32), 4).eval()
    ablated = savos.SaVosNet((16, 32), 4, savos.Variant(flow_input=False)).eval()
    ablated.load_state_dict(model.state_dict())
    batch = random_batch(t=5)
    with torch.no_grad(), savos.switched_inputs(model, flow_input=False):
        probed = savos.predict(model, batch).fused
    assert model.variant == savos.Variant()
    with torch.no_grad():
        assert torch.equal(probed, savos.predict(ablated, batch).fused)
    with pytest.raises(ValueError, match="only flow_input and image_input"):
        with savos.switched_inputs(model, temporal=False):
            pass


def test_reliance_probes_of_a_per_frame_model_find_no_history():
    data = savos.load_world_tracks("chewing_gum", 0, {"train": 1, "val": 1, "test": 3}, size=(16, 32), window=6)
    clip_of = {id(track): clip for clip, track in data.tracks["test"]}
    assert len(set(clip_of.values())) > 1
    for (clip, track), donor in zip(data.tracks["test"], savos.donor_tracks(data)):
        assert donor is not track and clip_of[id(donor)] != clip  # a track of another clip
    torch.manual_seed(0)
    per_frame = savos.SaVosNet((16, 32), 4, savos.Variant(temporal=False))
    probes = savos.reliance_probes(per_frame, data)
    assert probes["history"] == 0.0 and probes["own_history"] == 0.0  # no temporal module: no past to swap or drop
    assert set(probes) == {"intact", "history", "own_history", "flow", "image"} and 0 <= probes["intact"] <= 1


def test_no_flow_rows_share_one_model_across_flow_sources():
    clips = {"train": 1, "val": 1, "test": 2}
    est = savos.load_world_tracks("chewing_gum", 0, clips, size=(16, 32), window=6, flow="estimated")
    exact = savos.load_world_tracks("chewing_gum", 0, clips, size=(16, 32), window=6, flow="truth")
    assert est.key != exact.key and est.flow_free_key == exact.flow_free_key


def test_history_visibility_is_a_share_and_a_window_of_one_frame_sees_nothing():
    from amodalkit.savos.experiments import history_visibility

    data = savos.load_world_tracks("chewing_gum", 0, {"train": 1, "val": 1, "test": 3}, size=(16, 32), window=6)
    wide = history_visibility(data, 6)
    assert wide["object_frames"] > 0 and 0 <= wide["past"] <= wide["past_or_future"] <= 1
    alone = history_visibility(data, 1)  # no other frame in the window
    assert alone["past"] == alone["past_or_future"] == 0.0
    assert history_visibility(data, 12)["past_or_future"] >= wide["past_or_future"]  # a wider window sees more


def test_the_release_net_has_the_releases_parameters_and_the_book_net_is_unchanged():
    # counted from the release's modules at 64 x 128, rnn_dim 256 (GroupNorm 1, LeakyReLU 0.01, a GroupNorm on each
    # joined vector, the motion encoder at 16-32-64-128-256-256)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(savos.SaVosNet((64, 128), 32, savos.VARIANTS["supervised_release_net"])) == 17_303_124
    assert count(savos.SaVosNet((64, 128), 32)) == 19_326_500  # the book's net (Table 6 with GroupNorm 8, slope 0.2)


def test_a_state_only_completer_ignores_the_visible_mask_of_the_frame():
    torch.manual_seed(0)
    net = savos.SaVosNet((16, 32), 4, savos.VARIANTS["supervised_state_only"]).eval()
    batch = random_batch(t=1)  # one frame: no history, so the state is a function of this frame's inputs alone
    with torch.no_grad():
        e = net.embed(batch.frames, batch.visible, batch.flow_fwd)
        h = net.history_states(e)
        m = net.mask_fc(net.mask_tower(torch.zeros_like(batch.visible).flatten(0, 1)[:, None]))
        by_hand = net.mask_decoder(torch.nn.functional.leaky_relu(net.mask_join(torch.cat([m, h.flatten(0, 1)], 1)), 0.2))
        out = net.direction(batch.frames, batch.visible, batch.flow_fwd).mask_logits
    assert torch.allclose(out.flatten(0, 1), by_hand[:, 0], atol=1e-6)

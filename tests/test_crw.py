import math

import pytest
import torch

from amodalkit.crw import contrastive_objective, lambda_u_autograd, lambda_u_closed_form


def test_lambda_u_by_hand():
    q = torch.tensor([1.0, 0.0], dtype=torch.float64)
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    others = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # u.q = 1, v.q = 0; two identical negatives
    expected = 1 - 3 * math.e / (3 * math.e + 1)
    assert lambda_u_closed_form(q, u, 2, others).item() == pytest.approx(expected, rel=1e-12)
    assert lambda_u_autograd(q, u, 2, others).item() == pytest.approx(expected, rel=1e-9)


def test_objective_by_hand_and_vanishing_gradient_without_true_negatives():
    q = torch.tensor([0.5, -1.0], dtype=torch.float64)
    u = torch.tensor([2.0, 1.0], dtype=torch.float64)
    v = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    expected = 0.0 - math.log(math.exp(0.0) + math.exp(-0.5))
    assert contrastive_objective(q, u, v).item() == pytest.approx(expected)
    # only copies of the positive as negatives: the gradient (and lambda_u) is exactly zero
    assert abs(lambda_u_autograd(q, u, 4, torch.zeros(0, 2, dtype=torch.float64)).item()) < 1e-12
    assert lambda_u_closed_form(q, u, 4, torch.zeros(0, 2, dtype=torch.float64)).item() == 0.0


def test_encoder_has_output_stride_8_and_res3_res4_widths():
    from amodalkit.crw import ResNet18Stride8

    out = ResNet18Stride8(width=8)(torch.randn(2, 3, 64, 96))
    assert out["res3"].shape == (2, 32, 8, 12) and out["res4"].shape == (2, 64, 8, 12)
    assert ResNet18Stride8()(torch.randn(1, 3, 32, 32))["res4"].shape == (1, 512, 4, 4)  # the paper's widths


def test_reflect_padding_leaves_no_border_in_a_constant_image():
    """The release pads by reflection: a constant frame stays spatially constant through the network (the borders
    carry no position), while zero padding marks them."""
    from amodalkit.crw import ResNet18Stride8

    frame = torch.full((1, 3, 64, 64), 0.7)
    for padding, constant in (("reflect", True), ("zeros", False)):
        torch.manual_seed(0)
        net = ResNet18Stride8(width=4, padding=padding).eval()
        res4 = net(frame)["res4"]
        spread = (res4 - res4.mean(dim=(2, 3), keepdim=True)).abs().max().item()
        assert (spread < 1e-5) == constant, (padding, spread)
    with pytest.raises(ValueError, match="padding must be 'zeros' or 'reflect'"):
        ResNet18Stride8(padding="circular")


def test_transitions_are_row_stochastic_and_edge_dropout_removes_edges():
    from amodalkit.crw import transitions

    a = torch.nn.functional.normalize(torch.randn(2, 6, 8), dim=-1)
    p = transitions(a, a, temperature=0.1)
    assert torch.allclose(p.sum(-1), torch.ones(2, 6))
    dropped = transitions(a, a, temperature=0.1, edge_dropout=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(dropped.sum(-1), torch.ones(2, 6)) and (dropped == 0).float().mean() > 0.3


def test_edge_dropout_is_drawn_as_the_release_draws_it():
    """The release drops edges in place on the shared affinity, so a step's backward transition loses the edges its
    forward transition lost (transposed) plus a fresh draw; the loss equals that construction written out by hand."""
    from amodalkit.crw import DROPPED, transitions, walk_loss

    torch.manual_seed(0)
    nodes = torch.nn.functional.normalize(torch.randn(2, 3, 5, 8), dim=-1)
    rate, tau = 0.3, 0.1
    loss = walk_loss(nodes, tau, rate, skip_shortest=False, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    forward_drop = [torch.rand(2, 5, 5, generator=g) < rate for _ in range(2)]  # every forward step first
    def step(a, b, drop):
        return torch.softmax((a @ b.transpose(1, 2)).masked_fill(drop, DROPPED) / tau, dim=-1)
    fwd = [step(nodes[:, t], nodes[:, t + 1], forward_drop[t]) for t in range(2)]
    bwd = [step(nodes[:, t + 1], nodes[:, t], forward_drop[t].transpose(1, 2) | (torch.rand(2, 5, 5, generator=g) < rate))
           for t in range(2)]
    walks = [fwd[0] @ bwd[0], fwd[0] @ fwd[1] @ bwd[1] @ bwd[0]]
    target = torch.arange(5).repeat(2)
    by_hand = torch.stack([torch.nn.functional.nll_loss(torch.log(w + 1e-20).reshape(10, 5), target) for w in walks]).mean()
    assert torch.allclose(loss, by_hand, atol=1e-6)
    # a dropped edge has no probability; a row with every edge dropped stays a distribution (uniform)
    p = transitions(nodes[:, 0], nodes[:, 1], tau, dropped=torch.eye(5, dtype=torch.bool).expand(2, 5, 5))
    assert (p.diagonal(dim1=1, dim2=2) == 0).all() and torch.allclose(p.sum(-1), torch.ones(2, 5))
    everything = transitions(nodes[:, 0], nodes[:, 1], tau, dropped=torch.ones(2, 5, 5, dtype=torch.bool))
    assert torch.allclose(everything, torch.full((2, 5, 5), 0.2))


def test_walk_loss_zero_when_nodes_are_tracked_and_log_n_when_uniform():
    from amodalkit.crw import walk_loss

    nodes = torch.nn.functional.normalize(torch.randn(2, 1, 10, 16), dim=-1).expand(-1, 5, -1, -1).contiguous()
    assert walk_loss(nodes, temperature=0.01).item() < 1e-6  # every node walks back to itself
    assert walk_loss(nodes, temperature=1e6).item() == pytest.approx(math.log(10), abs=1e-4)  # uniform walks
    shuffled = nodes.clone()
    shuffled[:, 2] = shuffled[:, 2, torch.randperm(10)]  # a permutation in the middle is still followed back
    assert walk_loss(shuffled, temperature=0.01).item() < 1e-6
    trainable = torch.randn(1, 4, 6, 8, requires_grad=True)
    walk_loss(torch.nn.functional.normalize(trainable, dim=-1), skip_shortest=False).backward()
    assert trainable.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="need at least 3 frames"):
        walk_loss(nodes[:, :2])


# ------------------------------------------------------------------ nodes, clips, training pieces

def test_crops_reproduce_slices_and_flip():
    from amodalkit.crw import crops

    images = torch.randn(2, 3, 20, 24)
    boxes = torch.tensor([[[5.0 + 3, 4.0 + 3, 6, 6], [12.0 + 4, 10.0 + 4, 8, 8]]]).repeat(2, 1, 1)  # centres of integer boxes
    out = crops(images, boxes, (6, 6))
    assert torch.allclose(out[:, 0], images[:, :, 4:10, 5:11], atol=1e-5)
    big = crops(images, boxes[:, 1:], (8, 8))
    assert torch.allclose(big[:, 0], images[:, :, 10:18, 12:20], atol=1e-5)
    flipped = crops(images, boxes[:, :1] * torch.tensor([1.0, 1, -1, 1]), (6, 6))
    assert torch.allclose(flipped[:, 0], images[:, :, 4:10, 5:11].flip(-1), atol=1e-5)


def test_patch_boxes_tile_the_crop_and_jitter_stays_inside_each_patch():
    from amodalkit.crw import patch_boxes

    plain = patch_boxes(64, 64, 7, 16, 1, jitter=None)[0]
    assert plain.shape == (49, 4)
    assert torch.allclose(plain[0], torch.tensor([8.0, 8, 16, 16])) and torch.allclose(plain[-1], torch.tensor([56.0, 56, 16, 16]))
    assert torch.allclose(plain[1, 0] - plain[0, 0], torch.tensor(8.0))  # stride (64 - 16) / 6
    g = torch.Generator().manual_seed(0)
    jittered = patch_boxes(64, 64, 7, 16, 50, g)
    area = jittered[..., 2] * jittered[..., 3] / 256
    assert area.min() >= 0.7 - 1e-4 and area.max() <= 0.9 + 1e-4 + 0.05  # clamping a side can only shrink the area
    left, right = jittered[..., 0] - jittered[..., 2] / 2, jittered[..., 0] + jittered[..., 2] / 2
    assert (left >= plain[:, 0] - 8 - 1e-4).all() and (right <= plain[:, 0] + 8 + 1e-4).all()


def test_sample_clips_strides_and_repeated_frames():
    from amodalkit.crw import clip_starts, sample_clips

    videos = torch.arange(10, dtype=torch.uint8)[None, :, None, None, None].expand(3, 10, 8, 8, 3).contiguous()
    g = torch.Generator().manual_seed(0)
    clips = sample_clips(videos, 6, 4, 3, 8, g, scale=(1.0, 1.0))  # whole frame: values are frame indices
    steps = (clips[:, 1:, 0, 4, 4] - clips[:, :-1, 0, 4, 4]) * 255 * 0.225
    assert torch.allclose(steps, torch.full_like(steps, 3.0), atol=1e-4)
    same = sample_clips(videos, 6, 4, 0, 8, g)
    assert torch.allclose(same[:, 0], same[:, 3], atol=1e-5)  # one frame repeated (constant frames: any crop)
    textured = torch.randint(0, 256, (2, 6, 32, 32, 3), dtype=torch.uint8, generator=g)
    per_frame = sample_clips(textured, 4, 3, 0, 16, g)  # the release: every frame its own crop
    assert (per_frame[:, 0] - per_frame[:, 1]).abs().amax(dim=(1, 2, 3)).min() > 0.1
    shared = sample_clips(textured, 4, 3, 0, 16, g, per_frame=False)
    assert torch.equal(shared[:, 0], shared[:, 2])
    assert clip_starts(10, 4, 3) == 1
    with pytest.raises(ValueError, match="spans 13 frames"):
        clip_starts(10, 4, 4)


def test_random_resized_boxes_follow_torchvision_semantics():
    from amodalkit.crw import random_resized_boxes

    g = torch.Generator().manual_seed(0)
    boxes = random_resized_boxes(2000, 96, 128, (0.8, 0.95), (0.7, 1.3), g)  # 4:3 frames, as Kinetics' 340 x 256
    cx, cy, w, h = boxes.unbind(-1)
    assert ((cx - w / 2) >= 0).all() and ((cx + w / 2) <= 128).all() and ((cy - h / 2) >= 0).all() and ((cy + h / 2) <= 96).all()
    assert torch.equal(w, w.round()) and torch.equal(h, h.round())  # whole pixels, as torchvision
    drawn = (w != 96 * 1.3) | (h != 96)  # not the fallback box
    assert drawn.float().mean() > 0.8
    fraction = (w * h / (96 * 128))[drawn]
    ratio = (w / h)[drawn]
    # rounding the sides moves the area by at most about a side's length
    assert fraction.min() > 0.8 - 0.03 and fraction.max() < 0.95 + 0.03
    assert ratio.min() > 0.7 - 0.03 and ratio.max() < 1.3 + 0.03
    # a frame wider than the largest ratio allows with that area never fits: the centred fallback, clamped to 1.3
    wide = random_resized_boxes(50, 96, 160, (0.8, 0.95), (0.7, 1.3), g)
    assert torch.equal(wide, torch.tensor([[17 + 125 / 2, 48.0, 125.0, 96.0]]).expand(50, 4))


def test_map_and_patch_nodes_are_unit_vectors_and_recipe_checks():
    from amodalkit.crw import CRW, Recipe, clip_nodes

    model = CRW(width=8, dim=16)
    clips = torch.randn(2, 3, 3, 32, 32)
    patches = clip_nodes(model, clips, "patches", 3, 16, torch.Generator().manual_seed(0))
    assert patches.shape == (2, 3, 9, 16) and torch.allclose(patches.norm(dim=-1), torch.ones(2, 3, 9))
    maps = clip_nodes(model, clips, "map", 3, 16, None)
    assert maps.shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="nodes"):
        Recipe(nodes="pixels")
    with pytest.raises(ValueError, match="patch"):
        Recipe(crop=32, patch=64)
    with pytest.raises(ValueError, match="select must be 'best'"):
        Recipe(select="final")
    with pytest.raises(ValueError, match="crop_scale must be a"):
        Recipe(crop_scale=(0.9, 1.2))
    with pytest.raises(ValueError, match="padding must be 'zeros' or 'reflect'"):
        Recipe(padding="same")


def test_pixel_features_are_normalised_blocks():
    from amodalkit.crw import pixel_features

    frames = torch.randn(2, 3, 16, 24)
    feats = pixel_features(frames)
    assert feats.shape == (2, 192, 2, 3) and torch.allclose(feats.norm(dim=1), torch.ones(2, 2, 3))
    block = frames[0, :, 8:16, 8:16] - frames[0].mean(dim=(1, 2), keepdim=True)
    assert torch.allclose(feats[0, :, 1, 1], torch.nn.functional.normalize(block.reshape(-1), dim=0), atol=1e-6)


def test_walk_training_lowers_the_walk_loss():
    """Training lowers the validation walk loss: the median drop over 5 seeds exceeds 0.2 nats.

    Short training of a BatchNorm network on 4-frame videos is chaotic, so one seeded run lands elsewhere on
    another CPU's floating-point path (a single run at lr 1e-2 gave drops from 0.13 to 0.77 across paths and
    seeds). At lr 1e-3 for 60 steps with the release's per-frame crops and edge dropout the median of 5 seeds
    measured 0.64-0.75 under the native kernels and ATEN_CPU_CAPABILITY=default, with 1 and 2 threads, and no single
    seed fell below 0.40 (with the earlier shared crops: medians 0.49-0.55, no seed below 0.33); the loss starts near
    log 9 = 2.2 (a uniform walk over 9 nodes), so 0.2 is a drop of 9%.
    """
    from amodalkit.crw import CRW, Recipe, validation_loss, walk_loss_on
    from amodalkit.train import train

    drops = []
    for seed in range(5):
        torch.manual_seed(seed)
        videos = torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)
        recipe = Recipe(crop=32, patch=16, grid=3, batch=2, width=4, dim=8, steps=60, lr=1e-3, edge_dropout=0.0,
                        clip_len=3)
        model = CRW(recipe.width, recipe.dim)
        # batch statistics (train-mode BN): 60 steps are too few for the running averages to settle
        before = validation_loss(model.train(), videos, recipe)
        train(model, lambda m, s, g: walk_loss_on(m, videos, recipe, g), steps=recipe.steps, lr=recipe.lr, seed=seed)
        drops.append(before - validation_loss(model.train(), videos, recipe))
    assert sorted(drops)[2] > 0.2, f"drops per seed {drops}"


def test_walk_loss_drop_and_correspondence_margin(monkeypatch, tmp_path):
    """The gate's arithmetic: drop = 1 - after / before per run, margin = drop on vos - drop on noise."""
    from amodalkit import crw

    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    videos = torch.randint(0, 256, (2, 5, 32, 32, 3), dtype=torch.uint8)
    data = crw.VosData(videos, videos[:1], [], dict(world="toy"))
    recipe = crw.Recipe(crop=32, patch=16, grid=3, batch=2, width=4, dim=8, steps=2, lr=1e-3, clip_len=3, stride=1)
    run = crw.walk_loss_drop(recipe, data.train, data.val, seed=0, data_key=data.key)
    with torch.no_grad():  # "before" is the run's own initial weights, scored as the training loop scores
        assert run["before"] == crw.validation_loss(crw.initial_model(recipe, 0).eval(), data.val, recipe)
    assert run["drop"] == pytest.approx(1 - run["after"] / run["before"]) and run["after"] == run["result"].selected_val_loss
    gate = crw.correspondence_margin(recipe, data, seed=0)
    assert gate["vos"] == pytest.approx(run["drop"])  # the same cached run
    noise_train, noise_val, key = crw.noise_split(data, 0)
    assert key == {**data.key, "videos": "noise"}
    noise = crw.walk_loss_drop(recipe, noise_train, noise_val, seed=0, data_key=key)
    assert noise["result"].from_cache and gate["noise"] == pytest.approx(noise["drop"])  # trained once, on noise
    assert gate["margin"] == pytest.approx(gate["vos"] - gate["noise"]) and gate["noise"] != gate["vos"]


def test_test_time_training_tunes_a_copy():
    from amodalkit.crw import CRW, Recipe, test_time_train

    torch.manual_seed(0)
    model = CRW(width=4, dim=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frames = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8).numpy()
    recipe = Recipe(crop=32, patch=16, grid=3, batch=2, width=4, dim=8, stride=4, clip_len=3)
    tuned = test_time_train(model, frames, recipe, steps=2, lr=1e-2, seed=0)  # stride clipped to fit 6 frames
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not torch.equal(tuned.encoder.stem[0].weight, model.encoder.stem[0].weight)


def test_paper_recipe_runs_one_step():
    """The paper profile's recipe (Table E: 256 crops, 7x7 patches of 64, ResNet-18 width 64, 128-d) for one
    Adam step; the batch is cut from 20 to 1 clip so the CPU test stays short."""
    import dataclasses

    from amodalkit.crw import CRW, Recipe, walk_loss_on
    from amodalkit.profiles import resolve
    from amodalkit.train import train

    p = resolve("crw_ablations", "paper")
    recipe = Recipe(crop=p["crop"], patch=p["patch"], grid=p["grid"], batch=p["batch"], width=p["net_width"], dim=p["dim"],
                    steps=p["steps"], lr=p["lr"], stride=p["stride"])
    assert (recipe.crop, recipe.patch, recipe.grid, recipe.batch, recipe.width, recipe.dim, recipe.lr) == (256, 64, 7, 20, 64, 128, 1e-4)
    one = dataclasses.replace(recipe, batch=1)
    videos = torch.randint(0, 256, (1, 13, 256, 256, 3), dtype=torch.uint8)
    model = CRW(one.width, one.dim)
    result = train(model, lambda m, s, g: walk_loss_on(m, videos, one, g), steps=1, lr=one.lr, seed=0,
                   run_device=torch.device("cpu"))
    assert len(result.history["loss"]) == 1 and math.isfinite(result.history["loss"][0])
    assert result.history["loss"][0] < math.log(49) + 0.5  # a cross-entropy over 49 nodes starts near log 49

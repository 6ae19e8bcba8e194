"""Amodal-VAE pieces against hand-computed cases (the supplement is the only specification)."""
import math

import numpy as np
import pytest
import torch

from amodalkit import amodal_vae as av
from amodalkit import ops


def test_kl_weight_schedule_values():
    assert av.kl_weight(0) == pytest.approx(0.01) and av.kl_weight(2000) == pytest.approx(0.01)
    assert av.kl_weight(3000) == pytest.approx(0.5 - 0.49 * 0.9995**1000)  # 0.5 - 0.49 * 0.6064 = 0.2029
    assert av.kl_weight(3000) == pytest.approx(0.20286, abs=1e-4)
    assert av.kl_weight(10**6) == pytest.approx(0.5)
    assert av.kl_weight(50, begin=10, alpha=0.5, start=0.0, final=1.0) == pytest.approx(1 - 0.5**40)


def test_kl_divergence_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    # KL(N(1, var 4) || N(0, 1)) = 0.5 (4 + 1 - 1 - ln 4); KL(N(-2, 1) || N(0, 1)) = 0.5 * 4 = 2
    expected = torch.tensor([0.0, 0.5 * (4 - math.log(4)) + 2.0])
    assert torch.allclose(av.kl_divergence(mu, logvar), expected)
    # the same number by Monte Carlo
    z = mu[1] + torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([2.0, 1.0])
    log_q = torch.distributions.Normal(mu[1], torch.tensor([2.0, 1.0])).log_prob(z).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert (log_q - log_p).mean().item() == pytest.approx(expected[1].item(), rel=0.02)


def test_boxes_crop_and_paste_round_trip():
    mask = torch.zeros(1, 40, 50)
    mask[0, 5:33, 10:38] = 1  # a 28 x 28 box: crop and paste are exact slices
    mask[0, 12:20, 15:18] = 0
    box = ops.mask_boxes(mask)
    assert box.tolist() == [[10.0, 5.0, 38.0, 33.0]]
    crop = ops.crop_to_box(mask, box)
    assert torch.allclose(crop[0, 0], mask[0, 5:33, 10:38], atol=1e-6)
    back = ops.paste_from_box(crop, box, 40, 50)
    assert torch.allclose(back[0, 0], mask[0], atol=1e-6)
    # a smaller box: up- then down-sampling keeps the mask after thresholding
    small = torch.zeros(1, 30, 30)
    small[0, 8:22, 6:20] = 1
    b = ops.mask_boxes(small)
    again = ops.paste_from_box(ops.crop_to_box(small, b), b, 30, 30)
    assert torch.equal(again[0, 0] > 0.5, small[0] > 0.5)


def test_relative_box_inverts_and_identity_is_zero():
    ref = torch.tensor([[2.0, 3.0, 12.0, 8.0]])
    outer = torch.tensor([[0.0, 1.0, 16.0, 8.0]])
    rel = av.relative_box(outer, ref)
    assert torch.allclose(av.absolute_box(rel, ref), outer)
    assert torch.allclose(av.relative_box(ref, ref), torch.zeros(1, 4))
    assert rel[0, 2].item() == pytest.approx(math.log(16 / 10))


def test_shapes_and_initial_transformer_is_identity():
    model = av.AmodalVAE(width=8, hidden=32)
    x = torch.rand(3, 1, 28, 28)
    mu, logvar = model.partial_encoder(x)
    assert mu.shape == (3, 64) and model.decoder(mu).shape == (3, 1, 28, 28)
    assert torch.equal(model.box(x), torch.zeros(3, 4))


def test_synthetic_occlusion_removes_only_occluder_pixels():
    g = torch.Generator().manual_seed(0)
    full = torch.zeros(4, 32, 32)
    full[:, 8:24, 8:24] = 1
    pool = torch.zeros(2, 32, 32)
    pool[:, 0:6, 0:6] = 1
    partial, occ = ops.synthetic_occlusion(full, pool, g)
    assert torch.equal(partial, full * (1 - occ)) and (partial <= full).all()
    assert (occ.sum((1, 2)) == 36).all()  # the whole 6x6 occluder lands inside the 32x32 frame here
    assert ((full - partial).sum((1, 2)) > 0).all()


def test_stage2_leaves_the_decoder_bit_identical():
    from amodalkit.train import train

    torch.manual_seed(0)
    model = av.AmodalVAE(width=4, hidden=16)
    full = torch.zeros(16, 32, 32)
    for i in range(16):
        full[i, 4 + i % 5:20 + i % 7, 6:22 + i % 4] = 1
    decoder = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    encoder = {k: v.clone() for k, v in model.partial_encoder.state_dict().items()}
    train(model, lambda m, s, g: av.stage2_loss(m, full[:8], full[8:], 0.5, g), steps=3, lr=1e-2, seed=0,
          trainable=lambda m: [*m.partial_encoder.parameters(), *m.box.parameters()])
    assert all(torch.equal(decoder[k], v) for k, v in model.decoder.state_dict().items())  # BN statistics too
    assert not all(torch.equal(encoder[k], v) for k, v in model.partial_encoder.state_dict().items())


def test_completion_iou_and_threshold_tuning_by_hand():
    visible = torch.zeros(1, 4, 4, dtype=torch.bool)
    visible[0, :, :2] = True
    amodal = torch.zeros(1, 4, 4, dtype=torch.bool)
    amodal[0, :, :3] = True
    probs = torch.zeros(1, 4, 4)
    probs[0, :, 2] = 0.3  # the hidden column, at probability 0.3
    probs[0, :, 3] = 0.1  # a wrong column, at 0.1
    full, invisible = av.completion_iou(av.binarise(probs, visible, 0.2), visible, amodal)
    assert full.item() == 1.0 and invisible.item() == 1.0
    full, invisible = av.completion_iou(av.binarise(probs, visible, 0.05), visible, amodal)
    assert full.item() == pytest.approx(12 / 16) and invisible.item() == pytest.approx(4 / 8)
    best, scores = av.tune_threshold(probs, visible, amodal, candidates=(0.05, 0.2, 0.5))
    assert best == 0.2 and scores == pytest.approx([0.75, 1.0, 8 / 12])
    _, no_hidden = av.completion_iou(visible, visible, visible)
    assert math.isnan(no_hidden.item())


def test_best_iou_and_active_dimensions_by_hand():
    shapes = torch.zeros(2, 4, 4, dtype=torch.bool)
    shapes[0, :2] = True  # top half
    shapes[1, :, :1] = True  # left column
    sample = torch.zeros(1, 4, 4, dtype=torch.bool)
    sample[0, :1] = True  # top row: IoU 4/8 with the top half, 1/7 with the column
    assert av.best_iou_to(sample, shapes).item() == pytest.approx(0.5)
    std = torch.tensor([[0.1, 1.0, 0.95], [0.3, 1.0, 0.8]])
    assert av.active_dimensions(std).tolist() == [True, False, True]  # means 0.2, 1.0, 0.875


def test_paper_recipe_runs_one_step_of_each_stage():
    """The paper profile's sizes (width 32, 256 hidden, 64-d latent, batch 64) for one step of each stage."""
    from amodalkit.train import train

    recipe = av.VAERecipe()
    assert (recipe.lr1, recipe.lr23, recipe.kl_final, recipe.kl_start, recipe.kl_alpha, recipe.kl_begin) == \
        (1e-3, 1e-4, 0.5, 0.01, 0.9995, 2000)
    full = torch.zeros(recipe.batch, 40, 40)
    for i in range(recipe.batch):
        full[i, 5 + i % 7:25 + i % 9, 8:30 - i % 5] = 1
    occluders = torch.roll(full, 6, dims=2) * (1 - full)
    model = av.AmodalVAE(recipe.width, recipe.hidden)
    for loss in (lambda m, s, g: av.stage1_loss(m, full, recipe.kl(s), g),
                 lambda m, s, g: av.stage2_loss(m, full, full, recipe.kl_final, g),
                 lambda m, s, g: av.stage3_loss(m, full * (1 - occluders), occluders, recipe.kl_final, g)):
        result = train(model, loss, steps=1, lr=recipe.lr23, seed=0, run_device=torch.device("cpu"))
        assert math.isfinite(result.history["loss"][0])


def test_load_instances_keeps_whole_objects_and_their_occluders():
    data = av.load_instances("street", "test", seed=0, n_clips=1, every=3, min_visible=12)
    n = len(data)
    assert n > 0 and data.visible.shape == data.amodal.shape == data.occluders.shape == data.visible_pred.shape
    assert (data.visible <= data.amodal).all()  # visible is part of the amodal mask
    assert not (data.visible & data.occluders).any()  # occluders are the *other* objects
    assert not data.amodal[:, 0].any() and not data.amodal[:, -1].any()  # nothing touches the border
    assert not data.amodal[:, :, 0].any() and not data.amodal[:, :, -1].any()
    assert (data.visible.sum((1, 2)) >= 12).all()
    ratio = data.visible_ratio
    assert ((ratio > 0) & (ratio <= 1)).all()
    assert len(data.subset(ratio < 1)) == int((ratio < 1).sum())
    with pytest.raises(ValueError, match="min_visible"):
        av.load_instances("street", "test", seed=0, n_clips=1, every=3, min_visible=10**6)


def test_kl_schedule_scaled_to_the_run_gives_the_papers_values_at_its_size():
    assert av.scaled_kl_schedule(20_000) == (2000, 0.9995)
    begin, alpha = av.scaled_kl_schedule(1500)
    assert begin == 150 and alpha == pytest.approx(1 - 1 / 150)
    # after begin + kl_begin steps lambda has closed 1 - 1/e of its gap (alpha^begin ~ e^-1)
    gap = av.kl_weight(2 * begin, 0.5, 0.01, alpha, begin) - 0.01
    assert gap / 0.49 == pytest.approx(1 - math.exp(-1), abs=0.01)
    from amodalkit.profiles import resolve

    for profile in ("quick", "paper"):  # every profile follows the rule, in both chapters that train stage 1
        for chapter in ("vae_analysis", "vae_robustness"):
            p = resolve(chapter, profile)
            assert (p["kl_begin"], p["kl_alpha"]) == pytest.approx(av.scaled_kl_schedule(p["steps1"])), (chapter,
                                                                                                         profile)


def test_burda_active_units_and_per_dimension_kl_by_hand():
    mu = torch.tensor([[0.0, 1.0, 0.05], [0.0, -1.0, -0.05], [0.0, 0.0, 0.0]])  # variances 0, 1, 0.0025
    assert torch.allclose(av.latent_activity(mu), torch.tensor([0.0, 1.0, 0.0025]))
    assert av.active_units(mu).tolist() == [False, True, False]
    logvar = torch.zeros(3, 3)
    logvar[:, 0] = math.log(4.0)  # std 2, mean 0: KL = 0.5 (4 - 1 - log 4)
    kl = av.kl_per_dimension(mu, logvar)
    assert kl[0].item() == pytest.approx(0.5 * (4 - 1 - math.log(4)))
    assert kl[1].item() == pytest.approx(0.5 * 2 / 3)  # 0.5 mu^2 averaged over (1, 1, 0)
    assert kl.sum().item() == pytest.approx(av.kl_divergence(mu, logvar).mean().item())


def test_full_mask_set_holds_whole_objects_and_is_cached(monkeypatch):
    masks = av.full_mask_set("fishbowl", 0, n_clips=2, every=4)
    assert masks.dtype == bool and masks.ndim == 3 and len(masks) > 0
    data = av.load_instances("fishbowl", "train", seed=0, n_clips=2, every=4)
    whole = data.visible[data.visible_ratio >= 1.0]
    assert np.array_equal(masks, whole)  # the same instances as the chapters' fully visible ones
    import amodalkit.data

    monkeypatch.setattr(amodalkit.data, "load_world", lambda *a, **k: (_ for _ in ()).throw(AssertionError("regenerated")))
    assert np.array_equal(av.full_mask_set("fishbowl", 0, n_clips=2, every=4), masks)  # from the cache


def test_stage1_is_shared_and_stage2_starts_from_the_full_encoder(tmp_path, monkeypatch):
    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    train_set = av.load_instances("fishbowl", "train", seed=0, n_clips=2, every=4)
    val_set = av.load_instances("fishbowl", "val", seed=0, n_clips=1, every=4)
    recipe = av.VAERecipe(width=4, hidden=16, batch=8, steps1=3, steps2=2, steps3=1, kl_begin=1, kl_alpha=0.5)
    key = dict(test=1)
    _, first = av.train_amodal_vae(recipe, train_set, val_set, seed=0, data_key=key)
    assert not first[1].from_cache and len(first[1].history["val_active"]) == len(first[1].history["val_loss"])
    import dataclasses
    _, second = av.train_amodal_vae(dataclasses.replace(recipe, steps2=3), train_set, val_set, seed=0, data_key=key)
    assert second[1].from_cache and not second[2].from_cache  # a stage-2 change keeps stage 1
    # stage 2 starts from the full encoder: with 0 effective change the partial encoder would equal it
    start = av.AmodalVAE(4, 16)
    start.load_state_dict(first[1].model.state_dict())
    start.partial_encoder.load_state_dict(start.full_encoder.state_dict())
    moved = sum(float((a - b).detach().abs().sum()) for a, b in zip(first[2].model.partial_encoder.parameters(),
                                                                     start.partial_encoder.parameters()))
    random_start = sum(float((a - b).detach().abs().sum()) for a, b in zip(first[1].model.partial_encoder.parameters(),
                                                                            start.partial_encoder.parameters()))
    assert moved < 0.1 * random_start
    with pytest.raises(ValueError, match="partial_init"):
        av.train_amodal_vae(recipe, train_set, val_set, seed=0, data_key=key, partial_init="copy")


def test_the_training_key_covers_every_module_the_training_imports():
    from test_savos_package import imported_by

    keyed = set(av.TRAINING_CODE) | {"train.py"}
    # the data enter the keys by content (instances_digest, the stage-1 mask digest), not by code
    seen = imported_by("amodal_vae/training.py",
                       covered_elsewhere={"amodal_vae/data.py", "__init__.py", "amodal_vae/__init__.py"})
    assert seen <= keyed, f"imported by the training but not in its cache key: {sorted(seen - keyed)}"
    assert "amodal_vae/analysis.py" not in keyed  # an edit to the evaluation does not retrain the stages


def _ellipses(n: int, seed: int, size: int = 28) -> torch.Tensor:
    """n boolean (size, size) ellipses of random centre, axes and angle; none reaches the corner pixels."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        (cy, cx), (a, b), t = g.uniform(10, 18, 2), g.uniform(6, 13, 2), g.uniform(0, np.pi)
        u = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)
        v = -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        out.append((u / a) ** 2 + (v / b) ** 2 <= 1)
    return torch.from_numpy(np.stack(out))


def test_two_sample_classifier_tells_degenerate_decoders_from_shapes_but_not_two_draws():
    shapes = _ellipses(64, seed=1)
    boxes = torch.ones(64, 28, 28, dtype=torch.bool)
    noise = torch.from_numpy(np.random.default_rng(3).random((64, 28, 28)) < 0.5)
    # the flaw of the best IoU with a reference shape: a filled box scores high against every ellipse
    assert av.best_iou_to(boxes[:1], shapes).item() > 0.45
    # separable (a corner pixel is always on in a box, never in an ellipse): told apart in every fold
    assert av.classifier_two_sample_accuracy(boxes, shapes) == 1.0
    assert av.classifier_two_sample_accuracy(noise, shapes) >= 0.95
    # a decoder that collapsed onto one real shape is told apart too
    assert av.classifier_two_sample_accuracy(shapes[:1].expand(64, 28, 28).clone(), shapes) >= 0.95
    # two draws of one distribution: about chance (measured 0.46-0.54 over six pairs of draws at n = 64)
    same = [av.classifier_two_sample_accuracy(_ellipses(64, seed=s), _ellipses(64, seed=s + 100)) for s in (2, 3, 4)]
    assert max(same) < 0.7


def test_two_sample_classifier_needs_equal_sets_of_at_least_a_fold_each():
    with pytest.raises(ValueError, match="two sets of as many"):
        av.classifier_two_sample_accuracy(torch.zeros(6, 4, 4, dtype=torch.bool), torch.zeros(5, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="as many masks per set as folds"):
        av.classifier_two_sample_accuracy(torch.zeros(3, 4, 4, dtype=torch.bool), torch.zeros(3, 4, 4, dtype=torch.bool))


def test_the_warm_up_tasks_train_what_the_chapters_load(tmp_path, monkeypatch):
    """vae_analysis' warm-up: data once per seed, both schedules per seed, then the random start of seed 0 (it needs
    the annealed stage 1); vae_robustness: the VAE and PCNet-M on street per seed; a trained task is what the
    chapter's own call then loads from the cache."""
    from amodalkit import profiles
    from amodalkit.amodal_vae import experiments

    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    params = dict(profiles.resolve("vae_analysis", "smoke"), seeds=2)
    data_wave, model_wave, random_wave = experiments.warm_tasks("vae_analysis", params)
    assert [t["seed"] for _, t in data_wave] == [0, 1]
    assert [(t["seed"], t["schedule"]) for _, t in model_wave] == [(0, "anneal"), (0, "constant"), (1, "anneal"),
                                                                   (1, "constant")]
    assert [(t["seed"], t["schedule"], t["partial_init"]) for _, t in random_wave] == [(0, "anneal", "random")]
    for function, task in (data_wave[0], model_wave[1]):
        experiments.warm_data(**task) if function.endswith("warm_data") else experiments.warm_vae(**task)
    chapter = experiments.chapter_data("fishbowl", 0, params)
    _, stages = experiments.train_vae(chapter, params, 0, "constant")
    assert all(result.from_cache for result in stages.values())
    robust = dict(profiles.resolve("vae_robustness", "smoke"), seeds=1)
    _, models = experiments.warm_tasks("vae_robustness", robust)
    assert [(f.rsplit(":", 1)[1], t["world"]) for f, t in models] == [("warm_vae", "street"), ("warm_pcnet", "street")]
    experiments.warm_pcnet(**models[1][1])
    assert experiments.train_pcnet(experiments.chapter_data("street", 0, robust), robust, 0).from_cache
    with pytest.raises(ValueError, match="vae_inpainting"):
        experiments.warm_tasks("vae_inpainting", params)

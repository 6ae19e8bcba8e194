"""amodalkit.losses: the Lovasz hinge against the published algorithm, and STEm-Seg's two other terms."""
import pytest
import torch
import torch.nn.functional as F

from amodalkit.losses import lovasz_hinge, seediness_loss, variance_smoothness_loss


# ---------------------------------------------------------------- the published algorithm, written out for the test
def _reference_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def _reference_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if len(labels) == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels.float() - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    grad = _reference_grad(labels[perm].float())
    return torch.dot(F.relu(errors_sorted), grad)


def _reference(logits, labels, per_image=True, ignore=None):
    def flat(x, y):
        x, y = x.reshape(-1), y.reshape(-1)
        if ignore is not None:
            keep = y != ignore
            x, y = x[keep], y[keep]
        return _reference_flat(x, y)

    if per_image:
        return torch.stack([flat(x[None], y[None]) for x, y in zip(logits, labels)]).mean()
    return flat(logits, labels)


def _random_case(gen: torch.Generator, kind: str):
    b = int(torch.randint(1, 4, (1,), generator=gen))
    h, w = (int(v) for v in torch.randint(1, 9, (2,), generator=gen))
    if kind == "single":
        h = w = 1
    logits = torch.randn(b, h, w, generator=gen) * 2
    if kind == "negative":
        labels = torch.zeros(b, h, w, dtype=torch.long)
    elif kind == "positive":
        labels = torch.ones(b, h, w, dtype=torch.long)
    else:
        labels = (torch.rand(b, h, w, generator=gen) < torch.rand(1, generator=gen)).long()
    if kind == "ignore":
        labels[torch.rand(b, h, w, generator=gen) < 0.3] = 255
    return logits, labels


@pytest.mark.parametrize("kind", ["random", "negative", "positive", "single", "ignore"])
@pytest.mark.parametrize("per_image", [True, False])
def test_lovasz_hinge_equals_the_published_algorithm_values_and_gradients(kind, per_image):
    gen = torch.Generator().manual_seed(["random", "negative", "positive", "single", "ignore"].index(kind) * 2 + per_image)
    for _ in range(25):
        logits, labels = _random_case(gen, kind)
        ignore = 255 if kind == "ignore" else None
        a = logits.clone().requires_grad_(True)
        b = logits.clone().requires_grad_(True)
        ours = lovasz_hinge(a, labels, per_image=per_image, ignore=ignore)
        theirs = _reference(b, labels, per_image=per_image, ignore=ignore)
        ours.backward()
        theirs.backward()
        assert float(ours.detach()) == pytest.approx(float(theirs.detach()), abs=1e-5)
        assert torch.allclose(a.grad, b.grad, atol=1e-5)


def test_lovasz_hinge_is_two_times_one_minus_iou_for_unit_logits():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        h, w = (int(v) for v in torch.randint(1, 10, (2,), generator=gen))
        labels = torch.rand(h, w, generator=gen) < float(torch.rand(1, generator=gen))
        pred = torch.rand(h, w, generator=gen) < float(torch.rand(1, generator=gen))
        union = (pred | labels).sum()
        iou = 1.0 if union == 0 else float((pred & labels).sum() / union)
        loss = lovasz_hinge((pred.float() * 2 - 1)[None], labels.long()[None])
        assert float(loss) == pytest.approx(2 * (1 - iou), abs=1e-6)


def test_lovasz_hinge_of_all_negative_labels_is_the_largest_hinge_error():
    logits = torch.tensor([[[0.3, -2.0], [1.5, -0.2]]])
    assert float(lovasz_hinge(logits, torch.zeros(1, 2, 2, dtype=torch.long))) == pytest.approx(2.5)  # 1 + 1.5
    assert float(lovasz_hinge(-torch.ones(1, 2, 2) * 3, torch.zeros(1, 2, 2))) == 0.0  # every error negative


def test_lovasz_hinge_of_an_image_with_every_pixel_ignored_is_zero_with_a_zero_gradient():
    logits = torch.randn(2, 3, 3, requires_grad=True)
    labels = torch.full((2, 3, 3), 255)
    loss = lovasz_hinge(logits, labels, ignore=255)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_lovasz_hinge_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        lovasz_hinge(torch.zeros(1, 2, 2), torch.zeros(1, 2, 3))


def test_variance_smoothness_on_a_hand_computed_case():
    raw = torch.tensor([[1.0, 3.0, 5.0, 0.0, 7.0]])
    masks = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]], dtype=torch.bool)  # pixel 4 is background: no loss
    # instance 1: mean 2, squared deviations 1, 1 -> 1; instance 2: mean 2.5, deviations 2.5^2 -> 6.25
    assert float(variance_smoothness_loss(raw, masks)) == pytest.approx((1 + 6.25) / 2)


def test_seediness_loss_on_a_hand_computed_case():
    seed = torch.tensor([0.5, 1.0, 0.2, 0.0])
    probs = torch.tensor([[0.5, 0.8, 0.1, 0.3]], requires_grad=True)
    masks = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    # instance: ((0.5-0.5)^2 + (1-0.8)^2) / 2 = 0.02; background: (0.2^2 + 0) / 2 = 0.02; over (1 instance + 1)
    loss = seediness_loss(seed, probs, masks)
    assert float(loss) == pytest.approx(0.02)
    assert not loss.requires_grad  # the probability is a target (no gradient into it) and the seediness is fixed here

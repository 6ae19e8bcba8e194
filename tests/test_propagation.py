import gc
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from amodalkit.propagation import context_frames, propagate, propagate_masks, propagate_stream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from propagation import dense_propagate, random_problem  # noqa: E402  (the dense reference lives with its benchmark)


def test_context_frames_front_pad_with_frame_0():
    assert context_frames(1, 3) == [0, 0, 0, 0]
    assert context_frames(5, 3) == [0, 2, 3, 4]
    assert len(context_frames(30, 20)) == 21


@pytest.mark.parametrize("per_frame_topk", [False, True])
@pytest.mark.parametrize("shape,options", [
    ((7, 16, 11, 13, 3), dict(context=3, topk=5, radius=3)),
    ((9, 32, 17, 23, 4), dict(context=4, topk=10, radius=5.5)),
    ((5, 8, 6, 6, 2), dict(context=20, topk=10, radius=12)),
])
def test_local_equals_the_dense_reference(shape, options, per_frame_topk):
    feats, first = random_problem(*shape)
    local = propagate(feats, first, per_frame_topk=per_frame_topk, block=4, **options)
    dense = dense_propagate(feats, first, per_frame_topk=per_frame_topk, **options)
    assert (local - dense).abs().max().item() <= 1e-5
    assert torch.equal(local[0], first)
    assert torch.allclose(local.sum(dim=1), torch.ones(()), atol=1e-5)  # soft labels stay distributions


@pytest.mark.parametrize("context", [1, 3, 20])
def test_streaming_equals_the_whole_clip(context):
    feats, first = random_problem(12, 16, 9, 11, 3)
    whole = propagate(feats, first, context=context, topk=5, radius=3, block=4)
    streamed = torch.stack([first] + list(propagate_stream(iter(feats), first, context=context, topk=5, radius=3,
                                                           block=4)))
    assert torch.equal(streamed, whole)


def test_streaming_keeps_only_frame_0_and_the_context():
    """Once frame t is out, no feature frame older than t - context (but frame 0) is still referenced."""
    feats, first = random_problem(10, 8, 5, 6, 2)
    context, alive = 3, []

    def fed():
        for frame in feats:
            frame = frame.clone()
            alive.append(weakref.ref(frame))
            yield frame

    for t, _ in enumerate(propagate_stream(fed(), first, context=context, topk=5, radius=3), start=1):
        gc.collect()
        held = [i for i, ref in enumerate(alive) if ref() is not None]
        assert set(held) <= {0} | set(range(max(t - context, 1), t + 1)), (t, held)
        assert len(held) <= context + 2


def test_block_size_does_not_change_the_result():
    feats, first = random_problem(6, 16, 15, 19, 3)
    results = [propagate(feats, first, context=3, topk=7, radius=4, block=b) for b in (1, 5, 64)]
    assert all((r - results[0]).abs().max() <= 1e-6 for r in results)


def test_hand_built_case():
    # two frames, 1x3 nodes; the query's features equal source node 2, and only top-1 is kept
    f0 = F.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), dim=0)  # (C=3, 3 nodes): one-hot per node
    feats = torch.stack([f0.reshape(3, 1, 3), f0[:, [2, 2, 2]].reshape(3, 1, 3)])  # frame 1: every node looks like node 2
    first = torch.tensor([[[1.0, 0, 0]], [[0, 1.0, 0]], [[0, 0, 1.0]]])  # labels = node index
    out = propagate(feats, first, context=1, topk=1, radius=1)  # radius 1: only the node itself in frame-1 context
    # frame 0 is unrestricted, so every query takes node 2's label
    assert torch.allclose(out[1], torch.tensor([[[0, 0, 0.0]], [[0, 0, 0.0]], [[1.0, 1.0, 1.0]]]))


def test_masks_wrapper_keeps_frame_0_and_follows_a_static_scene():
    gen = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(1, 16, 8, 8, generator=gen), dim=1).repeat(4, 1, 1, 1)  # nothing moves
    mask = np.zeros((32, 32), int)
    mask[8:24, 4:20] = 1
    mask[24:, 24:] = 2
    out = propagate_masks(feats, mask, context=2, topk=1, radius=2)
    assert out.shape == (4, 32, 32) and np.array_equal(out[0], mask)
    assert (out[3] == mask).mean() > 0.9


def test_bad_inputs_are_named():
    feats, first = random_problem(3, 4, 5, 5, 2)
    with pytest.raises(ValueError, match=r"first_labels must be \(L, h, w\)"):
        propagate(feats, first[:, :4])
    with pytest.raises(ValueError, match="topk must be an integer >= 1"):
        propagate(feats, first, topk=0)
    with pytest.raises(ValueError, match="exceeds the 25 nodes"):
        propagate(feats, first, topk=30)


def test_evaluate_clips_on_a_still_video_with_top1_copies_frame_0():
    """Identical frames, unique features, top-1: every frame's labels are frame 0's labels (after the
    bilinear down/up sampling), so the prediction equals that resampled frame-0 mask in every frame."""
    import dataclasses

    import torch.nn.functional as F

    from amodalkit.data import load_world
    from amodalkit.data.davis import davis_ids
    from amodalkit.propagation import evaluate_clips

    clip = load_world("vos", "test", seed=0, n_clips=1, cache=False, height=48, width=64, n_frames=8)[0]
    still = dataclasses.replace(clip, frames=np.repeat(clip.frames[:1], 8, 0), visible=np.repeat(clip.visible[:1], 8, 0))
    feats = F.normalize(torch.randn(1, 16, 6, 8), dim=1).repeat(8, 1, 1, 1)
    result, predictions = evaluate_clips([feats], [still], topk=1, radius=2, context=3)
    pred = predictions["seq0000"]
    assert all(np.array_equal(pred[t], pred[1]) for t in range(2, 8))
    ids = davis_ids(still)[0]
    one_hot = F.one_hot(torch.from_numpy(ids.astype(np.int64))).permute(2, 0, 1).float()[None]
    small = F.interpolate(one_hot, size=(6, 8), mode="bilinear", align_corners=False)
    expected = F.interpolate(small, size=(48, 64), mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    assert np.array_equal(pred[1], expected)
    with pytest.raises(ValueError, match="feature tensors"):
        evaluate_clips([feats, feats], [still])

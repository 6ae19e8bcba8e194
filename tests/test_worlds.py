import hashlib

import numpy as np
import pytest
import torch

from amodalkit.data import in_view, load_world, never_background_comoving, never_visible
from amodalkit.ops import warp


def clip_hash(clip) -> str:
    digest = hashlib.sha256()
    for name in ("frames", "visible", "amodal", "flow_fwd", "flow_bwd", "object_flow_fwd", "motion", "occlusion"):
        digest.update(np.ascontiguousarray(getattr(clip, name)).tobytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_and_splits_differ():
    a = load_world("rigid", "train", seed=4, n_clips=2)
    b = load_world("rigid", "train", seed=4, n_clips=2)
    assert [clip_hash(c) for c in a] == [clip_hash(c) for c in b]
    hashes = {clip_hash(load_world("rigid", split, seed=4, n_clips=1)[0]) for split in ("train", "val", "test")}
    assert len(hashes) == 3
    assert clip_hash(a[0]) != clip_hash(a[1])


def test_clip_structure_and_invariants():
    clip = load_world("rigid", "test", seed=1, n_clips=1, n_objects=3)[0]
    t, k, h, w = clip.visible.shape
    assert clip.frames.shape == (t, h, w, 3) and clip.frames.dtype == np.uint8
    assert clip.visible.sum(axis=1).max() <= 1, "visible masks must be disjoint"
    assert not (clip.visible & ~clip.amodal).any(), "visible must lie inside amodal"
    expected = 1 - clip.visible.sum(axis=(2, 3)) / clip.amodal.sum(axis=(2, 3))
    assert np.allclose(clip.occlusion, expected)
    # each object's ground-truth flow carries its amodal mask exactly to the next frame
    for obj in range(k):
        masks = torch.from_numpy(clip.amodal[:-1, obj]).float()[:, None]
        shift = torch.from_numpy(clip.motion[:, obj])[:, :, None, None].expand(-1, 2, h, w)
        assert torch.equal(warp(masks, shift)[:, 0] > 0.5, torch.from_numpy(clip.amodal[1:, obj]))
    # scene flow equals the flow of the object visible at each pixel
    assert np.allclose(clip.flow_fwd[0][:, clip.visible[0, 0]], clip.motion[0, 0][:, None])


def test_assumption_switches_break_exactly_what_they_say():
    plain = load_world("rigid", "test", seed=2, n_clips=1)[0]
    assert not any(never_visible(plain, k, first_frame=1).any() or never_background_comoving(plain, k, first_frame=1).any() for k in plain.evaluated)

    sticker = load_world("rigid", "test", seed=2, n_clips=1, break_visibility=True)[0]
    assert sticker.roles[-1] == "sticker"
    host = [k for k in sticker.evaluated if never_visible(sticker, k, first_frame=1).any()]
    assert len(host) == 1
    # the never-visible pixels are exactly the host's pixels under the sticker
    under = sticker.amodal[:, -1] & sticker.amodal[:, host[0]]
    assert np.array_equal(never_visible(sticker, host[0], first_frame=1), under)

    glued = load_world("rigid", "test", seed=2, n_clips=1, break_exterior=True)[0]
    host = [k for k in glued.evaluated if never_background_comoving(glued, k, first_frame=1).any()]
    assert len(host) == 1
    assert np.array_equal(never_background_comoving(glued, host[0], first_frame=1), glued.amodal[:, -1])


def test_in_view_is_the_rectangle_that_stays_inside():
    clip = load_world("rigid", "test", seed=0, n_clips=1)[0]
    for k in range(clip.n_objects):
        view = in_view(clip, k)
        assert not (clip.amodal[:, k] & ~view).any(), "objects never leave the image in this world"
        total = clip.motion[:, k].sum(axis=0)
        h, w = view.shape[1:]
        assert view[0].sum() == (h - abs(total[1])) * (w - abs(total[0]))


@pytest.mark.parametrize("params,match", [
    (dict(n_frames=1), "n_frames"),
    (dict(n_objects=1), "n_objects"),
    (dict(object_radius=(20.0, 30.0)), "object_radius"),
    (dict(colour="red"), "unknown parameter"),
])
def test_bad_world_parameters_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        load_world("rigid", "test", **params)


def test_unknown_world_and_split():
    with pytest.raises(ValueError, match="unknown world 'fishbowl2'"):
        load_world("fishbowl2", "test")
    with pytest.raises(ValueError, match="unknown split"):
        load_world("rigid", "dev")

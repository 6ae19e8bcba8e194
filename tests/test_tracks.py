import numpy as np
import pytest
import torch

from amodalkit.data import load_world
from amodalkit.data.tracks import crop, crop_flow, enlarge_box, mask_box, object_tracks, paste_back
from amodalkit.ops import warp


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_box_by_hand():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 4:8] = True  # rows 2..4, cols 4..7
    assert mask_box(mask).tolist() == [4, 2, 8, 5]
    assert enlarge_box(mask_box(mask), 1.5, 10, 20).tolist() == [3, 1.25, 9, 5.75]
    assert enlarge_box(np.array([0.0, 0, 4, 4]), 2.0, 10, 20).tolist() == [0, 0, 6, 6]  # clipped at the image
    assert mask_box(np.zeros((3, 3), bool)) is None


def test_crop_of_the_box_itself_is_a_plain_resize():
    image = np.arange(8 * 8, dtype=np.float32).reshape(8, 8)
    assert np.allclose(crop(image, np.array([2.0, 2, 6, 6]), (4, 4)), image[2:6, 2:6])
    assert np.allclose(crop(image, np.array([0.0, 0, 8, 8]), (4, 4), nearest=True).shape, (4, 4))


@pytest.mark.parametrize("name", ["fishbowl", "street", "vos"])
def test_crop_then_paste_returns_the_mask(name):
    clip = load_world(name, "test", seed=1, n_clips=1)[0]
    h, w = clip.amodal.shape[2:]
    for track in object_tracks(clip, size=(64, 128)):
        pasted = track.paste(track.amodal, h, w) > 0.5
        for mask, t in zip(pasted, track.frame_index):
            truth = clip.amodal[t, track.object_index] & (paste_back(np.ones((64, 128)), track.boxes[list(track.frame_index).index(t)], h, w) > 0)
            assert iou(mask, truth) >= 0.9, f"{name} object {track.object_index} frame {t}"


def test_rescaled_flow_warps_a_crop_like_the_full_frame():
    clip = load_world("vos", "test", seed=3, n_clips=1)[0]
    motion = clip.motion_field()  # (T-1, K, 2, H, W): each object's motion everywhere
    size = (64, 128)
    checked = 0
    for track in object_tracks(clip, size=size):
        k = track.object_index
        for t, box in zip(track.frame_index[:-1], track.boxes[:-1]):
            full = warp(torch.from_numpy(clip.amodal[t, k][None, None].astype(np.float32)),
                        torch.from_numpy(motion[t, k][None]))[0, 0].numpy()
            expected = crop(full, box, size) > 0.5
            in_crop = warp(torch.from_numpy(crop(clip.amodal[t, k], box, size)[None, None]),
                           torch.from_numpy(crop_flow(motion[t, k], box, size)[None]))[0, 0].numpy() > 0.5
            assert iou(in_crop, expected) >= 0.9
            checked += 1
    assert checked > 0


def test_filters():
    clip = load_world("fishbowl", "test", seed=0, n_clips=1)[0]
    everything = object_tracks(clip, size=(16, 32))
    assert {t.object_index for t in everything} <= set(clip.evaluated.tolist())
    in_range = object_tracks(clip, size=(16, 32), occlusion_range=(0.1, 0.7))
    assert all(((t.occlusion > 0.1) & (t.occlusion < 0.7)).any() for t in in_range)
    assert object_tracks(clip, size=(16, 32), min_length=clip.n_frames + 1) == []
    big = object_tracks(clip, size=(16, 32), min_visible_area=10**6)
    assert big == []
    with pytest.raises(ValueError, match="scale must be >= 1"):
        object_tracks(clip, scale=0.5)

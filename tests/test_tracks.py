import numpy as np
import pytest
import torch

from amodalkit.data import load_world
from amodalkit.data.tracks import (crop, crop_flow, enlarge_box, mask_box, object_tracks, paste_back, track_boxes,
                                   visible_change)
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


def test_track_boxes_keep_one_size_follow_the_object_and_stay_inside():
    boxes = np.array([[10, 10, 22, 16], [30, 12, 36, 18], [88, 2, 95, 9]], dtype=float)  # widths 12, 6, 7; heights 6, 6, 7
    out = track_boxes(boxes, height=40, width=96)
    sizes = out[:, 2:] - out[:, :2]
    assert np.allclose(sizes, [12, 7])  # the largest width and height, for every frame
    assert np.allclose((out[1, :2] + out[1, 2:]) / 2, [33, 15])  # centred on the frame's own box away from the edges
    assert out[:, [0, 1]].min() >= 0 and (out[:, 2] <= 96).all() and (out[:, 3] <= 40).all()
    assert np.allclose(out[2], [84, 2, 96, 9])  # shifted, not shrunk, at the right edge


def test_track_crops_have_one_scale_and_paste_back_exactly():
    clip = load_world("fishbowl", "test", seed=1, n_clips=1)[0]
    h, w = clip.amodal.shape[-2:]
    for mode in ("track", "frame"):
        for track in object_tracks(clip, size=(16, 32), boxes=mode):
            sizes = track.boxes[:, 2:] - track.boxes[:, :2]
            if mode == "track":
                assert np.allclose(sizes, sizes[0])
            ones = track.paste(np.ones((len(track.frame_index), 16, 32), np.float32), h, w)
            for i, t in enumerate(track.frame_index):  # the pasted crop covers the visible mask it was cut around
                assert (ones[i] > 0)[clip.visible[t, track.object_index]].all()
    per_frame = [np.std((tr.amodal.sum((1, 2)))) / np.mean(tr.amodal.sum((1, 2)))
                 for tr in object_tracks(clip, size=(16, 32), boxes="frame")]
    per_track = [np.std((tr.amodal.sum((1, 2)))) / np.mean(tr.amodal.sum((1, 2)))
                 for tr in object_tracks(clip, size=(16, 32), boxes="track")]
    # the amodal area in crop space jitters with each frame's own box and holds with one box size per track
    assert np.median(per_track) < np.median(per_frame)


def test_visible_change_by_hand():
    masks = np.zeros((6, 8, 8), bool)
    for t in range(6):
        masks[t, 2:4, t:t + 2] = True  # a 2 x 2 square moving right: the same shape every frame
    masks[5, 2:4, 6] = False  # the last frame loses half of it
    change = visible_change(masks, lag=4)
    assert change[:4].tolist() == [0, 0, 0, 0] and change[4] == 0  # moved, not changed
    assert change[5] == pytest.approx(0.5)  # 1 - IoU of a 2 x 2 square and its left half, aligned at the corner


def test_release_filters_keep_only_what_they_promise():
    clip = load_world("fishbowl", "test", seed=0, n_clips=1)[0]  # a clip where the filter removes a track
    h, w = clip.amodal.shape[-2:]
    every = object_tracks(clip, size=(16, 32), min_length=4)
    changing = object_tracks(clip, size=(16, 32), min_length=4, min_change=0.4)
    assert 0 < len(changing) < len(every)  # the filter removes some tracks and keeps some on this clip
    for track in changing:
        assert (visible_change(clip.visible[track.frame_index, track.object_index]) > 0.4).any()
    for track in object_tracks(clip, size=(16, 32), min_length=2, border=3):
        for t in track.frame_index:
            x0, y0, x1, y1 = mask_box(clip.amodal[t, track.object_index])
            assert x0 >= 3 and y0 >= 3 and x1 <= w - 3 and y1 <= h - 3

import numpy as np
import pytest
from PIL import Image

from amodalkit.data import load_world
from amodalkit.data.davis import davis_palette, read_davis, write_davis


@pytest.fixture
def exported(tmp_path):
    clips = list(load_world("vos", "test", seed=0, n_clips=2))
    names = write_davis(tmp_path, clips, subset="val")
    return tmp_path, clips, names


def test_palette_starts_like_davis():
    palette = davis_palette()
    assert palette[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    assert len(palette) == 768


def test_round_trip(exported):
    root, clips, names = exported
    assert (root / "ImageSets" / "2017" / "val.txt").read_text().split() == names
    assert (root / "JPEGImages" / "480p" / names[0] / "00000.jpg").is_file()
    assert Image.open(root / "Annotations" / "480p" / names[0] / "00000.png").mode == "P"
    sequences = read_davis(root, "val")
    assert [s.name for s in sequences] == names
    for seq, clip in zip(sequences, clips):
        present = [k for k in range(clip.n_objects) if clip.visible[0, k].any()]
        assert seq.object_ids == list(range(1, len(present) + 1))
        for new_id, k in enumerate(present, start=1):
            assert np.array_equal(seq.masks == new_id, clip.visible[:, k])  # labels are lossless
        assert seq.annotated.all()
        assert np.abs(seq.frames.astype(int) - clip.frames).mean() < 6  # JPEG at quality 95


def test_frames_without_annotations_are_an_error(exported):
    root, _, names = exported
    for png in (root / "Annotations" / "480p" / names[1]).glob("*.png"):
        png.unlink()
    with pytest.raises(FileNotFoundError, match=f"sequence '{names[1]}' has frames but no annotations"):
        read_davis(root, "val")


def test_ids_absent_from_the_first_frame_are_an_error(exported):
    root, _, names = exported
    png = root / "Annotations" / "480p" / names[0] / "00003.png"
    ids = np.asarray(Image.open(png)).copy()
    ids[:2, :2] = 9
    label = Image.fromarray(ids, mode="P")
    label.putpalette(davis_palette())
    label.save(png)
    with pytest.raises(ValueError, match=r"00003.png holds object ids \[9\] that are absent from the first frame"):
        read_davis(root, "val")


def test_non_palette_png_and_missing_root(exported, tmp_path):
    root, _, names = exported
    png = root / "Annotations" / "480p" / names[0] / "00001.png"
    Image.fromarray(np.asarray(Image.open(png))).convert("L").save(png)
    with pytest.raises(ValueError, match="must be a palette"):
        read_davis(root, "val")
    with pytest.raises(FileNotFoundError, match="no DAVIS folder"):
        read_davis(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="train.txt is missing"):
        read_davis(root, "train")

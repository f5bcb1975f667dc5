"""The Severstal sample: Kaggle layout, exact CSVs, visible defects."""

import csv
import os

import numpy as np
from PIL import Image

from steel_helpers import truth_masks
from tfrecords_tools.competitions import steel

H, W = 64, 400  # the `steel_raw` fixture's size


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        return next(reader), list(reader)


def test_layout_and_headers(steel_raw, steel_spec):
    assert steel_spec["size"] == (H, W)
    header, rows = _rows(steel_raw / "train.csv")
    assert header == ["ImageId", "ClassId", "EncodedPixels"]
    train = sorted(os.listdir(steel_raw / "train_images"))
    test = sorted(os.listdir(steel_raw / "test_images"))
    assert len(train) == steel_spec["n"] and len(test) == steel_spec["n"] // 4
    assert not set(train) & set(test)
    # Only image-classes with a defect have a row; ids are Kaggle-like.
    assert all(r[2] and r[1] in "1234" for r in rows)
    assert all(len(r[0]) == 13 and r[0].endswith(".jpg") for r in rows)
    assert rows == sorted(rows, key=lambda r: (r[0], r[1]))
    header, sub = _rows(steel_raw / "sample_submission.csv")
    assert header == ["ImageId", "EncodedPixels", "ClassId"]
    assert len(sub) == 4 * len(test)
    assert sorted({r[0] for r in sub}) == test
    assert {r[1] for r in sub} == {f"1 {H * W}"}


def test_images_are_gray_rgb_jpegs(steel_raw):
    name = sorted(os.listdir(steel_raw / "train_images"))[0]
    with Image.open(steel_raw / "train_images" / name) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert im.size == (W, H)
        pixels = np.asarray(im).astype(int)
    # Grayscale content: channels equal up to JPEG chroma noise.
    assert np.abs(pixels[..., 0] - pixels[..., 1]).mean() < 2


def test_every_class_empty_and_multiclass_images(steel_raw):
    masks = truth_masks(steel_raw, H, W)
    presence = np.array([m.any((0, 1)) for m in masks.values()])
    assert presence.sum(0).min() >= 2          # each class, several times
    assert (presence.sum(1) == 0).sum() >= 5    # images without defects
    assert (presence.sum(1) >= 2).sum() >= 2    # images with several classes


def test_defects_have_strong_contrast(steel_raw):
    masks = truth_masks(steel_raw, H, W)
    for cls, darker in ((0, True), (1, False), (2, False), (3, True)):
        diffs = []
        for image_id, m in masks.items():
            if not m[..., cls].any():
                continue
            with Image.open(steel_raw / "train_images" / image_id) as im:
                gray = np.asarray(im)[..., 0].astype(float)
            inside = gray[m[..., cls]].mean()
            outside = gray[~m.any(-1)].mean()
            diffs.append(outside - inside if darker else inside - outside)
        assert min(diffs) > 40, (cls + 1, diffs)


def test_full_size_default(tmp_path):
    steel.make_sample(str(tmp_path), n=1, seed=0)
    name = os.listdir(tmp_path / "train_images")[0]
    with Image.open(tmp_path / "train_images" / name) as im:
        assert im.size == (1600, 256)

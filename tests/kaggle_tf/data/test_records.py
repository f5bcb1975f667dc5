"""kaggle_tf.data.records: manifest, shard lists and TF decoders."""

import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kaggle_tf.data import records
from tfrecords_tools import encode
from tfrecords_tools import schema


@pytest.mark.parametrize("classes", [1, 4, 8, 11])
def test_decode_mask_matches_numpy(classes):
    rng = np.random.default_rng(classes)
    masks = rng.random((5, 7, classes)) < 0.4
    png = encode.pack_mask(masks)
    decoded = records.decode_mask(tf.constant(png), classes).numpy()
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, masks.astype(np.uint8))
    np.testing.assert_array_equal(encode.unpack_mask(png, classes), masks)


def test_decode_image_scales_8_and_16_bit():
    for array, top in ((np.array([[0, 51, 255]], np.uint8), 255.0),
                       (np.array([[0, 13107, 65535]], np.uint16), 65535.0)):
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        image = records.decode_image(tf.constant(buf.getvalue()), 1).numpy()
        np.testing.assert_allclose(image[..., 0], array / top, atol=1e-6)


def test_resize_keeps_mask_binary_and_static_shape():
    mask = tf.constant(np.eye(8, dtype=np.uint8)[..., None])
    small = records.resize_mask(mask, (4, 4))
    assert small.shape == (4, 4, 1) and small.dtype == tf.uint8
    # Nearest picks pixels (2i + 1, 2j + 1): the diagonal survives, 0/1.
    np.testing.assert_array_equal(small.numpy()[..., 0], np.eye(4))
    image = records.resize_image(tf.ones((8, 8, 3)), (8, 8), (8, 8))
    assert image.shape == (8, 8, 3)


def test_manifest_and_shards(steel_records, tmp_path):
    cfg, manifest = steel_records
    assert records.read_manifest(cfg.data.records_dir) == manifest
    files = records.shard_files(cfg.data.records_dir, manifest, "train", [3])
    expected = [s["file"] for s in manifest["splits"]["train"]["shards"]
                if s["fold"] == 3]
    assert [os.path.basename(f) for f in files] == expected and expected
    every = records.shard_files(cfg.data.records_dir, manifest, "train")
    assert len(every) == len(manifest["splits"]["train"]["shards"])
    records.check_manifest(manifest, cfg, cfg.data.records_dir)

    copy = tmp_path / "rec"
    shutil.copytree(cfg.data.records_dir, copy)
    os.remove(copy / expected[0])
    with pytest.raises(FileNotFoundError, match=expected[0]):
        records.shard_files(str(copy), manifest, "train", [3])


def test_manifest_errors(steel_records, tmp_path):
    cfg, manifest = steel_records
    with pytest.raises(FileNotFoundError, match="tfrecords_tools.convert"):
        records.read_manifest(str(tmp_path))
    (tmp_path / schema.MANIFEST).write_text(json.dumps(
        dict(manifest, schema_version=99)))
    with pytest.raises(ValueError, match="schema version 99"):
        records.read_manifest(str(tmp_path))
    with pytest.raises(ValueError, match="data.folds=3"):
        records.check_manifest(manifest, _with_folds(cfg, 3), "rec")


def _with_folds(cfg, folds):
    import dataclasses

    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data,
                                                             folds=folds))

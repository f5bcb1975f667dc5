"""kaggle_tf.data.pipeline over converted steel records."""

import csv
import dataclasses
import glob
import os
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kaggle_tf.data import pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tfrecords_tools"))
from steel_helpers import truth_masks  # noqa: E402


def _cfg(cfg, **data):
    out = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data))
    return out


def _folds_csv(cfg):
    with open(os.path.join(cfg.data.records_dir, "folds.csv")) as f:
        return {r["id"]: int(r["fold"]) for r in csv.DictReader(f)}


def _collect(ds):
    out = {}
    for batch in ds:
        for key, value in batch.items():
            out.setdefault(key, []).append(value.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def test_masks_labels_images_equal_the_raw_files(steel_records, steel_raw,
                                                 steel_spec):
    cfg, _ = steel_records
    h, w = steel_spec["size"]
    truth = truth_masks(steel_raw, h, w)
    got = _collect(pipeline.make_dataset(cfg, None, training=False,
                                         with_meta=True, batch_size=8))
    ids = [i.decode() for i in got["id"]]
    assert sorted(ids) == sorted(truth)
    folds = _folds_csv(cfg)
    assert [folds[i] for i in ids] == got["fold"].tolist()
    for k, image_id in enumerate(ids):
        np.testing.assert_array_equal(got["segmentation_masks"][k],
                                      truth[image_id].astype(np.float32))
        np.testing.assert_array_equal(got["labels"][k],
                                      truth[image_id].any((0, 1)))
    assert got["images"].dtype == np.float32
    assert got["images"].shape == (len(ids), h, w, 3)
    with Image.open(steel_raw / "train_images" / ids[0]) as im:
        reference = np.asarray(im) / 255.0
    # Same JPEG, two decoders (IDCT rounding differs by a few levels).
    diff = np.abs(got["images"][0] - reference)
    assert diff.mean() < 1 / 255 and diff.max() < 8 / 255


def test_resize_nearest_masks_bilinear_images(steel_records, steel_raw,
                                              steel_spec):
    cfg, _ = steel_records
    h, w = steel_spec["size"]
    small = _cfg(cfg, image_size=[h // 2, w // 2])
    truth = truth_masks(steel_raw, h, w)
    got = _collect(pipeline.make_dataset(small, [0], training=False,
                                         with_meta=True))
    assert got["images"].shape[1:] == (h // 2, w // 2, 3)
    for image_id, mask in zip(got["id"], got["segmentation_masks"]):
        expected = truth[image_id.decode()][1::2, 1::2]
        np.testing.assert_array_equal(mask, expected.astype(np.float32))
    assert 0.0 <= got["images"].min() and got["images"].max() <= 1.0


def test_folds_and_counts(steel_records):
    cfg, _ = steel_records
    folds = _folds_csv(cfg)
    for keep in ([2], [0, 4]):
        got = _collect(pipeline.make_dataset(cfg, keep, training=False,
                                             with_meta=True))
        expected = sorted(i for i, f in folds.items() if f in keep)
        assert sorted(i.decode() for i in got["id"]) == expected
        assert set(got["fold"].tolist()) == set(keep)
        assert pipeline.count_records(cfg, keep) == len(expected)
    assert pipeline.count_records(cfg) == len(folds)
    assert pipeline.count_records(cfg, None, split="test") == 10


def test_test_split_has_no_targets(steel_records, steel_raw):
    cfg, _ = steel_records
    ds = pipeline.make_dataset(cfg, None, training=False, split="test",
                               with_meta=True, batch_size=3)
    assert set(ds.element_spec) == {"images", "id", "fold"}
    got = _collect(ds)
    assert sorted(i.decode() for i in got["id"]) == sorted(
        os.listdir(steel_raw / "test_images"))
    assert set(got["fold"].tolist()) == {-1}
    plain = pipeline.make_dataset(cfg, None, training=False, split="test")
    assert set(plain.element_spec) == {"images"}


def test_training_static_shapes_shuffle_seeded(steel_records):
    cfg, _ = steel_records

    def first_ids(seed):
        c = dataclasses.replace(cfg, seed=seed)
        ds = pipeline.make_dataset(c, [0, 1, 2, 3], training=True,
                                   with_meta=True, batch_size=4)
        return [b"".join(b["id"].numpy()) for b in ds.take(8)]

    ds = pipeline.make_dataset(cfg, [0, 1, 2, 3], training=True)
    spec = ds.element_spec
    assert spec["images"].shape == (4, 64, 400, 3)
    assert spec["segmentation_masks"].shape == (4, 64, 400, 4)
    assert spec["labels"].shape == (4, 4)
    a, b = first_ids(1), first_ids(1)
    assert a == b                      # same seed, same order
    assert a != first_ids(2)
    # Repeats past one epoch (32 records = 8 batches) and reshuffles.
    assert len(a) == 8 and a[:4] != a[4:8]


def _op_types(ds):
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(ds._as_serialized_graph().numpy())
    ops = {n.op for n in graph.node}
    for function in graph.library.function:
        ops |= {n.op for n in function.node_def}
    return ops


def test_graph_has_no_python_ops(steel_records):
    cfg, _ = steel_records
    for ds in (pipeline.make_dataset(cfg, [1], training=True),
               pipeline.make_dataset(cfg, None, training=False,
                                     split="test", with_meta=True)):
        ops = _op_types(ds)
        assert "DecodeImage" in ops or "DecodeJpeg" in ops, ops
        assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}


def test_keras_train_step_compiles_with_xla(steel_records):
    cfg, _ = steel_records
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 400, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Conv2D(4, 1)(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  jit_compile=True)
    ds = pipeline.make_dataset(cfg, [0, 1, 2, 3], training=True)
    history = model.fit(pipeline.to_keras(ds, cfg), epochs=2,
                        steps_per_epoch=3, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_to_keras_targets(steel_records):
    cfg, _ = steel_records
    ds = pipeline.make_dataset(cfg, [0], training=False, batch_size=2)
    images, masks = next(iter(pipeline.to_keras(ds, cfg)))
    assert masks.shape == (2, 64, 400, 4)
    aux = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, aux_head=True))
    _, targets = next(iter(pipeline.to_keras(ds, aux)))
    assert set(targets) == {"masks", "labels"}
    assert targets["labels"].shape == (2, 4)
    cls = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, arch="classifier"))
    _, labels = next(iter(pipeline.to_keras(ds, cls)))
    assert labels.shape == (2, 4)


def test_augmenter_sees_batches_meta_passes(steel_records):
    cfg, _ = steel_records
    seen = {}

    def flip(batch, training=False):
        seen["keys"] = sorted(batch)
        seen["training"] = training
        return {**batch, "images": tf.reverse(batch["images"], [2]),
                "segmentation_masks": tf.reverse(
                    batch["segmentation_masks"], [2])}

    plain = _collect(pipeline.make_dataset(cfg, [0], training=False,
                                           with_meta=True))
    flipped = _collect(pipeline.make_dataset(cfg, [0], training=False,
                                             with_meta=True, augmenter=flip))
    assert seen == {"keys": ["images", "labels", "segmentation_masks"],
                    "training": True}
    np.testing.assert_array_equal(flipped["id"], plain["id"])
    np.testing.assert_array_equal(flipped["images"],
                                  plain["images"][:, :, ::-1])


def test_sample_rate_on_unbatched_repeated_stream(steel_records,
                                                  monkeypatch):
    cfg, _ = steel_records
    calls = []

    def with_sample_rate(ds, rate, seed):
        calls.append((rate, seed, ds.element_spec["images"].shape))
        return ds.filter(lambda ex: tf.reduce_max(ex["labels"]) > 0)

    fake = types.ModuleType("kaggle_tf.data.sampling")
    fake.with_sample_rate = with_sample_rate
    monkeypatch.setattr(pipeline, "sampling", fake)
    ds = pipeline.make_dataset(cfg, [0, 1], training=True, sample_rate=0.5)
    assert calls == [(0.5, cfg.seed, (64, 400, 3))]
    for batch in ds.take(4):
        assert np.all(batch["labels"].numpy().max(1) > 0)


def test_wrong_task_or_missing_records(steel_records, tmp_path):
    cfg, _ = steel_records
    with pytest.raises(ValueError, match="task 'steel'"):
        pipeline.make_dataset(dataclasses.replace(cfg, task="siim"), [0],
                              training=False)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        pipeline.make_dataset(_cfg(cfg, records_dir=str(tmp_path)), [0],
                              training=False)
    assert not glob.glob(os.path.join(str(tmp_path), "*"))


def test_cache_gives_the_same_examples(steel_records):
    cfg, _ = steel_records
    plain = _collect(pipeline.make_dataset(cfg, [1], training=False,
                                           with_meta=True))
    cached = _collect(pipeline.make_dataset(_cfg(cfg, cache=True), [1],
                                            training=False, with_meta=True))
    np.testing.assert_array_equal(cached["id"], plain["id"])
    np.testing.assert_array_equal(cached["segmentation_masks"],
                                  plain["segmentation_masks"])
    ds = pipeline.make_dataset(_cfg(cfg, cache=True), [1, 2], training=True,
                               with_meta=True, batch_size=2)
    ids = {i for b in ds.take(20) for i in b["id"].numpy()}
    assert len(ids) == pipeline.count_records(cfg, [1, 2])


# Albumentations ops, a Keras layer and a photometric op: every kind of
# random draw the augmenter makes.
RESUME_SPEC = [
    {"__class_fullname__": "HorizontalFlip", "p": 0.5},
    {"__class_fullname__": "keras.layers.RandomRotation", "factor": 0.1,
     "p": 0.7},
    {"__class_fullname__": "RandomBrightnessContrast", "p": 0.8},
]


def _epochs(cfg, augmenter, first_epoch, n_batches):
    ds = pipeline.make_dataset(cfg, [0, 1], training=True, batch_size=2,
                               augmenter=augmenter, epoch_examples=4,
                               first_epoch=first_epoch)
    return [{k: v.numpy() for k, v in b.items()}
            for b in ds.take(n_batches)]


def test_a_stream_started_at_epoch_k_repeats_its_augmentation(
        steel_records):
    from kaggle_tf.augment import from_albumentations

    cfg, _ = steel_records
    # Two augmenters with the same seed, as in two processes: the resumed
    # one has drawn nothing before epoch 2.
    whole = _epochs(cfg, from_albumentations(RESUME_SPEC, seed=3), 0, 6)
    resumed = _epochs(cfg, from_albumentations(RESUME_SPEC, seed=3), 2, 2)
    for got, want in zip(resumed, whole[4:]):
        np.testing.assert_array_equal(got["images"], want["images"])
        np.testing.assert_array_equal(got["segmentation_masks"],
                                      want["segmentation_masks"])
    # The augmentation did something, and differs between steps.
    plain = _epochs(cfg, None, 0, 6)
    changed = [not np.array_equal(a["images"], p["images"])
               for a, p in zip(whole, plain)]
    assert sum(changed) >= 4
    again = _epochs(cfg, from_albumentations(RESUME_SPEC, seed=4), 0, 6)
    assert any(not np.array_equal(a["images"], b["images"])
               for a, b in zip(whole, again))


class _OneHotOnly:
    """The augmenter without `takes_stored_forms`: the pipeline unpacks
    the masks and converts the images before it."""

    takes_step_seed = True

    def __init__(self, augmenter, seen):
        self.augmenter, self.seed, self.seen = augmenter, augmenter.seed, seen

    def __call__(self, batch, training=True, seed=None, **kwargs):
        self.seen.append(sorted(batch))
        self.dtypes = {k: v.dtype for k, v in batch.items()}
        return self.augmenter(batch, training=training, seed=seed, **kwargs)


def test_stored_forms_stay_until_the_augmenter_converts_them(steel_records):
    from kaggle_tf.augment import Augmenter

    cfg, _ = steel_records
    spec = "configs/transforms/siim_1st.json"
    seen, plain_seen = [], []

    class Spy(_OneHotOnly):
        takes_stored_forms = True

    spy = Spy(Augmenter(spec, seed=5), seen)
    plain_spy = _OneHotOnly(Augmenter(spec, seed=5), plain_seen)
    packed = _epochs(cfg, spy, 0, 6)
    plain = _epochs(cfg, plain_spy, 0, 6)
    # 8-bit images as decoded, masks a bit per class, as stored.
    assert spy.dtypes["images"] == tf.uint8
    assert spy.dtypes["packed_masks"] == tf.uint8
    assert plain_spy.dtypes["images"] == tf.float32
    assert "segmentation_masks" in plain_seen[0]
    assert seen[0] == sorted(["packed_masks"] + [
        k for k in plain_seen[0] if k != "segmentation_masks"])
    for got, want in zip(packed, plain):
        assert sorted(got) == sorted(want)
        assert got["segmentation_masks"].dtype == np.float32
        assert got["images"].dtype == np.float32
        np.testing.assert_array_equal(got["segmentation_masks"],
                                      want["segmentation_masks"])
        np.testing.assert_array_equal(got["images"], want["images"])
    # Masks with pixels moved, not only flipped: the comparison means
    # something.
    unaugmented = _epochs(cfg, None, 0, 6)
    assert any(not np.array_equal(a["segmentation_masks"],
                                  b["segmentation_masks"])
               for a, b in zip(packed, unaugmented))
    assert any(a["segmentation_masks"].any() for a in packed)

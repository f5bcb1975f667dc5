"""Export of a classifier: HPA's 4-channel PNGs (R, G, B, Y), D4 TTA on
non-square images, geometric mean, "at least one label" rule."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tiny_runs

from kaggle_tf.data import records
from kaggle_tf.export import run as export_run
from kaggle_tf.inference import predict

SIZE = (64, 96)
CLASSES = 28


@pytest.fixture(scope="module")
def blobs():
    arrays = tiny_runs.images(4, SIZE, channels=4, seed=5)
    return arrays, [tf.io.encode_png(a).numpy() for a in arrays]


@pytest.fixture(scope="module")
def protein_export(tmp_path_factory, blobs):
    """A 1-fold classifier run exported as version 7; its tuned threshold
    (postprocess.json) lies between the images' top probabilities, so that
    two images have labels above it and two get their top class."""
    root = tmp_path_factory.mktemp("protein_export")
    cfg = tiny_runs.make_config(
        root / "run", task="protein", arch="classifier", classes=CLASSES,
        size=SIZE, channels=4, records_dir=root / "records", tta="d4",
        merge="geometric_mean")
    tiny_runs.save_folds(cfg, (2,), scale=3.0)
    images = np.stack([records.decode_image(b, 4).numpy()
                       for b in blobs[1]])
    predictor = predict.Predictor(cfg)
    probs = predictor.probs(images)
    top = np.sort(probs.max(axis=1))
    assert top[2] - top[1] > 1e-4
    (root / "run" / "postprocess.json").write_text(json.dumps(
        {"thresholds": [float((top[1] + top[2]) / 2)]}))
    path = export_run.export(cfg, str(root / "exports"), version=7)
    return cfg, path, images, probs


def test_rgby_png_to_labels(protein_export, blobs):
    cfg, path, images, probs = protein_export
    assert path.endswith("7")
    served = tf.saved_model.load(path)
    out = served.signatures["serving_default"](
        image_bytes=tf.constant(blobs[1]))
    np.testing.assert_allclose(images * 255, blobs[0], atol=1e-4)  # RGBY
    params = predict.load_postprocess(cfg)
    assert params["source"].endswith("postprocess.json")
    want = predict.postprocess(cfg, probs, params)
    np.testing.assert_allclose(out["probs"].numpy(), want["probs"],
                               atol=1e-5)
    labels = out["labels"].numpy()
    np.testing.assert_array_equal(labels, want["labels"])
    # The rule, by hand: above the threshold, else the most probable class.
    above = probs > np.float32(params["thresholds"][0])
    assert above.any(axis=1).tolist().count(True) == 2
    top = np.eye(CLASSES, dtype=bool)[probs.argmax(axis=1)]
    rule = np.where(above.any(axis=1, keepdims=True), above, top)
    np.testing.assert_array_equal(labels, rule)
    # `predict_images` takes the decoded array.
    again = served.signatures["predict_images"](images=tf.constant(images))
    np.testing.assert_array_equal(again["labels"].numpy(), labels)
    sig = served.signatures["predict_images"].structured_input_signature[1]
    assert sig["images"].shape.as_list() == [None, *SIZE, 4]
    assert json.loads(json.dumps(labels.tolist()))  # JSON-serializable

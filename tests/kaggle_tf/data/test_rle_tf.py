"""kaggle_tf.data.rle.decode_tf equals the numpy decoder, in every mode."""

import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf import rle
from kaggle_tf.data.rle import decode_tf

H, W = 24, 40


def random_masks(n=6, seed=0):
    rng = np.random.default_rng(seed)
    masks = [(rng.random((H, W)) < d).astype(np.uint8)
             for d in np.linspace(0.0, 1.0, n)]
    corners = np.zeros((H, W), np.uint8)
    corners[0, 0] = corners[-1, -1] = 1
    return masks + [corners]


@pytest.mark.parametrize("convention", rle.CONVENTIONS)
def test_matches_numpy_eager(convention):
    for mask in random_masks():
        text = rle.encode(mask, convention)
        out = decode_tf(tf.constant(text), H, W, convention)
        assert out.dtype == tf.uint8 and out.shape == (H, W)
        np.testing.assert_array_equal(
            out.numpy(), rle.decode(text, (H, W), convention))
        np.testing.assert_array_equal(out.numpy(), mask)


@pytest.mark.parametrize("convention", rle.CONVENTIONS)
def test_in_dataset_map_with_tensor_sizes(convention):
    masks = random_masks(seed=1)
    texts = [rle.encode(m, convention) for m in masks]
    ds = tf.data.Dataset.from_tensor_slices(
        {"rle": texts, "h": [H] * len(texts), "w": [W] * len(texts)})
    ds = ds.map(lambda x: decode_tf(x["rle"], x["h"], x["w"], convention))
    for got, mask in zip(ds, masks):
        np.testing.assert_array_equal(got.numpy(), mask)


def test_under_tf_function_static_shape():
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def fn(s):
        return decode_tf(s, H, W)

    mask = random_masks(seed=2)[2]
    out = fn(tf.constant(rle.encode(mask)))
    assert fn.get_concrete_function().structured_outputs.shape == (H, W)
    np.testing.assert_array_equal(out.numpy(), mask)
    # numpy and constant-tensor sizes give a static shape too.
    assert decode_tf("1 1", np.int64(H), tf.constant(W)).shape == (H, W)


def test_empty_strings():
    for text in ("", "  ", "nan", "NaN"):
        assert not decode_tf(tf.constant(text), 3, 4).numpy().any()
    for text in ("-1", " -1", ""):
        assert not decode_tf(tf.constant(text), 3, 4, "siim").numpy().any()


def test_touching_runs():
    np.testing.assert_array_equal(decode_tf("2 1 3 1", 3, 4).numpy(),
                                  rle.decode("2 2", (3, 4)))


@pytest.mark.parametrize("text, convention, match", [
    ("2 2 11", "severstal", "odd number"),
    ("2 2.5", "severstal", "non-negative integers"),
    ("0 2", "severstal", "1-based"),
    ("2 0", "severstal", "lengths must be >= 1"),
    ("5 2 3 1", "severstal", "sorted"),
    ("11 3", "severstal", "past the image"),
    ("1 2 9 1", "siim", "past the image"),
])
def test_malformed(text, convention, match):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        decode_tf(tf.constant(text), 3, 4, convention)

    @tf.function
    def fn(s):
        return decode_tf(s, 3, 4, convention)

    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        fn(tf.constant(text))


def test_unknown_convention():
    with pytest.raises(ValueError, match="convention"):
        decode_tf(tf.constant(""), 3, 4, "coco")

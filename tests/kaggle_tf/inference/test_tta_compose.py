"""TTA compositions: flips/D4 x scales x crops, inverted exactly.

References: models whose answer TTA must not change (a pointwise model is
equivariant to flips, turns and crops; a global-average model's output is
unchanged by 2x bilinear resizing, which keeps the image mean), and a
numpy max over crops."""

import keras
import numpy as np
import pytest

from kaggle_tf import config
from kaggle_tf import tta as old_path
from kaggle_tf.inference import tta


def pointwise_model(classes=3, seed=0):
    """1x1 convolutions: every output pixel sees only its input pixel."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 1, activation="tanh")(x)
    y = keras.layers.Conv2D(classes, 1)(h)
    return keras.Model(x, y)


def global_model(classes=3, seed=1):
    """Logits from the image mean, broadcast over the map (and a vector)."""
    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    mean = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    logits = keras.layers.Conv2D(classes, 1)(mean)
    maps = keras.layers.Lambda(
        lambda t: t[0] + 0.0 * t[1][..., :1])([logits, x])
    vector = keras.layers.Flatten()(logits)
    return keras.Model(x, {"masks": maps, "labels": vector})


def images(n=2, size=(64, 64), seed=0):
    return np.random.default_rng(seed).uniform(
        0, 1, (n, *size, 3)).astype(np.float32)


def predict(model, x):
    out = model.predict_on_batch(x)
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return np.asarray(out)


@pytest.mark.parametrize("mode", [
    "d4",
    {"d4": True},
    {"hflip": True, "vflip": True},
    {"d4": True, "crops": [40, 48]},
    {"hflip": True, "crops": [32, 32]},
])
@pytest.mark.parametrize("merge", ["mean", "geometric_mean", "max"])
def test_inversion_exact_on_pointwise_model(mode, merge):
    model = pointwise_model()
    x = images(size=(64, 64))
    want = 1.0 / (1.0 + np.exp(-predict(model, x)))
    wrapped = tta.wrap(model, mode, activation="sigmoid", merge=merge,
                       image_size=(64, 64))
    np.testing.assert_allclose(predict(wrapped, x), want, atol=2e-6)


def test_multi_scale_changes_nothing_on_scale_equivariant_model():
    model = global_model()
    x = images(size=(64, 96))
    plain = predict(tta.wrap(model, "none", activation="sigmoid"), x)
    mode = {"d4": True, "scales": [0.5, 1.0, 2.0]}
    multi = predict(tta.wrap(model, mode, activation="sigmoid",
                             image_size=(64, 96)), x)
    for key in ("masks", "labels"):
        np.testing.assert_allclose(multi[key], plain[key], atol=2e-4)
    # A model that is not scale-invariant sees the scales.
    pointwise = pointwise_model()
    a = predict(tta.wrap(pointwise, "none", activation="sigmoid"), x)
    b = predict(tta.wrap(pointwise, mode, activation="sigmoid",
                         image_size=(64, 96)), x)
    assert np.abs(a - b).max() > 1e-3


def test_crops_merged_by_max_against_numpy():
    model = global_model()
    x = images(size=(64, 64), seed=3)
    got = predict(tta.wrap(model, {"crops": [48, 40]}, activation="sigmoid",
                           merge="max", image_size=(64, 64)), x)
    boxes = [(0, 0), (0, 24), (16, 0), (16, 24), (8, 12)]
    per_crop = [1.0 / (1.0 + np.exp(-predict(model, np.ascontiguousarray(
        x[:, y:y + 48, c:c + 40]))["labels"])) for y, c in boxes]
    np.testing.assert_allclose(got["labels"], np.max(per_crop, axis=0),
                               atol=1e-6)


def test_scaled_sizes_and_boxes():
    assert tta.scaled_size((1024, 1024), 0.875) == (896, 896)
    assert tta.scaled_size((64, 96), 1.5, stride=16) == (96, 144)
    assert tta.crop_boxes((64, 64), (64, 64)) == [(0, 0, 64, 64)]
    with pytest.raises(ValueError, match="at least half"):
        tta.crop_boxes((64, 64), (16, 64))
    assert tta.plan({"hflip": True, "scales": [1, 2]}) == (
        (0, "h"), (1.0, 2.0), None)


def test_string_modes_keep_working_from_old_path():
    model = pointwise_model()
    x = images()
    a = predict(old_path.wrap(model, mode="hflip"), x)
    b = predict(tta.wrap(model, {"hflip": True}), x)
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="unknown TTA mode"):
        old_path.wrap(model, mode="d8")


@pytest.mark.parametrize("tta_value, message", [
    ({"d4": True, "scale": [1.0]}, "unknown key `inference.tta.scale`"),
    ({"scales": [0.0]}, "`inference.tta.scales` must be a list"),
    ({"crops": [32]}, "`inference.tta.crops` must be"),
    ("d8", "`inference.tta` must be one of"),
])
def test_config_errors_name_the_key(tta_value, message):
    with pytest.raises(config.ConfigError, match=message.replace(
            "[", r"\[")):
        config.from_dict({"inference": {"tta": tta_value}})

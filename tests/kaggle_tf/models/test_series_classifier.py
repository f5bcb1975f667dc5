"""SeriesClassifier: one encoder per slice stack, checked against a manual
computation; saving, config, training, mixed precision."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kaggle_tf import config
from kaggle_tf import losses
from kaggle_tf import models
from kaggle_tf.config import ConfigError
from kaggle_tf.inference import bn_fold as fold_lib
from kaggle_tf.models import blocks
from kaggle_tf.models import encoders
from kaggle_tf.models import torch_layout as layout
from kaggle_tf.models.build import is_classifier
from kaggle_tf.models.classifier import SeriesClassifier
from kaggle_tf.models.classifier import embedding_model
from kaggle_tf.training import image
from kaggle_tf.training import optimizers
from model_helpers import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
LUMBAR = os.path.join(ROOT, "configs", "rsna_lumbar.json")
ENCODER = "test_resnet"  # timm's test_resnet: P5 has 96 channels
SERIES = (2, 3, 5)
STARTS = (0, 2, 5, 10)
SIZE = 32
# The lumbar recipe shrunk: stacks of 2 / 3 / 5 slices, 32 x 32.
SMALL = [f"model.encoder={ENCODER}", f"data.image_size=[{SIZE},{SIZE}]",
         "data.channels=10",
         'data.stack_slices={"axial_t2": 5, "sagittal_t1": 2, '
         '"sagittal_t2_stir": 3}']


def images(batch=2, size=SIZE, channels=sum(SERIES), seed=1):
    return np.random.RandomState(seed).rand(batch, size, size,
                                            channels).astype("float32")


def series_features(model, count=len(SERIES)):
    """The model cut at each series' pooled features."""
    return keras.Model(model.input, [
        model.get_layer(f"series{i}_pool").output for i in range(count)])


@pytest.fixture(scope="module")
def avg_model():
    return randomize(SeriesClassifier(
        ENCODER, series_channels=SERIES, classes=7, head="avg", dropout=0.5,
        input_shape=(SIZE, SIZE, sum(SERIES))))


def test_each_encoder_sees_exactly_its_channels(avg_model):
    x = images(size=64, seed=2)[:, :SIZE, :SIZE]
    pooled = []
    for i, channels in enumerate(SERIES):
        encoder = avg_model.get_layer(f"encoder_series{i}")
        assert encoder.input_shape == (None, SIZE, SIZE, channels)
        p5 = np.asarray(encoder(x[..., STARTS[i]:STARTS[i + 1]])["P5"])
        pooled.append(p5.mean(axis=(1, 2)))
    want_embedding = np.concatenate(pooled, axis=-1)
    assert want_embedding.shape == (2, 3 * 96)
    fc = avg_model.get_layer("head_fc")
    want_logits = want_embedding @ fc.kernel.numpy() + fc.bias.numpy()

    np.testing.assert_allclose(np.asarray(embedding_model(avg_model)(x)),
                               want_embedding, rtol=1e-5, atol=1e-5)
    # Inference: dropout is off.
    np.testing.assert_allclose(np.asarray(avg_model(x)), want_logits,
                               rtol=1e-5, atol=1e-5)


def test_perturbing_one_stack_changes_only_its_features(avg_model):
    cut = series_features(avg_model)
    x = images(seed=3)
    before = [np.asarray(t) for t in cut(x)]
    for i in range(len(SERIES)):
        y = x.copy()
        y[..., STARTS[i]:STARTS[i + 1]] = images(seed=10 + i)[
            ..., STARTS[i]:STARTS[i + 1]]
        after = [np.asarray(t) for t in cut(y)]
        for j in range(len(SERIES)):
            if j == i:
                assert np.abs(after[j] - before[j]).max() > 1e-5
            else:
                np.testing.assert_array_equal(after[j], before[j])


def test_concat_pool_head_matches_numpy():
    model = randomize(SeriesClassifier(
        ENCODER, series_channels=(1, 3), classes=4, head="concat_pool",
        input_shape=(None, None, 4)), seed=4)
    x = images(size=64, channels=4, seed=5)
    pooled = []
    for i, part in enumerate((x[..., :1], x[..., 1:])):
        p5 = np.asarray(model.get_layer(f"encoder_series{i}")(part)["P5"])
        assert p5.shape == (2, 2, 2, 96)
        # Per series, as `Classifier`: [global max, global average].
        pooled += [p5.max(axis=(1, 2)), p5.mean(axis=(1, 2))]
    pooled = np.concatenate(pooled, axis=-1)
    bn = model.get_layer("head_bn")
    want_embedding = (pooled - bn.moving_mean.numpy()) / np.sqrt(
        bn.moving_variance.numpy() + 1e-5) * bn.gamma.numpy() + (
        bn.beta.numpy())
    fc = model.get_layer("head_fc")
    np.testing.assert_allclose(np.asarray(embedding_model(model)(x)),
                               want_embedding, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(model(x)),
        want_embedding @ fc.kernel.numpy() + fc.bias.numpy(),
        rtol=1e-4, atol=1e-5)
    # Prediction folds BatchNorm into the convs of every series' encoder.
    folded = fold_lib.fold_batch_norms(model)
    assert fold_lib.count_batch_norms(folded) == 1  # head_bn (no conv)
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x)),
                               rtol=1e-4, atol=1e-4)


def test_shared_encoder_is_one_layer_applied_to_each_stack():
    model = randomize(SeriesClassifier(
        ENCODER, series_channels=(3, 3), classes=2, shared_encoder=True,
        input_shape=(SIZE, SIZE, 6)))
    names = [layer.name for layer in model.layers]
    assert names.count("encoder") == 1 and "encoder_series0" not in names
    x = images(channels=6, seed=6)
    swapped = np.concatenate([x[..., 3:], x[..., :3]], axis=-1)
    a, b = (np.asarray(t) for t in series_features(model, 2)(x))
    c, d = (np.asarray(t) for t in series_features(model, 2)(swapped))
    np.testing.assert_array_equal(a, d)
    np.testing.assert_array_equal(b, c)
    with pytest.raises(ValueError, match="shared_encoder"):
        SeriesClassifier(ENCODER, series_channels=(2, 3), shared_encoder=True,
                         input_shape=(SIZE, SIZE, 5))


@pytest.mark.parametrize("kwargs, match", [
    (dict(series_channels=(2, 3), input_shape=(SIZE, SIZE, 4)),
     "input_shape"),
    (dict(series_channels=(2, 0), input_shape=(SIZE, SIZE, 2)),
     "series_channels"),
    (dict(series_channels=(), input_shape=(SIZE, SIZE, 2)),
     "series_channels"),
    (dict(classes=0, series_channels=(2,), input_shape=(SIZE, SIZE, 2)),
     "classes"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SeriesClassifier(ENCODER, **kwargs)


def keras_to_timm(encoder):
    """A timm-keyed state dict holding the encoder's current values."""
    spec = encoders.spec(encoder.encoder_name)
    layouts = {"conv": (3, 2, 0, 1), "dense": (1, 0)}
    state = {}
    for key, (variable, kind) in spec.torch_mapping(encoder).items():
        value = np.asarray(variable.numpy())
        assert kind in ("conv", "dense", "plain"), kind
        state[key] = np.ascontiguousarray(
            value.transpose(layouts[kind]) if kind in layouts else value)
    return state


def test_encoder_weights_load_into_every_series_adapted(tmp_path):
    from safetensors.numpy import save_file

    source = randomize(encoders.build(ENCODER, (SIZE, SIZE, 3)), seed=7)
    state = keras_to_timm(source)
    path = str(tmp_path / "test_resnet.safetensors")
    save_file(state, path)
    model = SeriesClassifier(ENCODER, series_channels=SERIES, classes=3,
                             encoder_weights=path,
                             input_shape=(SIZE, SIZE, sum(SERIES)))
    stem = encoders.spec(ENCODER).first_conv
    for i, channels in enumerate(SERIES):
        branch = model.get_layer(f"encoder_series{i}")
        alone = encoders.build(ENCODER, (SIZE, SIZE, channels),
                               weights=state)
        for got, want in zip(branch.weights, alone.weights):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
        mapping = encoders.spec(ENCODER).torch_mapping(branch)
        # The stem conv: timm's adapt_input_conv for this channel count.
        kernel = mapping[stem][0].numpy().transpose(3, 2, 0, 1)
        np.testing.assert_allclose(
            kernel, layout.adapt_input_conv(channels, state[stem]),
            rtol=1e-6)
        key = "layer4.0.conv1.weight"
        np.testing.assert_array_equal(
            mapping[key][0].numpy().transpose(3, 2, 0, 1), state[key])


RELOAD = """
import sys
import keras
import numpy as np
import kaggle_tf.models  # registers the custom objects

folder = sys.argv[1]
data = np.load(folder + "/data.npz")
model = keras.saving.load_model(folder + "/series.keras")
assert [l.name for l in model.layers] == list(data["layers"]), model.layers
out = np.asarray(model(data["x"], training=False))
diff = np.abs(out - data["out"]).max()
assert diff == 0.0, diff
print("reloaded", model.name)
"""


def test_reloads_in_fresh_process_with_identical_outputs(tmp_path):
    model = randomize(SeriesClassifier(
        ENCODER, series_channels=SERIES, classes=75, head="concat_pool",
        dropout=0.2, input_shape=(SIZE, SIZE, sum(SERIES))), seed=8)
    x = images(seed=9)
    np.savez(tmp_path / "data.npz", x=x, out=np.asarray(model(x)),
             layers=np.asarray([layer.name for layer in model.layers]))
    model.save(str(tmp_path / "series.keras"))
    config_ = keras.saving.serialize_keras_object(
        model.get_layer("series_split"))
    assert config_["registered_name"] == "kaggle_tf>SplitChannels"
    assert config_["config"]["sizes"] == list(SERIES)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "reloaded series_classifier_test_resnet" in done.stdout


def test_split_channels_layer():
    x = np.arange(2 * 2 * 2 * 6, dtype="float32").reshape(2, 2, 2, 6)
    parts = blocks.SplitChannels((1, 2, 3))(x)
    for part, (start, stop) in zip(parts, ((0, 1), (1, 3), (3, 6))):
        np.testing.assert_array_equal(np.asarray(part), x[..., start:stop])
    clone = blocks.SplitChannels.from_config(
        blocks.SplitChannels((1, 2, 3)).get_config())
    assert clone.sizes == (1, 2, 3)
    with pytest.raises(ValueError, match="sizes"):
        blocks.SplitChannels((1, -2))


# --- config -------------------------------------------------------------------

def test_lumbar_recipe_builds_one_encoder_per_stack_in_channel_order():
    cfg = config.load(LUMBAR, SMALL)
    assert cfg.model.arch == "series_classifier"
    assert cfg.model.series_channels is None
    assert is_classifier(cfg.model.arch) and is_classifier("classifier")
    assert not is_classifier("unet") and not is_classifier("sequence")
    model = image.build_model(cfg)
    assert model.output.shape == (None, 25, 3)
    # Channel order is Sagittal T1, Sagittal T2/STIR, Axial T2, whatever
    # the order of the keys in data.stack_slices.
    assert [model.get_layer(f"encoder_series{i}").input_shape[-1]
            for i in range(3)] == [2, 3, 5]
    assert image.model_config(cfg).series_channels == [2, 3, 5]


def test_models_build_takes_the_config_keys():
    cfg = config.load(LUMBAR, SMALL + ["model.series_channels=[4,6]",
                                       "model.head=concat_pool"])
    model = models.build(cfg.model, (SIZE, SIZE, 10))
    assert model.output.shape == (None, 75)
    assert [model.get_layer(f"encoder_series{i}").input_shape[-1]
            for i in range(2)] == [4, 6]
    assert model.get_layer("head_bn")
    probs = models.build(cfg.model, (SIZE, SIZE, 10),
                         activation=cfg.model.activation)
    assert probs.get_layer("logits").activation.__name__ == "softmax"
    null = config.load(LUMBAR, SMALL).model
    with pytest.raises(ValueError, match="series_channels"):
        models.build(null, (SIZE, SIZE, 10))


@pytest.mark.parametrize("overrides, match", [
    (["model.series_channels=[2,3,4]"],
     r"^`model.series_channels` must sum to data.channels \(10\). "
     r"Received: \[2, 3, 4\] \(rsna_lumbar.json\)$"),
    (["data.channels=11"],
     r"^`model.series_channels` \(null: `data.stack_slices`\) must sum to "
     r"data.channels \(11\)"),
    (["model.shared_encoder=true"], "`model.shared_encoder`"),
    (["model.series_channels=[5,0,5]"], r"`model.series_channels\[1\]`"),
    (['data.stack_slices={"sagittal_t1": "2"}'], "`data.stack_slices`"),
])
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        config.load(LUMBAR, SMALL + overrides)
    assert "\n" not in str(info.value)


def test_null_series_channels_needs_the_lumbar_task():
    with pytest.raises(ConfigError, match="`model.series_channels` must be "
                                          "set"):
        config.from_dict({"task": "protein",
                          "model": {"arch": "series_classifier"}})
    cfg = config.from_dict({"task": "protein", "data": {"channels": 4},
                            "model": {"arch": "series_classifier",
                                      "series_channels": [1, 3]}})
    assert cfg.model.series_channels == [1, 3]


# --- training -----------------------------------------------------------------

def lumbar_batch(batch=4, seed=0):
    rng = np.random.RandomState(seed)
    severity = rng.randint(-1, 3, (batch, 25))
    onehot = np.eye(3, dtype="float32")[np.maximum(severity, 0)]
    onehot[severity < 0] = 0.0  # missing labels: all-zero rows
    return images(batch, channels=10, seed=seed + 1), onehot


def test_short_fit_with_lumbar_loss_and_encoder_lr_mult():
    cfg = config.load(LUMBAR, SMALL + ["optimizer.encoder_lr_mult=0.1",
                                       "train.grad_accum_steps=1"])
    keras.utils.set_random_seed(0)
    model = image.build_model(cfg)
    paths = optimizers.encoder_variable_paths(model)
    encoder_layers = optimizers.encoder_layers(model)
    assert [layer.name for layer in encoder_layers] == [
        "encoder_series0", "encoder_series1", "encoder_series2"]
    before = {layer.name: [w.numpy().copy() for w in layer.trainable_weights]
              for layer in encoder_layers}
    model.compile(optimizer=optimizers.make_optimizer(cfg, 1e-3, model),
                  loss=losses.build(cfg.loss))
    assert model.optimizer.encoder_lr_mult == 0.1
    assert set(model.optimizer.encoder_variables) == set(paths)
    x, y = lumbar_batch()
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    loss = history.history["loss"]
    assert len(loss) == 2 and np.all(np.isfinite(loss)), loss
    # Every series' encoder got gradients.
    for layer in encoder_layers:
        moved = [np.abs(w.numpy() - b).max() for w, b in
                 zip(layer.trainable_weights, before[layer.name])]
        assert max(moved) > 0, layer.name


def test_freeze_encoder_freezes_every_series():
    cfg = config.load(LUMBAR, SMALL)
    model = image.build_model(cfg)
    image.set_encoder_trainable(model, False)
    assert [w.path for w in model.trainable_weights] == [
        "head_fc/kernel", "head_fc/bias"]
    image.set_encoder_trainable(model, True)
    assert len(model.trainable_weights) > 2


def test_mixed_float16_outputs_float32(mixed_precision):
    model = SeriesClassifier(ENCODER, series_channels=SERIES, classes=5,
                             head="concat_pool",
                             input_shape=(SIZE, SIZE, sum(SERIES)))
    encoder = model.get_layer("encoder_series2")
    assert encoder.compute_dtype == "float16"
    out = model(images(), training=False)
    assert out.dtype == "float32"
    assert model.get_layer("embedding").output.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(out)))

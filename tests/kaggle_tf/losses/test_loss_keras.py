"""Losses as Keras objects: registry, config, serialization, XLA."""

import keras
import numpy as np
import pytest

from kaggle_tf import losses
from kaggle_tf.config.schema import LossConfig

ALL = {
    "BCE": lambda: losses.BCE(class_weights=[1.0, 2.0]),
    "Dice": lambda: losses.Dice(smooth=0.5, per_image=True),
    "Focal": lambda: losses.Focal(gamma=1.5, alpha=0.25),
    "Combo": lambda: losses.Combo(bce=3.0, dice=1.0, focal=4.0),
    "LovaszHinge": lambda: losses.LovaszHinge(per_image=True),
    "LovaszSoftmax": lambda: losses.LovaszSoftmax(classes="all"),
    "LSEP": lambda: losses.LSEP(),
    "WeightedLogLoss": lambda: losses.WeightedLogLoss(weights=[1.0, 2.0]),
}


def _data(name):
    rng = np.random.default_rng(0)
    if name in ("LSEP", "WeightedLogLoss"):
        y = (rng.random((4, 2)) > 0.5).astype("float32")
        x = rng.random((4, 3)).astype("float32")
    else:
        y = (rng.random((4, 8, 8, 2)) > 0.5).astype("float32")
        if name == "LovaszSoftmax":
            y = np.eye(2, dtype="float32")[rng.integers(0, 2, (4, 8, 8))]
        x = rng.random((4, 8, 8, 3)).astype("float32")
    return x, y


@pytest.mark.parametrize("name", sorted(ALL))
def test_serialization_round_trip(name):
    loss = ALL[name]()
    config = loss.get_config()
    again = type(loss).from_config(config)
    assert again.get_config() == config
    blob = keras.saving.serialize_keras_object(loss)
    assert blob["registered_name"] == f"kaggle_tf>{name}"
    restored = keras.saving.deserialize_keras_object(blob)
    assert type(restored) is type(loss)
    assert restored.get_config() == config
    x, y = _data(name)
    pred = np.random.default_rng(1).normal(size=y.shape).astype("float32")
    np.testing.assert_allclose(float(restored(y, pred)),
                               float(loss(y, pred)), rtol=1e-6)


@pytest.mark.parametrize("name", ["Combo", "LovaszHinge", "LovaszSoftmax",
                                  "LSEP"])
def test_jit_compiled_train_step_matches_eager(name):
    """One XLA train step (lr 0) reports the eager loss of that batch."""
    x, y = _data(name)
    keras.utils.set_random_seed(0)
    if x.ndim == 4:
        model = keras.Sequential([keras.Input(x.shape[1:]),
                                  keras.layers.Conv2D(y.shape[-1], 3,
                                                      padding="same")])
    else:
        model = keras.Sequential([keras.Input(x.shape[1:]),
                                  keras.layers.Dense(y.shape[-1])])
    loss = ALL[name]()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss,
                  jit_compile=True)
    assert model.jit_compile is True
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    eager = float(loss(y, model(x)))
    np.testing.assert_allclose(history.history["loss"][0], eager, rtol=1e-5)
    saved = model.get_weights()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss,
                  jit_compile=True)
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert any(not np.allclose(a, b)
               for a, b in zip(saved, model.get_weights()))


def test_saved_model_file_reloads_loss(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd",
                  loss=losses.Combo(bce=2.0, dice=1.0, focal=2.0))
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert isinstance(again.loss, losses.Combo)
    assert again.loss.get_config()["focal"] == 2.0


def test_names_and_build():
    assert losses.names() == sorted(
        ["bce", "dice", "focal", "combo", "lovasz_hinge", "lovasz_softmax",
         "lsep", "weighted_log_loss", "categorical_crossentropy",
         "lumbar_log_loss"])
    combo = losses.build(LossConfig(name="combo", weights=[3.0, 1.0, 4.0],
                                    gamma=1.0, smooth=0.0))
    assert isinstance(combo, losses.Combo)
    cfg = combo.get_config()
    assert (cfg["bce"], cfg["dice"], cfg["focal"]) == (3.0, 1.0, 4.0)
    assert (cfg["gamma"], cfg["smooth"]) == (1.0, 0.0)
    ich = losses.build(LossConfig(name="weighted_log_loss"))
    assert ich.get_config()["weights"] == [1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    ich = losses.build({"name": "weighted_log_loss",
                        "class_weights": [1.0, 3.0]})
    assert ich.get_config()["weights"] == [1.0, 3.0]
    cce = losses.build(LossConfig(name="categorical_crossentropy",
                                  from_logits=False))
    assert isinstance(cce, keras.losses.CategoricalCrossentropy)
    assert cce.get_config()["from_logits"] is False
    focal = losses.build(LossConfig(name="focal", gamma=3.0, alpha=0.25,
                                    class_weights=[1.0, 2.0]))
    assert focal.get_config()["class_weights"] == [1.0, 2.0]
    # per_image null (the default) keeps the loss's own: per image.
    assert losses.build("lovasz_hinge").per_image is True
    hinge = losses.build(LossConfig(name="lovasz_hinge", per_image=True))
    assert hinge.per_image is True
    for name in losses.names():
        cfg = LossConfig(name=name, weights=[1.0, 1.0, 1.0])
        assert isinstance(losses.build(cfg), keras.losses.Loss)


def test_build_errors_name_the_problem():
    with pytest.raises(ValueError, match="choices are .*bce.*combo"):
        losses.build(LossConfig(name="nope"))
    with pytest.raises(ValueError, match=r"loss.weights.*3 values"):
        losses.build(LossConfig(name="combo", weights=[1.0, 2.0]))
    with pytest.raises(ValueError, match="class_weights"):
        losses.build(LossConfig(name="lsep", class_weights=[1.0]))
    with pytest.raises(ValueError, match="Unknown loss config keys"):
        losses.build({"name": "bce", "weigths": [1.0]})

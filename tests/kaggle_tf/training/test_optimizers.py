"""Discriminative (encoder) learning rates against two plain optimizers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kaggle_tf import config as config_lib
from kaggle_tf.training import callbacks as cbs
from kaggle_tf.training import optimizers
from kaggle_tf.training import schedules

LR = 1e-2
MULT = 0.1


def tiny_model(seed=0):
    """images -> nested "encoder" -> "encoder_neck" -> "head"."""
    keras.utils.set_random_seed(seed)
    enc_in = keras.Input((6,))
    enc_out = keras.layers.Dense(5, activation="tanh", name="enc_dense")(
        enc_in)
    encoder = keras.Model(enc_in, enc_out, name="encoder")
    inputs = keras.Input((6,), name="images")
    x = encoder(inputs)
    x = keras.layers.Dense(4, activation="tanh", name="encoder_neck")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="tiny")


def _data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(8, 6)).astype("float32"),
            rng.normal(size=(8, 2)).astype("float32"))


def _cfg(name, **train):
    optimizer = {"name": name, "lr": LR, "encoder_lr_mult": MULT}
    if name == "adamw":
        optimizer["weight_decay"] = 0.05
    return config_lib.from_dict({"optimizer": optimizer, "train": train})


def _reference(model, weights, name, kwargs, lrs, steps, x, y):
    """Two plain optimizers: lr * MULT on the encoder, lr on the rest."""
    model.set_weights(weights)
    enc_paths = set(optimizers.encoder_variable_paths(model))
    enc = [v for v in model.trainable_variables if v.path in enc_paths]
    rest = [v for v in model.trainable_variables if v.path not in enc_paths]
    assert enc and rest
    plain = optimizers.PLAIN[name]
    opt_enc = plain(**{**kwargs, "learning_rate": LR * MULT})
    opt_rest = plain(**kwargs)
    loss_fn = keras.losses.MeanSquaredError()
    for step in range(steps):
        opt_enc.learning_rate.assign(lrs[step] * MULT)
        opt_rest.learning_rate.assign(lrs[step])
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, enc + rest)
        opt_enc.apply_gradients(zip(grads[:len(enc)], enc))
        opt_rest.apply_gradients(zip(grads[len(enc):], rest))
    opt_enc.finalize_variable_values(enc)
    opt_rest.finalize_variable_values(rest)
    return model.get_weights()


CASES = {
    "adam": ("adam", {}),
    "adamw": ("adamw", {}),
    "sgd": ("sgd", {}),
    "rmsprop": ("rmsprop", {}),
    "adam_accum_ema": ("adam", {"grad_accum_steps": 2, "ema": 0.5}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_encoder_moves_as_its_own_optimizer(case):
    """XLA fit with StageLR (cosine) == two plain optimizers, per step."""
    name, train = CASES[case]
    cfg = _cfg(name, **train)
    x, y = _data()
    model = tiny_model()
    weights = model.get_weights()
    opt = optimizers.make_optimizer(cfg, LR, model)
    assert isinstance(opt, optimizers.DISCRIMINATIVE[name])
    model.compile(optimizer=opt, loss="mse", jit_compile=True)
    steps = 4
    stage_lr = cbs.StageLR("cosine", LR, steps, 1)
    model.fit(x, y, batch_size=8, epochs=steps, shuffle=False, verbose=0,
              callbacks=[stage_lr])
    lrs = [schedules.lr_at("cosine", LR, t, steps) for t in range(steps)]
    assert lrs[1] < LR  # the schedule did change the rate
    kwargs = optimizers.optimizer_kwargs(cfg, LR)
    want = _reference(tiny_model(), weights, name, kwargs, lrs, steps, x, y)
    for got, ref in zip(model.get_weights(), want):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-7)
    enc_paths = set(opt.encoder_variables)
    flags = {v.path: opt.is_encoder_variable(v)
             for v in model.trainable_variables}
    assert flags == {p: p in enc_paths for p in flags}
    assert {p.split("/")[0] for p in enc_paths} == {"enc_dense",
                                                    "encoder_neck"}


def test_first_step_is_the_plain_step_times_the_multiplier():
    """Plain SGD: the encoder's step is exactly MULT x the plain one."""
    lr = 0.5
    cfg = _cfg("sgd")
    cfg.optimizer.momentum = 0.0
    x, y = _data()
    model = tiny_model()
    before = {v.path: np.array(v) for v in model.trainable_variables}
    model.compile(optimizer=optimizers.make_optimizer(cfg, lr, model),
                  loss="mse", jit_compile=True)
    plain = tiny_model()
    plain.compile(optimizer=keras.optimizers.SGD(lr), loss="mse",
                  jit_compile=True)
    for m in (model, plain):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for v, p in zip(model.trainable_variables, plain.trainable_variables):
        step = np.array(v) - before[v.path]
        plain_step = np.array(p) - before[p.path]
        mult = MULT if v.path.startswith(("enc_dense", "encoder")) else 1.0
        assert np.abs(plain_step).max() > 1e-3
        np.testing.assert_allclose(step, mult * plain_step, rtol=1e-4,
                                   atol=1e-6)


def test_plain_optimizer_when_multiplier_is_one():
    cfg = _cfg("adam", grad_accum_steps=3, ema=0.9)
    cfg.optimizer.encoder_lr_mult = 1.0
    cfg.optimizer.clipnorm = 1.5
    opt = optimizers.make_optimizer(cfg, 1e-3)
    # Keras' Adam, accumulating on several TF replicas too.
    assert type(opt) is optimizers.ACCUMULATING["adam"]
    assert isinstance(opt, keras.optimizers.Adam)
    assert opt.gradient_accumulation_steps == 3
    assert opt.use_ema and opt.ema_momentum == 0.9
    assert opt.clipnorm == 1.5
    cfg.train.grad_accum_steps = 1
    assert type(optimizers.make_optimizer(cfg, 1e-3)) is \
        keras.optimizers.Adam
    cfg.optimizer.encoder_lr_mult = 0.5
    with pytest.raises(ValueError, match="needs the model"):
        optimizers.make_optimizer(cfg, 1e-3)
    no_encoder = keras.Sequential([keras.Input((3,)),
                                   keras.layers.Dense(1, name="head")])
    with pytest.raises(ValueError, match="no layer named 'encoder"):
        optimizers.make_optimizer(cfg, 1e-3, no_encoder)


def test_config_round_trip_and_optimizer_state_reload(tmp_path):
    """Serializable; save_weights/load_weights restores the slots (as
    BackupAndRestore does) and the next step is the same."""
    cfg = _cfg("adam")
    x, y = _data()
    model = tiny_model()
    opt = optimizers.make_optimizer(cfg, LR, model)
    config = opt.get_config()
    assert config["encoder_lr_mult"] == MULT
    again = optimizers.EncoderLRAdam.from_config(config)
    assert again.get_config()["encoder_variables"] == \
        config["encoder_variables"]
    blob = keras.saving.serialize_keras_object(opt)
    assert blob["registered_name"] == "kaggle_tf>EncoderLRAdam"
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    path = str(tmp_path / "state.weights.h5")
    model.save_weights(path)
    model.save(str(tmp_path / "m.keras"))
    reloaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert isinstance(reloaded.optimizer, optimizers.EncoderLRAdam)
    assert reloaded.optimizer.encoder_lr_mult == MULT

    other = tiny_model(seed=1)
    other_opt = optimizers.make_optimizer(cfg, LR, other)
    other.compile(optimizer=other_opt, loss="mse")
    other_opt.build(other.trainable_variables)
    other.load_weights(path)
    for a, b in zip(opt.variables, other_opt.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    for m in (model, other):
        m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mult", [1.0, MULT])
def test_accumulating_optimizers_serialize(mult):
    cfg = _cfg("adamw", grad_accum_steps=2)
    cfg.optimizer.encoder_lr_mult = mult
    model = tiny_model()
    opt = optimizers.make_optimizer(cfg, LR, model)
    assert type(opt).__name__ == ("AccumulatingAdamW" if mult == 1.0
                                  else "AccumulatingEncoderLRAdamW")
    opt.build(model.trainable_variables)
    # The encoder-LR classes keep applying decay at each variable's LR.
    assert opt._decays_in_update_step() is (mult != 1.0)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is type(opt)
    assert again.gradient_accumulation_steps == 2

"""`model.init_from`: a fold starts from another run's fold (uptraining).

A fake source run holds two folds of different random weights; loading
fold K must give exactly fold K's tensors, at another input size too
(64 -> 128, as SIIM's 512 -> 1024), and weights that do not fit are listed.
Both trainers (images, series) start from the source through the shared
stage loop: with a learning rate of ~0 their first checkpoint still holds
the source's tensors.
"""

import json
import os

import keras
import numpy as np
import pytest

from kaggle_tf import config as config_lib
from kaggle_tf import layout
from kaggle_tf import models
from kaggle_tf.training import image
from kaggle_tf.training import sequence
from kaggle_tf.training import warm_start
from series_toys import toy_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
DECODER = [8, 8, 8, 4, 4]
# SGD steps of this size leave every weight where it was (to 1e-20), and
# the history plot still has a positive learning rate to draw.
TINY_LR = 1e-30


def unet(size, classes=1, seed=0):
    keras.utils.set_random_seed(seed)
    return models.Unet(encoder="test_resnet", classes=classes,
                       input_shape=(size, size, 3), decoder_channels=DECODER)


def weights(model):
    return {v.path: np.asarray(v.numpy()) for v in model.weights}


def fake_run(root, build, folds=2):
    """A run folder whose fold K's best.keras holds seed-K weights."""
    out = {}
    for k in range(folds):
        model = build(seed=k)
        os.makedirs(layout.RunLayout(str(root)).fold_dir(k), exist_ok=True)
        model.save(layout.RunLayout(str(root)).fold_file(k, layout.BEST))
        out[k] = weights(model)
    return out


def cfg_of(init_from, skip=False, **model):
    return config_lib.from_dict({
        "task": "siim", "data": {"image_size": [128, 128]},
        "model": {"arch": "unet", "encoder": "test_resnet", "classes": 1,
                  "decoder_channels": DECODER, "init_from": str(init_from),
                  "init_skip_mismatch": skip, **model}})


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("run64")
    return root, fake_run(root, lambda seed: unet(64, seed=seed))


def test_fold_k_loads_the_runs_fold_k_at_twice_the_size(source):
    root, saved = source
    target = unet(128, seed=7)
    assert warm_start.init_model(cfg_of(root), 1, target) == []
    got = weights(target)
    assert set(got) == set(saved[1])          # every layer loaded
    for name, value in got.items():
        np.testing.assert_array_equal(value, saved[1][name], err_msg=name)
    kernels = [n for n in got if n.endswith("kernel")]
    assert any(not np.array_equal(got[n], saved[0][n]) for n in kernels)


def test_a_weights_file_loads_every_layer(source, tmp_path):
    _, saved = source
    model = unet(64, seed=0)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    target = unet(128, seed=5)
    assert warm_start.init_model(cfg_of(path), 3, target) == []
    for name, value in weights(target).items():
        np.testing.assert_array_equal(value, saved[0][name], err_msg=name)


def test_mismatched_layers_are_listed_or_skipped(source):
    root, saved = source
    with pytest.raises(warm_start.InitMismatchError) as e:
        warm_start.init_model(cfg_of(root, classes=4), 0, unet(128, 4))
    text = str(e.value)
    assert "segmentation_head_0/kernel" in text
    assert "segmentation_head_0/bias" in text
    assert "conv1_0/kernel" not in text
    target = unet(128, 4, seed=3)
    fresh = weights(target)
    skipped = warm_start.init_model(cfg_of(root, skip=True, classes=4), 0,
                                    target)
    assert sorted(skipped) == ["segmentation_head_0/bias",
                               "segmentation_head_0/kernel"]
    got = weights(target)
    np.testing.assert_array_equal(got["segmentation_head_0/kernel"],
                                  fresh["segmentation_head_0/kernel"])
    for name in set(got) - set(skipped):
        np.testing.assert_array_equal(got[name], saved[0][name])


def test_bad_sources_name_the_problem(source, tmp_path):
    root, _ = source
    with pytest.raises(FileNotFoundError, match="no trained fold 4"):
        warm_start.init_model(cfg_of(root), 4, unet(64))
    with pytest.raises(config_lib.ConfigError, match="model.init_from"):
        warm_start.source_path(str(tmp_path / "x.ckpt"), 0)
    with pytest.raises(config_lib.ConfigError, match="init_skip_mismatch"):
        config_lib.from_dict({"model": {"init_skip_mismatch": "yes"}})


def test_the_image_trainer_starts_from_the_source_fold(
        tmp_path, steel_records):
    base, _ = steel_records
    h, w = 64, 384  # the records resized to a size U-Net takes

    def build(seed):
        keras.utils.set_random_seed(seed)
        return models.Unet(encoder="test_resnet", classes=4,
                           input_shape=(h, w, 3), decoder_channels=DECODER)

    saved = fake_run(tmp_path / "src", build, folds=5)
    data = base.to_dict()
    data["model"] = {"arch": "unet", "encoder": "test_resnet", "classes": 4,
                     "decoder_channels": DECODER,
                     "init_from": str(tmp_path / "src")}
    data.update(output_dir=str(tmp_path / "up"))
    data["data"]["image_size"] = [h, w]
    data["train"].update(epochs=1, steps_per_epoch=1, validation_steps=1,
                         verbose=0, jit_compile=False)
    data["optimizer"] = {"name": "sgd", "lr": TINY_LR, "momentum": 0.0}
    cfg = config_lib.from_dict(data)
    fold_dir = image.train_fold(cfg, 2)
    got = weights(keras.saving.load_model(
        os.path.join(fold_dir, layout.BEST), compile=False))
    kernels = [n for n in got if n.endswith(("kernel", "gamma", "beta"))]
    assert kernels
    for name in kernels:
        np.testing.assert_allclose(got[name], saved[2][name], rtol=0,
                                   atol=1e-20, err_msg=name)


def test_the_sequence_trainer_starts_from_the_source_fold(tmp_path):
    values = {"output_dir": str(tmp_path / "seq"),
              "model.embedding_model": str(tmp_path / "classifier"),
              "model.init_from": str(tmp_path / "src"),
              "data.folds": 2, "train.batch_size": 4, "train.epochs": 1,
              "train.steps_per_epoch": 1, "train.verbose": 0,
              "train.jit_compile": False, "callbacks.average_top_k": False,
              "model.units": 4, "model.num_layers": 1,
              "optimizer.name": "sgd", "optimizer.lr": TINY_LR,
              "optimizer.momentum": 0.0, "schedule.stages": []}
    cfg = config_lib.load(os.path.join(REPO, "configs", "rsna_ich_seq.json"),
                          [f"{k}={json.dumps(v)}" for k, v in values.items()])
    data = toy_data(n_series=8, length=4)
    for fold in range(2):
        fold_dir = layout.RunLayout.of(cfg).fold_dir(fold)
        os.makedirs(fold_dir, exist_ok=True)
        np.savez(os.path.join(fold_dir, layout.EMBEDDINGS), **data)

    def build(seed):
        keras.utils.set_random_seed(seed)
        return sequence.build_model(cfg, data["embeddings"].shape[-1])

    saved = fake_run(tmp_path / "src", build)
    fold_dir = sequence.train_fold(cfg, 1)
    # In order: Keras numbers the recurrent sublayers of each new model.
    got = keras.saving.load_model(os.path.join(fold_dir, layout.BEST),
                                  compile=False).weights
    want = list(saved[1].values())
    assert len(got) == len(want)
    for v, value in zip(got, want):
        np.testing.assert_allclose(np.asarray(v.numpy()), value, rtol=0,
                                   atol=1e-20, err_msg=v.path)


def test_fit_checks_every_folds_source_before_training(
        tmp_path, steel_records):
    from kaggle_tf.training import run

    base, _ = steel_records
    src = tmp_path / "src"
    fake_run(src, lambda seed: unet(64, seed=seed), folds=2)  # of 5
    data = base.to_dict()
    data["output_dir"] = str(tmp_path / "up")
    data["model"] = {"arch": "unet", "encoder": "test_resnet",
                     "init_from": str(src)}
    with pytest.raises(FileNotFoundError, match="no trained fold 2"):
        run.run(config_lib.from_dict(data), "all")
    assert not os.path.exists(tmp_path / "up" / "fold0")

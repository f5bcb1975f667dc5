"""`kaggle_tf.models.build(model_cfg, input_shape)` and package exports."""

import dataclasses

import pytest

import kaggle_tf.models as models
from kaggle_tf.config.schema import ModelConfig


def test_builds_unet_from_config_keys():
    cfg = ModelConfig(arch="unet", encoder="test_resnet", classes=3,
                      decoder_channels=[32, 32, 16, 16, 16],
                      decoder_attention="scse", aux_head=True)
    model = models.build(cfg, (64, 96, 3))
    assert model.name == "unet_test_resnet"
    shapes = {key: tuple(t.shape) for key, t in model.output.items()}
    assert shapes == {"masks": (None, 64, 96, 3), "labels": (None, 3)}
    assert model.get_layer("decoder_blocks_0_conv1_0").filters == 32
    assert model.get_layer("decoder_blocks_0_attention2_attention_cSE_1")


def test_builds_fpn_with_logits_unless_asked():
    cfg = ModelConfig(arch="fpn", encoder="test_resnet", classes=2)
    model = models.build(cfg, (64, 64, 1))
    assert model.input_shape == (None, 64, 64, 1)
    assert model.get_layer("masks").activation.__name__ == "linear"
    probs = models.build(cfg, (64, 64, 1), activation=cfg.activation)
    assert probs.get_layer("masks").activation.__name__ == "sigmoid"


def test_unknown_arch_is_named():
    cfg = dataclasses.replace(ModelConfig(), arch="deeplab")
    with pytest.raises(ValueError, match="arch='deeplab'"):
        models.build(cfg, (64, 64, 3))


def test_exports():
    assert models.Unet is models.decoders.Unet
    assert callable(models.build)
    assert "resnet34" in models.encoders.names()
    for name in ("Unet", "FPN", "Classifier", "SequenceModel", "build",
                 "encoders", "weights"):
        assert name in models.__all__


def _layers(model):
    return [(layer.name, [tuple(w.shape) for w in layer.weights])
            for layer in model.layers]


def test_builds_the_sequence_model_that_training_builds():
    import os

    from kaggle_tf import config
    from kaggle_tf.training import sequence as sequence_training

    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    cfg = config.load(os.path.join(root, "configs", "rsna_ich_seq.json"))
    trained = sequence_training.build_model(cfg, 32)
    built = models.build(cfg.model, None, embedding_dim=32, name="sequence")
    assert _layers(built) == _layers(trained)
    assert built.name == trained.name == "sequence"
    assert sorted(built.input) == ["embeddings", "mask", "slice_logits"]
    # What training built before it went through models.build.
    direct = models.SequenceModel(
        embedding_dim=32, classes=6, rnn="lstm", units=256, num_layers=2,
        bidirectional=True, dropout=0.3, residual=True, name="sequence")
    assert _layers(trained) == _layers(direct)
    assert trained.get_layer("rnn_1").forward_layer.units == 256


def test_build_rejects_extra_arguments_the_config_owns():
    cfg = ModelConfig(arch="sequence", classes=2, units=4, num_layers=1)
    with pytest.raises(ValueError, match="model.units"):
        models.build(cfg, None, embedding_dim=8, units=16)
    with pytest.raises(ValueError, match="takes no bogus"):
        models.build(cfg, None, embedding_dim=8, bogus=1)

"""encoder_weights forms, the offline hub cache, the input normalization.

Every hub repo here is a random-tensor copy in timm's cache layout
(`pretrained.write_hub_cache`), read with `HF_HUB_OFFLINE=1` (the
repository's conftest): no test reaches the network.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kaggle_tf.models import Classifier
from kaggle_tf.models import SeriesClassifier
from kaggle_tf.models import Unet
from kaggle_tf.models import encoders
from kaggle_tf.models import normalization
from kaggle_tf.models import pretrained
from kaggle_tf.models import torch_layout as layout
from kaggle_tf.models import weights
from kaggle_tf.models.encoders import sources

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
R18 = "timm/resnet18.a1_in1k"


def snapshot_of(cache, repo):
    folder = os.path.join(cache, "models--" + repo.replace("/", "--"))
    with open(os.path.join(folder, "refs", "main")) as f:
        return os.path.join(folder, "snapshots", f.read())


@pytest.fixture(scope="module")
def r18(hub_cache):
    """The snapshot folder of resnet18's default source (random tensors)."""
    return snapshot_of(hub_cache("resnet18"), R18)


def encoder_values(model):
    return {w.path: w.numpy() for w in model.weights}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- the forms of encoder_weights ---


def test_pretrained_source_and_table():
    assert encoders.pretrained_source("resnet34") == (
        "hf://timm/resnet34.a1_in1k")
    assert encoders.pretrained_source("seresnext50_32x4d") == (
        "hf://timm/seresnext50_32x4d.gluon_in1k")
    assert set(sources.SOURCES) <= set(encoders.names())
    with pytest.raises(ValueError, match="unknown encoder"):
        encoders.pretrained_source("resnet9000")


@pytest.mark.torch
def test_table_matches_timm_pretrained_cfgs(torch_ref):
    timm = pytest.importorskip("timm")
    for name, (repo, mean, std) in sources.SOURCES.items():
        cfg = timm.models.get_pretrained_cfg(repo.split("/", 1)[1])
        assert cfg is not None and cfg.hf_hub_id == repo, name
        np.testing.assert_allclose(cfg.mean, mean, err_msg=name)
        np.testing.assert_allclose(cfg.std, std, err_msg=name)


def test_every_form_gives_the_same_tensors(r18, tmp_path):
    shape = (64, 64, 3)
    reference = encoders.build("resnet18", shape, weights="imagenet")
    want = encoder_values(reference)
    # the stem conv is the file's tensor, in Keras layout
    from safetensors.numpy import load_file

    state = load_file(os.path.join(r18, "model.safetensors"))
    np.testing.assert_array_equal(
        reference.get_layer("conv1").kernel.numpy(),
        layout.to_keras(state["conv1.weight"], "conv"))
    fetched = str(tmp_path / "fetched")
    pretrained.fetch("resnet18", fetched)
    forms = ["hf://" + R18, os.path.join(r18, "model.safetensors"), r18,
             fetched, os.path.join(fetched, "resnet18.weights.h5")]
    for form in forms:
        got = encoders.build("resnet18", shape, weights=form)
        assert_same(encoder_values(got), want)
        assert got.weight_source.mean == sources.IMAGENET_MEAN, form


@pytest.mark.torch
def test_pth_file_gives_the_same_tensors(r18, tmp_path, torch_ref):
    from safetensors.torch import load_file

    path = str(tmp_path / "resnet18.pth")
    torch_ref.save({"state_dict": load_file(
        os.path.join(r18, "model.safetensors"))}, path)
    want = encoder_values(encoders.build("resnet18", (64, 64, 3),
                                         weights="imagenet"))
    got = encoders.build("resnet18", (64, 64, 3), weights=path)
    assert_same(encoder_values(got), want)


def test_converted_once_then_read_from_the_cache(hub_cache):
    repo = "timm/resnet18.cache_check"
    cache = hub_cache("resnet18")
    pretrained.write_hub_cache("resnet18", cache, repo_id=repo, seed=1)
    uri = "hf://" + repo
    before = pretrained.CONVERSIONS[uri]
    first = encoders.build("resnet18", (64, 64, 3), weights=uri)
    second = encoders.build("resnet18", (32, 32, 3), weights=uri)
    assert pretrained.CONVERSIONS[uri] == before + 1
    assert_same(encoder_values(first), encoder_values(second))
    converted = os.path.join(cache, "models--timm--resnet18.cache_check",
                             "kaggle_tf")
    assert os.listdir(converted)
    # another channel count is converted (and cached) once more
    encoders.build("resnet18", (64, 64, 1), weights=uri)
    assert pretrained.CONVERSIONS[uri] == before + 2


def test_smp_hub_layout_and_its_statistics(hub_cache):
    """smp-hub's config.json has the statistics at the top level (in
    0..255 units when `input_range` says so)."""
    import json

    cache = hub_cache("test_resnet")
    repo = "smp-hub/test_resnet.imagenet"
    snapshot = pretrained.write_hub_cache("test_resnet", cache,
                                          repo_id=repo)
    with open(os.path.join(snapshot, "config.json"), "w") as f:
        json.dump({"input_space": "RGB", "input_range": [0, 255],
                   "mean": [102.0, 51.0, 25.5], "std": [51.0, 51.0, 51.0]},
                  f)
    model = Classifier("test_resnet", classes=2, input_shape=(32, 32, 3),
                       encoder_weights="hf://" + repo)
    layer = model.get_layer("normalize")
    np.testing.assert_allclose(layer.mean, [0.4, 0.2, 0.1])
    np.testing.assert_allclose(layer.std, [0.2, 0.2, 0.2])


def test_unfitting_file_lists_what_does_not_fit(tmp_path):
    from safetensors.numpy import save_file

    path = str(tmp_path / "bad.safetensors")
    save_file({"conv1.weight": np.zeros((8, 3, 3, 3), "float32"),
               "extra.weight": np.zeros((2,), "float32")}, path)
    with pytest.raises(weights.WeightLoadError) as info:
        Unet("resnet18", classes=1, input_shape=(64, 64, 3),
             encoder_weights=path)
    message = str(info.value)
    assert "mis-shaped: conv1.weight" in message
    assert "unexpected: extra.weight" in message
    assert "missing: layer1.0.conv1.weight" in message


def test_bad_forms():
    with pytest.raises(ValueError, match="encoder_weights must be null"):
        encoders.build("test_resnet", (32, 32, 3), weights="imagnet")
    with pytest.raises(ValueError, match="hf://<org>/<name>"):
        encoders.build("test_resnet", (32, 32, 3), weights="hf://nothing")


# --- offline, nothing cached ---


def run_cli(args, cache, cwd):
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1",
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def error_lines(stderr):
    return [line for line in stderr.splitlines()
            if line.startswith(("error", "config error", "Traceback"))]


def test_fetch_offline_with_an_empty_cache_is_one_line(tmp_path):
    empty, out = tmp_path / "empty_cache", tmp_path / "out"
    result = run_cli(["kaggle_tf.weights", "fetch", "resnet34", "--out",
                      str(out)], empty, tmp_path)
    assert result.returncode == 1, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "'resnet34'" in lines[0] and "timm/resnet34.a1_in1k" in lines[0]
    assert "encoder_weights=DIR" in lines[0]
    assert sorted(os.listdir(tmp_path)) == []  # nothing written


def test_fit_offline_with_an_empty_cache_writes_nothing(tmp_path):
    result = run_cli(
        ["kaggle_tf.fit", "--config", os.path.join(ROOT, "configs",
                                                   "siim.json"),
         "--set", f"output_dir={tmp_path / 'run'}",
         "--set", f"data.records_dir={tmp_path / 'records'}",
         "--set", f"data.raw_dir={tmp_path / 'raw'}"],
        tmp_path / "empty", tmp_path)
    assert result.returncode == 1, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "timm/resnet34.a1_in1k" in lines[0], (
        result.stderr)
    assert os.listdir(tmp_path) == []


def test_list_says_what_is_cached(hub_cache):
    result = run_cli(["kaggle_tf.weights", "list"], hub_cache("test_resnet"),
                     ROOT)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:]
            for line in result.stdout.splitlines()}
    assert rows["test_resnet"] == ["hf://timm/test_resnet.r160_in1k",
                                   "cached"]
    assert rows["resnet34"] == ["hf://timm/resnet34.a1_in1k", "not",
                                "cached"]


# --- the normalization inside the model ---


@pytest.mark.torch
@pytest.mark.parametrize("encoder", ["resnet18", "test_resnet"])
def test_normalization_equals_timm_preprocessing(encoder, r18, torch_ref):
    timm = pytest.importorskip("timm")
    from torchvision import transforms

    tag = sources.SOURCES[encoder][0].split("/", 1)[1]
    cfg = timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg(tag).to_dict())
    transform = timm.data.create_transform(**cfg)
    norm = [t for t in transform.transforms
            if isinstance(t, transforms.Normalize)]
    assert len(norm) == 1
    image = np.random.default_rng(0).random((64, 64, 3), dtype="float32")
    want = norm[0](torch_ref.from_numpy(image.transpose(2, 0, 1)))
    model = Unet(encoder, classes=1, input_shape=(64, 64, 3),
                 encoder_weights="imagenet")
    assert model.layers[1].name == "normalize"  # right after the input
    got = model.get_layer("normalize")(image[None])
    np.testing.assert_allclose(np.asarray(got)[0],
                               want.numpy().transpose(1, 2, 0), atol=1e-6)


def test_keras_file_keeps_the_normalization(tmp_path):
    model = Classifier("test_resnet", classes=3, input_shape=(64, 64, 4),
                       encoder_weights="imagenet")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    layer = loaded.get_layer("normalize")
    assert isinstance(layer, normalization.ImageNormalization)
    assert layer.mean == [0.5] * 4 and layer.std == [0.5] * 4
    images = np.random.default_rng(1).random((2, 64, 64, 4), "float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)


def test_random_init_has_no_normalization():
    model = Unet("test_resnet", classes=1, input_shape=(64, 64, 3))
    assert "normalize" not in [layer.name for layer in model.layers]


def test_channel_rule():
    mean, std = sources.IMAGENET_MEAN, sources.IMAGENET_STD
    assert normalization.channel_stats(mean, std, 3) == (mean, std)
    m1, s1 = normalization.channel_stats(mean, std, 1)
    np.testing.assert_allclose(m1, [np.mean(mean)])
    np.testing.assert_allclose(s1, [np.mean(std)])
    assert normalization.channel_stats(mean, std, 4) == (
        mean + mean[:1], std + std[:1])  # HPA's RGBY: yellow takes red's
    m40, _ = normalization.channel_stats(mean, std, 40)
    assert m40[:6] == mean + mean and m40[-1] == mean[39 % 3]


def test_channel_rule_matches_the_stem_adaptation():
    """All channels equal to a grey image: the adapted stem responds as
    the RGB stem does to that grey image, once both are normalized."""
    mean, std = sources.IMAGENET_MEAN, sources.IMAGENET_STD
    kernel = np.random.default_rng(0).normal(size=(8, 3, 1, 1))
    grey = 0.3
    rgb = sum(kernel[:, c, 0, 0] * (grey - mean[c]) / std[c]
              for c in range(3))
    adapted = layout.adapt_input_conv(6, kernel)
    m6, s6 = normalization.channel_stats(mean, std, 6)
    six = sum(adapted[:, c, 0, 0] * (grey - m6[c]) / s6[c]
              for c in range(6))
    np.testing.assert_allclose(six, rgb, rtol=1e-5)


def test_series_classifier_normalizes_each_series():
    model = SeriesClassifier("test_resnet", series_channels=(2, 3),
                             classes=4, input_shape=(64, 64, 5),
                             encoder_weights="imagenet")
    layer = model.get_layer("normalize")
    assert layer.mean == [0.5] * 5


def test_normalization_layer_serializes():
    layer = normalization.ImageNormalization([0.1, 0.2], [0.5, 0.25],
                                             name="normalize")
    again = normalization.ImageNormalization.from_config(layer.get_config())
    x = np.ones((1, 2, 2, 2), "float32")
    np.testing.assert_allclose(np.asarray(again(x)),
                               [[[[1.8, 3.2]] * 2] * 2], rtol=1e-6)
    with pytest.raises(ValueError, match="channel statistics"):
        normalization.ImageNormalization.from_config(layer.get_config())(
            np.ones((1, 2, 2, 3), "float32"))

"""Session fixtures shared by the test packages (append new ones below).

`steel_raw`: a tiny Severstal sample (64 x 400 JPEGs, 40 train + 10 test)
written once by `tfrecords_tools.sample`; `steel_records`: the same sample
converted once (5 stratified folds, shards of 4). Tests must not modify
them: copy to `tmp_path` first.
"""

import os
import shutil
import tempfile

import pytest

STEEL_N = 40
# Encoders whose default source (`encoder_weights="imagenet"`) the test hub
# cache serves: the recipes' tests swap in `test_resnet`.
HUB_ENCODERS = ("test_resnet",)
_HUB_CACHE = None


def pytest_configure(config):
    """No test reaches the network: the Hugging Face hub is offline and its
    cache a fresh folder (set before anything imports huggingface_hub, and
    inherited by the commands the tests run)."""
    global _HUB_CACHE
    _HUB_CACHE = tempfile.mkdtemp(prefix="kaggle_tf-hub-cache-")
    os.environ["HF_HUB_CACHE"] = _HUB_CACHE
    os.environ["HF_HUB_OFFLINE"] = "1"


def pytest_unconfigure(config):
    if _HUB_CACHE:
        shutil.rmtree(_HUB_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_cache():
    """`ensure(encoder) -> HF_HUB_CACHE`: puts a random-tensor copy of
    `encoder`'s default source into the offline hub cache, in timm's layout
    (`kaggle_tf.models.pretrained.write_hub_cache`)."""
    from kaggle_tf.models import pretrained
    from kaggle_tf.models.encoders import sources

    def ensure(encoder):
        repo = sources.SOURCES[encoder][0]
        folder = os.path.join(_HUB_CACHE, "models--" + repo.replace("/", "--"))
        if not os.path.isdir(folder):
            pretrained.write_hub_cache(encoder, _HUB_CACHE)
        return _HUB_CACHE

    return ensure


@pytest.fixture(scope="session", autouse=True)
def _recipe_weights(hub_cache):
    """The recipes say `encoder_weights: "imagenet"`; the tests' encoders
    get theirs from the offline cache (the same path as a download)."""
    for encoder in HUB_ENCODERS:
        hub_cache(encoder)
STEEL_SIZE = (64, 400)
STEEL_SEED = 0


def steel_config(raw_dir, records_dir, **data):
    """A steel config for tests (64 x 400, 5 folds, shards of 4)."""
    from kaggle_tf import config

    return config.from_dict({
        "task": "steel", "seed": 42,
        "data": {"raw_dir": str(raw_dir), "records_dir": str(records_dir),
                 "image_size": list(STEEL_SIZE), "folds": 5,
                 "fold_strategy": "stratified", "shard_size": 4,
                 "shuffle_buffer": 16, **data},
        "train": {"batch_size": 4}})


@pytest.fixture(scope="session")
def steel_spec():
    """{"n", "size", "seed"} of the `steel_raw` sample."""
    return {"n": STEEL_N, "size": STEEL_SIZE, "seed": STEEL_SEED}


@pytest.fixture(scope="session")
def make_steel_config():
    """`steel_config(raw_dir, records_dir, **data)` as a fixture."""
    return steel_config


@pytest.fixture(scope="session")
def steel_raw(tmp_path_factory):
    """The folder of a tiny Severstal sample in Kaggle's layout."""
    from tfrecords_tools.competitions import steel

    raw = tmp_path_factory.mktemp("steel_raw")
    steel.make_sample(str(raw), n=STEEL_N, size=STEEL_SIZE, seed=STEEL_SEED)
    return raw


@pytest.fixture(scope="session")
def steel_records(steel_raw, tmp_path_factory):
    """(cfg, manifest) of `steel_raw` converted to records."""
    from tfrecords_tools import convert

    out = tmp_path_factory.mktemp("steel_records")
    cfg = steel_config(steel_raw, out)
    manifest = convert.convert(cfg, progress=False)
    return cfg, manifest

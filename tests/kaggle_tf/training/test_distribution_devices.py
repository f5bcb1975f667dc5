"""How many validation images a JAX data-parallel epoch sees."""

import pytest

from kaggle_tf import config
from kaggle_tf.config import ConfigError
from kaggle_tf.training import distribution
from kaggle_tf.training import image


class _Devices(distribution.KerasDistribution):
    """A JAX distribution over `n` devices, without touching Keras'."""

    def __init__(self, n):
        self.distribution = object()
        self.num_replicas_in_sync = n


class _Strategy:
    def __init__(self, n):
        self.num_replicas_in_sync = n


@pytest.mark.parametrize("count,strategy,want", [
    (5, _Devices(2), 4), (6, _Devices(4), 4), (8, _Devices(4), 8),
    (5, _Devices(1), 5),
    (5, _Strategy(2), 5),  # TF strategies split uneven batches themselves
])
def test_validated_examples_round_down_to_the_devices(monkeypatch, count,
                                                      strategy, want):
    monkeypatch.setattr(image.pipeline, "count_records",
                        lambda cfg, folds: count)
    cfg = config.from_dict({"task": "steel"})
    assert image._validated_examples(cfg, 0, strategy) == want


def test_fewer_validation_images_than_devices_names_the_key(monkeypatch):
    monkeypatch.setattr(image.pipeline, "count_records",
                        lambda cfg, folds: 3)
    cfg = config.from_dict({"task": "steel"})
    with pytest.raises(ConfigError, match="train.strategy"):
        image._validated_examples(cfg, 1, _Devices(4))

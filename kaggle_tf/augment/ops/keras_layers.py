"""Keras 3's own augmentation layers as ops (`p`, masks, seeds added).

What these layers do with `{"images", "segmentation_masks"}` (checked in
tests/kaggle_tf/augment/test_keras_layers.py): masks are moved with
nearest sampling and stay binary, photometric layers leave them alone,
parameters are drawn per sample, an integer seed makes a layer repeatable,
and every layer runs inside `tf.data`. Only some compile with XLA: the
affine and perspective layers use `ImageProjectiveTransformV3` and
RandomElasticTransform a dynamic `Range`, neither of which XLA supports
(`XLA_SAFE` below), so those run in `tf.data` (placement "dataset") only.

Example:

>>> KerasLayer("RandomRotation", {"factor": 0.1}, p=0.5)
"""

import keras

from kaggle_tf.augment.ops import rng
from kaggle_tf.augment.ops.base import Op
from kaggle_tf.augment.ops.registry import register_op

# Layer name -> compiles with XLA.
XLA_SAFE = {
    "RandomFlip": True,
    "RandomRotation": False,
    "RandomZoom": False,
    "RandomTranslation": False,
    "RandomShear": False,
    "RandomPerspective": False,
    "RandomElasticTransform": False,
    "RandomErasing": True,
    "RandomBrightness": True,
    "RandomContrast": True,
}
# Our images are in [0, 1]; Keras' photometric layers assume [0, 255].
_VALUE_RANGE = ("RandomErasing", "RandomBrightness", "RandomContrast")


class _StatelessSeed(keras.random.SeedGenerator):
    """A seed generator without state: its i-th draw is `seed` folded
    with i, so a layer's transform depends on the batch seed alone."""

    def __init__(self, seed):  # no super().__init__: no variable
        self._seed = seed
        self._draws = 0

    def next(self, ordered=True):
        del ordered
        self._draws += 1
        return rng.fold(self._seed, self._draws)


@register_op("KerasLayer")
class KerasLayer(Op):
    """Runs `keras.layers.<layer>(**config)` on images and masks.

    Args:
        layer: one of `XLA_SAFE`'s names.
        config: the layer's arguments (not `seed`, set by `make_layer`);
            `value_range` defaults to `(0, 1)`.
        p: probability per sample. Defaults to `1.0`.
    """

    name = "KerasLayer"

    def __init__(self, layer, config=None, p=1.0):
        super().__init__(p)
        if layer not in XLA_SAFE:
            raise ValueError(f"KerasLayer: `layer` must be one of "
                             f"{', '.join(XLA_SAFE)}. Received: {layer!r}")
        config = dict(config or {})
        if "seed" in config:
            raise ValueError(f"keras.layers.{layer}: `seed` comes from the "
                             "augmenter's seed; leave it out.")
        if layer in _VALUE_RANGE:
            config.setdefault("value_range", (0.0, 1.0))
        self.layer_name = layer
        self.config = config
        self.layer = None
        # Fail now, naming the argument, rather than at the first batch.
        self.make_layer(None)

    @property
    def xla_safe(self):
        return XLA_SAFE[self.layer_name]

    def make_layer(self, seed):
        """(Re)creates the Keras layer with an integer `seed` (or None)."""
        cls = getattr(keras.layers, self.layer_name)
        try:
            self.layer = cls(seed=seed, **self.config)
        except (TypeError, ValueError, NotImplementedError) as e:
            raise ValueError(f"keras.layers.{self.layer_name}: {e}") \
                from None
        return self.layer

    def sample(self, seed, batch_size, height, width):
        del height, width
        # The layer draws from this seed, not from its own generator: the
        # same batch seed gives the same transform (a resumed run repeats
        # an uninterrupted one).
        return {"seed": rng.bits(seed, "layer", [batch_size, 2])}

    def apply(self, data, params):
        inputs = {"images": data["images"]}
        if "masks" in data:
            inputs["segmentation_masks"] = data["masks"]
        layer = self.layer
        generator = _StatelessSeed(params["seed"][0])
        layer._get_seed_generator = lambda backend=None: generator
        try:
            outputs = layer(inputs, training=True)
        finally:
            del layer._get_seed_generator
        out = dict(data)
        out["images"] = outputs["images"]
        if "masks" in data:
            out["masks"] = outputs["segmentation_masks"]
        return out

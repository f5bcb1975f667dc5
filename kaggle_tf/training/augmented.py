"""Augmentation inside the train step (`augment.placement: "model"`).

With placement "model" the augmenter runs on the accelerator as part of
the compiled train step instead of in `tf.data` (which on a TPU host or a
busy CPU is the bottleneck). `AugmentedModel` wraps the plain model:

    (images, masks) batch
      -> train_step: augmenter({"images", "segmentation_masks"},
                               training=True)   images + masks together
      -> the plain model's forward, loss, gradients, optimizer
    evaluate / predict: the plain model, no augmentation

The wrapper exists only while training: `save()` writes the plain model,
so checkpoints (`best.keras`, `ckpt-*.keras`) load and serve without it.
`save_weights()` keeps the wrapper's state (the plain model, the
augmenter's RNG state and the optimizer) for `BackupAndRestore`.

Example:

>>> with strategy.scope():        # the augmenter's RNG state is a variable
...     model = wrap(build_model(cfg), augment.build(cfg.augment))
>>> model.compile(optimizer=..., loss=..., jit_compile=True)
>>> model.fit(to_keras(train_ds, cfg), ...)
>>> model.save("best.keras")                            # the plain model
"""

import keras
from keras import ops

IMAGES = "images"
MASKS = "segmentation_masks"


def _is_mask(y, images):
    """Whether `y` is a (batch, height, width, classes) mask of `images`."""
    return (not isinstance(y, dict) and hasattr(y, "shape")
            and len(y.shape) == 4 and len(images.shape) == 4)


def augment_batch(augmenter, x, y):
    """Runs `augmenter` on the images and masks of a `(x, y)` batch.

    Args:
        augmenter: a layer called as `augmenter(batch, training=True)` on
            `{"images", "segmentation_masks"}`.
        x: images `(batch, height, width, channels)`, or a dict with
            "images".
        y: masks `(batch, height, width, classes)`, a dict with "masks"
            (aux-head models), or labels (left as they are).

    Returns:
        `(x, y)` with the images and masks augmented together.
    """
    images = x[IMAGES] if isinstance(x, dict) else x
    masks = None
    if isinstance(y, dict) and "masks" in y:
        masks = y["masks"]
    elif _is_mask(y, images):
        masks = y
    batch = {IMAGES: images}
    if masks is not None:
        batch[MASKS] = masks
    out = augmenter(batch, training=True)
    if isinstance(x, dict):
        x = {**x, IMAGES: out[IMAGES]}
    else:
        x = out[IMAGES]
    if masks is not None:
        new_masks = ops.cast(out[MASKS], masks.dtype)
        y = {**y, "masks": new_masks} if isinstance(y, dict) else new_masks
    return x, y


@keras.saving.register_keras_serializable(package="kaggle_tf")
class AugmentedModel(keras.Model):
    """Trains `inner_model` on batches augmented inside the train step.

    The augmenter runs in `train_step` only, so it compiles into the
    `jit_compile=True` step and runs on the accelerator; `call`, evaluate
    and predict are the plain model's. `save()` saves the plain model.

    Args:
        inner_model: the (functional) model to train.
        augmenter: a layer `augmenter(batch, training=True)` on
            `{"images", "segmentation_masks"}` batches, e.g.
            `kaggle_tf.augment.build(cfg.augment)` with placement "model".
        name: Defaults to `"<inner name>_augmented"`.

    Example:

    >>> model = AugmentedModel(Unet(...), augmenter)
    >>> model.compile(optimizer="adam", loss=Dice(), jit_compile=True)
    >>> model.fit(ds)
    """

    def __init__(self, inner_model, augmenter, name=None, **kwargs):
        super().__init__(name=name or f"{inner_model.name}_augmented",
                         **kwargs)
        self.inner_model = inner_model
        self.augmenter = augmenter
        if inner_model.built:
            self.built = True

    def call(self, inputs, training=None):
        return self.inner_model(inputs, training=training)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y = augment_batch(self.augmenter, x, y)
        return super().train_step(
            keras.utils.pack_x_y_sample_weight(x, y, sample_weight))

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the plain model (not the wrapper) to `filepath`."""
        return self.inner_model.save(filepath, overwrite=overwrite,
                                     zipped=zipped, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "inner_model": keras.saving.serialize_keras_object(
                self.inner_model),
            "augmenter": keras.saving.serialize_keras_object(
                self.augmenter),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("inner_model", "augmenter"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects)
        return cls(**config)


def wrap(model, augmenter):
    """`model` trained with `augmenter` in its train step, or `model`.

    Args:
        model: the plain model.
        augmenter: an augmenter layer, or None (returns `model`).

    Returns:
        An `AugmentedModel`, or `model` when `augmenter` is None.
    """
    if augmenter is None:
        return model
    return AugmentedModel(model, augmenter)


def unwrap(model):
    """The plain model inside an `AugmentedModel`, or `model` itself.

    Use it where the plain model's layers or weights are meant: freezing
    the encoder, `set_weights` from a saved checkpoint.
    """
    return model.inner_model if isinstance(model, AugmentedModel) else model

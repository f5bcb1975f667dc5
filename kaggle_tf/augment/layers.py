"""`Augmenter`: an albumentations spec as one Keras layer.

The same object works in both placements:

- `"dataset"`: `ds.map(lambda b: augmenter(b, training=True))` after
  batching. The tree runs per sample (a `tf.cond` skips what a sample does
  not need) inside one XLA-compiled function, the fastest form on a CPU.
- `"model"`: a layer of the model (or called in its train step on
  `{"images", "segmentation_masks"}`); active only when `training` is
  true, the identity at inference. The tree is vectorized over the batch,
  the right form for GPUs and TPUs, and compiles as part of a
  `jit_compile=True` train step.

Example:

>>> augmenter = Augmenter("configs/transforms/siim_1st.json", seed=42)
>>> batch = augmenter({"images": images, "segmentation_masks": masks})
>>> ds = ds.map(lambda b: augmenter(b, training=True))
"""

import json

import keras
import tensorflow as tf

from kaggle_tf.augment import albumentations
from kaggle_tf.augment import ops
from kaggle_tf.augment.ops import base
from kaggle_tf.augment.ops import packing
from kaggle_tf.augment.ops.runner import PACKED_MASKS
from kaggle_tf.augment.ops.runner import Runner

PLACEMENTS = ("dataset", "model")


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Augmenter(keras.layers.Layer):
    """Augments `{"images", "segmentation_masks"}` batches on the device.

    Args:
        transforms: an albumentations spec: `A.to_dict` output, a transform
            dict, a list of them, or a path to a JSON file.
        seed: integer seed; a fixed seed gives the same outputs for the same
            inputs and call order. Defaults to `None` (random).
        placement: `"dataset"` (per-sample, XLA-compiled; for tf.data) or
            `"model"` (vectorized; inside the model). Defaults to
            `"dataset"`.
        allow_cpu_fallback: run transforms we have no TF op for in
            albumentations on the CPU (never on a TPU). Defaults to `False`.
        jit_compile: compile the `"dataset"` form with XLA when every op
            allows it (inside a model, the train step's `jit_compile`
            decides). Defaults to `True`.
        compose_geometric: sample consecutive geometric ops (affine, grid,
            optical, elastic) once, at their composed map, instead of
            once each. Defaults to `True`.
        gray_once: in the `"dataset"` form, transform a batch whose images
            have all channels equal (grayscale stored as RGB) on one
            channel and repeat the result, where every op treats channels
            alike: the same output at a third of the image resampling.
            Defaults to `True`.

    Call arguments:
        data: a dict with "images" (batch, height, width, channels) in
            [0, 1] and optionally "segmentation_masks" (batch, height,
            width, classes); other keys pass through. A bare image tensor is
            accepted too. Images may come as stored, uint8 or uint16
            (scaled to [0, 1] as `tf.image.convert_image_dtype` does,
            returned float32). Binary masks may come packed instead, as
            the records store them: "packed_masks" (batch, height, width, 1)
            uint8, bit k = class k, with `mask_classes`; they come back
            unpacked as "segmentation_masks" float32.
        training: augment when true, else return `data` unchanged.
            Defaults to `True` (as Keras' augmentation layers).
        mask_classes: the classes of "packed_masks" (up to 8).

    Example:

    >>> aug = Augmenter([{"__class_fullname__": "HorizontalFlip", "p": 0.5}],
    ...                 seed=1)
    >>> out = aug({"images": images, "segmentation_masks": masks})
    """

    # `call(..., seed=)` takes the data pipeline's per-step seed.
    takes_step_seed = True
    # `call` takes "packed_masks" with `mask_classes`, and uint8 / uint16
    # images (scaled to [0, 1] float32).
    takes_stored_forms = True

    def __init__(self, transforms, seed=None, placement="dataset",
                 allow_cpu_fallback=False, jit_compile=True,
                 compose_geometric=True, gray_once=True, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if placement not in PLACEMENTS:
            raise ValueError(f"Augmenter: `placement` must be one of "
                             f"{PLACEMENTS}. Received: {placement!r}")
        if allow_cpu_fallback and placement == "model":
            raise ValueError(
                "Augmenter: allow_cpu_fallback runs albumentations on the "
                "host CPU, so it needs placement='dataset' (inside the model "
                "it would run on the accelerator). Received: "
                "placement='model'")
        if seed is not None and (isinstance(seed, bool)
                                 or not isinstance(seed, int)):
            raise ValueError(f"Augmenter: `seed` must be an integer or "
                             f"None. Received: {seed!r}")
        # Kept as JSON text: Keras would wrap a dict attribute for tracking.
        self._spec = json.dumps(albumentations.load_spec(transforms),
                                sort_keys=True)
        self.seed = seed
        self.placement = placement
        self.allow_cpu_fallback = bool(allow_cpu_fallback)
        self.jit_compile = bool(jit_compile)
        self.compose_geometric = bool(compose_geometric)
        self.gray_once = bool(gray_once)
        self.tree = albumentations.to_tree(self.transforms,
                                           self.allow_cpu_fallback)
        self._seed_generator = keras.random.SeedGenerator(seed)
        # Keras layers inside the tree get seeds derived from ours and are
        # tracked here so that their state belongs to this layer.
        self._keras_layers = []
        for leaf in self.tree.leaves():
            leaf_seed = None if seed is None else seed * 7919 + leaf.index
            if isinstance(leaf, ops.KerasLayer):
                self._keras_layers.append(leaf.make_layer(leaf_seed))
            elif self.allow_cpu_fallback and leaf_seed is not None:
                from kaggle_tf.augment import cpu_fallback

                if isinstance(leaf, cpu_fallback.AlbumentationsCPU):
                    leaf.transform.set_random_seed(leaf_seed)
        # Inside a model the train step decides about XLA.
        in_dataset = placement == "dataset"
        self._runner = Runner(
            self.tree, per_sample=in_dataset,
            jit_compile=jit_compile and in_dataset, seed=seed,
            cache_key=self._spec, compose_geometric=compose_geometric,
            gray_once=gray_once)
        # No weights depend on the input shape.
        self.built = True

    @property
    def transforms(self):
        """The spec in `A.to_dict` form (a new dict)."""
        return json.loads(self._spec)

    @property
    def xla_compatible(self):
        """Whether every op compiles with XLA (a TPU needs that)."""
        return self.tree.xla_safe

    def __call__(self, data, training=True, seed=None, mask_classes=None,
                 **kwargs):
        if keras.backend.backend() != "tensorflow":
            # In tf.data under another Keras backend (JAX): the ops are
            # TensorFlow's, and `Layer.__call__` would convert the graph
            # tensors into that backend's arrays.
            if self.placement == "model":
                raise ValueError(
                    "Augmenter: placement='model' runs TensorFlow ops in "
                    "the train step, which needs KERAS_BACKEND=tensorflow; "
                    "use placement='dataset' on the "
                    f"{keras.backend.backend()} backend")
            return self.call(data, training=training, seed=seed,
                             mask_classes=mask_classes)
        if seed is not None:
            kwargs["seed"] = seed
        if mask_classes is not None:
            kwargs["mask_classes"] = mask_classes
        return super().__call__(data, training=training, **kwargs)

    def call(self, data, training=True, seed=None, mask_classes=None):
        """`seed`: an int (2,) tensor for this batch (the data pipeline
        passes one per step, so that a resumed run repeats an uninterrupted
        one); None draws the next seed of the augmenter's own state."""
        if not training:
            return from_stored_forms(data, mask_classes)
        if seed is None and self.placement != "dataset":
            seed = self._seed_generator.next()
        # Without a seed: the runner's atomic counter, safe under parallel
        # tf.data maps.
        return self._runner(data, seed, mask_classes=mask_classes)

    def _output_shape(self, shape):
        height, width = self.tree.output_size(shape[1], shape[2])
        return (shape[0], height, width, shape[3])

    def compute_output_shape(self, input_shape, mask_classes=None):
        if isinstance(input_shape, dict):
            out = dict(input_shape)
            if PACKED_MASKS in out:
                shape = out.pop(PACKED_MASKS)
                out["segmentation_masks"] = tuple(shape[:3]) + (mask_classes,)
            for key in ("images", "segmentation_masks"):
                if key in out:
                    out[key] = self._output_shape(out[key])
            return out
        return self._output_shape(input_shape)

    def compute_output_spec(self, data, training=True, seed=None,
                            mask_classes=None):
        def spec(key, tensor):
            shape, dtype = tensor.shape, tensor.dtype
            if key == "images" and dtype in ("uint8", "uint16"):
                dtype = "float32"  # scaled to [0, 1]
            if key == PACKED_MASKS:
                key, dtype = "segmentation_masks", "float32"
                shape = tuple(shape[:3]) + (mask_classes,)
            if key in ("images", "segmentation_masks"):
                shape = self._output_shape(shape)
            return key, keras.KerasTensor(shape, dtype=dtype)

        if isinstance(data, dict):
            return dict(spec(key, value) for key, value in data.items())
        return spec("images", data)[1]

    def get_config(self):
        config = super().get_config()
        config.update({
            "transforms": self.transforms,
            "seed": self.seed,
            "placement": self.placement,
            "allow_cpu_fallback": self.allow_cpu_fallback,
            "jit_compile": self.jit_compile,
            "compose_geometric": self.compose_geometric,
            "gray_once": self.gray_once,
        })
        return config


def from_stored_forms(data, mask_classes):
    """`data` with its "packed_masks" (if any) unpacked to
    "segmentation_masks" float32 of `mask_classes` channels, and integer
    images scaled to [0, 1] float32: what augmenting returns, unaugmented.
    """
    if not isinstance(data, dict):
        return base.float_images(data)
    out = dict(data)
    if "images" in out:
        out["images"] = base.float_images(out["images"])
    if PACKED_MASKS in out:
        out["segmentation_masks"] = packing.unpack(
            tf.convert_to_tensor(out.pop(PACKED_MASKS)), mask_classes,
            tf.float32)
    return out

"""CPU ONLY: albumentations itself, for transforms we have no TF op for.

This is the one module where `tf.numpy_function` appears, and it lives
outside `augment.ops` (the pure-TF ops) on purpose: nothing imports it
unless a spec asks for `allow_cpu_fallback=True` and has a transform
without a TF op. The config refuses the option with
`augment.placement="model"` or `train.strategy="tpu"`, where the op would
have to run on the accelerator. An op built here
runs albumentations in Python on the host CPU, sample by sample: it does
not run on a TPU, cannot be part of an XLA-compiled step, blocks the
`tf.data` worker on the GIL and needs albumentations installed. It is used
only when a spec has a transform or an argument with no TF equivalent and
`allow_cpu_fallback=True` was passed; a warning says so.

Example:

>>> AlbumentationsCPU({"__class_fullname__": "CLAHE", "p": 0.5})
"""

import copy
import warnings

import numpy as np
import tensorflow as tf

from kaggle_tf.augment.ops.base import Op


class AlbumentationsCPU(Op):
    """One albumentations transform run through `tf.numpy_function`.

    Args:
        spec: the transform's dict in `A.to_dict` format (its `p` is used
            as this op's probability; albumentations then always applies).
        seed: integer seed for albumentations' generator, or None.
    """

    name = "AlbumentationsCPU"

    def __init__(self, spec, seed=None):
        super().__init__(spec.get("p", 0.5))
        try:
            import albumentations as A
        except ImportError:  # pragma: no cover - test extra installs it
            raise ValueError(
                f"{spec.get('__class_fullname__')}: the CPU fallback needs "
                "albumentations (pip install albumentations).") from None
        self.spec = copy.deepcopy(spec)
        inner = dict(self.spec, p=1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.transform = A.Compose(
                    [A.from_dict({"transform": inner})], p=1.0, seed=seed)
            except Exception as e:  # albumentations raises many types
                raise ValueError(
                    f"{spec.get('__class_fullname__')}: albumentations "
                    f"cannot build it: {e}") from None
        warnings.warn(
            f"{spec.get('__class_fullname__')} runs in albumentations on the "
            "CPU (tf.numpy_function): it will not run on a TPU or inside an "
            "XLA-compiled step, and it slows the input pipeline.",
            UserWarning, stacklevel=3)

    @property
    def xla_safe(self):
        return False

    def _run(self, images, masks):
        out_images, out_masks = [], []
        for i in range(images.shape[0]):
            kwargs = {"image": images[i]}
            if masks is not None:
                kwargs["mask"] = masks[i]
            result = self.transform(**kwargs)
            if result["image"].shape != images[i].shape:
                raise ValueError(
                    f"{self.spec.get('__class_fullname__')} changed the "
                    f"image shape {images[i].shape} -> "
                    f"{result['image'].shape}; a batch needs one shape.")
            out_images.append(result["image"].astype(np.float32))
            if masks is not None:
                out_masks.append(np.asarray(result["mask"], np.float32))
        out_images = np.stack(out_images)
        if masks is None:
            return out_images
        return out_images, np.stack(out_masks)

    def apply(self, data, params):
        images = data["images"]
        out = dict(data)
        if "masks" in data:
            new_images, new_masks = tf.numpy_function(
                self._run, [images, data["masks"]],
                [tf.float32, tf.float32], stateful=True)
            new_masks.set_shape(data["masks"].shape)
            out["masks"] = new_masks
        else:
            new_images = tf.numpy_function(
                lambda x: self._run(x, None), [images], tf.float32,
                stateful=True)
        new_images.set_shape(images.shape)
        out["images"] = new_images
        return out

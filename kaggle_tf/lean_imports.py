"""`import tensorflow` (and Keras on TensorFlow) without JAX.

TensorFlow's `tf.lite` imports JAX when it is installed (for TFLite's
converter of JAX functions, `tensorflow/lite/python/util.py`), so every
TensorFlow process on a machine that has JAX (Kaggle's images do) carries
it: ~120 MB resident and ~0.4 s of import that a process training on the
TensorFlow backend never uses (a U-Net ResNet34 training step at
256x1600 peaks at ~4 GB, so it is 3% of the peak).

`import kaggle_tf` installs `SkipUnusedJax`, an import
finder that answers "not installed" for `jax` only when that module of
TensorFlow asks, or Keras' Orbax checkpoint callback while Keras runs on
another backend (it imports JAX for a compatibility shim); both catch
the `ImportError` and go on without it. Any other import of JAX - Keras'
JAX backend, our JAX custom gradients, the user's - finds it as usual.
What TensorFlow loses is `tf.lite.TFLiteConverter.experimental_from_jax`.
Set `KAGGLE_TF_TENSORFLOW_IMPORTS_JAX=1` to leave the imports as they
are.

Example:

>>> import sys
>>> any(isinstance(f, SkipUnusedJax) for f in sys.meta_path)
True
"""

import os
import sys

ENV = "KAGGLE_TF_TENSORFLOW_IMPORTS_JAX"


class SkipUnusedJax:
    """A `sys.meta_path` finder: `jax` is not found when one of the two
    modules that import it for nothing on TensorFlow asks (`skipped`);
    every other lookup goes on to the next finder."""

    def find_spec(self, name, path=None, target=None):
        if name != "jax":
            return None
        importer = _importer()
        if not skipped(importer):
            return None
        raise ModuleNotFoundError(
            f"jax is not imported for {importer} "
            f"(kaggle_tf.lean_imports; {ENV}=1 imports it)", name="jax")


def skipped(importer):
    """Whether the module `importer` goes without JAX: TensorFlow's
    `tensorflow.lite.python.util` (TFLite's JAX converter) always, Keras'
    `keras.src.callbacks.orbax_checkpoint` (a shim for old JAX versions)
    when Keras' backend is not JAX."""
    if importer == "tensorflow.lite.python.util":
        return True
    if importer == "keras.src.callbacks.orbax_checkpoint":
        config = sys.modules.get("keras.src.backend.config")
        return config is not None and config.backend() != "jax"
    return False


def _importer():
    """The module whose code runs the import being looked up."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith("importlib") and name != __name__:
            return name
        frame = frame.f_back
    return None


def install():
    """Adds the finder (once), unless TensorFlow or JAX is imported
    already or `KAGGLE_TF_TENSORFLOW_IMPORTS_JAX=1`. Returns whether it is
    in `sys.meta_path` afterwards."""
    if any(isinstance(f, SkipUnusedJax)
           for f in sys.meta_path):
        return True
    if (os.environ.get(ENV, "") == "1" or "tensorflow" in sys.modules
            or "jax" in sys.modules):
        return False
    sys.meta_path.insert(0, SkipUnusedJax())
    return True

"""kaggle_tf.lean_imports: TensorFlow imports without JAX; JAX still
imports wherever it is asked for."""

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="needs JAX installed")


def _run(code, **env):
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        cwd=ROOT, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_tensorflow_imports_without_jax_and_jax_still_imports():
    code = """
import sys
import kaggle_tf
import tensorflow as tf
import keras
before = "jax" in sys.modules
util = sys.modules["tensorflow.lite.python.util"]
import jax
print(before, util._jit is None, float(jax.numpy.ones(3).sum()),
      float(tf.reduce_sum(tf.ones(3))))
"""
    assert _run(code, KERAS_BACKEND="tensorflow") == "False True 3.0 3.0"


def test_tensorflow_imports_jax_when_asked():
    code = """
import sys
import kaggle_tf
import tensorflow
print("jax" in sys.modules)
"""
    assert _run(code, KAGGLE_TF_TENSORFLOW_IMPORTS_JAX="1") == "True"


def test_nothing_changes_once_tensorflow_or_jax_is_imported():
    code = """
import sys
import tensorflow
import kaggle_tf
from kaggle_tf import lean_imports
print("jax" in sys.modules, lean_imports.install())
"""
    assert _run(code) == "True False"


def test_jax_backend_is_unaffected():
    """With Keras on JAX the model code imports JAX after TensorFlow (the
    data layer's); a U-Net trains a step."""
    code = """
import numpy as np
import kaggle_tf
import tensorflow
import keras
from kaggle_tf.models import Unet
model = Unet("resnet18", classes=1, input_shape=(32, 32, 3))
model.compile(keras.optimizers.SGD(1e-3), "mse")
loss = model.train_on_batch(np.ones((1, 32, 32, 3), "float32"),
                            np.ones((1, 32, 32, 1), "float32"))
print(keras.backend.backend(), bool(np.isfinite(loss)))
"""
    assert _run(code, KERAS_BACKEND="jax") == "jax True"

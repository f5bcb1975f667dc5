"""Helpers shared by the model tests."""

import json
import os
import subprocess
import sys

import numpy as np


def randomize(model, seed=0, std=0.2):
    """Random values for every variable (BN variances positive)."""
    rng = np.random.RandomState(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "variance" in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, std, shape)
        variable.assign(value.astype(variable.dtype))
    return model


def trainable_count(model):
    """Number of trainable parameters of a Keras model."""
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def features_like(full, name):
    """timm's features_only model holding `full`'s weights.

    A features_only model flattens module paths (`stages.0` -> `stages_0`,
    `features.denseblock1` -> `features_denseblock1`), so keys are matched
    with `_` and `.` taken as equal.
    """
    import timm

    features = timm.create_model(name, pretrained=False,
                                 features_only=True).eval()
    dotted = {k.replace("_", "."): v for k, v in full.state_dict().items()}
    features.load_state_dict(
        {k: dotted[k.replace("_", ".")] for k in features.state_dict()})
    return features


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

ALLOCATOR_PREAMBLE = f"""
import os, sys, json
os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
sys.path.insert(0, {ROOT!r})
import numpy as np, tensorflow as tf, keras
tf.config.threading.set_inter_op_parallelism_threads(1)

# Bytes the allocator holds above the state at the peak of one
# `train_on_batch`, after `warmup` steps (tracing, slots, compiling).
def step_transient(model, x, y, warmup=2):
    for _ in range(warmup):
        model.train_on_batch(x, y)
    state = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    model.train_on_batch(x, y)
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - state
"""


def allocator_probe(body, timeout=300):
    """Runs `body` in a fresh process with TensorFlow's pooled CPU
    allocator (whose statistics `tf.config.experimental.get_memory_info`
    reads; one inter-op thread; `step_transient(model, x, y)` defined) and
    returns the JSON its last line prints."""
    out = subprocess.run([sys.executable, "-c", ALLOCATOR_PREAMBLE + body],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])

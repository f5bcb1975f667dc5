"""Fixtures for model tests: timm / smp references with random weights.

Slow tests run with `--run-slow` (the repository's conftest).
"""

import os
import sys

import numpy as np
import pytest
from torch_refs import randomize_batch_norm

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Loading triton's LLVM after TensorFlow's crashes the process (timm
# imports torch._dynamo, which probes for triton). These CPU tests never
# need triton, so make it unimportable (torch then reports no triton).
if "triton" not in sys.modules:
    sys.modules["triton"] = None


@pytest.fixture
def torch_ref():
    """`torch`, with one thread (the suite shares two cores)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield torch
    torch.set_num_threads(threads)


@pytest.fixture
def timm_features(torch_ref):
    """`fn(name, **kw) -> timm features_only model` with random BN stats."""
    timm = pytest.importorskip("timm")

    def make(name, **kwargs):
        model = timm.create_model(name, pretrained=False, features_only=True,
                                  **kwargs)
        return randomize_batch_norm(model).eval()

    return make


@pytest.fixture
def smp_model(torch_ref):
    """`fn(arch, **kw) -> smp model` on `tu-test_resnet`, 2 classes, eval
    mode, random BN stats."""
    smp = pytest.importorskip("segmentation_models_pytorch")

    def make(arch, **kwargs):
        model = getattr(smp, arch)("tu-test_resnet", encoder_weights=None,
                                   classes=2, **kwargs)
        return randomize_batch_norm(model).eval()

    return make


@pytest.fixture
def timm_model(torch_ref):
    """`fn(name, **kw) -> full timm model` (with its classifier) in eval
    mode, random BN stats."""
    timm = pytest.importorskip("timm")

    def make(name, **kwargs):
        model = timm.create_model(name, pretrained=False, **kwargs)
        return randomize_batch_norm(model).eval()

    return make


def run_torch(model, images):
    """Runs a torch model on NHWC numpy images; returns NHWC numpy."""
    import torch

    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(
            images.transpose(0, 3, 1, 2))))

    def back(t):
        t = t.numpy()
        return t.transpose(0, 2, 3, 1) if t.ndim == 4 else t

    if isinstance(out, (list, tuple)):
        return [back(t) for t in out]
    return back(out)


@pytest.fixture
def to_nhwc():
    return run_torch


def images(shape, seed=0, batch=2):
    return np.random.RandomState(seed).randn(batch, *shape).astype("float32")


@pytest.fixture
def random_images():
    return images


@pytest.fixture
def mixed_precision():
    """Runs the test under the mixed_float16 policy, then float32 again."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")

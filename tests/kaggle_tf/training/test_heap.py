"""kaggle_tf.training.heap: freed heap pages returned while compiling."""

import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from kaggle_tf.training import heap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

pytestmark = pytest.mark.skipif(not heap.available(),
                                reason="no glibc malloc_trim")


def test_trim_returns_freed_pages_that_free_keeps():
    """200 MB of 1 KiB blocks freed below a block still in use: glibc keeps
    them resident (they are not at the heap's top), `trim()` hands them
    back. In a fresh process, so that the heap is only this."""
    code = f"""
import ctypes, sys
sys.path.insert(0, {ROOT!r})
from kaggle_tf.training import heap
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
blocks = []
for _ in range(200_000):
    p = libc.malloc(1024)
    libc.memset(p, 1, 1024)
    blocks.append(p)
keep = libc.malloc(1024)  # above them: free() cannot shrink the heap
for p in blocks:
    libc.free(p)
before = rss()
assert heap.trim()
print(before, rss())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = (float(v) for v in out.stdout.split())
    assert before - after > 150, (before, after)


def test_trimmer_runs_between_start_and_stop():
    with heap.trimming(interval=0.02) as trimmer:
        assert trimmer.running
        time.sleep(0.3)
    assert not trimmer.running
    during = trimmer.trims
    assert during >= 3  # at least a few periodic trims plus the final one
    time.sleep(0.1)
    assert trimmer.trims == during  # stopped
    trimmer.stop()  # stopping twice is harmless
    assert trimmer.trims == during


def test_callback_trims_through_the_first_batches_and_evaluation():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    callback = heap.TrimHeapWhileCompiling(batches=2, interval=0.01)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(("train", batch, callback.trimmer.running))

        def on_test_batch_begin(self, batch, logs=None):
            seen.append(("test", batch, callback.trimmer.running))

    x = np.random.RandomState(0).rand(16, 4).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model.fit(x, y, batch_size=4, epochs=2, validation_data=(x[:8], y[:8]),
              callbacks=[callback, Spy()], verbose=0)
    train = [(b, r) for kind, b, r in seen if kind == "train"]
    test = [(b, r) for kind, b, r in seen if kind == "test"]
    # Epoch 1: batches 0 and 1 trimmed, 2 and 3 not; epoch 2: none.
    assert train == [(0, True), (1, True), (2, False), (3, False)] + [
        (b, False) for b in range(4)]
    # Each evaluation's first batch trimmed, its second not.
    assert test == [(0, True), (1, False)] * 2
    assert not callback.trimmer.running
    assert callback.trimmer.trims >= 3  # stops trim once each

"""Freed heap memory handed back to the system around the compiling steps.

The first step of `fit` traces the training function and, with XLA,
compiles it; the compiler's working memory (~300 MB for a U-Net ResNet34)
is freed into glibc's heap, which keeps it resident. The step then runs and
touches its own buffers on top, so the process' peak holds both. A thread
that calls glibc's `malloc_trim(0)` every fraction of a second while such a
step runs returns the freed pages before the step's buffers are touched
(benchmarks/README.md, "Training memory vs smp": a U-Net ResNet34 at
256x1600, batch 4 peaks at 4273 -> 3967 MB with XLA, 4992 -> 4555 MB
without). Later steps allocate no compiler memory, so the thread stops
after them; trimming costs CPU time (~3% when it runs throughout).

Nothing happens where glibc's `malloc_trim` is missing (macOS, Windows,
musl).

Example:

>>> with trimming():
...     model.train_on_batch(x, y)      # traces, compiles, runs
"""

import contextlib
import ctypes
import ctypes.util
import threading

import keras

INTERVAL = 0.2  # seconds between trims while a compiling step runs


def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def available():
    """Whether this process' C library can return freed heap memory."""
    return _TRIM is not None


def trim():
    """Returns the heap's freed pages to the system now; False if the C
    library cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class Trimmer:
    """A daemon thread that calls `trim()` every `interval` seconds between
    `start()` and `stop()` (which trims once more). Counts its trims in
    `trims`."""

    def __init__(self, interval=INTERVAL):
        self.interval = float(interval)
        self.trims = 0
        self._stop = threading.Event()
        self._thread = None

    @property
    def running(self):
        return self._thread is not None

    def start(self):
        if self._thread is not None or not available():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="kaggle_tf-heap-trim")
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            trim()
            self.trims += 1

    def stop(self):
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        if trim():
            self.trims += 1


@contextlib.contextmanager
def trimming(interval=INTERVAL):
    """Trims the heap every `interval` seconds inside the block, and once
    at its end."""
    trimmer = Trimmer(interval)
    trimmer.start()
    try:
        yield trimmer
    finally:
        trimmer.stop()


class TrimHeapWhileCompiling(keras.callbacks.Callback):
    """`Trimmer` running through the first `batches` training batches (the
    trace and compile of the training function) and the first batch of
    each evaluation (the test function's), and a trim at each epoch's end.

    Args:
        batches: training batches to trim through. Defaults to `2`.
        interval: seconds between trims. Defaults to `INTERVAL`.
    """

    def __init__(self, batches=2, interval=INTERVAL):
        super().__init__()
        self.batches = int(batches)
        self.trimmer = Trimmer(interval)
        self._seen = 0

    def on_train_begin(self, logs=None):
        self._seen = 0
        self.trimmer.start()

    def on_train_batch_end(self, batch, logs=None):
        self._seen += 1
        if self._seen == self.batches:
            self.trimmer.stop()

    def on_test_begin(self, logs=None):
        self.trimmer.start()

    def on_test_batch_end(self, batch, logs=None):
        self.trimmer.stop()

    def on_epoch_end(self, epoch, logs=None):
        trim()

    def on_train_end(self, logs=None):
        self.trimmer.stop()

"""Binary masks packed as one uint8 channel, a bit per class.

Geometric ops move masks with nearest sampling, which only copies values:
resampling one uint8 channel moves every class at once, at a quarter of the
bytes of one float32 channel, instead of one gather per class. The runner
packs binary masks of up to `MAX_CLASSES` classes before the tree runs and
unpacks them after (`packs_masks` on every node says whether a tree allows
it); other masks run as they are.

Example:

>>> packed = pack(masks)                 # (b, h, w, 4) 0/1 -> (b, h, w, 1)
>>> same = unpack(packed, 4, tf.float32)
"""

import tensorflow as tf

MAX_CLASSES = 8
DTYPE = tf.uint8


def is_packed(x):
    """Whether a mask tensor is a packed one."""
    return x.dtype == DTYPE


def is_binary_fill(fill):
    """Whether a mask fill (a number, a list of them, or None) is 0 / 1,
    so that it has a packed form."""
    if fill is None:
        return True
    values = fill if isinstance(fill, (list, tuple)) else [fill]
    return all(not isinstance(v, bool) and isinstance(v, (int, float))
               and v in (0, 1) for v in values)


def packed_fill(fill):
    """The packed value of a 0 / 1 mask fill: a number fills every class
    (all bits), a list one class each."""
    if isinstance(fill, (list, tuple)):
        return sum(1 << c for c, v in enumerate(fill) if v == 1)
    return (1 << MAX_CLASSES) - 1 if fill == 1 else 0


def pack(masks):
    """(..., classes) 0 / 1 masks -> (..., 1) uint8, bit c = class c."""
    classes = masks.shape[-1]
    weights = tf.constant([1 << c for c in range(classes)], tf.int32)
    bits = tf.cast(masks > 0.5, tf.int32) * weights
    return tf.cast(tf.reduce_sum(bits, axis=-1, keepdims=True), DTYPE)


def unpack(packed, classes, dtype):
    """(..., 1) uint8 -> (..., classes) 0 / 1 of `dtype`."""
    shifts = tf.constant(list(range(classes)), DTYPE)
    bits = tf.bitwise.bitwise_and(tf.bitwise.right_shift(packed, shifts),
                                  tf.constant(1, DTYPE))
    return tf.cast(bits, dtype)


def is_binary(masks):
    """A scalar bool: every value is 0 or 1."""
    return tf.reduce_all(tf.equal(masks, 0.0) | tf.equal(masks, 1.0))

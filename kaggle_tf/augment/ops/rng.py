"""Stateless random draws that agree with and without XLA.

One seed (an int32 vector of 2) is drawn per augmenter call; each op folds
in its own index, and each draw inside an op folds in a key. Floats are made
from full-range integer draws, because TensorFlow's float draws differ
between XLA and the classic kernels for the same seed while the integer
bits agree.

Example:

>>> seed = tf.constant([1, 2], tf.int32)
>>> u = uniform(fold(seed, 3), "angle", [8], -45.0, 45.0)
"""

import zlib

import tensorflow as tf

ALG = "philox"
_MANTISSA = 1 << 24


def key_id(key):
    """A stable int32 for a draw's name (or the int itself)."""
    if isinstance(key, int):
        return key
    return zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


def fold(seed, *keys):
    """Folds names or ints into a seed; returns a new int32 seed of 2."""
    for key in keys:
        seed = tf.random.experimental.stateless_fold_in(
            seed, key_id(key), alg=ALG)
    return seed


def bits(seed, key, shape):
    """Full-range int32 draws."""
    return tf.random.stateless_uniform(
        shape, fold(seed, key), minval=None, maxval=None, dtype=tf.int32,
        alg=ALG)


def uniform(seed, key, shape, minval=0.0, maxval=1.0):
    """Uniform floats in [minval, maxval); minval/maxval may be tensors."""
    raw = tf.bitwise.bitwise_and(bits(seed, key, shape), _MANTISSA - 1)
    u = tf.cast(raw, tf.float32) * (1.0 / _MANTISSA)
    return minval + (maxval - minval) * u


def bernoulli(seed, key, shape, p):
    """True with probability `p`."""
    return uniform(seed, key, shape) < p


def randint(seed, key, shape, low, high):
    """Integers uniform in [low, high] (both inclusive), int32."""
    low = tf.cast(low, tf.float32)
    high = tf.cast(high, tf.float32)
    u = uniform(seed, key, shape)
    value = tf.floor(low + u * (high - low + 1.0))
    return tf.cast(tf.minimum(value, high), tf.int32)


def normal(seed, key, shape):
    """Standard normal floats (Box-Muller on two uniform draws)."""
    u1 = 1.0 - uniform(seed, (key_id(key) + 1) & 0x7FFFFFFF, shape)
    u2 = uniform(seed, (key_id(key) + 2) & 0x7FFFFFFF, shape)
    return tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos(6.283185307179586 * u2)


def categorical(seed, key, shape, weights):
    """Indices drawn with probability proportional to `weights`, int32."""
    weights = tf.constant(weights, tf.float32)
    edges = tf.cumsum(weights / tf.reduce_sum(weights))[:-1]
    u = uniform(seed, key, shape)
    return tf.reduce_sum(tf.cast(u[..., None] >= edges, tf.int32), axis=-1)

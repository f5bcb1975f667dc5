"""Kaggle RLE decoding in pure TensorFlow ops, for `tf.data` pipelines.

The twin of `kaggle_tf.rle.decode` (same conventions, same result), built
from `tf.strings.split`, `tf.strings.to_number`, a scatter of +1/-1 at run
starts/ends and a cumulative sum, so it runs inside `Dataset.map` and
`tf.function` without Python callbacks. Malformed strings fail with
`tf.errors.InvalidArgumentError` whose message says what is wrong and quotes
the string.

Example:

>>> mask = decode_tf(tf.constant("2 2 11 1"), 3, 4)
>>> mask.numpy()
array([[0, 0, 0, 0],
       [1, 0, 0, 1],
       [1, 0, 0, 0]], dtype=uint8)
"""

import tensorflow as tf

CONVENTIONS = ("severstal", "siim")


def _check(condition, message, text):
    return tf.debugging.Assert(condition, [message, "Received:", text],
                               summarize=1)


def decode_tf(rle, height, width, convention="severstal"):
    """Decodes one RLE string tensor into a `(height, width)` uint8 mask.

    Args:
        rle: scalar string tensor. `""` and `"nan"` mean an empty mask; so
            does `"-1"` (or `" -1"`) for `"siim"`.
        height: image height (Python int or scalar integer tensor).
        width: image width (Python int or scalar integer tensor).
        convention: `"severstal"` (absolute 1-based starts) or `"siim"`
            (each start relative to the end of the previous run). Defaults
            to `"severstal"`.

    Returns:
        uint8 tensor of 0/1 with shape `(height, width)`, equal to
        `kaggle_tf.rle.decode(rle, (height, width), convention)`.

    Raises:
        ValueError: unknown `convention`.
        tf.errors.InvalidArgumentError: (when run) a non-integer value, an
            odd number of values, a start below 1 (severstal) or an offset
            below 0 (siim), a length below 1, unsorted or overlapping runs,
            or a run past the image.

    Example:

    >>> ds = tf.data.Dataset.from_tensor_slices(["1 2 7 1", "-1"])
    >>> ds = ds.map(lambda s: decode_tf(s, 3, 4, convention="siim"))
    >>> [int(m.numpy().sum()) for m in ds]
    [3, 0]
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"`convention` must be one of {CONVENTIONS}. "
                         f"Received: convention={convention!r}")
    text = tf.strings.strip(tf.convert_to_tensor(rle, tf.string))
    empty = tf.logical_or(tf.equal(text, ""),
                          tf.equal(tf.strings.lower(text), "nan"))
    if convention == "siim":
        empty = tf.logical_or(empty, tf.equal(text, "-1"))
    text = tf.where(empty, tf.constant(""), text)
    tokens = tf.strings.split(text)
    digits = tf.reduce_all(tf.strings.regex_full_match(tokens, "[0-9]+"))
    n = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    with tf.control_dependencies([
            _check(digits, "RLE values must be non-negative integers.", text),
            _check(tf.equal(tf.size(tokens) % 2, 0),
                   "an RLE needs start/length pairs, got an odd number of "
                   "values.", text)]):
        pairs = tf.reshape(tf.strings.to_number(tokens, tf.int64), [-1, 2])
    firsts, lengths = pairs[:, 0], pairs[:, 1]
    if convention == "severstal":
        starts = firsts - 1  # 0-based
        first_ok = _check(tf.reduce_all(firsts >= 1),
                          "RLE starts are 1-based, so must be >= 1.", text)
    else:
        starts = tf.cumsum(firsts + lengths) - lengths
        first_ok = tf.no_op()
    ends = starts + lengths
    checks = [
        first_ok,
        _check(tf.reduce_all(lengths >= 1), "RLE lengths must be >= 1.",
               text),
        _check(tf.reduce_all(starts[1:] >= ends[:-1]),
               "RLE runs must be sorted and must not overlap.", text),
        _check(tf.reduce_all(ends <= n),
               "an RLE run ends past the image.", text),
    ]
    with tf.control_dependencies(checks):
        ones = tf.ones_like(starts, tf.int32)
        delta = tf.math.unsorted_segment_sum(
            tf.concat([ones, -ones], 0), tf.concat([starts, ends], 0), n + 1)
    flat = tf.cast(tf.cumsum(delta[:-1]), tf.uint8)
    mask = tf.transpose(tf.reshape(flat, tf.stack(
        [tf.cast(width, tf.int64), tf.cast(height, tf.int64)])))
    static = [tf.get_static_value(v) if tf.is_tensor(v) else int(v)
              for v in (height, width)]
    if None not in static:
        mask = tf.ensure_shape(mask, [int(v) for v in static])
    return mask

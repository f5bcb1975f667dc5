"""Features <-> `tf.train.Example`, and the bit-packed mask PNG.

Masks of K classes are stored as one single-channel PNG whose bit k is
class k + 1, so classes may overlap and an empty mask costs a few bytes.
The reader unpacks it with `tf.bitwise.bitwise_and`.

TensorFlow is imported only by `to_example` / `from_example`, so worker
processes that only pack masks never load it.

Example:

>>> import numpy as np
>>> masks = np.zeros((2, 3, 4), bool); masks[0, 0, 0] = masks[0, 0, 2] = 1
>>> unpack_mask(pack_mask(masks), 4)[0, 0].tolist()
[True, False, True, False]
"""

import io

import numpy as np
from PIL import Image

from tfrecords_tools import schema


def pack_mask(masks) -> bytes:
    """`(height, width, classes)` bools -> PNG bytes, bit k = class k.

    Up to 8 classes give an 8-bit PNG, up to 16 a 16-bit one.
    """
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (height, width, classes). "
                         f"Received shape: {masks.shape}")
    dtype = schema.mask_dtype(masks.shape[-1])
    # Bit k of byte k // 8 is class k; the bytes read as little-endian.
    packed = np.packbits(masks, axis=-1, bitorder="little")
    if dtype == "uint16":
        packed = np.pad(packed, ((0, 0), (0, 0), (0, 2 - packed.shape[-1])))
        packed = packed[..., 0].astype(np.uint16) | (
            packed[..., 1].astype(np.uint16) << 8)
    else:
        packed = np.ascontiguousarray(packed[..., 0])
    buf = io.BytesIO()
    # A 2-D uint8 array becomes an "L" image, uint16 an "I;16" one.
    Image.fromarray(packed).save(buf, format="PNG")
    return buf.getvalue()


def unpack_mask(data: bytes, classes: int) -> np.ndarray:
    """PNG bytes -> `(height, width, classes)` bools (numpy reference)."""
    with Image.open(io.BytesIO(data)) as im:
        packed = np.asarray(im).astype(np.int64)
    bits = 1 << np.arange(classes)
    return (packed[..., None] & bits) > 0


def to_example(features: dict):
    """A features dict (schema keys -> values) -> `tf.train.Example`.

    Values may be scalars or lists; strings are UTF-8 encoded. The type of
    each key comes from `schema.TYPES`.

    Raises:
        KeyError: a key that `schema.TYPES` does not define.
    """
    import tensorflow as tf

    feature = {}
    for key in sorted(features):
        if key not in schema.TYPES:
            raise KeyError(f"feature {key!r} is not in "
                           "tfrecords_tools.schema.TYPES")
        value = features[key]
        values = list(value) if isinstance(value, (list, tuple,
                                                   np.ndarray)) else [value]
        kind = schema.TYPES[key]
        if kind == schema.BYTES:
            values = [v.encode("utf-8") if isinstance(v, str) else bytes(v)
                      for v in values]
            feature[key] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=values))
        elif kind == schema.INT64:
            feature[key] = tf.train.Feature(
                int64_list=tf.train.Int64List(value=[int(v)
                                                     for v in values]))
        else:
            feature[key] = tf.train.Feature(
                float_list=tf.train.FloatList(value=[float(v)
                                                     for v in values]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize(features: dict) -> bytes:
    """`to_example(features)` as bytes, with map keys sorted.

    Protobuf maps serialize in an unspecified order that can change from
    one process to the next; sorted keys make a record's bytes a pure
    function of its features (reruns and resumed runs compare equal).
    """
    return to_example(features).SerializeToString(deterministic=True)


def from_example(serialized: bytes) -> dict:
    """Serialized `tf.train.Example` -> {key: list of values} (numpy-side).
    """
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized)
    out = {}
    for key, feat in example.features.feature.items():
        kind = feat.WhichOneof("kind")
        out[key] = list(getattr(feat, kind).value)
    return out

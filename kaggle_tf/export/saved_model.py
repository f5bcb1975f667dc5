"""Writing SavedModels for TF Serving: versions, atomic saves, decoding.

The shared leaf of the exporters (`export.images`, `export.sequence`):
`save` writes `out_dir/<version>/` (TF Serving's layout: numbered
versions, the newest served) under a temporary name renamed when
complete; `decode` turns encoded image bytes into the float images the
data pipeline makes.

Example:

>>> next_version("exports/steel")                # doctest: +SKIP
2
"""

import os

import keras
import tensorflow as tf

from kaggle_tf.data import records

INPUT_BYTES = "image_bytes"
INPUT_IMAGES = "images"


def next_version(out_dir):
    """1 + the largest numeric version folder in `out_dir` (1 if none)."""
    if not tf.io.gfile.exists(out_dir):
        return 1
    versions = [int(n.rstrip("/")) for n in tf.io.gfile.listdir(out_dir)
                if n.rstrip("/").isdigit()]
    return max(versions, default=0) + 1


def decode(image_bytes, size, channels):
    """`(batch,)` encoded images -> `(batch, H, W, C)` float32 in [0, 1].

    Decodes as the data pipeline does (`kaggle_tf.data.records`), then
    resizes bilinearly to `size` where an image has another size.
    """
    h, w = size

    def one(data):
        image = records.decode_image(data, channels)
        shape = tf.shape(image)
        image = tf.cond(
            tf.logical_and(tf.equal(shape[0], h), tf.equal(shape[1], w)),
            lambda: image,
            lambda: tf.image.resize(image, (h, w), method="bilinear"))
        return tf.ensure_shape(image, (h, w, channels))

    return tf.map_fn(one, image_bytes,
                     fn_output_signature=tf.TensorSpec((h, w, channels),
                                                       tf.float32))


def save(variables, signatures, out_dir, version):
    """Saves the signatures (and the variables they read) as
    `out_dir/<version>/`, under a temporary name renamed when complete.

    Raises:
        FileExistsError: the version folder exists.
    """
    final = os.path.join(out_dir, str(version))
    if tf.io.gfile.exists(final):
        raise FileExistsError(f"{final} exists; versions are immutable")
    root = tf.Module()
    root.ensemble_variables = variables
    for name, fn in signatures.items():
        setattr(root, name, fn)
    tmp = os.path.join(out_dir, f".tmp-{version}-{os.getpid()}")
    tf.io.gfile.makedirs(out_dir)
    try:
        tf.saved_model.save(root, tmp, signatures=signatures)
        tf.io.gfile.rename(tmp, final)
    finally:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.rmtree(tmp)
    keras.backend.clear_session()
    return final

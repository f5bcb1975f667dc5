"""Plain-numpy references for the steel tests (re-derived, not imported)."""

import csv
import glob
import os

import numpy as np


def rle_decode(text, h, w):
    """Absolute, 1-based, column-major RLE -> (h, w) bool."""
    flat = np.zeros(h * w, bool)
    values = [int(v) for v in text.split()]
    for start, length in zip(values[0::2], values[1::2]):
        flat[start - 1:start - 1 + length] = True
    return flat.reshape(w, h).T


def truth_masks(raw, h, w):
    """{image_id: (h, w, 4) bool} for every train image, from train.csv."""
    ids = [os.path.basename(p)
           for p in glob.glob(os.path.join(raw, "train_images", "*.jpg"))]
    masks = {i: np.zeros((h, w, 4), bool) for i in ids}
    with open(os.path.join(raw, "train.csv"), newline="") as f:
        for row in csv.DictReader(f):
            k = int(row["ClassId"]) - 1
            masks[row["ImageId"]][..., k] |= rle_decode(
                row["EncodedPixels"], h, w)
    return masks


def read_records(records_dir, split="train"):
    """{id: {key: values}} of every record of `split`."""
    import tensorflow as tf

    from tfrecords_tools import encode
    from tfrecords_tools import schema

    files = sorted(glob.glob(os.path.join(str(records_dir),
                                          f"{split}-*-of-*.tfrec")))
    out = {}
    for r in tf.data.TFRecordDataset(files).as_numpy_iterator():
        ex = encode.from_example(r)
        out[ex[schema.ID][0].decode()] = ex
    return out


def raw_records(records_dir, split="train"):
    """[(file name, [serialized records])] in shard order."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(str(records_dir),
                                          f"{split}-*-of-*.tfrec")))
    return [(os.path.basename(p),
             list(tf.data.TFRecordDataset(p).as_numpy_iterator()))
            for p in files]

"""Which TFRecord shard is damaged, once reading one has failed.

`kaggle_tf.data.records.shard_files` remembers the shards it hands to
tf.data; when a read fails with a `DataLossError` (which names no file),
the command's error path (`kaggle_tf.cli`) calls `find_damaged()` to name
the shard.

Example:

>>> remember(["data/records/steel/train-f0-00000.tfrec"])  # doctest: +SKIP
>>> find_damaged()                                          # doctest: +SKIP
('data/records/steel/train-f0-00000.tfrec', 'corrupted record at 1024')
"""

import re

_REMEMBERED = []


def remember(files) -> None:
    """Notes shard paths about to be read (most recent last)."""
    for path in files:
        path = str(path)
        if path in _REMEMBERED:
            _REMEMBERED.remove(path)
        _REMEMBERED.append(path)


def remembered() -> list:
    return list(_REMEMBERED)


def check(path):
    """None when every record of `path` reads with a valid checksum, else
    the reason (first line of TensorFlow's message)."""
    import tensorflow as tf

    try:
        ds = tf.data.TFRecordDataset(path)
        for _ in ds:
            pass
    except (tf.errors.DataLossError, tf.errors.NotFoundError,
            tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
        text = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\]", "",
                      e.message or str(e)).strip()
        return text.splitlines()[0].strip() if text else type(e).__name__
    return None


def find_damaged(files=None):
    """(path, reason) of the first damaged shard in `files` (default: the
    remembered ones), or None."""
    for path in (remembered() if files is None else files):
        reason = check(path)
        if reason is not None:
            return path, reason
    return None

"""TFRecords -> `tf.data`: folds, decoding, sample rate, batches.

- `records`: the manifest, shard lists and decoders (JPEG/PNG, bit-packed
  masks) over the keys of `tfrecords_tools.schema`;
- `tasks/<task>.py`: each competition's parse spec and decode;
- `pipeline`: `make_dataset(cfg, folds, training, ...)`,
  `count_records(cfg, folds, split)`, `to_keras(ds, cfg)`;
- `sampling`: the sliding sample rate of non-empty examples.

Submodules are imported explicitly (`from kaggle_tf.data import
pipeline`), so importing the package stays cheap.
"""

"""Per-task record parsing for `kaggle_tf.data.pipeline`.

`get(task)` imports `kaggle_tf.data.tasks.<task>`, which provides:

- `CLASSES`: class names (K = label width), `KIND`: "segmentation",
  "classification" or "sequence" (as the converter plugin).
- `features(split) -> dict`: the `tf.io.parse_single_example` spec, keyed
  by `tfrecords_tools.schema` constants; must include `schema.FOLD`.
- `decode(parsed, cfg, split, manifest) -> dict`: one parsed record -> one
  example in the fixed vocabulary: `images` float32 `(H, W, C)` in [0, 1]
  at `cfg.data.image_size` (bilinear), for train records the targets
  `segmentation_masks` float32 0/1 `(H, W, K)` (nearest) and/or `labels`
  float32 `(K,)`, plus `id` (string) and `fold` (int64). Static shapes,
  TensorFlow ops only (no py_function: the pipeline runs on TPU hosts).
- `expand(parsed, cfg, split) -> tf.data.Dataset` (optional): when one
  record holds several examples (an ICH series -> its slices), the parsed
  examples it yields, still encoded; `decode` then takes each of them.

Example:

>>> from kaggle_tf.data import tasks
>>> tasks.get("steel").CLASSES
('1', '2', '3', '4')
"""

import importlib

from tfrecords_tools import competitions

# One task list: the converter's plugins (tfrecords_tools.competitions).
TASKS = competitions.names()


def names() -> tuple:
    return TASKS


def get(task: str):
    """The reader module of `task`; an unknown name lists the choices."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choices: "
                         f"{', '.join(TASKS)}")
    module = importlib.import_module(f"kaggle_tf.data.tasks.{task}")
    missing = [a for a in ("CLASSES", "KIND", "features", "decode")
               if not hasattr(module, a)]
    if missing:
        raise ValueError(f"kaggle_tf.data.tasks.{task} lacks "
                         f"{', '.join(missing)} (see kaggle_tf.data.tasks)")
    return module

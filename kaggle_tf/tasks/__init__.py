"""Competition plugins: one module per task, everything that differs.

`get(task)` returns the plugin of a task (a `base.Task`): its classes and
kind, how its records decode, its Kaggle metric (numpy and streaming) and
direction, its raw mask size and RLE convention, its submission rows and
the post-processing that `kaggle_tf.tune` searches. The task names are
the modules of `tfrecords_tools.competitions` (the one list, shared with
the converter and the config schema); each has a plugin here of the same
name.

A new competition is three things: `tfrecords_tools/competitions/<task>.py`
(raw files -> records), `kaggle_tf/tasks/<task>.py` (this contract, see
`base`), and its configs.

Example:

>>> from kaggle_tf import tasks
>>> tasks.get("steel").metric, tasks.higher_is_better("rsna_ich")
('mean_dice', False)
"""

import importlib
import os

from kaggle_tf import files
from kaggle_tf.tasks.base import KAGGLE_METRIC
from kaggle_tf.tasks.base import Task
from kaggle_tf.tasks.base import TuneError
from tfrecords_tools import competitions

__all__ = ["KAGGLE_METRIC", "Task", "TuneError", "get", "higher_is_better",
           "mask_size", "metrics", "names", "score"]

_PLUGINS = {}


def names() -> tuple:
    """Every task name, as `tfrecords_tools.competitions.names()`."""
    return competitions.names()


def get(task):
    """The plugin of `task` (a name, or a plugin returned as it is).

    Raises:
        ValueError: an unknown task (the message lists the choices), or a
            plugin module without its `TASK`.
    """
    if isinstance(task, Task):
        return task
    if task not in _PLUGINS:
        if task not in names():
            raise ValueError(f"Unknown task {task!r}; the choices are "
                             f"{', '.join(names())}. Received: task={task!r}")
        module = importlib.import_module(f"kaggle_tf.tasks.{task}")
        plugin = getattr(module, "TASK", None)
        if not isinstance(plugin, Task) or plugin.name != task:
            raise ValueError(f"kaggle_tf.tasks.{task} must define TASK, a "
                             f"kaggle_tf.tasks.base.Task named {task!r}")
        converter = competitions.get(task)
        if (plugin.kind != converter.KIND
                or tuple(plugin.classes) != tuple(converter.CLASSES)):
            raise ValueError(
                f"kaggle_tf.tasks.{task} and tfrecords_tools.competitions."
                f"{task} disagree on the kind or the classes: "
                f"{plugin.kind!r} / {converter.KIND!r}")
        _PLUGINS[task] = plugin
    return _PLUGINS[task]


def score(task, truth, probs, cfg=None) -> float:
    """`task`'s Kaggle metric on out-of-fold predictions.

    Segmentation and HPA predictions are binarized first (`probs > t`, `t`
    per class from `cfg.inference.thresholds`, 0.5 without a config);
    min area and the SIIM triplet are not applied here. A classifier on a
    segmentation task (Severstal's gate) gets the macro F1 of presence.

    Example:

    >>> import numpy as np
    >>> score("protein", np.array([[1, 0], [0, 1]]),
    ...       np.array([[0.9, 0.2], [0.4, 0.3]]))  # F1 1 and 0
    0.5
    """
    return get(task).score(truth, probs, cfg)


def higher_is_better(task) -> bool:
    """Whether a larger value of `task`'s metric is better."""
    return get(task).higher_is_better


def metrics(task, cfg=None) -> list:
    """The Keras metrics to compile for `task` (and `cfg`'s model); the
    first is named "kaggle_metric", so Keras logs `val_kaggle_metric`."""
    return get(task).metrics(cfg)


def mask_size(cfg):
    """`(H, W)` of the submitted masks for `cfg`, or None when its model
    predicts no masks: the raw images' size as the records' manifest
    recorded it, else Kaggle's fixed size."""
    task = get(cfg.task)
    if not task.predicts_masks(cfg):
        return None
    path = os.path.join(cfg.data.records_dir, "manifest.json")
    manifest = None
    if os.path.exists(path):
        manifest = files.read_json(path, hint="convert the raw data again")
    return task.mask_size(manifest)

"""The metric registry: task -> its streaming Kaggle metric.

`build(task, cfg)` returns the list given to `model.compile(metrics=...)`;
its first metric is the task's Kaggle metric, named "kaggle_metric", so
Keras logs `kaggle_metric` and `val_kaggle_metric` (the checkpoint monitor
of `callbacks.monitor`).
"""

from typing import Callable
from typing import Dict

import keras

from kaggle_tf.metrics import streaming

KAGGLE_METRIC = "kaggle_metric"
# Tasks scored on masks; a classifier there predicts per-class presence.
SEGMENTATION_TASKS = ("steel", "siim")

METRICS: Dict[str, Callable[..., keras.metrics.Metric]] = {}


def register_metric(task):
    """Registers `build_fn(cfg) -> Metric` as `task`'s Kaggle metric."""
    def wrap(build_fn):
        if task in METRICS:
            raise ValueError(f"a metric for {task!r} is already registered")
        METRICS[task] = build_fn
        return build_fn
    return wrap


def names():
    """The tasks that have a Kaggle metric."""
    return sorted(METRICS)


def _threshold(cfg):
    if cfg is None or getattr(cfg, "inference", None) is None:
        return 0.5
    values = [float(t) for t in (cfg.inference.thresholds or [0.5])]
    return values[0] if len(values) == 1 else values


def _from_logits(cfg):
    return True if cfg is None else bool(cfg.loss.from_logits)


@register_metric("steel")
def _steel(cfg):
    return streaming.MeanDice(threshold=_threshold(cfg),
                              from_logits=_from_logits(cfg),
                              name=KAGGLE_METRIC)


@register_metric("siim")
def _siim(cfg):
    threshold = _threshold(cfg)
    if isinstance(threshold, list):
        threshold = threshold[0]
    return streaming.SiimDice(threshold=threshold,
                              from_logits=_from_logits(cfg),
                              name=KAGGLE_METRIC)


@register_metric("protein")
def _protein(cfg):
    classes = 28 if cfg is None else int(cfg.model.classes)
    return streaming.F1Macro(num_classes=classes,
                             threshold=_threshold(cfg),
                             from_logits=_from_logits(cfg),
                             name=KAGGLE_METRIC)


@register_metric("rsna_ich")
def _rsna_ich(cfg):
    return streaming.RsnaIchLogLoss(from_logits=_from_logits(cfg),
                                    name=KAGGLE_METRIC)


@register_metric("rsna_lumbar")
def _rsna_lumbar(cfg):
    return streaming.RsnaLumbarLogLoss(from_logits=_from_logits(cfg),
                                       name=KAGGLE_METRIC)


def _presence(cfg):
    """Macro F1 of per-class presence labels (a gate's classifier)."""
    return streaming.F1Macro(num_classes=int(cfg.model.classes),
                             threshold=_threshold(cfg),
                             from_logits=_from_logits(cfg),
                             name=KAGGLE_METRIC)


def build(task, cfg=None):
    """The metrics to compile for `task`; the first is "kaggle_metric".

    Thresholds come from `cfg.inference.thresholds` and `from_logits` from
    `cfg.loss.from_logits` (0.5 and True without a config); HPA's number
    of classes from `cfg.model.classes` (28). A classifier on a
    segmentation task (Severstal's empty/non-empty gate) learns presence
    labels: its "kaggle_metric" is their macro F1, as
    `kaggle.score` computes it.

    Args:
        task: "steel", "siim", "protein", "rsna_ich" or "rsna_lumbar".
        cfg: a `Config`, or None.

    Returns:
        A list of `keras.metrics.Metric`.

    Example:

    >>> [m.name for m in build("steel")]
    ['kaggle_metric']
    """
    if task not in METRICS:
        raise ValueError(f"Unknown task {task!r}; the choices are "
                         f"{', '.join(names())}. Received: task={task!r}")
    if cfg is not None and task in SEGMENTATION_TASKS and (
            cfg.model.arch == "classifier"):
        return [_presence(cfg)]
    return [METRICS[task](cfg)]

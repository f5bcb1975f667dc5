"""Kaggle metrics with two faces: exact numpy functions (`metrics.kaggle`,
the reference for out-of-fold scores) and streaming Keras metrics
(`metrics.streaming`) that accumulate the same quantity over an epoch.

`build(task, cfg)` returns the metrics to compile; the first is named
"kaggle_metric", so Keras logs `val_kaggle_metric`.
"""

from kaggle_tf.metrics import kaggle
from kaggle_tf.metrics import streaming
from kaggle_tf.metrics.kaggle import f1_macro
from kaggle_tf.metrics.kaggle import higher_is_better
from kaggle_tf.metrics.kaggle import mean_dice
from kaggle_tf.metrics.kaggle import rsna_ich_log_loss
from kaggle_tf.metrics.kaggle import rsna_lumbar_log_loss
from kaggle_tf.metrics.kaggle import score
from kaggle_tf.metrics.kaggle import siim_dice
from kaggle_tf.metrics.registry import KAGGLE_METRIC
from kaggle_tf.metrics.registry import METRICS
from kaggle_tf.metrics.registry import build
from kaggle_tf.metrics.registry import names
from kaggle_tf.metrics.registry import register_metric
from kaggle_tf.metrics.streaming import F1Macro
from kaggle_tf.metrics.streaming import MeanDice
from kaggle_tf.metrics.streaming import RsnaIchLogLoss
from kaggle_tf.metrics.streaming import RsnaLumbarLogLoss
from kaggle_tf.metrics.streaming import SiimDice

__all__ = ["F1Macro", "KAGGLE_METRIC", "METRICS", "MeanDice",
           "RsnaIchLogLoss", "RsnaLumbarLogLoss", "SiimDice", "build",
           "f1_macro", "higher_is_better", "kaggle", "mean_dice", "names",
           "register_metric", "rsna_ich_log_loss", "rsna_lumbar_log_loss",
           "score", "siim_dice", "streaming"]

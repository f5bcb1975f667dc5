"""Kaggle metrics with two faces: exact numpy functions (`metrics.kaggle`,
the reference for out-of-fold scores) and streaming Keras metrics
(`metrics.streaming`) that accumulate the same quantity over an epoch.

Which metric a competition compiles, named "kaggle_metric" so that Keras
logs `val_kaggle_metric`, is its plugin's choice:
`kaggle_tf.tasks.metrics(task, cfg)`.
"""

from kaggle_tf.metrics import kaggle
from kaggle_tf.metrics import streaming
from kaggle_tf.metrics.kaggle import f1_macro
from kaggle_tf.metrics.kaggle import mean_dice
from kaggle_tf.metrics.kaggle import rsna_ich_log_loss
from kaggle_tf.metrics.kaggle import rsna_lumbar_log_loss
from kaggle_tf.metrics.kaggle import siim_dice
from kaggle_tf.metrics.streaming import F1Macro
from kaggle_tf.metrics.streaming import MeanDice
from kaggle_tf.metrics.streaming import RsnaIchLogLoss
from kaggle_tf.metrics.streaming import RsnaLumbarLogLoss
from kaggle_tf.metrics.streaming import SiimDice

__all__ = ["F1Macro", "MeanDice", "RsnaIchLogLoss", "RsnaLumbarLogLoss",
           "SiimDice", "f1_macro", "kaggle", "mean_dice",
           "rsna_ich_log_loss", "rsna_lumbar_log_loss", "siim_dice",
           "streaming"]

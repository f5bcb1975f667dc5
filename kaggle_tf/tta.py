"""The old import path of `kaggle_tf.inference.tta` (kept working)."""

from kaggle_tf.inference.tta import MODES
from kaggle_tf.inference.tta import Activation
from kaggle_tf.inference.tta import Merge
from kaggle_tf.inference.tta import TTATransform
from kaggle_tf.inference.tta import wrap

__all__ = ["MODES", "Activation", "Merge", "TTATransform", "wrap"]

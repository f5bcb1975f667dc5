"""Post-processing: probabilities -> binary masks / labels, tuned on OOF.

    probs (N, H, W, C)
      -> thresholds.apply     per-class threshold + min area (Severstal)
      -> triplet              top threshold + min area + bottom (SIIM)
      -> gating.apply         classifier gate per class (Severstal)
      -> kaggle_tf.rle / kaggle_tf.submission

`tune` searches those parameters on out-of-fold predictions
(`python -m kaggle_tf.tune`). Everything here is numpy; the TF twins that
run inside an exported SavedModel live in `kaggle_tf.postprocess.tf_ops`.

Example:

>>> import numpy as np
>>> probs = np.array([[0.8, 0.5, 0.6], [0.1, 0.1, 0.9], [0.1, 0.2, 0.1]])
>>> triplet(probs, 0.5, 3, 0.5).tolist()
[[1, 0, 1], [0, 0, 1], [0, 0, 0]]
"""

from kaggle_tf.postprocess import components
from kaggle_tf.postprocess import gating
from kaggle_tf.postprocess import thresholds
from kaggle_tf.postprocess import tune
from kaggle_tf.postprocess.triplet import triplet

__all__ = ["components", "gating", "thresholds", "triplet", "tune"]

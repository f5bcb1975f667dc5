"""kaggle_tf: reproduce and beat winning Kaggle imaging solutions in Keras 3.

The data flow, one package per stage:

    raw Kaggle files (CSV, JPEG/PNG, DICOM)
      -> tfrecords_tools      sharded TFRecords, folds, manifest.json
      -> kaggle_tf.data       tf.data streaming (folds, sample rate)
      -> kaggle_tf.augment    on-device augmentation, pure TF ops
      -> kaggle_tf.models     U-Net / FPN / classifiers / CNN+LSTM
      -> kaggle_tf.losses, kaggle_tf.metrics
      -> kaggle_tf.training   K-fold fit, checkpoints, out-of-fold predictions
      -> kaggle_tf.inference  TTA, fold and checkpoint ensembles
      -> kaggle_tf.postprocess  thresholds, min area, SIIM triplet
      -> kaggle_tf.submission   submission.csv per competition
      -> kaggle_tf.export       SavedModel for TF Serving

Entry points: `python -m kaggle_tf.fit|tune|predict|export|inspect`.
"""

__version__ = "0.1.0"

from kaggle_tf import lean_imports as _lean_imports

_lean_imports.install()

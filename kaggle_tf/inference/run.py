"""`predict(cfg)`: the test set through the predictor of the model family.

Image models (`inference.predict`) ensemble their folds' checkpoints under
TTA and post-process; series models (`inference.sequence`) run each fold's
slice classifier and sequence model over whole series. Both write
`<output_dir>/submission.csv` (and `test_probs.npz`) with
`inference.outputs`. An ensemble config (`ensemble.members`) goes to
`inference.ensemble`: each member alone, blended, post-processed once.
"""

from kaggle_tf.inference import ensemble
from kaggle_tf.inference import predict as image
from kaggle_tf.inference import sequence
from kaggle_tf.models.build import family

# Model family -> its predictor: `predict(cfg, tta, folds, save_probs)`.
PREDICTORS = {"image": image, "series": sequence}


def predictor(cfg):
    """The predictor module of `cfg.model.arch`'s family."""
    return PREDICTORS[family(cfg.model.arch)]


def predict(cfg, tta=None, folds=None, save_probs=None):
    """Predicts the test set; returns the path of `submission.csv`.

    Args:
        cfg: a validated config.
        tta: TTA mode; defaults to `cfg.inference.tta`.
        folds: fold indices; defaults to every trained fold.
        save_probs: also write `test_probs.npz`; None for the family's
            default (classification and series: yes; masks: no).
    """
    if ensemble.is_ensemble(cfg):
        return ensemble.predict(cfg, tta=tta, folds=folds,
                                save_probs=save_probs)
    return predictor(cfg).predict(cfg, tta=tta, folds=folds,
                                  save_probs=save_probs)

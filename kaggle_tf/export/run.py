"""`export(cfg, out_dir)`: the SavedModel of the model family's exporter.

Image models (`export.images`) serve encoded images -> post-processed
masks or labels; series models (`export.sequence`) serve whole series of
HU slices -> per-slice labels. Both write through `export.saved_model`; an ensemble config
(`export.ensemble`) puts every member in one graph.
"""

from kaggle_tf.export import ensemble
from kaggle_tf.export import images
from kaggle_tf.export import sequence
from kaggle_tf.models.build import family

# Model family -> its exporter: `export(cfg, out_dir, tta, folds, version)`.
EXPORTERS = {"image": images, "series": sequence}


def exporter(cfg):
    """The exporter module of `cfg.model.arch`'s family."""
    return EXPORTERS[family(cfg.model.arch)]


def export(cfg, out_dir, tta=None, folds=None, version=None):
    """Writes the config's SavedModel as `out_dir/<version>/`.

    Args:
        cfg: a validated config.
        out_dir: the model's base folder (TF Serving's `--model_base_path`).
        tta: TTA mode; defaults to `cfg.inference.tta`.
        folds: fold indices; defaults to every trained fold.
        version: the version number; defaults to the next free one.

    Returns:
        The path of the version folder.

    Raises:
        FileExistsError: the version folder exists (versions are immutable).
        FileNotFoundError: no trained checkpoints.
    """
    if cfg.ensemble is not None:
        return ensemble.export(cfg, out_dir, tta=tta, folds=folds,
                               version=version)
    return exporter(cfg).export(cfg, out_dir, tta=tta, folds=folds,
                                version=version)

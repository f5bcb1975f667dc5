"""Inference of the RSNA ICH sequence recipe: whole series in, slices out.

For each trained fold K, the fold-K slice classifier
(`model.embedding_model`) and the fold-K sequence model run as one Keras
graph:

    images (B, T, H, W, C), mask (B, T)
      -> TimeFold -> classifier -> {embeddings, logits} -> TimeUnfold
      -> SequenceModel(embeddings, mask, slice_logits) -> sigmoid
    folds merged by `inference.merge` -> probs (B, T, 6), 0 on padding

`predict` runs it over the test series and writes `submission.csv`
(`ID_<sop>_<subtype>,Label`) and `test_probs.npz`; the export
(`kaggle_tf.export`) saves the same graph.

Example:

>>> model = series_ensemble(cfg)                        # doctest: +SKIP
>>> probs = model.predict_on_batch({"images": x, "mask": m})
"""

import os

import keras
import numpy as np

import kaggle_tf.models  # noqa: F401  (registers the custom layers)
from kaggle_tf import checkpoints
from kaggle_tf import layout
from kaggle_tf.data import pipeline
from kaggle_tf.data import records
from kaggle_tf.data import series as series_lib
from kaggle_tf.inference import outputs
from kaggle_tf.inference import tta as tta_lib
from kaggle_tf.models import heads
from kaggle_tf.training import sequence as seq_lib


def fold_paths(cfg, folds=None):
    """[(classifier checkpoint, sequence checkpoint)] of the trained folds.

    Raises:
        FileNotFoundError: no trained sequence fold (or a named one missing).
    """
    run = layout.RunLayout.of(cfg)
    wanted = folds if folds is not None else (
        cfg.inference.folds if cfg.inference.folds is not None
        else range(cfg.data.folds))
    pairs = []
    for k in wanted:
        path = run.checkpoint(k)
        if not os.path.exists(path):
            if folds is not None or cfg.inference.folds is not None:
                raise FileNotFoundError(f"fold {k} has no checkpoint {path}")
            continue
        pairs.append((seq_lib.classifier_checkpoint(cfg, k), path))
    if not pairs:
        raise FileNotFoundError(
            f"no trained sequence folds in {cfg.output_dir}; run "
            f"python -m kaggle_tf.fit --config {cfg.source or 'C'} first")
    return pairs


def series_model(slice_model, sequence_model, name="series_model"):
    """One fold: images + mask -> per-slice probabilities `(B, T, K)`."""
    h, w, c = slice_model.input_shape[1:]
    images = keras.Input((None, h, w, c), name="images")
    mask = keras.Input((None,), name="mask")
    folded = heads.TimeFold(name=f"{name}_fold")(images)
    out = slice_model(folded)
    embeddings = heads.TimeUnfold(name=f"{name}_unfold_embeddings")(
        [out["embeddings"], images])
    logits = heads.TimeUnfold(name=f"{name}_unfold_logits")(
        [out["logits"], images])
    refined = sequence_model({"embeddings": embeddings, "mask": mask,
                              "slice_logits": logits})
    probs = keras.layers.Activation("sigmoid", dtype="float32",
                                    name=f"{name}_sigmoid")(refined)
    return keras.Model({"images": images, "mask": mask}, probs, name=name)


def series_ensemble(cfg, folds=None):
    """The folds' `series_model`s merged by `inference.merge`."""
    seq_lib.check_config(cfg)
    members = []
    for k, (clf_path, seq_path) in enumerate(fold_paths(cfg, folds)):
        slices = seq_lib.slice_model(clf_path, cfg)
        slices.name = f"slice_model_{k}"
        sequence = checkpoints.load_model(seq_path, compile=False)
        sequence.name = f"sequence_{k}"
        members.append(series_model(slices, sequence, name=f"member_{k}"))
    inputs = {"images": keras.Input(members[0].input["images"].shape[1:],
                                    name="images"),
              "mask": keras.Input((None,), name="mask")}
    outs = [m(inputs) for m in members]
    merged = (outs[0] if len(outs) == 1
              else tta_lib.Merge(cfg.inference.merge, name="ensemble")(outs))
    merged = heads.ZeroMaskedSteps(name="zero_padding")(
        [merged, heads.StepMask(name="step_mask")(inputs["mask"])])
    model = keras.Model(inputs, merged, name="series_ensemble")
    model.jit_compile = False
    return model


def predict(cfg, tta=None, folds=None, save_probs=None):
    """Predicts the test series; writes `submission.csv`, `test_probs.npz`
    (unless `save_probs` is False).

    Returns:
        The path of `submission.csv`.

    Raises:
        ValueError: a TTA other than "none" (the LSTM sees whole series).
    """
    if tta not in (None, "none"):
        raise ValueError("--tta must be 'none' for model.arch="
                         f"'sequence'. Received: {tta!r}")
    model = series_ensemble(cfg, folds)
    # One series per batch: its slices already make a batch of T images.
    ds = series_lib.make_series_dataset(cfg, None, training=False,
                                        split="test", batch_size=1)
    members = sum(layer.name.startswith("member_") for layer in model.layers)
    print(f"predicting the test series with {members} fold(s) of "
          f"classifier + sequence model, merge {cfg.inference.merge}",
          flush=True)
    bar = keras.utils.Progbar(
        pipeline.count_records(cfg, None, split="test"), unit_name="slice")
    ids, probs = [], []
    for batch in ds:
        out = np.asarray(model.predict_on_batch(
            {"images": batch["images"], "mask": batch["mask"]}), np.float32)
        keep = np.asarray(batch["mask"]) > 0
        probs.append(out[keep])
        ids.extend(records.id_strings(np.asarray(batch["id"])[keep]))
        bar.add(int(keep.sum()))
    probs = np.concatenate(probs)
    path = outputs.write_submission(cfg, dict(zip(ids, probs)))
    if save_probs is not False:
        outputs.save_test_probs(cfg, ids, probs)
    return path

"""A fit with pseudo-labels end to end, through the commands in-process:
fit a tiny steel run (fold 0, 1 epoch) -> predict --save-probs -> pseudo
-> fit again with `data.pseudo_records`. The pseudo-labelled test images
reach the training batches, never the validation batches nor oof.npz,
and their manifest counts them."""

import json
import os

import numpy as np
import pandas as pd
import tensorflow as tf

from kaggle_tf.data import pipeline
from kaggle_tf.data import records

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
CONFIG = os.path.join(REPO, "configs", "steel.json")
BATCH = 4


def overrides(cfg, out, **extra):
    values = {
        "data.raw_dir": cfg.data.raw_dir,
        "data.records_dir": cfg.data.records_dir, "output_dir": str(out),
        "data.image_size": [32, 64], "data.shuffle_buffer": 8,
        "model.encoder": "test_resnet", "model.encoder_weights": None,
        "model.decoder_channels": [8, 8, 8, 4, 4],
        "augment.transforms": None, "schedule.stages": [],
        "train.epochs": 1, "train.batch_size": BATCH,
        "train.jit_compile": False, "train.verbose": 0,
        "callbacks.top_k": 1, "inference.tta": "none",
        "inference.classifier_config": None, **extra}
    args = []
    for k, v in values.items():
        args += ["--set", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    return args


def spy_on_batches(monkeypatch):
    """Records the ids of every training and validation batch the
    trainer draws: {"train": set, "val": set}."""
    seen = {"train": set(), "val": set()}
    real = pipeline.make_dataset

    def make_dataset(cfg, folds, training, **kw):
        if kw.get("split", "train") != "train":
            return real(cfg, folds, training, **kw)
        # With its ids (to_keras keeps images and targets only).
        ds = real(cfg, folds, training, **{**kw, "with_meta": True})
        key = "train" if training else "val"

        def record(ids):
            seen[key].update(records.id_strings(ids.numpy()))
            return ids

        def note(batch):
            ids = tf.py_function(record, [batch["id"]], tf.string)
            return {**batch, "id": tf.ensure_shape(ids, batch["id"].shape)}

        return ds.map(note)

    monkeypatch.setattr(pipeline, "make_dataset", make_dataset)
    return seen


def test_fit_with_pseudo_records_trains_on_them_never_validates(
        steel_records, tmp_path, monkeypatch):
    from kaggle_tf import fit
    from kaggle_tf import predict
    from kaggle_tf import pseudo

    base, _ = steel_records
    first = tmp_path / "first"
    assert fit.main(["--config", CONFIG, "--fold", "0",
                     *overrides(base, first)]) == 0
    assert predict.main(["--config", CONFIG, "--save-probs",
                         *overrides(base, first)]) == 0
    labelled = tmp_path / "pseudo"
    assert pseudo.main(["--config", CONFIG, *overrides(
        base, first, **{"pseudo.records_dir": str(labelled)})]) == 0
    with open(labelled / "manifest.json") as f:
        manifest = json.load(f)
    with np.load(first / "test_probs.npz") as f:
        test_ids = set(f["ids"])
    pseudo_ids = set(manifest["pseudo"]["ids"])
    # pseudo.confidence 0.5 (the default) keeps every test image.
    assert pseudo_ids == test_ids and len(test_ids) == 10
    assert manifest["splits"]["train"]["records"] == len(pseudo_ids)
    assert manifest["splits"]["train"]["records_per_fold"] == {
        "-1": len(pseudo_ids)}

    second = tmp_path / "second"
    seen = spy_on_batches(monkeypatch)
    assert fit.main(["--config", CONFIG, "--fold", "0", *overrides(
        base, second, **{"data.pseudo_records": str(labelled),
                         "data.pseudo_weight": 0.5})]) == 0
    val_ids = set(pd.read_csv(os.path.join(base.data.records_dir,
                                           "folds.csv"))
                  .query("fold == 0")["id"])
    assert seen["train"] & pseudo_ids            # trained on them
    assert not seen["train"] & val_ids
    assert seen["val"] and seen["val"] <= val_ids
    assert not seen["val"] & pseudo_ids          # never validated on them
    with np.load(second / "fold0" / "oof.npz") as f:
        oof_ids = set(f["ids"])
    assert oof_ids == val_ids
    assert not oof_ids & pseudo_ids
    history = pd.read_csv(second / "fold0" / "history.csv")
    assert len(history) == 1

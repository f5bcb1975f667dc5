"""Predictions -> submission rows for each competition, through the
competition's sample_submission.csv (no models: the mapping only)."""

import numpy as np
import pandas as pd
import pytest

from kaggle_tf import rle
from kaggle_tf import submission
from kaggle_tf import tasks


def write(tmp_path, task, sample, predictions):
    name = tasks.get(task).sample_submission
    (tmp_path / name).write_text(sample)
    out = tmp_path / "submission.csv"
    submission.write(task, str(tmp_path), predictions, str(out))
    return pd.read_csv(out, dtype=str, keep_default_na=False)


def test_siim_rows(tmp_path):
    masks = np.zeros((2, 6, 5, 1), np.uint8)
    masks[0, 1:3, 2] = 1
    rows = {}
    tasks.get("siim").add_rows(rows, ["a", "b"], {"masks": masks})
    df = write(tmp_path, "siim", "ImageId,EncodedPixels\nb,-1\na,-1\n", rows)
    assert df.values.tolist() == [["b", "-1"],
                                  ["a", rle.encode(masks[0, ..., 0],
                                                   convention="siim")]]
    np.testing.assert_array_equal(
        rle.decode(df.EncodedPixels[1], (6, 5), convention="siim"),
        masks[0, ..., 0])


def test_protein_rows(tmp_path):
    out = {"probs": np.zeros((2, 28), np.float32),
           "labels": np.zeros((2, 28), np.uint8)}
    out["labels"][0, [0, 25]] = 1
    out["labels"][1, 7] = 1
    rows = {}
    tasks.get("protein").add_rows(rows, ["x", "y"], out)
    df = write(tmp_path, "protein", "Id,Predicted\ny,0\nx,0\n", rows)
    assert df.values.tolist() == [["y", "7"], ["x", "0 25"]]


def test_rsna_ich_rows(tmp_path):
    probs = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.9]], np.float32)
    rows = {}
    tasks.get("rsna_ich").add_rows(rows, ["ID_abc"], {"probs": probs})
    sample = "ID,Label\n" + "".join(
        f"ID_abc_{s},0.5\n" for s in ("any", "epidural", "subdural"))
    df = write(tmp_path, "rsna_ich", sample, rows)
    assert df.Label.astype(float).tolist() == pytest.approx([0.9, 0.1, 0.5])


def test_rsna_lumbar_rows(tmp_path):
    probs = np.random.default_rng(0).uniform(0.1, 1, (1, 75)).astype(
        np.float32)
    rows = {}
    tasks.get("rsna_lumbar").add_rows(rows, ["44036939"], {"probs": probs})
    sample = ("row_id,normal_mild,moderate,severe\n"
              "44036939_spinal_canal_stenosis_l1_l2,0.33,0.33,0.33\n"
              "44036939_right_subarticular_stenosis_l5_s1,0.33,0.33,0.33\n")
    df = write(tmp_path, "rsna_lumbar", sample, rows)
    got = df.iloc[:, 1:].astype(float).values
    table = probs.reshape(25, 3).astype(np.float64)
    want = table[[0, 24]] / table[[0, 24]].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, atol=1e-5)

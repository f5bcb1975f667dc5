"""submission.csv in each competition's exact format.

Every writer takes the competition's `sample_submission.csv`, fills its
value columns from our predictions and keeps its header and row order, so
the file has exactly the ids Kaggle expects. A missing prediction for a row
of the sample is an error, not a silent default.
"""

import math
import os

import numpy as np
import pandas as pd

SAMPLE_SUBMISSION = {
    "steel": "sample_submission.csv",
    "siim": "sample_submission.csv",
    "protein": "sample_submission.csv",
    "rsna_ich": "stage_2_sample_submission.csv",
    "rsna_lumbar": "sample_submission.csv",
}

ICH_SUBTYPES = ("epidural", "intraparenchymal", "intraventricular",
                "subarachnoid", "subdural", "any")
LUMBAR_CONDITIONS = ("spinal_canal_stenosis",
                     "left_neural_foraminal_narrowing",
                     "right_neural_foraminal_narrowing",
                     "left_subarticular_stenosis",
                     "right_subarticular_stenosis")
LUMBAR_LEVELS = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")


def sample_path(task, raw_dir):
    return os.path.join(raw_dir, SAMPLE_SUBMISSION[task])


def read_sample(task, raw_dir):
    path = sample_path(task, raw_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: the competition's sample "
                                "submission is needed to order the rows")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    return df, path


def _missing(path, what):
    raise KeyError(f"{path}: no prediction for {what}")


def fill_steel(sample, path, rles):
    """rles: {(image_id, class_id 1..4): rle string}."""
    out = sample.copy()
    if "ImageId_ClassId" in out.columns:
        keys = [(k.rsplit("_", 1)[0], int(k.rsplit("_", 1)[1]))
                for k in out["ImageId_ClassId"]]
    else:
        keys = list(zip(out["ImageId"], out["ClassId"].astype(int)))
    values = []
    for key in keys:
        if key not in rles:
            _missing(path, f"image {key[0]} class {key[1]}")
        values.append(rles[key])
    out["EncodedPixels"] = values
    return out


def fill_siim(sample, path, rles):
    """rles: {image_id: rle or "-1"}; one row per image."""
    out = sample.drop_duplicates(subset=["ImageId"]).copy()
    values = []
    for key in out["ImageId"]:
        if key not in rles:
            _missing(path, f"image {key}")
        values.append(rles[key] or "-1")
    out["EncodedPixels"] = values
    return out


def fill_protein(sample, path, labels):
    """labels: {id: iterable of class ids}."""
    out = sample.copy()
    values = []
    for key in out["Id"]:
        if key not in labels:
            _missing(path, f"image {key}")
        values.append(" ".join(str(int(c)) for c in sorted(labels[key])))
    out["Predicted"] = values
    return out


def fill_rsna_ich(sample, path, probs):
    """probs: {image_id: 6 probabilities in ICH_SUBTYPES order}."""
    out = sample.copy()
    values = []
    for key in out["ID"]:
        image_id, subtype = key.rsplit("_", 1)
        if image_id not in probs:
            _missing(path, f"image {image_id}")
        values.append(float(probs[image_id][ICH_SUBTYPES.index(subtype)]))
    out["Label"] = values
    return out


def fill_rsna_lumbar(sample, path, probs):
    """probs: {study_id: (25, 3) array, rows in train.csv column order}."""
    out = sample.copy()
    rows = []
    for row_id in out["row_id"]:
        study, rest = row_id.split("_", 1)
        if study not in probs:
            _missing(path, f"study {study}")
        condition, level = rest[:-6], rest[-5:]
        index = (LUMBAR_CONDITIONS.index(condition) * len(LUMBAR_LEVELS)
                 + LUMBAR_LEVELS.index(level))
        p = np.asarray(probs[study][index], dtype=np.float64)
        rows.append(p / p.sum())
    rows = np.asarray(rows)
    for j, col in enumerate(("normal_mild", "moderate", "severe")):
        out[col] = rows[:, j]
    return out


FILLERS = {
    "steel": fill_steel,
    "siim": fill_siim,
    "protein": fill_protein,
    "rsna_ich": fill_rsna_ich,
    "rsna_lumbar": fill_rsna_lumbar,
}


def write(task, raw_dir, predictions, out_path):
    """Writes `out_path` with the sample's header and rows, atomically.

    Args:
        task: competition name.
        raw_dir: the competition folder holding the sample submission.
        predictions: the task's mapping (see the `fill_*` functions).
        out_path: where to write.

    Returns:
        `out_path`.
    """
    sample, path = read_sample(task, raw_dir)
    df = FILLERS[task](sample, path, predictions)
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    df.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, out_path)
    return out_path


def validate(task, raw_dir, path):
    """Checks a written submission against the sample: header, ids, values.

    Returns the DataFrame; raises ValueError naming what differs.
    """
    sample, sample_file = read_sample(task, raw_dir)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if task == "siim":
        sample = sample.drop_duplicates(subset=["ImageId"])
    if list(df.columns) != list(sample.columns):
        raise ValueError(f"{path}: header {list(df.columns)} differs from "
                         f"{sample_file}: {list(sample.columns)}")
    key = sample.columns[0]
    if list(df[key]) != list(sample[key]):
        raise ValueError(f"{path}: the `{key}` column differs from "
                         f"{sample_file}")
    for col in df.columns[1:]:
        if task in ("rsna_ich", "rsna_lumbar"):
            vals = df[col].astype(float)
            if not ((vals >= 0) & (vals <= 1)).all() or any(
                    math.isnan(v) for v in vals):
                raise ValueError(f"{path}: `{col}` has values outside "
                                 "[0, 1]")
    return df

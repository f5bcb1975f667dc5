"""submission.csv in each competition's exact format.

The competition's plugin (`kaggle_tf.tasks`) fills the value columns;
every writer takes the competition's `sample_submission.csv`, fills its
value columns from our predictions and keeps its header and row order, so
the file has exactly the ids Kaggle expects. A missing prediction for a row
of the sample is an error, not a silent default.
"""

import os

import pandas as pd

from kaggle_tf import tasks


def sample_path(task, raw_dir):
    return os.path.join(raw_dir, tasks.get(task).sample_submission)


def read_sample(task, raw_dir):
    path = sample_path(task, raw_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: the competition's sample "
                                "submission is needed to order the rows")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    return df, path


def write(task, raw_dir, predictions, out_path):
    """Writes `out_path` with the sample's header and rows, atomically.

    Args:
        task: competition name (or its `kaggle_tf.tasks` plugin).
        raw_dir: the competition folder holding the sample submission.
        predictions: the mapping the task's `add_rows` builds.
        out_path: where to write.

    Returns:
        `out_path`.
    """
    sample, path = read_sample(task, raw_dir)
    df = tasks.get(task).fill(sample, path, predictions)
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    df.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, out_path)
    return out_path


def validate(task, raw_dir, path):
    """Checks a written submission against the sample: header, ids, values.

    Returns the DataFrame; raises ValueError naming what differs.
    """
    plugin = tasks.get(task)
    sample, sample_file = read_sample(plugin, raw_dir)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    sample = plugin.submission_rows(sample)
    if list(df.columns) != list(sample.columns):
        raise ValueError(f"{path}: header {list(df.columns)} differs from "
                         f"{sample_file}: {list(sample.columns)}")
    key = sample.columns[0]
    if list(df[key]) != list(sample[key]):
        raise ValueError(f"{path}: the `{key}` column differs from "
                         f"{sample_file}")
    plugin.check_values(df, path)
    return df

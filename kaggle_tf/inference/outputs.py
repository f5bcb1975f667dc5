"""What predictors write: `submission.csv` and `test_probs.npz`.

Both go through a temporary name and a rename, so a killed run never
leaves a file that looks complete.
"""

import os

import numpy as np

from kaggle_tf import layout
from kaggle_tf import submission


def write_submission(cfg, predictions):
    """`<output_dir>/submission.csv` from the task's `add_rows` mapping;
    returns its path."""
    path = layout.RunLayout.of(cfg).path(layout.SUBMISSION)
    os.makedirs(cfg.output_dir, exist_ok=True)
    return submission.write(cfg.task, cfg.data.raw_dir, predictions, path)


def save_test_probs(cfg, ids, probs):
    """Writes `<output_dir>/test_probs.npz` (`ids`, float16 `probs`)."""
    run = layout.RunLayout.of(cfg)
    final = run.path(layout.TEST_PROBS)
    tmp = run.path(f"test_probs.tmp-{os.getpid()}.npz")
    np.savez_compressed(tmp, ids=np.asarray(ids),
                        probs=np.asarray(probs, np.float16))
    os.replace(tmp, final)
    return final

"""Submissions: predictions -> submission.csv in each competition's format.
"""

from kaggle_tf.submission.csv import validate
from kaggle_tf.submission.csv import write

__all__ = ["validate", "write"]

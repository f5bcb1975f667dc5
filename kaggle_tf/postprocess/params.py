"""Per-class parameters: one value for every class, or one per class.

Thresholds are compared in `compute_dtype(probs.dtype)`: float32, or the
probabilities' own precision when it is wider (numpy's promotion rule), in
numpy and in the TF twins alike.
"""

import numpy as np


def compute_dtype(dtype):
    """The dtype thresholds are compared in for probabilities of `dtype`.

    Example:

    >>> compute_dtype(np.float16), compute_dtype(np.float64)
    (dtype('float32'), dtype('float64'))
    """
    return np.result_type(dtype, np.float32)


def per_class(values, classes, name, dtype=np.float32):
    """Broadcasts a scalar or a 1/`classes`-long sequence to `(classes,)`.

    Args:
        values: a number, or a sequence of 1 or `classes` numbers.
        classes: the number of classes (the last axis of the data).
        name: the argument's name, for the error message.
        dtype: the numpy dtype of the result (see `compute_dtype` for
            thresholds). Defaults to float32.

    Returns:
        A `(classes,)` array.

    Raises:
        ValueError: if the length is neither 1 nor `classes`.

    Example:

    >>> per_class(0.5, 3, "thresholds").tolist()
    [0.5, 0.5, 0.5]
    >>> per_class([10, 20], 2, "min_area", np.int64).tolist()
    [10, 20]
    """
    arr = np.asarray(values, dtype=np.float64 if np.issubdtype(
        dtype, np.floating) else dtype).reshape(-1).astype(dtype)
    if arr.size == 1:
        return np.repeat(arr, classes)
    if arr.size != classes:
        raise ValueError(f"`{name}` needs 1 or {classes} values (one per "
                         f"class). Received: {np.asarray(values).tolist()}")
    return arr

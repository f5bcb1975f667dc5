"""Helpers shared by the model tests."""

import numpy as np


def randomize(model, seed=0, std=0.2):
    """Random values for every variable (BN variances positive)."""
    rng = np.random.RandomState(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "variance" in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, std, shape)
        variable.assign(value.astype(variable.dtype))
    return model

"""Toy slice embeddings for the sequence-stage tests."""

import numpy as np


def toy_data(n_series=48, length=8, dim=4, seed=0):
    """Series where every slice's labels say whether ANY slice of its
    series carries the flag (feature 0 = 3): one slice cannot know."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(0, 0.3, (n_series, length, dim)).astype(np.float32)
    flagged = rng.random(n_series) < 0.5
    where = rng.integers(0, length, n_series)
    emb[flagged, where[flagged], 0] = 3.0
    labels = np.repeat(flagged[:, None, None], length, 1)
    labels = np.repeat(labels, 6, 2).astype(np.int8)
    return {
        "ids": np.array([f"s{s}_{i}" for s in range(n_series)
                         for i in range(length)]),
        "series": np.repeat([f"s{s}" for s in range(n_series)], length),
        "index": np.tile(np.arange(length), n_series),
        "fold": np.repeat(np.arange(n_series) % 2, length),
        "embeddings": emb.reshape(-1, dim),
        "logits": np.zeros((n_series * length, 6), np.float32),
        "labels": labels.reshape(-1, 6),
    }

"""Tiny "trained" runs for inference and export tests.

No training: each fold's `best.keras` is a freshly built model with its
own seed, its head scaled so that probabilities spread over (0, 1) like a
trained model's (an untrained head puts them all near 0.5).
"""

import json
import os

import keras
import numpy as np

ENCODER = "test_resnet"
DECODER = [32, 16, 16, 8, 8]


def write_config(cfg, path):
    """`cfg` written as a JSON config file at `path` (returned)."""
    data = cfg.to_dict()
    data.pop("source")
    path.write_text(json.dumps(data))
    return path


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make_config(output_dir, task="steel", arch="unet", classes=4,
                size=(64, 128), channels=3, raw_dir="raw",
                records_dir="records", **inference):
    """A validated config of a tiny model."""
    from kaggle_tf import config

    model = {"arch": arch, "encoder": ENCODER, "classes": classes}
    if arch == "unet":  # FPN takes no decoder_channels
        model["decoder_channels"] = DECODER
    return config.from_dict({
        "task": task, "seed": 0, "output_dir": str(output_dir),
        "data": {"raw_dir": str(raw_dir), "records_dir": str(records_dir),
                 "image_size": list(size), "channels": channels,
                 "folds": 5},
        "model": model,
        "inference": {"batch_size": 2, **inference},
    })


def save_folds(cfg, folds=(0, 1), scale=100.0):
    """Writes `<output_dir>/fold<k>/best.keras`; returns the paths.

    `scale` multiplies the last layer's weights (spreads the logits).
    The model is built as the trainer builds it (the task's model defaults
    and output layout, e.g. RSNA lumbar's series channels and (25, 3)).
    """
    from kaggle_tf.training import image

    paths = []
    for k in folds:
        keras.utils.set_random_seed(100 + k)
        model = image.build_model(cfg)
        head = [layer for layer in model.layers if layer.get_weights()][-1]
        head.set_weights([w * scale for w in head.get_weights()])
        folder = os.path.join(cfg.output_dir, f"fold{k}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "best.keras")
        model.save(path)
        paths.append(path)
    keras.backend.clear_session()
    return paths


def images(n, size=(64, 128), channels=3, seed=0):
    """Smooth random images in [0, 1] (quantized to 8 bits, so that PNG
    encoding is lossless)."""
    rng = np.random.default_rng(seed)
    h, w = size
    low = rng.uniform(0, 1, (n, h // 8 + 1, w // 8 + 1, channels))
    x = np.repeat(np.repeat(low, 8, axis=1), 8, axis=2)[:, :h, :w]
    x = x + rng.normal(0, 0.05, x.shape)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)

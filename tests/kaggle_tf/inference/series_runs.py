"""Tiny "trained" RSNA ICH series runs (slice classifier + sequence model).

No training: each fold's slice classifier and sequence model are freshly
built with a seed of their own and saved where the trainers put them
(`<classifier output_dir>/fold<k>/best.keras`, `<output_dir>/fold<k>/
best.keras`); their last layers are scaled so that probabilities spread
over (0, 1) like a trained model's.
"""

import json
import os

import keras

WINDOWS = [[40, 80], [80, 200], [40, 380]]
SAMPLE_SIZE = 32


def converted_ich(tmp_path_factory, name, seed, n=48):
    """(raw, records) of an RSNA ICH sample of `n` slices, converted with
    the classifier's config (`competition_samples.sample_and_convert`)."""
    from competition_samples import sample_and_convert

    def make(raw, out):
        return ich_config(raw, out, out.parent / "unused", "classifier")

    raw, records, _, _ = sample_and_convert(tmp_path_factory, name,
                                            "rsna_ich", make, n,
                                            SAMPLE_SIZE, seed)
    return raw, records


def ich_config(raw, records, output_dir, arch="sequence", size=SAMPLE_SIZE,
               windows=WINDOWS, embedding_model=None, units=4, seed=0):
    """A validated rsna_ich config (2 folds, series of at most 12: whole)."""
    from kaggle_tf import config

    if arch == "sequence":
        model = {"arch": "sequence", "embedding_model": str(embedding_model),
                 "rnn": "lstm", "units": units, "num_layers": 1,
                 "bidirectional": True, "dropout": 0.0, "classes": 6}
    else:
        model = {"arch": "classifier", "encoder": "test_resnet",
                 "classes": 6, "head": "avg", "activation": "sigmoid"}
    return config.from_dict({
        "task": "rsna_ich", "seed": seed, "output_dir": str(output_dir),
        "data": {"raw_dir": str(raw), "records_dir": str(records),
                 "image_size": [size, size], "channels": len(windows),
                 "windows": windows, "folds": 2, "shard_size": 2,
                 "max_series_length": 12, "shuffle_buffer": 8},
        "model": model,
        "loss": {"name": "weighted_log_loss",
                 "class_weights": [1, 1, 1, 1, 1, 2], "from_logits": True},
        "train": {"batch_size": 2, "jit_compile": False, "verbose": 0},
        "inference": {"tta": "none", "batch_size": 8},
    })


def _scale_last(model, scale):
    layer = [l for l in model.layers if l.get_weights()][-1]
    layer.set_weights([w * scale for w in layer.get_weights()])


def save_series_run(raw, records, root, name, size=SAMPLE_SIZE,
                    windows=WINDOWS, units=4, seed=0, folds=(0, 1)):
    """A classifier run and a sequence run on it; returns the sequence
    config (written as `root/<name>.json` too)."""
    from kaggle_tf import layout
    from kaggle_tf import models
    from kaggle_tf.training import sequence

    clf = ich_config(raw, records, root / f"{name}_cls", "classifier", size,
                     windows, seed=seed)
    cfg = ich_config(raw, records, root / name, "sequence", size, windows,
                     embedding_model=clf.output_dir, units=units, seed=seed)
    for k in folds:
        keras.utils.set_random_seed(1000 * seed + 10 + k)
        classifier = models.build(clf.model, (size, size, len(windows)))
        _scale_last(classifier, 20.0)
        path = layout.RunLayout.of(clf).checkpoint(k)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        classifier.save(path)
        slices = sequence.slice_model(path, cfg)
        dim = slices.output["embeddings"].shape[-1]
        model = sequence.build_model(cfg, dim)
        _scale_last(model, 4.0)
        path = layout.RunLayout.of(cfg).checkpoint(k)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        model.save(path)
    keras.backend.clear_session()
    data = cfg.to_dict()
    data.pop("source")
    (root / f"{name}.json").write_text(json.dumps(data))
    return cfg


def write_ensemble(path, members, weights, merge="mean", **extra):
    """An rsna_ich ensemble config over member config files."""
    path.write_text(json.dumps({
        "task": "rsna_ich", "output_dir": str(path.parent / "blend"),
        "ensemble": {"members": [{"config": str(m), "weight": w}
                                 for m, w in zip(members, weights)],
                     "merge": merge}, **extra}))
    return path

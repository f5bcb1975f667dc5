"""The Kaggle kernel's inference: raw test files -> SavedModel -> submission.

What `inference.ipynb` (written by `python -m kaggle_tf.kernel`) runs, with
TensorFlow, numpy, pandas, Pillow and pydicom only (Keras is TensorFlow's
own dependency; nothing here trains). The test files are read from the
competition's folder as the converter reads them
(`tfrecords_tools.competitions.<task>.list_items` / `encode_item`, in a
thread pool), serialized as the converter's records are and streamed
through the same `tf.data` parse and decode as `kaggle_tf.data.pipeline`
(the task plugin's `decode`), so the images equal those
`kaggle_tf.predict` reads from the test records. Batches go through the
SavedModel's `predict_images` signature (ensemble, TTA and post-processing
in the graph) and the task's `add_rows`; `submission.write` fills the
sample submission.

A series model (`model.arch="sequence"`, RSNA ICH: its SavedModel has
`predict_series`) gets whole series instead: one record per
SeriesInstanceUID with the slices in `ImagePositionPatient` order (the
converter's listing), cut into chunks of `data.max_series_length` and
padded with a mask by `kaggle_tf.data.series.series_batches`, one series
per batch, as `kaggle_tf.inference.sequence.predict` reads the test
records; each real slice's 6 probabilities fill its 6 submission rows.
An RSNA 2024 lumbar model is an image model whose item is a study (its
three MRI series stacked as channels by `encode_item`).

The model folder (`DIR/model` of the kernel command) holds:

    saved_model/      the SavedModel of `kaggle_tf.export`
    config.json       the resolved config (task, data keys, batch size)
    manifest.json     the records' `image_size` (raw size), when known

Example:

>>> result = run("/kaggle/input/steel-model",
...              "/kaggle/input/severstal-steel-defect-detection")
>>> result["path"]                                  # doctest: +SKIP
'submission.csv'
"""

import concurrent.futures
import json
import os
import tempfile
import time

import tensorflow as tf

from kaggle_tf import config as config_lib
from kaggle_tf import submission
from kaggle_tf import tasks
from kaggle_tf.data import records
from kaggle_tf.data import series as series_lib
from tfrecords_tools import competitions
from tfrecords_tools import encode
from tfrecords_tools import schema

SAVED_MODEL = "saved_model"
CONFIG = "config.json"
MANIFEST = "manifest.json"
SIGNATURE = "predict_images"
# The signature of series models (`kaggle_tf.export.sequence`).
SERIES_SIGNATURE = "predict_series"


def load_config(model_dir, raw_dir):
    """The shipped config with `data.raw_dir` set to `raw_dir` and
    `data.records_dir` (where DICOM listings cache their headers) in the
    temporary folder: the kernel's input is read-only."""
    with open(os.path.join(model_dir, CONFIG)) as f:
        data = json.load(f)
    data["data"]["raw_dir"] = str(raw_dir)
    data["data"]["records_dir"] = os.path.join(tempfile.gettempdir(),
                                               "kaggle_tf_records")
    return config_lib.from_dict(data)


def load_manifest(model_dir):
    """`{"image_size": [H, W]}` of the training records, or None."""
    path = os.path.join(model_dir, MANIFEST)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def test_items(cfg):
    """The competition's test items, sorted by id (as the converter)."""
    module = competitions.get(cfg.task)
    return sorted(module.list_items(cfg, "test"), key=lambda it: it.id)


def serialized_records(cfg, items, workers=4):
    """Yields each item's record bytes, as the converter writes them for
    the test split; `workers` threads read and encode ahead."""
    module = competitions.get(cfg.task)

    def one(item):
        features = module.encode_item(item, cfg)
        features[schema.FOLD] = schema.TEST_FOLD
        return encode.serialize(features)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        # Bounded read-ahead: map() would encode every item at once.
        pending = []
        for item in items:
            pending.append(pool.submit(one, item))
            if len(pending) > 2 * workers:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def serialized_dataset(cfg, items, workers=4):
    """`serialized_records` as a `tf.data.Dataset` of strings."""
    return tf.data.Dataset.from_generator(
        lambda: serialized_records(cfg, items, workers),
        output_signature=tf.TensorSpec((), tf.string))


def dataset(cfg, items, batch_size, manifest=None, workers=4):
    """Batches `{"images", "id", "fold"}` of `items`, decoded as
    `kaggle_tf.data.pipeline` decodes the test records."""
    task = tasks.get(cfg.task)
    spec = task.features("test")
    ds = serialized_dataset(cfg, items, workers)
    ds = ds.map(lambda s: tf.io.parse_single_example(s, spec))
    if task.expand is not None:
        ds = ds.flat_map(lambda p: task.expand(p, cfg, "test"))
    ds = ds.map(lambda p: task.decode(p, cfg, "test", manifest),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda e: {k: e[k] for k in ("images", "id")})
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def series_dataset(cfg, items, workers=4):
    """Batches of one series (`kaggle_tf.data.series.series_batches`:
    `images`, `mask`, `id`, ...), chunked and padded as `kaggle_tf.predict`
    reads the test records of a series model."""
    return series_lib.series_batches(cfg, serialized_dataset(cfg, items,
                                                             workers),
                                     training=False, batch_size=1)


def predict_fn(model_dir):
    """The SavedModel's `predict_images` (images -> numpy outputs) or, for
    a series model, its `predict_series` ((images, mask) -> numpy
    outputs); `call.series` says which."""
    loaded = tf.saved_model.load(os.path.join(model_dir, SAVED_MODEL))
    series = SERIES_SIGNATURE in loaded.signatures
    fn = loaded.signatures[SERIES_SIGNATURE if series else SIGNATURE]

    def call(images, mask=None):
        inputs = {"images": images}
        if series:
            inputs["mask"] = mask
        return {k: v.numpy() for k, v in fn(**inputs).items()}

    call.loaded = loaded  # keeps the variables alive
    call.series = series
    return call


def _image_batches(cfg, task, predict, items, batch_size, manifest,
                   predictions):
    """Predicts image batches into `predictions`; yields examples done."""
    for batch in dataset(cfg, items, batch_size, manifest):
        out = predict(batch["images"])
        ids = records.id_strings(batch["id"])
        task.add_rows(predictions, ids, out)
        yield len(ids)


def _series_batches(cfg, predict, items, predictions):
    """Predicts series into `predictions` ({slice id: probabilities}, as
    `kaggle_tf.inference.sequence.predict`); yields slices done."""
    for batch in series_dataset(cfg, items):
        probs = predict(batch["images"], batch["mask"])["probs"]
        keep = batch["mask"].numpy() > 0
        ids = records.id_strings(batch["id"].numpy()[keep])
        predictions.update(zip(ids, probs[keep]))
        yield len(ids)


def run(model_dir, raw_dir, out_path="submission.csv", batch_size=None,
        limit=None, log=print, every=10):
    """Predicts the competition's test files; writes `out_path`.

    Args:
        model_dir: the model folder (see the module docstring).
        raw_dir: the competition's folder (`$KAGGLE_INPUT/<slug>`).
        out_path: where submission.csv goes (None: no file; for timing).
        batch_size: defaults to the config's `inference.batch_size`.
        limit: predict only the first `limit` test items (timing).
        log: where progress lines go (None: silent).
        every: a progress line every `every` batches.

    Returns:
        `{"path", "items", "examples", "seconds", "first_batch_seconds",
        "first_batch_examples", "predictions"}`: the file, the test items
        (images, series, studies) and examples (what the submission has
        rows for: images, slices, studies) predicted, the wall time, the
        time to the first batch (tracing and start-up) and its examples.
    """
    start = time.perf_counter()
    cfg = load_config(model_dir, raw_dir)
    task = tasks.get(cfg.task)
    manifest = load_manifest(model_dir)
    items = test_items(cfg)
    if limit is not None:
        items = items[:limit]
    batch_size = batch_size or cfg.inference.batch_size
    predict = predict_fn(model_dir)
    predictions, examples, first, first_examples = {}, 0, None, 0
    if predict.series:
        batches = _series_batches(cfg, predict, items, predictions)
        unit = "series of at most {} slices".format(
            cfg.data.max_series_length)
    else:
        batches = _image_batches(cfg, task, predict, items, batch_size,
                                 manifest, predictions)
        unit = f"batches of {batch_size}"
    if log:
        log(f"{cfg.task}: {len(items)} test items from {raw_dir}, {unit}")
    for i, n in enumerate(batches):
        examples += n
        if first is None:
            first = time.perf_counter() - start
            first_examples = examples
        if log and (i + 1) % every == 0:
            log(f"  {examples} examples, "
                f"{time.perf_counter() - start:.1f} s")
    path = None
    if out_path is not None:
        path = submission.write(cfg.task, raw_dir, predictions, out_path)
    seconds = time.perf_counter() - start
    if log:
        log(f"{examples} examples of {len(items)} items in {seconds:.1f} s"
            + (f"; wrote {path}" if path else ""))
    return {"path": path, "items": len(items), "examples": examples,
            "seconds": seconds, "first_batch_seconds": first or 0.0,
            "first_batch_examples": first_examples,
            "predictions": predictions}


def time_per_item(model_dir, raw_dir, n=16, batch_size=None):
    """`(seconds per example, examples timed)` in steady state: the wall
    time of the first `n` test items minus the first batch's (loading and
    tracing), over the examples after it. An example is what the
    competition counts (an image; a slice of an RSNA ICH series; a lumbar
    study). Runs on whatever device TensorFlow sees."""
    result = run(model_dir, raw_dir, out_path=None, batch_size=batch_size,
                 limit=n, log=None)
    examples = result["examples"]
    rest = examples - result["first_batch_examples"]
    if rest <= 0:
        return result["seconds"] / max(examples, 1), examples
    per = (result["seconds"] - result["first_batch_seconds"]) / rest
    return max(per, 0.0), examples

"""RSNA ICH stage two: a (Bi)LSTM over the slice classifier's embeddings.

The 2nd-place recipe. A classifier (`configs/rsna_ich.json`) is trained on
single slices first; then, for each fold K:

1. the fold-K classifier embeds every slice of every training series
   (its pre-logit features, `classifier.embedding_model`, and its logits),
   cached in `<output_dir>/fold<K>/embeddings.npz`;
2. a `SequenceModel` runs over each series in slice order
   (`ImagePositionPatient` z, as the records store it) and predicts
   refined per-slice labels; it trains on the other folds' series and is
   scored on fold K's, checkpoints kept by the Kaggle metric;
3. `oof.npz` holds fold K's per-slice probabilities, so the out-of-fold
   file, `metrics.json`, `kaggle_tf.tune` and the submission format are
   the same as the slice classifier's.

`model.embedding_model` names the classifier's `output_dir`; its fold K
checkpoint (`avg.keras` when top-k averaging made one, else `best.keras`)
serves fold K here. The classifier is frozen: at inference the same
classifier and sequence model run as one graph
(`kaggle_tf.inference.sequence`).

Series longer than `data.max_series_length` are cut into consecutive
windows of that length; shorter ones are padded and masked.

With `data.pseudo_records` (pseudo-labelled test series, `kaggle_tf.pseudo`)
the fold-K classifier embeds those series too
(`<output_dir>/fold<K>/pseudo_embeddings.npz`); their windows are drawn
into every training epoch at `data.pseudo_weight` (`SeriesBatches`), never
into fold K's validation windows.

Example:

>>> cfg = config.load("configs/rsna_ich_seq.json")      # doctest: +SKIP
>>> run.run(cfg, "all")     # kaggle_tf.fit dispatches here for arch "sequence"
"""

import copy
import json
import math
import os

import keras
import numpy as np

from kaggle_tf import checkpoints
from kaggle_tf import config as config_lib
from kaggle_tf import layout
from kaggle_tf import models
from kaggle_tf import tasks
from kaggle_tf.data import pipeline
from kaggle_tf.data import records
from kaggle_tf.data import series as series_lib
from kaggle_tf.models import classifier as classifier_lib
from kaggle_tf.training import oof as oof_lib
from kaggle_tf.training import optimizers
from kaggle_tf.training import stages

# Layers that `freeze_encoder` freezes: an image encoder inside the model,
# and the recurrent layers (then only the head trains).
ENCODER_PREFIXES = ("encoder", "rnn_")
# The pseudo-labelled series (`data.pseudo_records`) embedded, per fold.
PSEUDO_EMBEDDINGS = "pseudo_embeddings.npz"


# --- config --------------------------------------------------------------------

def check_config(cfg):
    """Raises a `ConfigError` naming the key when stage two cannot run."""
    if not tasks.get(cfg.task).series:
        raise config_lib.ConfigError(
            "model.arch='sequence' runs over series records (RSNA ICH). "
            f"Received: task={cfg.task!r}")
    if not cfg.model.embedding_model:
        raise config_lib.ConfigError(
            "model.arch='sequence' needs `model.embedding_model`, the "
            "output_dir of the trained slice classifier (e.g. "
            "runs/rsna_ich)")
    if cfg.inference.tta != "none":
        raise config_lib.ConfigError(
            "`inference.tta` must be 'none' for model.arch='sequence' (the "
            f"LSTM sees whole series). Received: {cfg.inference.tta!r}")


def classifier_checkpoint(cfg, fold):
    """The slice classifier's checkpoint for `fold`.

    Raises:
        FileNotFoundError: the classifier has no trained fold `fold`.
    """
    path = layout.RunLayout(cfg.model.embedding_model).checkpoint(fold)
    if os.path.exists(path):
        return path
    raise FileNotFoundError(
        f"model.embedding_model: no trained classifier for fold {fold} in "
        f"{cfg.model.embedding_model} (train it first, e.g. python -m "
        f"kaggle_tf.fit --config configs/rsna_ich.json --fold {fold})")


def slice_model(path, cfg=None):
    """A classifier checkpoint -> model of `{"embeddings", "logits"}`.

    Raises:
        ValueError: the checkpoint's input size differs from
            `cfg.data.image_size` / the number of windows.
    """
    classifier = checkpoints.load_model(path, compile=False)
    if cfg is not None:
        want = (*cfg.data.image_size, _channels(cfg))
        got = tuple(classifier.input_shape[1:])
        if None not in got and tuple(got) != tuple(want):
            raise ValueError(
                f"model.embedding_model: {path} takes images {got} but "
                f"data.image_size and data.windows give {want}")
    embedding = classifier_lib.embedding_model(classifier).output
    return keras.Model(classifier.input,
                       {"embeddings": embedding, "logits": classifier.output},
                       name="slice_model")


def _channels(cfg):
    return len(tasks.get(cfg.task).windows(cfg))


# --- embeddings -----------------------------------------------------------------

def embed_series(cfg, model, folds=None, split="train", batch_size=None,
                 verbose=True, labels_dtype=np.int8):
    """Embeds every slice of the series in `folds` (or the test split).

    Args:
        cfg: the stage-two config (data section as the classifier's).
        model: a `slice_model`.
        folds: fold ids, None for all (and for `split="test"`).
        split: "train" or "test".
        batch_size: slices per forward pass. Defaults to
            `cfg.inference.batch_size`.

    Returns:
        A dict of flat per-slice arrays in series and slice order: `ids`,
        `series`, `index` (position in the series), `fold`,
        `embeddings` (N, D) float32, `logits` (N, 6) float32, `labels`
        (N, 6) `labels_dtype` (int8; float32 keeps soft pseudo-labels).
    """
    batch_size = int(batch_size or cfg.inference.batch_size)
    fold_list = [None] if split == "test" or folds is None else list(folds)
    parts = {k: [] for k in ("ids", "series", "index", "fold", "embeddings",
                             "logits", "labels")}
    total = pipeline.count_records(
        cfg, None if split == "test" else folds, split=split)
    bar = keras.utils.Progbar(total, unit_name="slice") if verbose else None
    for fold in fold_list:
        ds = series_lib.make_series_dataset(
            cfg, None if fold is None else [fold], training=False,
            batch_size=1, split=split)
        for element in ds:
            n = int(np.asarray(element["mask"]).sum())
            images = np.asarray(element["images"][0, :n], np.float32)
            outs = [model.predict_on_batch(images[i:i + batch_size])
                    for i in range(0, n, batch_size)]
            parts["embeddings"].append(np.concatenate(
                [np.asarray(o["embeddings"], np.float32) for o in outs]))
            parts["logits"].append(np.concatenate(
                [np.asarray(o["logits"], np.float32) for o in outs]))
            parts["labels"].append(
                np.asarray(element["labels"][0, :n]).astype(labels_dtype))
            parts["ids"].extend(records.id_strings(element["id"][0, :n]))
            name = records.id_strings(element["series"])[0]
            parts["series"].extend([name] * n)
            parts["index"].append(np.asarray(element["index"][0, :n]))
            parts["fold"].append(np.full(n, -1 if fold is None else fold))
            if bar is not None:
                bar.add(n)
    if not parts["ids"]:
        raise ValueError(f"no {split} series in folds {folds} of "
                         f"{cfg.data.records_dir}")
    out = {"ids": np.asarray(parts["ids"]),
           "series": np.asarray(parts["series"])}
    for key in ("index", "fold", "embeddings", "logits", "labels"):
        out[key] = np.concatenate(parts[key])
    return out


def cached_embeddings(cfg, fold, fold_dir):
    """`embed_series` of every training series with fold `fold`'s
    classifier, cached in `fold_dir/embeddings.npz` (atomic write)."""
    path = os.path.join(fold_dir, layout.EMBEDDINGS)
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    checkpoint = classifier_checkpoint(cfg, fold)
    model = slice_model(checkpoint, cfg)
    print(f"fold {fold}: embedding the training series with {checkpoint}",
          flush=True)
    data = embed_series(cfg, model, list(range(cfg.data.folds)))
    tmp = os.path.join(fold_dir, f"embeddings.tmp-{os.getpid()}.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)
    keras.backend.clear_session()
    return data


def pseudo_embeddings(cfg, fold, fold_dir):
    """The pseudo-labelled series of `data.pseudo_records` embedded by
    fold `fold`'s classifier (fold -1, float32 labels), cached in
    `fold_dir/pseudo_embeddings.npz` for those records (their shards'
    sha256); None without `data.pseudo_records`."""
    where = cfg.data.pseudo_records
    if not where:
        return None
    manifest = records.read_manifest(where)
    key = json.dumps([e["sha256"] for e in
                      manifest["splits"]["train"]["shards"]])
    path = os.path.join(fold_dir, PSEUDO_EMBEDDINGS)
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as f:
            if str(f["source"]) == key:
                return {k: f[k] for k in f.files if k != "source"}
    checkpoint = classifier_checkpoint(cfg, fold)
    model = slice_model(checkpoint, cfg)
    print(f"fold {fold}: embedding the pseudo-labelled series of {where} "
          f"with {checkpoint}", flush=True)
    records_cfg = copy.deepcopy(cfg)
    records_cfg.data.records_dir = where
    data = embed_series(records_cfg, model, None, labels_dtype=np.float32)
    tmp = os.path.join(fold_dir, f"pseudo_embeddings.tmp-{os.getpid()}.npz")
    np.savez(tmp, source=np.asarray(key), **data)
    os.replace(tmp, path)
    keras.backend.clear_session()
    return data


def with_pseudo(cfg, data, extra):
    """(the real and pseudo-labelled slices in one set of arrays, the
    pseudo-labelled series' windows in it); labels become float32."""
    n = len(data["ids"])
    joined = {k: np.concatenate([np.asarray(data[k]), np.asarray(extra[k])])
              for k in ("ids", "series", "index", "fold", "embeddings",
                        "logits")}
    joined["labels"] = np.concatenate([
        np.asarray(data["labels"], np.float32),
        np.asarray(extra["labels"], np.float32)])
    windows = [n + w for w in series_windows(
        extra["series"], extra["index"], int(cfg.data.max_series_length))]
    return joined, windows


# --- series batches -------------------------------------------------------------

def series_windows(series, index, max_length):
    """Slice rows of each series window, in order.

    Args:
        series: (N,) series ids of flat slices (each series contiguous).
        index: (N,) positions in their series.
        max_length: the longest window.

    Returns:
        A list of int arrays of row numbers, one per window of at most
        `max_length` consecutive slices.
    """
    series = np.asarray(series)
    starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    ends = np.r_[starts[1:], len(series)]
    windows = []
    for s, e in zip(starts, ends):
        rows = s + np.argsort(np.asarray(index[s:e]), kind="stable")
        windows.extend(rows[i:i + max_length]
                       for i in range(0, len(rows), max_length))
    return windows


class SeriesBatches(keras.utils.PyDataset):
    """Padded batches of series windows for `SequenceModel`.

    Yields `({"embeddings", "mask", "slice_logits"}, labels, mask)`:
    `(B, T, D)`, `(B, T)`, `(B, T, 6)`, `(B, T, 6)` and the mask again as
    the sample weight, so padded steps count in neither loss nor metrics.
    T is the longest window of all (at most `data.max_series_length`), so
    every batch has the same static shape.

    Args:
        data: the arrays of `embed_series`.
        windows: `series_windows` row lists.
        batch_size: windows per batch.
        shuffle: reshuffle the windows every epoch (epoch e's order is
            seeded by (seed, e), see `set_epoch`).
        seed: the shuffling seed.
        extra_windows: windows of pseudo-labelled series (rows of `data`
            too), drawn into every epoch at `extra_share`.
        extra_share: their share w of an epoch's windows: R real windows
            and round(R w / (1 - w)) pseudo-labelled ones drawn (seeded by
            (seed, epoch); with replacement only when more than there
            are); None: every one once (their share by count); 1: only
            them.
    """

    def __init__(self, data, windows, batch_size, shuffle=False, seed=0,
                 extra_windows=(), extra_share=None):
        super().__init__()
        self.data = data
        self.real = list(windows)
        self.extra = list(extra_windows)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        if not self.extra or extra_share is None:
            self.extra_count = len(self.extra)
        elif extra_share >= 1.0:
            self.real, self.extra_count = [], len(self.extra)
        else:
            self.extra_count = int(round(len(self.real) * extra_share
                                         / (1.0 - extra_share)))
        self.length = max((len(w) for w in self.real + self.extra),
                          default=1)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Orders the windows of `epoch` (and draws its pseudo-labelled
        ones): seeded by (seed, epoch), so a resumed run sees the order
        it would have."""
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = []
        if self.extra_count:
            m = len(self.extra)
            picks = [rng.permutation(m) for _ in range(
                self.extra_count // m)]
            picks.append(rng.permutation(m)[:self.extra_count % m])
            drawn = [self.extra[j] for j in np.concatenate(picks)]
        self.windows = self.real + drawn
        self.order = np.arange(len(self.windows))
        if self.shuffle:
            rng.shuffle(self.order)

    def __len__(self):
        return math.ceil((len(self.real) + self.extra_count)
                         / self.batch_size)

    def rows(self, i):
        """The row lists of batch `i`."""
        picked = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return [self.windows[j] for j in picked]

    def __getitem__(self, i):
        rows = self.rows(i)
        t = self.length
        d = self.data["embeddings"].shape[-1]
        c = self.data["logits"].shape[-1]
        emb = np.zeros((len(rows), t, d), np.float32)
        logits = np.zeros((len(rows), t, c), np.float32)
        labels = np.zeros((len(rows), t, c), np.float32)
        mask = np.zeros((len(rows), t), np.float32)
        for b, r in enumerate(rows):
            emb[b, :len(r)] = self.data["embeddings"][r]
            logits[b, :len(r)] = self.data["logits"][r]
            labels[b, :len(r)] = self.data["labels"][r]
            mask[b, :len(r)] = 1.0
        x = {"embeddings": emb, "mask": mask, "slice_logits": logits}
        return x, labels, mask

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)


def predict_windows(model, batches):
    """Per-slice probabilities of every window: (rows, probs) flat."""
    rows, probs = [], []
    for i in range(len(batches)):
        x, _, mask = batches[i]
        out = np.asarray(model.predict_on_batch(x), np.float32)
        for b, r in enumerate(batches.rows(i)):
            rows.append(np.asarray(r))
            probs.append(_sigmoid(out[b, :len(r)]))
    return np.concatenate(rows), np.concatenate(probs)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


class SeriesKaggleMetric(keras.callbacks.Callback):
    """Puts the Kaggle metric of the validation series into the epoch logs
    (`val_kaggle_metric`), computed on every real slice at once."""

    def __init__(self, batches, task="rsna_ich"):
        super().__init__()
        self.batches = batches
        self.task = task

    def on_epoch_end(self, epoch, logs=None):
        rows, probs = predict_windows(self.model, self.batches)
        truth = self.batches.data["labels"][rows]
        value = tasks.score(self.task, truth, probs)
        if logs is not None:
            logs["val_kaggle_metric"] = float(value)


# --- model ------------------------------------------------------------------------

def build_model(cfg, embedding_dim):
    """The config's `SequenceModel` on embeddings (+ slice logits):
    `models.build` of `cfg.model` with the embeddings' width."""
    return models.build(cfg.model, None, embedding_dim=int(embedding_dim),
                        name="sequence")


def split_windows(cfg, data, fold):
    """(train windows, validation windows) of fold `fold`."""
    max_length = int(cfg.data.max_series_length)
    val = data["fold"] == fold
    train_rows = np.flatnonzero(~val)
    val_rows = np.flatnonzero(val)

    def windows(rows):
        return [rows[w] for w in series_windows(
            data["series"][rows], data["index"][rows], max_length)]

    return windows(train_rows), windows(val_rows)


# --- training ---------------------------------------------------------------------

def train_fold(cfg, fold):
    """Trains the sequence model of fold `fold`; returns its folder.

    The shared stage loop (`training.stages`) runs it: every stage option
    of the image trainer applies (plateau, TensorBoard, resume after a
    kill, `freeze_encoder` (the recurrent layers), loss weights).
    """
    check_config(cfg)
    fold_dir = layout.RunLayout.of(cfg).fold_dir(fold)
    os.makedirs(fold_dir, exist_ok=True)
    data = cached_embeddings(cfg, fold, fold_dir)
    keras.utils.set_random_seed(cfg.seed)
    train_windows, val_windows = split_windows(cfg, data, fold)
    if not train_windows or not val_windows:
        raise ValueError(f"fold {fold}: no training or no validation series "
                         f"in {cfg.data.records_dir}")
    extra, extra_windows = pseudo_embeddings(cfg, fold, fold_dir), []
    if extra is not None:
        # Rows past the real ones: validation (fold `fold`) never sees them.
        data, extra_windows = with_pseudo(cfg, data, extra)
    train = SeriesBatches(data, train_windows, cfg.train.batch_size,
                          shuffle=True, seed=cfg.seed,
                          extra_windows=extra_windows,
                          extra_share=cfg.data.pseudo_weight)
    val = SeriesBatches(data, val_windows, cfg.train.batch_size)
    steps = cfg.train.steps_per_epoch or len(train)
    model = build_model(cfg, data["embeddings"].shape[-1])

    def compile_model(model, stage, lr, loss):
        model.compile(optimizer=optimizers.make_optimizer(cfg, lr),
                      loss=loss, jit_compile=cfg.train.jit_compile)

    def data_for_stage(stage, first_epoch):
        train.set_epoch(first_epoch)
        return stages.StageData(
            train=train, validation=val, steps=steps,
            callbacks=[SeriesKaggleMetric(val, cfg.task)],
            note=f" over {len(train_windows)} series windows"
                 + (f" + {train.extra_count} pseudo-labelled"
                    if extra_windows else ""))

    return stages.fit_stages(cfg, fold, model, fold_dir, compile_model,
                             data_for_stage, ENCODER_PREFIXES)


def evaluate_fold(cfg, fold, fold_dir):
    """Fold `fold`'s per-slice probabilities -> oof.npz, metrics.json."""
    data = cached_embeddings(cfg, fold, fold_dir)
    _, val_windows = split_windows(cfg, data, fold)
    path = layout.RunLayout.of(cfg).checkpoint(fold)
    model = checkpoints.load_model(path, compile=False)
    rows, probs = predict_windows(
        model, SeriesBatches(data, val_windows, cfg.train.batch_size))
    ids, truth = data["ids"][rows], data["labels"][rows]
    oof_lib.save(os.path.join(fold_dir, layout.OOF), ids,
                 probs.astype(np.float16), truth.astype(np.int8))
    score = tasks.score(cfg.task, truth, probs, cfg)
    before = tasks.score(cfg.task, truth, _sigmoid(data["logits"][rows]),
                         cfg)
    result = stages.fold_result(cfg, fold, fold_dir, path, ids, score,
                                slice_classifier_metric=float(before))
    print(f"fold {fold}: slice classifier {before:.5f} -> sequence "
          f"{score:.5f}", flush=True)
    return result

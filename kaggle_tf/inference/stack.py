"""Stacking (HPA's 1st place): a second-level model on out-of-fold probabilities.

The features of an image are the out-of-fold probabilities of every
member run (`stack.members`, their `oof.npz`) and per-image meta-features
computed from the records (`stack.meta_features`):

| name          | per channel c (and pair c < d)                     |
|---------------|----------------------------------------------------|
| `brightness`  | mean of channel c                                   |
| `contrast`    | standard deviation of channel c                     |
| `correlation` | Pearson correlation of channels c and d             |

Nested folds keep every out-of-fold row honest: for outer fold k (the
records' folds, the members' folds) the rows of the other folds are split
into `stack.inner_folds` inner folds; one learner per class is trained on
each inner training part, and fold k's rows are the mean of those inner
models' predictions. No model ever scores a row it was trained on
(`fit_predict` returns which rows each model saw and scored). The test
images get the mean over every outer x inner model, from the members'
`test_probs.npz` (`kaggle_tf.predict --save-probs`, an ensemble's too).

The default learner is LightGBM (`pip install kaggle_tf[stack]`), one
binary model per class; `logistic` (scikit-learn) needs no extra.

Example:

>>> oof, test, trace = fit_predict(x, y, folds, x_test, cfg.stack)
...                                                     # doctest: +SKIP
"""

import os

import numpy as np
from sklearn.linear_model import LogisticRegression

from kaggle_tf import files
from kaggle_tf import layout
from kaggle_tf import tasks
from kaggle_tf.data import pipeline
from kaggle_tf.data import records
from kaggle_tf.inference import outputs
from kaggle_tf.inference import predict as predict_lib
from kaggle_tf.training import oof as oof_lib
from tfrecords_tools import schema

META_FEATURES = ("brightness", "contrast", "correlation")


class StackError(ValueError):
    """Members that cannot be stacked; the message names the file."""


# --- features --------------------------------------------------------------------

def meta_features(images, names=META_FEATURES):
    """(B, H, W, C) images -> (B, F) float32 meta-features, in `names`
    order (each block per channel, or per channel pair)."""
    x = np.asarray(images, np.float64).reshape(len(images), -1,
                                               images.shape[-1])
    mean = x.mean(axis=1)
    std = x.std(axis=1)
    out = []
    for name in names:
        if name == "brightness":
            out.append(mean)
        elif name == "contrast":
            out.append(std)
        elif name == "correlation":
            c = x.shape[-1]
            z = (x - mean[:, None]) / np.maximum(std[:, None], 1e-12)
            pairs = [(i, j) for i in range(c) for j in range(i + 1, c)]
            out.append(np.stack([(z[..., i] * z[..., j]).mean(axis=1)
                                 for i, j in pairs], axis=1)
                       if pairs else np.zeros((len(x), 0)))
        else:
            raise ValueError(f"stack.meta_features: unknown {name!r} (one "
                             f"of {', '.join(META_FEATURES)})")
    if not out:
        return np.zeros((len(x), 0), np.float32)
    return np.concatenate(out, axis=1).astype(np.float32)


def record_meta_features(cfg, split="train"):
    """{id: meta-feature row} of every record of `split`, the images
    decoded as training sees them (`cfg.data.image_size`)."""
    names = list(cfg.stack.meta_features)
    ds = pipeline.make_dataset(cfg, None, training=False, split=split,
                               with_meta=True,
                               batch_size=cfg.inference.batch_size)
    out = {}
    for batch in ds:
        feats = meta_features(np.asarray(batch["images"]), names)
        for i, row in zip(records.id_strings(batch["id"]), feats):
            out[i] = row
    return out


def member_oof(output_dir):
    """(ids, probs, truth) of a member run, sorted by id."""
    ids, probs, truth, _ = oof_lib.load_run(output_dir)
    order = np.argsort(ids)
    return ids[order], np.asarray(probs, np.float32)[order], truth[order]


def member_test(output_dir):
    """(ids, probs) of a member's test_probs.npz, sorted by id; None when
    the member has not predicted the test set."""
    path = layout.RunLayout(output_dir).path(layout.TEST_PROBS)
    if not os.path.exists(path):
        return None
    ids, probs = files.load_npz(path, ("ids", "probs"),
                                hint="rerun python -m kaggle_tf.predict "
                                     "--save-probs")
    order = np.argsort(ids)
    return ids[order], np.asarray(probs, np.float32)[order]


def aligned(member_ids, ids, where):
    """Raises StackError unless a member holds exactly `ids`."""
    if len(member_ids) != len(ids) or not np.array_equal(member_ids, ids):
        missing = sorted(set(ids) - set(member_ids))[:3]
        extra = sorted(set(member_ids) - set(ids))[:3]
        raise StackError(
            f"{where}: its images differ from the first member's "
            f"(missing {missing or 'none'}, extra {extra or 'none'}); "
            "stack members trained and predicted on the same records")


# --- learners ---------------------------------------------------------------------

def _learner(stack_cfg, seed):
    params = dict(stack_cfg.params)
    if stack_cfg.learner == "lightgbm":
        try:
            import lightgbm
        except ImportError:
            raise StackError("stack.learner 'lightgbm' needs LightGBM: pip "
                             "install 'kaggle_tf[stack]' (or set "
                             "stack.learner=logistic)") from None
        defaults = {"n_estimators": 100, "learning_rate": 0.05,
                    "num_leaves": 15, "min_child_samples": 5,
                    "subsample": 0.8, "subsample_freq": 1,
                    "colsample_bytree": 0.8, "verbose": -1,
                    "random_state": seed, "n_jobs": 1}
        return lightgbm.LGBMClassifier(**{**defaults, **params})
    return LogisticRegression(**{"max_iter": 1000, "C": 1.0, **params})


def _fit_class(stack_cfg, x, y, seed):
    """A fitted binary model, or the constant when `y` has one value."""
    if y.min() == y.max():
        return float(y[0])
    model = _learner(stack_cfg, seed)
    model.fit(x, y)
    return model


def _predict_class(model, x):
    if isinstance(model, float):
        return np.full(len(x), model, np.float32)
    return model.predict_proba(x)[:, 1].astype(np.float32)


def inner_split(n, inner_folds, seed):
    """Inner fold of each of `n` rows (a seeded permutation)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % inner_folds)


def fit_predict(x, y, folds, x_test, stack_cfg, seed=0):
    """Nested-fold stacking.

    Args:
        x: (N, F) features of the training images.
        y: (N, K) 0/1 truth.
        folds: (N,) outer fold of each row.
        x_test: (M, F) test features, or None.
        stack_cfg: `cfg.stack` (`learner`, `inner_folds`, `params`).
        seed: seeds the inner splits and the learner.

    Returns:
        `(oof (N, K), test (M, K) or None, trace)`; `trace` lists every
        inner model as `{"outer", "inner", "trained", "scored"}` row
        indices.
    """
    x = np.asarray(x, np.float32)
    y = (np.asarray(y) >= 0.5).astype(np.int32)
    folds = np.asarray(folds)
    n, k = y.shape
    oof = np.zeros((n, k), np.float32)
    test = None if x_test is None else np.zeros((len(x_test), k), np.float32)
    trace, models = [], 0
    for outer in np.unique(folds):
        held = np.flatnonzero(folds == outer)
        rest = np.flatnonzero(folds != outer)
        inner = inner_split(len(rest), stack_cfg.inner_folds,
                            seed + int(outer))
        for j in range(stack_cfg.inner_folds):
            train = rest[inner != j]
            trace.append({"outer": int(outer), "inner": j,
                          "trained": train, "scored": held})
            for c in range(k):
                model = _fit_class(stack_cfg, x[train], y[train, c],
                                   seed + c)
                oof[held, c] += (_predict_class(model, x[held])
                                 / stack_cfg.inner_folds)
                if test is not None:
                    test[:, c] += _predict_class(model, x_test)
            models += 1
    if test is not None:
        test /= models
    return oof, test, trace


# --- the command ------------------------------------------------------------------

def record_folds(cfg):
    """{id: fold} from the records' folds.csv."""
    import pandas as pd

    path = os.path.join(cfg.data.records_dir, schema.FOLDS_CSV)
    if not os.path.exists(path):
        raise StackError(f"{path} not found: convert the records first")
    df = pd.read_csv(path, dtype={"id": str})
    return dict(zip(df["id"], df["fold"].astype(int)))


def _features(cfg, probs_list, ids, meta):
    parts = [p.reshape(len(p), -1) for p in probs_list]
    if cfg.stack.meta_features:
        parts.append(np.stack([meta[i] for i in ids]))
    return np.concatenate(parts, axis=1)


def run(cfg):
    """Stacks `cfg.stack.members`; writes `<output_dir>/oof.npz`,
    `postprocess.json` (per-class thresholds tuned on the stacker's OOF),
    `metrics.json`, and with every member's test_probs.npz also
    `test_probs.npz` and `submission.csv`. Returns the metrics dict."""
    members = list(cfg.stack.members)
    task = tasks.get(cfg.task)
    first = member_oof(members[0])
    ids, truth = first[0], first[2]
    oofs = [first[1]]
    for m in members[1:]:
        m_ids, m_probs, _ = member_oof(m)
        aligned(m_ids, ids, m)
        oofs.append(m_probs)
    fold_of = record_folds(cfg)
    missing = [i for i in ids if i not in fold_of]
    if missing:
        raise StackError(f"{members[0]}: image {missing[0]} is not in "
                         f"{cfg.data.records_dir}/folds.csv")
    folds = np.array([fold_of[i] for i in ids])
    tests = [member_test(m) for m in members]
    have_test = all(t is not None for t in tests)
    meta = test_meta = None
    if cfg.stack.meta_features:
        meta = record_meta_features(cfg, "train")
        if have_test:
            test_meta = record_meta_features(cfg, "test")
    x = _features(cfg, oofs, ids, meta)
    x_test = test_ids = None
    if have_test:
        test_ids = tests[0][0]
        for m, t in zip(members[1:], tests[1:]):
            aligned(t[0], test_ids, f"{m}/{layout.TEST_PROBS}")
        x_test = _features(cfg, [t[1] for t in tests], test_ids, test_meta)
    print(f"stacking {len(members)} run(s) + {len(cfg.stack.meta_features)} "
          f"meta-feature group(s): {x.shape[1]} features, {len(ids)} images,"
          f" learner {cfg.stack.learner}, {len(np.unique(folds))} outer x "
          f"{cfg.stack.inner_folds} inner folds", flush=True)
    oof, test, _ = fit_predict(x, truth, folds, x_test, cfg.stack, cfg.seed)
    run_layout = layout.RunLayout.of(cfg)
    os.makedirs(cfg.output_dir, exist_ok=True)
    oof_lib.save(run_layout.path(layout.OOF), ids, oof.astype(np.float16),
                 truth)
    blend = np.mean(oofs, axis=0)
    tuned = task.tune(cfg, oof, truth)
    blend_tuned = task.tune(cfg, blend, truth)
    result = {"task": cfg.task, "members": members,
              "kaggle_metric": float(tuned["metric_after"]),
              "blend_metric": float(blend_tuned["metric_after"]),
              "images": int(len(ids))}
    layout.write_json(run_layout.path(layout.POSTPROCESS),
                      {**tuned, "source": "kaggle_tf.stack"})
    layout.write_json(run_layout.path(layout.METRICS), result)
    print(f"out-of-fold kaggle_metric: mean of the members "
          f"{result['blend_metric']:.5f} -> stack "
          f"{result['kaggle_metric']:.5f} (per-class thresholds tuned)")
    if have_test:
        params = predict_lib.load_postprocess(cfg)
        out = predict_lib.postprocess(cfg, test, params)
        predictions = {}
        task.add_rows(predictions, list(test_ids), out)
        outputs.save_test_probs(cfg, test_ids, test)
        path = outputs.write_submission(cfg, predictions)
        result["submission"] = path
        print(f"wrote {path}")
    else:
        print("no submission: a member lacks test_probs.npz (run python -m "
              "kaggle_tf.predict --save-probs on each member)")
    return result

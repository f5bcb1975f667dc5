"""Stacking: nested folds by ids, and a meta-feature the stack learns from.

A synthetic HPA-like case: two members' out-of-fold probabilities are
noisy copies of the truth, except class 0, whose truth is decided by an
image's brightness (which neither member sees). The stack, given the
brightness, beats the members' mean on out-of-fold macro F1 (both with
per-class thresholds tuned on OOF). The meta-features are checked against
numpy on images made for it.
"""

import numpy as np
import pytest

from kaggle_tf import config as config_lib
from kaggle_tf.inference import stack
from kaggle_tf.postprocess import tune as search

N, K = 240, 3


def stack_cfg(learner="lightgbm", **extra):
    return config_lib.from_dict({"task": "protein", "stack": {
        "members": ["a", "b"], "learner": learner, "inner_folds": 3,
        "params": {"n_estimators": 40} if learner == "lightgbm" else {},
        **extra}}).stack


def synthetic(seed=0):
    rng = np.random.default_rng(seed)
    truth = (rng.random((N, K)) < 0.4).astype(np.int8)
    brightness = rng.random(N)
    truth[:, 0] = brightness > 0.6
    members = []
    for m in range(2):
        p = np.clip(truth + rng.normal(0, 0.45, (N, K)), 0, 1)
        p[:, 0] = rng.random(N)  # no member knows class 0
        members.append(p.astype(np.float32))
    folds = np.arange(N) % 5
    ids = np.array([f"img{i:04d}" for i in range(N)])
    return ids, truth, brightness[:, None].astype(np.float32), members, folds


def tuned_f1(probs, truth):
    return search.search_class_thresholds(probs, truth)["score"]


def test_no_row_is_scored_by_a_model_that_saw_it():
    ids, truth, meta, members, folds = synthetic()
    x = np.concatenate(members + [meta], axis=1)
    oof, test, trace = stack.fit_predict(x, truth, folds, x[:7],
                                         stack_cfg("logistic"))
    assert len(trace) == 5 * 3
    scored = set()
    for model in trace:
        trained, held = set(ids[model["trained"]]), set(ids[model["scored"]])
        assert not trained & held
        # the rows of its own outer fold only, none of them trained on
        assert {folds[i] for i in model["scored"]} == {model["outer"]}
        scored |= held
    assert scored == set(ids)
    assert oof.shape == (N, K) and test.shape == (7, K)
    assert np.all((oof >= 0) & (oof <= 1))


def test_a_meta_feature_with_signal_makes_the_stack_beat_the_blend():
    pytest.importorskip("lightgbm")
    ids, truth, meta, members, folds = synthetic()
    x = np.concatenate(members + [meta], axis=1)
    oof, _, _ = stack.fit_predict(x, truth, folds, None, stack_cfg())
    blend = np.mean(members, axis=0)
    stacked, plain = tuned_f1(oof, truth), tuned_f1(blend, truth)
    assert stacked > plain + 0.05, (stacked, plain)


def test_meta_features_against_numpy():
    rng = np.random.default_rng(1)
    images = rng.random((3, 8, 8, 4)).astype(np.float32)
    got = stack.meta_features(images)
    assert got.shape == (3, 4 + 4 + 6)
    flat = images.reshape(3, -1, 4).astype(np.float64)
    np.testing.assert_allclose(got[:, :4], flat.mean(1), rtol=1e-5)
    np.testing.assert_allclose(got[:, 4:8], flat.std(1), rtol=1e-5)
    want = [np.corrcoef(flat[b].T)[np.triu_indices(4, 1)] for b in range(3)]
    np.testing.assert_allclose(got[:, 8:], np.array(want), atol=1e-5)


def test_stack_config_is_validated():
    with pytest.raises(config_lib.ConfigError, match="stack.learner"):
        config_lib.from_dict({"stack": {"learner": "xgboost"}})
    with pytest.raises(config_lib.ConfigError,
                       match=r"stack.meta_features\[0\]"):
        config_lib.from_dict({"stack": {"meta_features": ["hue"]}})
    with pytest.raises(config_lib.ConfigError, match="stack.inner_folds"):
        config_lib.from_dict({"stack": {"inner_folds": 1}})


def test_the_stack_command_writes_the_stacked_submission(tmp_path):
    """`python -m kaggle_tf.stack` on two members' files (made here) over a
    tiny HPA sample: oof.npz of every image, both metrics, a submission of
    the sample submission's rows."""
    pytest.importorskip("lightgbm")
    import json
    import os

    import pandas as pd

    from kaggle_tf import layout
    from kaggle_tf import stack as stack_cli
    from tfrecords_tools import convert
    from tfrecords_tools.competitions import protein

    raw, rec = tmp_path / "raw", tmp_path / "rec"
    protein.make_sample(str(raw), n=30, size=(32, 32), seed=0)
    base = {"task": "protein", "data": {
        "raw_dir": str(raw), "records_dir": str(rec), "image_size": [32, 32],
        "channels": 4, "folds": 3, "fold_strategy": "random",
        "shard_size": 8}}
    convert.convert(config_lib.from_dict(base), progress=False)
    folds = pd.read_csv(rec / "folds.csv", dtype={"id": str})
    test_ids = pd.read_csv(raw / "sample_submission.csv")["Id"].astype(str)
    rng = np.random.default_rng(0)
    truth = (rng.random((len(folds), 28)) < 0.2).astype(np.int8)
    members = []
    for m in range(2):
        run = tmp_path / f"member{m}"
        run.mkdir()
        probs = np.clip(truth + rng.normal(0, 0.4, truth.shape), 0, 1)
        np.savez(run / layout.OOF, ids=folds["id"].to_numpy(str),
                 probs=probs.astype(np.float16), truth=truth)
        np.savez(run / layout.TEST_PROBS, ids=test_ids.to_numpy(str),
                 probs=rng.random((len(test_ids), 28)).astype(np.float16))
        members.append(str(run))
    cfg_path = tmp_path / "stack.json"
    cfg_path.write_text(json.dumps({
        **base, "output_dir": str(tmp_path / "stack"),
        "stack": {"members": members, "inner_folds": 2,
                  "params": {"n_estimators": 5}}}))
    assert stack_cli.main(["--config", str(cfg_path)]) == 0
    out = tmp_path / "stack"
    oof = np.load(out / layout.OOF)
    assert sorted(oof["ids"]) == sorted(folds["id"])
    metrics = json.loads((out / layout.METRICS).read_text())
    assert {"kaggle_metric", "blend_metric"} <= set(metrics)
    sub = pd.read_csv(out / layout.SUBMISSION, keep_default_na=False)
    assert list(sub["Id"].astype(str)) == list(test_ids)
    assert all(row.strip() for row in sub["Predicted"])  # never empty (HPA)
    assert os.path.exists(out / layout.POSTPROCESS)

"""Every recipe end to end, as a user runs it, on the project's samples.

For each recipe of `configs/` (Severstal with its gating classifier, SIIM,
HPA, RSNA ICH, RSNA lumbar) a module fixture runs the real command lines
on a sample written by `tfrecords_tools.sample`, shrunk with `--set`:

    sample -> fit --fold all -> tune -> predict --save-probs -> export

and the tests check, per recipe:

1. fit: per-fold checkpoints; `oof.npz` holds every training image once,
   with the labels the raw CSVs give it, and `metrics.json` equals the
   Kaggle metric recomputed from `oof.npz`;
2. tune: `postprocess.json` scores at least as well as the config, and
   its parameters reproduce the score it reports;
3. submission.csv: the sample submission's ids and columns, values in
   range and consistent with the saved test probabilities;
4. export: the SavedModel agrees with predict's `test_probs.npz`;
5. learning: the out-of-fold Kaggle metric clearly beats the best
   constant prediction on the same truth.

Scores of a run are printed (`-s`) for the record.
"""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from kaggle_tf import config
from kaggle_tf import rle
from kaggle_tf import tasks
from kaggle_tf.metrics import kaggle as kaggle_metrics
from e2e_commands import ROOT
from e2e_commands import run
from e2e_commands import sets

RECIPES = ("steel", "siim", "protein", "rsna_ich", "rsna_lumbar")
# Every recipe: 2 folds, the tiny timm test encoder, no XLA, one log line
# per epoch, no per-epoch backups.
COMMON = ["data.folds=2", "data.shard_size=16", "model.encoder=test_resnet",
          "train.jit_compile=false", "train.verbose=2",
          "callbacks.backup=false"]
# float16 test_probs.npz against float32 SavedModel outputs.
PROBS_ATOL = 2e-3
# How much better than the best constant the OOF Kaggle metric must be.
MARGIN = {"steel": 0.05, "siim": 0.15, "protein": 0.05, "rsna_ich": 0.08,
          "rsna_lumbar": 0.05}


@dataclasses.dataclass
class Recipe:
    """What a user types: a config, a sample and the `--set` overrides."""

    name: str
    config: str
    n: int
    size: str
    overrides: list
    seed: int = 1


RECIPE = {
    # Severstal keeps its augmentation (flips, brightness/contrast).
    "steel": Recipe(
        "steel", "steel.json", n=40, size="64x128", overrides=[
            "data.image_size=[64,128]",
            "model.decoder_channels=[64,32,32,16,16]",
            "train.epochs=12", "train.steps_per_epoch=12",
            "train.batch_size=4", "optimizer.lr=0.003",
            "callbacks.top_k=1"]),
    # Two stages: per-stage combo loss weights and sample rates, LR
    # schedules, from_previous_best; top-2 checkpoints per fold.
    "siim": Recipe(
        "siim", "siim.json", n=48, size="64", overrides=[
            "data.image_size=[64,64]",
            "model.decoder_channels=[64,32,32,16,16]",
            "augment.transforms=null", "train.batch_size=8",
            "train.steps_per_epoch=6", "callbacks.top_k=2",
            'schedule.stages=[{"epochs": 7, "lr": 0.003, '
            '"scheduler": "reduce_on_plateau", "sample_rate": 0.8, '
            '"loss_weights": [3, 1, 4]}, {"epochs": 3, "lr": 0.001, '
            '"scheduler": "cosine_restarts", "restart_epochs": 2, '
            '"sample_rate": 0.5, "loss_weights": [1, 1, 1], '
            '"from_previous_best": true}]']),
    "protein": Recipe(
        "protein", "protein.json", n=96, size="64", overrides=[
            "data.image_size=[64,64]", "augment.transforms=null",
            "schedule.stages=[]", "train.epochs=8",
            "train.steps_per_epoch=24", "train.batch_size=8",
            "optimizer.lr=0.003", "callbacks.top_k=1"]),
    "rsna_ich": Recipe(
        "rsna_ich", "rsna_ich.json", n=192, size="64", overrides=[
            "data.image_size=[64,64]", "augment.transforms=null",
            "train.epochs=10", "train.steps_per_epoch=6",
            "train.batch_size=8", "optimizer.lr=0.003"]),
    "rsna_lumbar": Recipe(
        "rsna_lumbar", "rsna_lumbar.json", n=96, size="64", overrides=[
            "data.image_size=[64,64]", "augment.transforms=null",
            'schedule.stages=[{"epochs": 6, "lr": 0.0005, '
            '"scheduler": "cosine", "min_lr": 1e-05}]',
            "train.steps_per_epoch=24", "train.batch_size=4"]),
}


@dataclasses.dataclass
class Trained:
    """A recipe after sample -> fit -> tune -> predict -> export."""

    recipe: Recipe
    cfg: object
    raw: str
    submission: str
    export: str
    classifier: object = None  # steel: the gating classifier's config


def train_recipe(base, recipe, extra=(), before_fit=None):
    """Runs the recipe's command lines in `base`; returns `Trained`."""
    raw = str(base / "raw")
    run("tfrecords_tools.sample", "--task", recipe.name,
        "--out", raw, "--n", str(recipe.n), "--size", recipe.size,
        "--seed", str(recipe.seed))
    data = [f"data.raw_dir={raw}", f"data.records_dir={base / 'records'}"]
    overrides = [*data, *COMMON, *recipe.overrides, *extra,
                 f"output_dir={base / 'run'}"]
    path = os.path.join(ROOT, "configs", recipe.config)
    if before_fit is not None:
        before_fit(data)
    run("kaggle_tf.fit", "--config", path, "--fold", "all",
        *sets(overrides))
    run("kaggle_tf.tune", "--config", path, *sets(overrides))
    pred = run("kaggle_tf.predict", "--config", path, "--save-probs",
               *sets(overrides))
    exported = run("kaggle_tf.export", "--config", path, "--out",
                   str(base / "export"), *sets(overrides))
    return Trained(recipe, config.load(path, overrides), raw,
                   pred.stdout.strip().splitlines()[-1],
                   exported.stdout.strip().splitlines()[-1])


def train_steel(base, recipe):
    """Severstal, its masks gated by `steel_cls.json` trained alongside.

    The classifier's config is a user's file that `extends` the recipe's
    and names its own output folder; its training gets the same overrides
    (the U-Net's decoder keys do not apply), and predict/export find it
    through `inference.classifier_config`.
    """
    cls_path = base / "steel_cls.json"
    cls_path.write_text(json.dumps({
        "extends": os.path.join(ROOT, "configs", "steel_cls.json"),
        "output_dir": str(base / "cls")}))
    cls_overrides = [o for o in recipe.overrides
                     if not o.startswith("model.decoder")]

    def fit_classifier(data):
        run("kaggle_tf.fit", "--config", str(cls_path), "--fold", "all",
            *sets([*data, *COMMON, *cls_overrides]))

    trained = train_recipe(base, recipe,
                           [f"inference.classifier_config={cls_path}"],
                           before_fit=fit_classifier)
    trained.classifier = config.load(str(cls_path), [
        f"data.raw_dir={trained.raw}",
        f"data.records_dir={base / 'records'}", *COMMON, *cls_overrides])
    return trained


@pytest.fixture(scope="module")
def steel_run(tmp_path_factory):
    return train_steel(tmp_path_factory.mktemp("steel"), RECIPE["steel"])


@pytest.fixture(scope="module")
def siim_run(tmp_path_factory):
    return train_recipe(tmp_path_factory.mktemp("siim"), RECIPE["siim"])


@pytest.fixture(scope="module")
def protein_run(tmp_path_factory):
    return train_recipe(tmp_path_factory.mktemp("protein"),
                        RECIPE["protein"])


@pytest.fixture(scope="module")
def rsna_ich_run(tmp_path_factory):
    return train_recipe(tmp_path_factory.mktemp("rsna_ich"),
                        RECIPE["rsna_ich"])


@pytest.fixture(scope="module")
def rsna_lumbar_run(tmp_path_factory):
    return train_recipe(tmp_path_factory.mktemp("rsna_lumbar"),
                        RECIPE["rsna_lumbar"])


def trained_run(request, name):
    return request.getfixturevalue(f"{name}_run")


def trained_configs(trained):
    """The recipe's config, and the gating classifier's (Severstal)."""
    return [trained.cfg] + ([trained.classifier]
                            if trained.classifier else [])


def load_npz(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- the raw files, read independently of the library ------------------------

def raw_labels(task, raw, size):
    """{id: truth as oof.npz stores it} for every training image."""
    h, w = size
    if task == "steel":
        ids = sorted(os.listdir(os.path.join(raw, "train_images")))
        truth = {i: np.zeros((h, w, 4), np.int8) for i in ids}
        df = pd.read_csv(os.path.join(raw, "train.csv"))
        for image_id, class_id, pixels in df.itertuples(index=False):
            mask = truth[image_id][..., class_id - 1]
            mask[:] = np.maximum(mask, rle.decode(pixels, (h, w)))
        return truth
    if task == "siim":
        df = pd.read_csv(os.path.join(raw, "train-rle.csv"),
                         skipinitialspace=True, dtype=str)
        truth = {}
        for image_id, pixels in df.itertuples(index=False):
            mask = truth.setdefault(image_id, np.zeros((h, w, 1), np.int8))
            if pixels.strip() != "-1":
                mask[..., 0] = np.maximum(mask[..., 0], rle.decode(
                    pixels, (h, w), convention="siim"))
        return truth
    if task == "protein":
        df = pd.read_csv(os.path.join(raw, "train.csv"), dtype=str)
        truth = {}
        for image_id, target in df.itertuples(index=False):
            row = np.zeros(28, np.int8)
            row[[int(t) for t in target.split()]] = 1
            truth[image_id] = row
        return truth
    if task == "rsna_ich":
        df = pd.read_csv(os.path.join(raw, "stage_2_train.csv"))
        df = df.drop_duplicates("ID")
        parts = df["ID"].str.rsplit("_", n=1, expand=True)
        table = df.assign(image=parts[0], subtype=parts[1]).pivot(
            index="image", columns="subtype", values="Label")
        table = table[list(kaggle_metrics.ICH_SUBTYPES)]
        return {i: row.to_numpy(np.int8) for i, row in table.iterrows()}
    df = pd.read_csv(os.path.join(raw, "train.csv"), dtype=str,
                     keep_default_na=False)
    names = ("Normal/Mild", "Moderate", "Severe")
    return {row["study_id"]: np.array(
        [names.index(row[c]) if row[c] else -1
         for c in kaggle_metrics.LUMBAR_COLUMNS]) for _, row in df.iterrows()}


def comparable_truth(task, truth):
    """oof.npz truth in the layout of `raw_labels`."""
    if task == "rsna_lumbar":
        return kaggle_metrics.lumbar_labels(truth)
    return truth


def kaggle_score(cfg, truth, probs):
    """The competition's metric on OOF arrays, binarized as the config says.
    """
    task = cfg.task
    probs = np.asarray(probs, np.float32)
    thresholds = np.asarray(cfg.inference.thresholds, np.float32)
    if task == "steel" and cfg.model.arch == "classifier":
        return kaggle_metrics.f1_macro(truth > 0, probs > thresholds)
    if task == "steel":
        return kaggle_metrics.mean_dice(truth > 0, probs > thresholds)
    if task == "siim":
        return kaggle_metrics.siim_dice(truth[..., 0] > 0,
                                        probs[..., 0] > thresholds[0])
    if task == "protein":
        return kaggle_metrics.f1_macro(truth > 0, probs > thresholds)
    if task == "rsna_ich":
        return kaggle_metrics.rsna_ich_log_loss(truth, probs)
    return kaggle_metrics.rsna_lumbar_log_loss(
        kaggle_metrics.lumbar_labels(truth), probs)


def fold_truths(cfg):
    """The truth of each fold's `oof.npz`, in fold order."""
    return [load_npz(os.path.join(cfg.output_dir, f"fold{k}",
                                  "oof.npz"))["truth"]
            for k in range(cfg.data.folds)]


def prevalence_oof(folds, counts):
    """Each fold's rows predicted by the smoothed frequencies that
    `counts(truth)` finds in the other folds (its training set)."""
    out = []
    for k, truth in enumerate(folds):
        train = sum(counts(t) for j, t in enumerate(folds) if j != k)
        p = (train + 0.5) / (train + 0.5).sum(-1, keepdims=True)
        out.append(np.broadcast_to(p, truth.shape[:1] + p.shape))
    return np.concatenate(out)


def best_constant(cfg):
    """The best OOF score of a prediction that ignores the images.

    Severstal/SIIM masks: the better of all-empty and all-full masks.
    Labels scored by macro F1 (HPA, the Severstal gate's presence): per
    class all-positive (F1 `2P / (N + P)`) where the class occurs, else
    all-negative. Log losses (RSNA): each fold predicted by the label
    frequencies of its training folds; lumbar per column or pooled over
    the columns, plain or times the metric's 1/2/4 row weights, whichever
    scores best.
    """
    folds = fold_truths(cfg)
    truth = np.concatenate(folds)
    task = cfg.task
    if cfg.model.arch in ("unet", "fpn"):
        metric = (kaggle_metrics.mean_dice if task == "steel"
                  else kaggle_metrics.siim_dice)
        empty = np.zeros(truth.shape, bool)
        return max(metric(truth > 0, empty), metric(truth > 0, ~empty))
    if task in ("steel", "protein"):
        n, positives = len(truth), (truth > 0).sum(0)
        return float(np.where(positives > 0,
                              2 * positives / (n + positives), 0).mean())
    if task == "rsna_ich":
        p = prevalence_oof(folds, lambda t: np.stack(
            [t.sum(0), (1 - t).sum(0)], -1))[..., 0]
        return kaggle_metrics.rsna_ich_log_loss(truth, p)
    labels = [kaggle_metrics.lumbar_labels(t) for t in folds]
    scores = []
    for weights in ((1, 1, 1), kaggle_metrics.LUMBAR_WEIGHTS):
        for pooled in (False, True):

            def counts(t, weights=weights, pooled=pooled):
                c = np.stack([(t == s).sum(0) for s in range(3)], -1)
                c = c * np.asarray(weights, np.float64)  # (25, 3)
                return np.broadcast_to(c.sum(0), c.shape) if pooled else c

            scores.append(kaggle_metrics.rsna_lumbar_log_loss(
                np.concatenate(labels), prevalence_oof(labels, counts)))
    return min(scores)


# --- 1. fit ------------------------------------------------------------------

@pytest.mark.parametrize("name", RECIPES)
def test_fit_writes_folds_and_oof_of_every_training_image(request, name):
    trained = trained_run(request, name)
    for cfg in trained_configs(trained):
        ids = []
        for k in range(cfg.data.folds):
            fold = os.path.join(cfg.output_dir, f"fold{k}")
            listed = read_json(os.path.join(fold, "checkpoints.json"))
            assert len(listed) == cfg.callbacks.top_k
            for entry in listed:
                assert os.path.exists(os.path.join(fold, entry["file"]))
            assert os.path.exists(os.path.join(fold, "best.keras"))
            part = load_npz(os.path.join(fold, "oof.npz"))
            assert read_json(os.path.join(fold, "metrics.json"))[
                "images"] == len(part["ids"])
            ids.extend(part["ids"].tolist())
        oof = load_npz(os.path.join(cfg.output_dir, "oof.npz"))
        assert sorted(ids) == sorted(oof["ids"].tolist())
        labels = raw_labels(cfg.task, trained.raw, cfg.data.image_size)
        assert sorted(oof["ids"].tolist()) == sorted(labels), (
            "each training image exactly once")
        want = np.stack([labels[i] for i in oof["ids"]])
        got = comparable_truth(cfg.task, oof["truth"])
        if cfg.model.arch == "classifier" and cfg.task == "steel":
            want = want.any(axis=(1, 2)).astype(np.int8)  # presence
        np.testing.assert_array_equal(got, want)
        assert oof["probs"].shape[0] == len(oof["ids"])
        assert np.isfinite(oof["probs"]).all()
        assert oof["probs"].min() >= 0 and oof["probs"].max() <= 1


@pytest.mark.parametrize("name", RECIPES)
def test_oof_metric_equals_the_kaggle_metric(request, name):
    trained = trained_run(request, name)
    for cfg in trained_configs(trained):
        oof = load_npz(os.path.join(cfg.output_dir, "oof.npz"))
        metrics = read_json(os.path.join(cfg.output_dir, "metrics.json"))
        assert metrics["images"] == len(oof["ids"])
        expected = kaggle_score(cfg, oof["truth"], oof["probs"])
        assert metrics["kaggle_metric"] == pytest.approx(expected, abs=1e-6)


def test_siim_stages_ran_in_order(siim_run):
    """Both stages ran on every fold, the second after the first."""
    cfg = siim_run.cfg
    epochs = [s.epochs for s in cfg.schedule.stages]
    for k in range(cfg.data.folds):
        history = pd.read_csv(os.path.join(cfg.output_dir, f"fold{k}",
                                           "history.csv"))
        assert list(history["epoch"]) == list(range(1, sum(epochs) + 1))
        assert list(history["stage"]) == [0] * epochs[0] + [1] * epochs[1]
        assert np.isfinite(history["loss"]).all()
        # The second stage starts at its own, lower learning rate.
        assert history["lr"][epochs[0]:].max() <= 0.001 + 1e-9


@pytest.mark.parametrize("name", ["siim_seunet.json", "siim_resnet50.json",
                                  "siim_albunet_public.json"])
def test_siim_variants_load_and_build(name):
    from kaggle_tf.training import image as image_trainer

    cfg = config.load(os.path.join(ROOT, "configs", name),
                      ["data.image_size=[64,64]",
                       "model.encoder_weights=null"])
    base = config.load(os.path.join(ROOT, "configs", "siim.json"))
    assert cfg.task == "siim" and cfg.output_dir != base.output_dir
    model = image_trainer.build_model(cfg)
    assert model.output_shape == (None, 64, 64, 1)
    assert cfg.model.encoder in model.name
    names = [layer.name for layer in model.layers]
    if cfg.model.decoder_attention == "scse":
        assert any("attention" in n for n in names)
    else:
        assert not any("attention" in n for n in names)


# --- 2. tune -----------------------------------------------------------------

def tuned_score(cfg, truth, probs, tuned):
    """The metric of the tuned post-processing, recomputed in numpy."""
    probs = np.asarray(probs, np.float32)
    truth = truth > 0
    if cfg.task == "steel":
        masks = probs > np.asarray(tuned["thresholds"], np.float32)
        area = masks.sum(axis=(1, 2), keepdims=True)
        masks &= area >= np.asarray(tuned["min_area"])
        return kaggle_metrics.mean_dice(truth, masks)
    if cfg.task == "siim":
        top, min_area, bottom = tuned["triplet"]
        p = probs[..., 0]
        keep = (p > np.float32(top)).sum(axis=(1, 2)) >= min_area
        masks = (p > np.float32(bottom)) & keep[:, None, None]
        return kaggle_metrics.siim_dice(truth[..., 0], masks)
    return kaggle_metrics.f1_macro(
        truth, probs > np.asarray(tuned["thresholds"], np.float32))


@pytest.mark.parametrize("name", RECIPES)
def test_tune_scores_at_least_the_config_on_oof(request, name):
    trained = trained_run(request, name)
    cfg = trained.cfg
    tuned = read_json(os.path.join(cfg.output_dir, "postprocess.json"))
    oof = load_npz(os.path.join(cfg.output_dir, "oof.npz"))
    assert tuned["task"] == cfg.task and tuned["images"] == len(oof["ids"])
    assert tuned["metric_after"] >= tuned["metric_before"] - 1e-12
    if cfg.task in ("rsna_ich", "rsna_lumbar"):  # nothing to tune
        metric = read_json(os.path.join(cfg.output_dir, "metrics.json"))
        assert tuned["metric_after"] == pytest.approx(
            metric["kaggle_metric"], abs=1e-6)
        return
    assert tuned["metric_after"] == pytest.approx(
        tuned_score(cfg, oof["truth"], oof["probs"], tuned), abs=1e-9)


# --- 3. submission -----------------------------------------------------------

def check_rows(df, sample):
    assert list(df.columns) == list(sample.columns)
    assert len(df) == len(sample)
    key = list(sample.columns[:1])
    if "ClassId" in sample.columns:
        key.append("ClassId")
    assert sorted(map(tuple, df[key].to_numpy())) == sorted(
        map(tuple, sample[key].to_numpy()))


def read_submission(trained):
    sample_name = ("stage_2_sample_submission.csv"
                   if trained.cfg.task == "rsna_ich"
                   else "sample_submission.csv")
    read = dict(dtype=str, keep_default_na=False)
    sample = pd.read_csv(os.path.join(trained.raw, sample_name), **read)
    return pd.read_csv(trained.submission, **read), sample


def saved_test_probs(trained):
    saved = load_npz(os.path.join(trained.cfg.output_dir,
                                  "test_probs.npz"))
    return dict(zip(saved["ids"].tolist(),
                    saved["probs"].astype(np.float32)))


@pytest.mark.parametrize("name", RECIPES)
def test_submission_matches_the_sample_submission(request, name):
    trained = trained_run(request, name)
    cfg = trained.cfg
    assert trained.submission == os.path.join(
        os.path.abspath(cfg.output_dir), "submission.csv")
    df, sample = read_submission(trained)
    check_rows(df, sample)
    probs = saved_test_probs(trained)
    if cfg.task in ("steel", "siim"):
        h, w = (int(v) for v in cfg.data.image_size)  # = the raw size
        convention = "severstal" if cfg.task == "steel" else "siim"
        masks = [rle.decode(v, (h, w), convention=convention)
                 for v in df["EncodedPixels"]]
        assert all(m.shape == (h, w) for m in masks)
        assert any(m.any() for m in masks), "every mask is empty"
        assert len(probs) == df["ImageId"].nunique()
    elif cfg.task == "protein":
        tuned = read_json(os.path.join(cfg.output_dir, "postprocess.json"))
        th = np.asarray(tuned["thresholds"], np.float32)
        for image_id, text in df.itertuples(index=False):
            labels = sorted(int(v) for v in text.split())
            assert labels and all(0 <= v <= 27 for v in labels)
            p = probs[image_id]
            sure = np.abs(p - th) > PROBS_ATOL  # away from a threshold
            want = set(np.flatnonzero(p > th)) or {int(np.argmax(p))}
            assert {v for v in labels if sure[v]} == {
                v for v in want if sure[v]}
    elif cfg.task == "rsna_ich":
        subtypes = kaggle_metrics.ICH_SUBTYPES
        for row_id, value in df.itertuples(index=False):
            image_id, subtype = row_id.rsplit("_", 1)
            assert image_id.startswith("ID_") and subtype in subtypes
            assert probs[image_id][subtypes.index(subtype)] == pytest.approx(
                float(value), abs=PROBS_ATOL)
        assert len(probs) * 6 == len(df)
    else:
        values = df[["normal_mild", "moderate", "severe"]].astype(float)
        assert ((values >= 0) & (values <= 1)).all().all()
        np.testing.assert_allclose(values.sum(1), 1, atol=1e-5)
        columns = kaggle_metrics.LUMBAR_COLUMNS
        for row in df.itertuples(index=False):
            study, column = row.row_id.split("_", 1)
            p = probs[study][columns.index(column)]
            np.testing.assert_allclose(
                [float(v) for v in row[1:]], p / p.sum(), atol=PROBS_ATOL)


def test_steel_classifier_gates_the_masks(steel_run):
    """Where the classifier says a class is absent, its mask is empty."""
    import keras

    from kaggle_tf import models  # noqa: F401  (registers the layers)
    from kaggle_tf.data import pipeline

    cfg, clf = steel_run.cfg, steel_run.classifier
    members = [keras.saving.load_model(
        os.path.join(clf.output_dir, f"fold{k}", "best.keras"),
        compile=False) for k in range(clf.data.folds)]
    ids, class_probs = [], []
    for batch in pipeline.make_dataset(cfg, None, training=False,
                                       split="test", with_meta=True):
        images = np.asarray(batch["images"])
        passes = [m(x, training=False) for m in members
                  for x in (images, images[:, :, ::-1])]  # hflip TTA
        class_probs.append(np.mean([1 / (1 + np.exp(-np.asarray(p)))
                                    for p in passes], axis=0))
        ids.extend(v.decode() for v in np.asarray(batch["id"]))
    class_probs = np.concatenate(class_probs)
    gate = np.asarray(cfg.inference.classifier_threshold, np.float32)
    df, _ = read_submission(steel_run)
    empty = {(r.ImageId, int(r.ClassId)): r.EncodedPixels == ""
             for r in df.itertuples(index=False)}
    closed = 0
    for image_id, p in zip(ids, class_probs):
        for c in range(4):
            if p[c] < gate[c] - 1e-3:
                closed += 1
                assert empty[(image_id, c + 1)], (image_id, c + 1, p[c])
    assert closed > 0, "the gate never closed: nothing was checked"


# --- 4. export ---------------------------------------------------------------

@pytest.mark.parametrize("name", RECIPES)
def test_export_agrees_with_predict(request, name):
    import tensorflow as tf

    from kaggle_tf.data import pipeline

    trained = trained_run(request, name)
    cfg = trained.cfg
    assert os.path.basename(trained.export) == "1"
    batch = next(iter(pipeline.make_dataset(
        cfg, None, training=False, split="test", with_meta=True,
        batch_size=1)))
    image_id = np.asarray(batch["id"]).ravel()[0].decode()
    served = tf.saved_model.load(trained.export)
    out = served.signatures["predict_images"](
        images=tf.constant(np.asarray(batch["images"], np.float32)))
    want = saved_test_probs(trained)[image_id]
    got = out["probs"].numpy()[0]
    np.testing.assert_allclose(got.reshape(want.shape), want,
                               atol=PROBS_ATOL)
    # The post-processed masks / labels are those of submission.csv.
    df, _ = read_submission(trained)
    if cfg.task in ("steel", "siim"):
        rows = df[df["ImageId"] == image_id]
        if cfg.task == "steel":
            rows = rows.sort_values("ClassId", key=lambda c: c.astype(int))
        convention = "severstal" if cfg.task == "steel" else "siim"
        submitted = np.stack([rle.decode(v, got.shape[:2],
                                         convention=convention)
                              for v in rows["EncodedPixels"]], -1)
        np.testing.assert_array_equal(out["masks"].numpy()[0], submitted)
    elif cfg.task == "protein":
        text = df.loc[df["Id"] == image_id, "Predicted"].item()
        assert np.flatnonzero(out["labels"].numpy()[0]).tolist() == sorted(
            int(v) for v in text.split())
    if cfg.task == "steel":  # the raw JPEG through serving_default
        with open(os.path.join(trained.raw, "test_images", image_id),
                  "rb") as f:
            blob = f.read()
        raw = served.signatures["serving_default"](
            image_bytes=tf.constant([blob]))
        np.testing.assert_allclose(raw["probs"].numpy()[0], want,
                                   atol=PROBS_ATOL)
        np.testing.assert_array_equal(raw["masks"].numpy(),
                                      out["masks"].numpy())


# --- 5. learning -------------------------------------------------------------

@pytest.mark.parametrize("name", RECIPES)
def test_recipe_learns_beyond_a_constant_prediction(request, name):
    trained = trained_run(request, name)
    for cfg in trained_configs(trained):
        oof = load_npz(os.path.join(cfg.output_dir, "oof.npz"))
        learned = kaggle_score(cfg, oof["truth"], oof["probs"])
        constant = best_constant(cfg)
        print(f"\n{name} {cfg.model.arch}: OOF {learned:.4f}, "
              f"best constant {constant:.4f}")
        margin = MARGIN[name]
        if tasks.higher_is_better(cfg.task):
            assert learned > constant + margin, (cfg.model.arch, learned,
                                                 constant)
        else:
            assert learned < constant - margin, (learned, constant)

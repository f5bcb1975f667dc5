"""`python -m kaggle_tf.predict` end to end on the steel sample's records:
submission.csv in Kaggle's format with the masks `Predictor` computes on
the raw test JPEGs, and test_probs.npz for stacking."""

import json
import os

import numpy as np
import pandas as pd
import tiny_runs

from kaggle_tf import rle
from kaggle_tf import submission
from kaggle_tf.inference import predict

SIZE = (64, 384)  # the sample's 64 x 400 images, resized (U-Net: / 32)


def test_predict_writes_submission_and_probs(steel_raw, steel_records,
                                             make_steel_config, tmp_path):
    import tensorflow as tf

    from kaggle_tf.data import records
    from kaggle_tf.predict import main

    records_cfg, manifest = steel_records
    cfg = make_steel_config(steel_raw, records_cfg.data.records_dir,
                            image_size=list(SIZE))
    small = tiny_runs.make_config(tmp_path / "run", size=SIZE)
    cfg.model, cfg.output_dir = small.model, str(tmp_path / "run")
    cfg.inference.thresholds = [0.5, 0.4, 0.6, 0.3]
    cfg.inference.min_area = [0, 100, 50, 0]
    cfg.inference.batch_size = 3
    tiny_runs.save_folds(cfg, (0, 3))
    path = tmp_path / "steel.json"
    data = cfg.to_dict()
    data.pop("source")
    path.write_text(json.dumps(data))

    # A TTA composition given on the command line, as JSON.
    assert main(["--config", str(path), "--tta",
                 '{"hflip": true, "vflip": true}', "--save-probs"]) == 0

    out = tmp_path / "run" / "submission.csv"
    df = submission.validate("steel", str(steel_raw), str(out))
    sample = pd.read_csv(steel_raw / "sample_submission.csv", dtype=str,
                         keep_default_na=False)
    assert list(df.columns) == list(sample.columns)
    assert len(df) == 4 * manifest["splits"]["test"]["records"] == 40

    # The reference: the raw JPEGs decoded as the pipeline does.
    ids = sorted(set(sample["ImageId"]))
    blobs = [(steel_raw / "test_images" / i).read_bytes() for i in ids]
    images = np.stack([records.resize_image(
        records.decode_image(tf.constant(b), 3), SIZE).numpy()
        for b in blobs])
    cfg.inference.tta = {"hflip": True, "vflip": True}
    predictor = predict.Predictor(cfg)
    want = predictor(images)
    assert want["masks"].shape == (len(ids), 64, 400, 4)  # raw size
    assert want["masks"].any() and not want["masks"].all(axis=(1, 2)).all()
    rows = {(r.ImageId, int(r.ClassId)): r.EncodedPixels
            for r in df.itertuples()}
    for n, image_id in enumerate(ids):
        for c in range(4):
            got = rle.decode(rows[(image_id, c + 1)], (64, 400),
                             convention="severstal")
            np.testing.assert_array_equal(got, want["masks"][n, ..., c])

    saved = np.load(tmp_path / "run" / "test_probs.npz")
    order = [list(saved["ids"]).index(i) for i in ids]
    probs = predictor.probs(images)
    np.testing.assert_allclose(saved["probs"][order].astype(np.float32),
                               probs, atol=1e-3)
    assert not [f for f in os.listdir(tmp_path / "run") if ".tmp" in f]

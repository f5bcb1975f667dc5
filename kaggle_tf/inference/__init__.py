"""Inference: TTA-wrapped fold/checkpoint ensembles -> submission.csv.

    predict.checkpoint_paths     fold*/best.keras (avg / top-k)
    fold.fold_batch_norms        BatchNormalization folded into the convs
    predict.ensemble_model       kaggle_tf.tta.wrap per checkpoint, merged
    predict.postprocess          thresholds / triplet / gating, Kaggle's size
    predict.predict              test records -> submission.csv (+ npz)
    ensemble.blend_oof           experiments' OOF blended (for tune)
    ensemble.predict             experiments one at a time, blended

`predict.Predictor` holds the loaded ensemble; `kaggle_tf.export` serves
the same graph.
"""

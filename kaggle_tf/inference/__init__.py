"""Inference: TTA-wrapped fold/checkpoint ensembles -> submission.csv."""

"""Export: a SavedModel with TTA, ensemble and post-processing inside."""

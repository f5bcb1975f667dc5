"""Loss modes and the shapes each one expects.

Every loss takes `y_true` and `y_pred` of the same shape, channels last;
`y_pred` holds logits unless `from_logits=False`.

- `BINARY_MODE` ("binary"): one foreground channel.
  Segmentation `(batch, height, width, 1)`, classification `(batch, 1)`.
  The activation is a sigmoid.
- `MULTILABEL_MODE` ("multilabel"): `classes` independent binary problems
  (Severstal's 4 defect classes, the 28 HPA labels, the 6 RSNA ICH labels).
  Segmentation `(batch, height, width, classes)`, classification
  `(batch, classes)`. The activation is a sigmoid per channel.
- `MULTICLASS_MODE` ("multiclass"): exactly one class per pixel or sample.
  `y_pred` is `(batch, ..., classes)`; `y_true` is one-hot of the same
  shape (`LovaszSoftmax` also takes integer class ids `(batch, ...)`).
  The activation is a softmax over the last axis.

Per-class weights (`class_weights`) always index the last axis.
"""

BINARY_MODE = "binary"
MULTILABEL_MODE = "multilabel"
MULTICLASS_MODE = "multiclass"

MODES = (BINARY_MODE, MULTILABEL_MODE, MULTICLASS_MODE)

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before a logarithm
# when `from_logits=False`.
EPSILON = 1e-7

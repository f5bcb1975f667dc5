"""Lovasz hinge (binary) and Lovasz-Softmax (multiclass), Berman 2018.

Both optimise the Lovasz extension of the Jaccard loss; the sort they need
is a `keras.ops.top_k` over all pixels, so they run under XLA.
"""

import keras

from kaggle_tf.losses import functional
from kaggle_tf.losses.base import KaggleLoss
from kaggle_tf.losses.registry import per_image_or
from kaggle_tf.losses.registry import register_loss


@keras.saving.register_keras_serializable(package="kaggle_tf")
class LovaszHinge(KaggleLoss):
    """Binary Lovasz hinge loss; each channel is its own binary problem.

    With hinge errors `e = 1 - z (2y - 1)` sorted decreasingly,
    `L = sum_i relu(e_(i)) (J(i) - J(i - 1))`, `J(i)` the Jaccard loss of
    mispredicting the `i` largest errors. An empty mask gives
    `L = relu(max e)`. Per image by default, as in the paper's
    segmentation experiments.

    Args:
        per_image: one loss per (image, class), averaged over images;
            otherwise over all pixels of the batch. Defaults to `True`.
        from_logits: whether `y_pred` holds logits (probabilities are
            turned into logits). Defaults to `True`.
        class_weights: per-class weights. Defaults to `None`.
        reduction, name, dtype: see `keras.losses.Loss`.

    Example:

    >>> loss = LovaszHinge()
    >>> y_true = [[[1.0], [0.0]]]
    >>> # errors 1 - 0 = 1 (truth 1) and 1 - 0.5 = 0.5 (truth 0)
    >>> float(loss(y_true, [[[0.0], [-0.5]]]))  # 1 * 1 + 0.5 * (1 - 1)
    1.0
    """

    def __init__(self, per_image=True, from_logits=True, class_weights=None,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(from_logits=from_logits,
                         class_weights=class_weights, reduction=reduction,
                         name=name, dtype=dtype)
        self.per_image = bool(per_image)

    def call(self, y_true, y_pred):
        return functional.lovasz_hinge_loss(
            y_true, y_pred, from_logits=self.from_logits,
            per_image=self.per_image, class_weights=self.class_weights)

    def get_config(self):
        config = super().get_config()
        config.update(per_image=self.per_image)
        return config


@keras.saving.register_keras_serializable(package="kaggle_tf")
class LovaszSoftmax(KaggleLoss):
    """Multiclass Lovasz-Softmax loss.

    For class `c`, errors `|1[y = c] - p_c|` sorted decreasingly give
    `L_c = sum_i e_(i) (J_c(i) - J_c(i - 1))`; `L` is the class-weighted
    mean over the classes present in `y_true` (or all classes), 0 when none
    is present.

    Args:
        per_image: one loss per image; otherwise over all pixels of the
            batch. Defaults to `False`.
        classes: "present" or "all". Defaults to `"present"`.
        from_logits: whether `y_pred` holds logits (softmax is applied).
            Defaults to `True`.
        class_weights: per-class weights. Defaults to `None`.
        reduction, name, dtype: see `keras.losses.Loss`.

    `y_true` is one-hot `(batch, ..., classes)` or integer ids
    `(batch, ...)`.

    Example:

    >>> loss = LovaszSoftmax(from_logits=False)
    >>> float(loss([[0, 1]], [[[1.0, 0.0], [0.0, 1.0]]]))
    0.0
    """

    def __init__(self, per_image=False, classes="present", from_logits=True,
                 class_weights=None, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(from_logits=from_logits,
                         class_weights=class_weights, reduction=reduction,
                         name=name, dtype=dtype)
        if classes not in ("present", "all"):
            raise ValueError("`classes` must be 'present' or 'all'. "
                             f"Received: classes={classes!r}")
        self.per_image = bool(per_image)
        self.classes = classes

    def call(self, y_true, y_pred):
        return functional.lovasz_softmax_loss(
            y_true, y_pred, from_logits=self.from_logits,
            per_image=self.per_image, classes=self.classes,
            class_weights=self.class_weights)

    def get_config(self):
        config = super().get_config()
        config.update(per_image=self.per_image, classes=self.classes)
        return config


@register_loss("lovasz_hinge")
def _build_hinge(per_image=None, from_logits=True, class_weights=None):
    return LovaszHinge(per_image=per_image_or(per_image, True),
                       from_logits=from_logits, class_weights=class_weights)


@register_loss("lovasz_softmax")
def _build_softmax(per_image=None, from_logits=True, class_weights=None):
    return LovaszSoftmax(per_image=per_image_or(per_image, False),
                         from_logits=from_logits,
                         class_weights=class_weights)

"""The shared base of the kaggle_tf `Loss` classes."""

import keras

from kaggle_tf.losses import functional


class KaggleLoss(keras.losses.Loss):
    """A `keras.losses.Loss` with `from_logits` and `class_weights`.

    Subclasses implement `call` with a function of `losses.functional` and
    add their own arguments to `get_config`. The loss computes in float32
    whatever the mixed-precision policy (Keras casts both inputs to the
    loss dtype, float32 by default, and the functions cast again).

    Args:
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights over the last axis, or None.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        name: the loss name. Defaults to the snake-case class name.
        dtype: the computation dtype. Defaults to `None` (float32).
    """

    def __init__(self, from_logits=True, class_weights=None,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(from_logits, bool):
            raise ValueError("`from_logits` must be True or False. "
                             f"Received: from_logits={from_logits!r}")
        self.from_logits = from_logits
        self.class_weights = functional.check_class_weights(class_weights)

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits,
                      class_weights=self.class_weights)
        return config

"""Pure `keras.ops` loss functions; the `Loss` classes wrap these.

Every function casts `y_true` and `y_pred` to float32 first, so the math
stays in float32 under mixed precision, and has no data-dependent Python
control flow, so it runs inside a `jit_compile=True` train step. Shapes and
modes are described in `kaggle_tf.losses.constants`.

Per-sample losses return `(batch,)`; losses computed over the whole batch
(`soft_dice_loss` and the Lovasz losses with `per_image=False`) return a
scalar. Per-class weights `w` average the per-class losses `L_c` as
`sum_c w_c L_c / sum_c w_c`.
"""

from typing import Optional
from typing import Sequence

from keras import ops

from kaggle_tf.losses import constants

_FLOAT = "float32"


# --- helpers -----------------------------------------------------------------


def check_class_weights(class_weights, name="class_weights"):
    """Validates per-class weights; returns a list of floats or None.

    Raises:
        ValueError: when a weight is negative, not a number, or all are 0.
    """
    if class_weights is None:
        return None
    if isinstance(class_weights, (str, bytes)) or not hasattr(
            class_weights, "__len__"):
        raise ValueError(f"`{name}` must be a list of non-negative floats. "
                         f"Received: {name}={class_weights!r}")
    try:
        values = [float(w) for w in class_weights]
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a list of non-negative floats. "
                         f"Received: {name}={class_weights!r}") from None
    if not values or min(values) < 0 or sum(values) <= 0:
        raise ValueError(f"`{name}` must be non-negative with a positive "
                         f"sum. Received: {name}={class_weights!r}")
    return values


def check_mode(mode, allowed=constants.MODES):
    if mode not in allowed:
        raise ValueError(f"`mode` must be one of {', '.join(allowed)}. "
                         f"Received: mode={mode!r}")
    return mode


def _prepare(y_true, y_pred, min_rank=2):
    """Casts both to float32 and checks that their shapes agree."""
    y_true = ops.cast(y_true, _FLOAT)
    y_pred = ops.cast(y_pred, _FLOAT)
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if len(pred_shape) < min_rank:
        raise ValueError(
            f"`y_pred` needs rank >= {min_rank} (batch, ..., classes). "
            f"Received: y_pred.shape={pred_shape}")
    compatible = len(true_shape) == len(pred_shape) and all(
        a is None or b is None or a == b
        for a, b in zip(true_shape, pred_shape))
    if not compatible:
        raise ValueError(
            "`y_true` and `y_pred` must have the same shape. Received: "
            f"y_true.shape={true_shape}, y_pred.shape={pred_shape}")
    return y_true, y_pred


def _classes(x):
    return x.shape[-1]


def class_weighted_mean(per_class, class_weights=None):
    """`sum_c w_c L_c / sum_c w_c` over the last axis (a plain mean if None).

    Args:
        per_class: `(..., classes)` losses.
        class_weights: `classes` non-negative weights, or None.

    Returns:
        `per_class` reduced over its last axis.
    """
    if class_weights is None:
        return ops.mean(per_class, axis=-1)
    classes = _classes(per_class)
    if classes is not None and classes != len(class_weights):
        raise ValueError(
            f"`class_weights` has {len(class_weights)} values but y_pred "
            f"has {classes} classes. Received: class_weights={class_weights}")
    w = ops.convert_to_tensor(class_weights, dtype=_FLOAT)
    return ops.sum(per_class * w, axis=-1) / ops.sum(w)


def _spatial_mean(x):
    """(batch, ..., classes) -> (batch, classes): mean over middle axes."""
    axes = tuple(range(1, len(x.shape) - 1))
    return ops.mean(x, axis=axes) if axes else x


def _activate(y_pred, from_logits, mode):
    if not from_logits:
        return y_pred
    if mode == constants.MULTICLASS_MODE:
        return ops.softmax(y_pred, axis=-1)
    return ops.sigmoid(y_pred)


def _to_logits(y_pred, from_logits):
    """Probabilities -> logits (clipped) when `from_logits` is False."""
    if from_logits:
        return y_pred
    p = ops.clip(y_pred, constants.EPSILON, 1.0 - constants.EPSILON)
    return ops.log(p) - ops.log1p(-p)


def _elementwise_bce(y_true, y_pred, from_logits):
    if from_logits:
        # softplus(z) - y z == -[y log s(z) + (1 - y) log(1 - s(z))].
        return ops.softplus(y_pred) - y_true * y_pred
    p = ops.clip(y_pred, constants.EPSILON, 1.0 - constants.EPSILON)
    return -(y_true * ops.log(p) + (1.0 - y_true) * ops.log1p(-p))


# --- cross-entropy and focal -------------------------------------------------


def binary_crossentropy(y_true, y_pred, from_logits=True,
                        class_weights: Optional[Sequence[float]] = None):
    """Binary cross-entropy per sample, class-weighted over the last axis.

    `l = -[y log p + (1 - y) log(1 - p)]`, averaged over the pixels of each
    class, then `sum_c w_c l_c / sum_c w_c`.

    Args:
        y_true: `(batch, ..., classes)` targets in [0, 1].
        y_pred: logits (or probabilities), same shape.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights. Defaults to `None` (equal).

    Returns:
        `(batch,)` float32 losses.

    Example:

    >>> loss = binary_crossentropy([[1.0, 0.0]], [[0.0, 0.0]])
    >>> round(float(loss[0]), 4)  # -log(0.5)
    0.6931
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    per_class = _spatial_mean(_elementwise_bce(y_true, y_pred, from_logits))
    return class_weighted_mean(per_class, class_weights)


def focal_loss(y_true, y_pred, gamma=2.0, alpha: Optional[float] = None,
               from_logits=True,
               class_weights: Optional[Sequence[float]] = None):
    """Sigmoid focal loss (Lin et al. 2017) per sample.

    `FL = -alpha_t (1 - p_t)^gamma log(p_t)` with `p_t = p y + (1-p)(1-y)`
    and `alpha_t = alpha y + (1 - alpha)(1 - y)` (no alpha term when
    `alpha` is None), averaged over pixels, then class-weighted.

    Args:
        y_true: `(batch, ..., classes)` targets in [0, 1].
        y_pred: logits (or probabilities), same shape.
        gamma: focusing parameter; 0 gives BCE. Defaults to `2.0`.
        alpha: weight of the positive class in [0, 1]. Defaults to `None`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights. Defaults to `None`.

    Returns:
        `(batch,)` float32 losses.

    Example:

    >>> loss = focal_loss([[1.0]], [[0.0]], gamma=2.0)
    >>> round(float(loss[0]), 4)  # 0.5**2 * log(2)
    0.1733
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    ce = _elementwise_bce(y_true, y_pred, from_logits)
    p = ops.sigmoid(y_pred) if from_logits else y_pred
    p_t = p * y_true + (1.0 - p) * (1.0 - y_true)
    loss = ce * ops.power(1.0 - p_t, gamma)
    if alpha is not None:
        loss = loss * (alpha * y_true + (1.0 - alpha) * (1.0 - y_true))
    return class_weighted_mean(_spatial_mean(loss), class_weights)


def weighted_log_loss(y_true, y_pred, weights=(1, 1, 1, 1, 1, 2),
                      from_logits=True):
    """Label-weighted binary log loss (RSNA ICH) per image.

    `L = -sum_j w_j [y_j log p_j + (1 - y_j) log(1 - p_j)] / sum_j w_j`,
    the competition metric per image; the default weights give `any`
    (the last label) twice the weight of each subtype. Inputs with middle
    axes, such as `(batch, slices, labels)` from a sequence model, give one
    loss per slice, so a Keras `sample_weight` of shape `(batch, slices)`
    can mask the padding.

    Args:
        y_true: `(batch, ..., labels)` targets in [0, 1].
        y_pred: logits (or probabilities), same shape.
        weights: one weight per label. Defaults to `(1, 1, 1, 1, 1, 2)`.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.

    Returns:
        `(batch, ...)` float32 losses (`y_pred.shape[:-1]`).

    Example:

    >>> loss = weighted_log_loss([[0.0] * 6], [[0.1] * 6],
    ...                          from_logits=False)
    >>> round(float(loss[0]), 5)  # -log(0.9)
    0.10536
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    return class_weighted_mean(
        _elementwise_bce(y_true, y_pred, from_logits), list(weights))


# --- dice --------------------------------------------------------------------


def soft_dice_score(y_true, probs, axes, smooth=1.0, eps=1e-7):
    """`(2 sum(y p) + smooth) / (sum(y) + sum(p) + smooth)` over `axes`.

    When both sums are 0 and `smooth` is 0 the score is 1 (an empty mask
    predicted empty is perfect, as in the Kaggle Dice).
    """
    intersection = ops.sum(y_true * probs, axis=axes)
    cardinality = ops.sum(y_true + probs, axis=axes)
    denominator = cardinality + smooth
    score = (2.0 * intersection + smooth) / ops.maximum(denominator, eps)
    return ops.where(denominator > 0, score, ops.ones_like(score))


def soft_dice_loss(y_true, y_pred, from_logits=True, smooth=1.0,
                   per_image=False, mode=constants.MULTILABEL_MODE,
                   class_weights: Optional[Sequence[float]] = None,
                   eps=1e-7):
    """Soft Dice loss, `1 - soft_dice_score`, per class then class-weighted.

    `D_c = (2 sum(y p) + smooth) / (sum(y) + sum(p) + smooth)`, the sums
    running over each image's pixels (`per_image=True`) or over all pixels of
    the batch (`per_image=False`); `L = sum_c w_c (1 - D_c) / sum_c w_c`.

    Empty masks: with `smooth > 0` an empty mask predicted all-zero scores
    `D = 1` (loss 0), and an empty mask with predicted mass `S = sum(p)`
    scores `smooth / (S + smooth)`, so false positives on empty images are
    penalised. With `smooth = 0` an empty mask predicted all-zero still
    scores 1; any predicted mass on it scores 0. Per image, images are
    averaged with equal weight (Keras' batch mean).

    Args:
        y_true: `(batch, ..., classes)` masks in [0, 1] (one-hot for
            multiclass).
        y_pred: logits (or probabilities), same shape.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        smooth: added to numerator and denominator. Defaults to `1.0`.
        per_image: Dice per image instead of over the batch. Defaults to
            `False`.
        mode: "binary", "multilabel" (sigmoid) or "multiclass" (softmax).
            Defaults to `"multilabel"`.
        class_weights: per-class weights. Defaults to `None`.
        eps: lower bound of the denominator. Defaults to `1e-7`.

    Returns:
        `(batch,)` losses when `per_image`, else a scalar.

    Example:

    >>> loss = soft_dice_loss([[[1.0], [1.0], [0.0], [0.0]]],
    ...                       [[[1.0], [0.0], [1.0], [0.0]]],
    ...                       from_logits=False, smooth=0.0)
    >>> float(loss)  # 1 - 2 * 1 / (2 + 2)
    0.5
    """
    check_mode(mode)
    y_true, y_pred = _prepare(y_true, y_pred)
    probs = _activate(y_pred, from_logits, mode)
    rank = len(y_pred.shape)
    if per_image:
        axes = tuple(range(1, rank - 1))
        if not axes:
            raise ValueError(
                "`per_image=True` needs spatial axes (batch, ..., classes). "
                f"Received: y_pred.shape={tuple(y_pred.shape)}")
    else:
        axes = tuple(range(rank - 1))
    score = soft_dice_score(y_true, probs, axes, smooth=smooth, eps=eps)
    return class_weighted_mean(1.0 - score, class_weights)


# --- Lovasz ------------------------------------------------------------------


def lovasz_grad(gt_sorted):
    """Gradient of the Lovasz extension of the Jaccard loss (Berman 2018).

    For ground truth sorted by decreasing error, entry `i` is
    `J(i) - J(i - 1)` with `J(i) = 1 - |gt \\ S_i| / |gt u S_i|`, `S_i` the
    `i` pixels with the largest errors. Works on the last axis.
    """
    gts = ops.sum(gt_sorted, axis=-1, keepdims=True)
    intersection = gts - ops.cumsum(gt_sorted, axis=-1)
    union = gts + ops.cumsum(1.0 - gt_sorted, axis=-1)
    jaccard = 1.0 - intersection / ops.maximum(union, 1e-12)
    return ops.concatenate(
        [jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)


def _lovasz_rows(errors, gt):
    """Lovasz extension of the Jaccard loss for each row of `errors`."""
    errors_sorted, order = ops.top_k(errors, k=ops.shape(errors)[-1])
    gt_sorted = ops.take_along_axis(gt, order, axis=-1)
    grad = ops.stop_gradient(lovasz_grad(gt_sorted))
    return errors_sorted, grad


def _rows_by_class(x, per_image):
    """(batch, ..., classes) -> (batch, classes, pixels) or (classes, n)."""
    x = ops.moveaxis(x, -1, 1)
    shape = ops.shape(x)
    if per_image:
        return ops.reshape(x, (shape[0], shape[1], -1))
    x = ops.moveaxis(x, 1, 0)
    return ops.reshape(x, (shape[1], -1))


def lovasz_hinge_loss(y_true, y_pred, from_logits=True, per_image=True,
                      class_weights: Optional[Sequence[float]] = None):
    """Binary Lovasz hinge loss (Berman et al. 2018), each channel apart.

    With `s = 2y - 1` and hinge errors `e = 1 - z s` (logits `z`), sorted
    decreasingly as `e_(1) >= ... >= e_(P)`:
    `L = sum_i relu(e_(i)) g_i`, `g = lovasz_grad(y sorted like e)`,
    the Lovasz extension of the Jaccard loss. An empty mask gives
    `L = relu(max e)`, a push of every logit below -1.

    Args:
        y_true: `(batch, ..., classes)` binary masks.
        y_pred: logits, same shape (probabilities are turned into logits
            when `from_logits=False`).
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        per_image: one loss per (image, class), averaged over images;
            otherwise over all pixels of the batch. Defaults to `True`.
        class_weights: per-class weights. Defaults to `None`.

    Returns:
        `(batch,)` losses when `per_image`, else a scalar.

    Example:

    >>> loss = lovasz_hinge_loss([[[1.0], [0.0]]], [[[2.0], [-2.0]]])
    >>> float(loss[0])  # every hinge error is negative
    0.0
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    logits = _to_logits(y_pred, from_logits)
    signs = 2.0 * y_true - 1.0
    errors = _rows_by_class(1.0 - logits * signs, per_image)
    gt = _rows_by_class(y_true, per_image)
    errors_sorted, grad = _lovasz_rows(errors, gt)
    per_class = ops.sum(ops.relu(errors_sorted) * grad, axis=-1)
    return class_weighted_mean(per_class, class_weights)


def lovasz_softmax_loss(y_true, y_pred, from_logits=True, per_image=False,
                        classes="present",
                        class_weights: Optional[Sequence[float]] = None):
    """Multiclass Lovasz-Softmax loss (Berman et al. 2018).

    For each class `c`, errors `e = |1[y = c] - p_c|` sorted decreasingly
    give `L_c = sum_i e_(i) g_i` with `g = lovasz_grad(1[y = c] sorted)`;
    `L` is the class-weighted mean of `L_c` over the classes present in the
    ground truth (`classes="present"`) or over all classes (`"all"`). When
    no class is present the loss is 0.

    Args:
        y_true: one-hot `(batch, ..., classes)` or integer ids
            `(batch, ...)` (or `(batch, ..., 1)`).
        y_pred: `(batch, ..., classes)` logits (softmax is applied) or
            probabilities.
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        per_image: one loss per image, averaged over images; otherwise over
            all pixels of the batch. Defaults to `False`.
        classes: "present" or "all". Defaults to `"present"`.
        class_weights: per-class weights. Defaults to `None`.

    Returns:
        `(batch,)` losses when `per_image`, else a scalar.

    Example:

    >>> loss = lovasz_softmax_loss([[0, 1]], [[[1.0, 0.0], [0.0, 1.0]]],
    ...                            from_logits=False)
    >>> float(loss)  # a perfect prediction
    0.0
    """
    if classes not in ("present", "all"):
        raise ValueError("`classes` must be 'present' or 'all'. "
                         f"Received: classes={classes!r}")
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.cast(y_pred, _FLOAT)
    n_classes = _classes(y_pred)
    if (len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1
            and n_classes != 1):
        y_true = y_true[..., 0]  # class ids with a channel axis
    if len(y_true.shape) == len(y_pred.shape) - 1:
        y_true = ops.one_hot(ops.cast(y_true, "int32"), n_classes,
                             dtype=_FLOAT)
    y_true, y_pred = _prepare(y_true, y_pred)
    probs = _activate(y_pred, from_logits, constants.MULTICLASS_MODE)
    fg = _rows_by_class(y_true, per_image)
    errors = ops.abs(fg - _rows_by_class(probs, per_image))
    errors_sorted, grad = _lovasz_rows(errors, fg)
    per_class = ops.sum(errors_sorted * grad, axis=-1)
    if class_weights is None:
        w = ops.ones((n_classes,), dtype=_FLOAT)
    else:
        if n_classes is not None and n_classes != len(class_weights):
            raise ValueError(
                f"`class_weights` has {len(class_weights)} values but "
                f"y_pred has {n_classes} classes. "
                f"Received: class_weights={class_weights}")
        w = ops.convert_to_tensor(class_weights, dtype=_FLOAT)
    if classes == "present":
        w = w * ops.cast(ops.sum(fg, axis=-1) > 0, _FLOAT)
    else:
        w = w * ops.ones_like(per_class)
    return ops.divide_no_nan(ops.sum(per_class * w, axis=-1),
                             ops.sum(w, axis=-1))


# --- ranking -----------------------------------------------------------------


def lsep_loss(y_true, y_pred, from_logits=True):
    """Log-sum-exp pairwise ranking loss (Li et al. 2017, LSEP) per sample.

    `L = log(1 + sum_{v in Y+} sum_{u in Y-} exp(f_u - f_v))` over pairs of
    a positive label `v` and a negative label `u`; soft targets weight each
    pair by `y_v (1 - y_u)`. A sample without positives or without
    negatives has loss 0. Computed with a max shift, so it never overflows.

    Args:
        y_true: `(batch, labels)` multilabel targets.
        y_pred: `(batch, labels)` scores (logits); probabilities are turned
            into logits when `from_logits=False` (same ranking, same loss).
        from_logits: whether `y_pred` holds logits. Defaults to `True`.

    Returns:
        `(batch,)` float32 losses.

    Example:

    >>> loss = lsep_loss([[1.0, 0.0]], [[0.0, 0.0]])
    >>> round(float(loss[0]), 4)  # log(1 + e^0)
    0.6931
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    if len(y_pred.shape) != 2:
        raise ValueError("`lsep_loss` takes (batch, labels). "
                         f"Received: y_pred.shape={tuple(y_pred.shape)}")
    scores = _to_logits(y_pred, from_logits)
    # diff[b, u, v] = f_u - f_v, pair weight (1 - y_u) y_v.
    diff = scores[:, :, None] - scores[:, None, :]
    pairs = (1.0 - y_true)[:, :, None] * y_true[:, None, :]
    masked = ops.where(pairs > 0, diff, ops.full_like(diff, -1e30))
    shift = ops.maximum(ops.max(masked, axis=(1, 2)), 0.0)
    total = ops.sum(pairs * ops.exp(masked - shift[:, None, None]),
                    axis=(1, 2))
    return shift + ops.log(ops.exp(-shift) + total)


# --- combinations ------------------------------------------------------------


def combo_loss(y_true, y_pred, bce=1.0, dice=1.0, focal=0.0, gamma=2.0,
               alpha: Optional[float] = None, smooth=1.0, per_image=False,
               from_logits=True,
               class_weights: Optional[Sequence[float]] = None):
    """`bce * BCE + dice * Dice + focal * Focal` (the SIIM 1st-place loss).

    Terms with weight 0 are not computed. The Dice term is a scalar over
    the batch unless `per_image`; the sum is then broadcast over the batch,
    so the Keras batch mean adds it once.

    Args:
        y_true: `(batch, ..., classes)` masks.
        y_pred: logits (or probabilities), same shape.
        bce, dice, focal: term weights, e.g. (3, 1, 4) in SIIM's first
            stage. Default to `1.0, 1.0, 0.0`.
        gamma, alpha: focal parameters (see `focal_loss`).
        smooth, per_image: Dice parameters (see `soft_dice_loss`).
        from_logits: whether `y_pred` holds logits. Defaults to `True`.
        class_weights: per-class weights for every term. Defaults to `None`.

    Returns:
        `(batch,)` float32 losses.

    Example:

    >>> loss = combo_loss([[1.0]], [[0.0]], bce=3.0, dice=0.0, focal=0.0)
    >>> round(float(loss[0]), 4)  # 3 log 2
    2.0794
    """
    y_true, y_pred = _prepare(y_true, y_pred)
    total = ops.zeros((ops.shape(y_pred)[0],), dtype=_FLOAT)
    if bce:
        total = total + bce * binary_crossentropy(
            y_true, y_pred, from_logits, class_weights)
    if dice:
        total = total + dice * soft_dice_loss(
            y_true, y_pred, from_logits, smooth=smooth, per_image=per_image,
            class_weights=class_weights)
    if focal:
        total = total + focal * focal_loss(
            y_true, y_pred, gamma=gamma, alpha=alpha,
            from_logits=from_logits, class_weights=class_weights)
    return total

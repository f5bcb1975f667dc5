"""Optimizers with a discriminative learning rate for the encoder.

The HPA seed trains a pretrained encoder slower than the freshly initialised
decoder and head (discriminative, layer-wise decaying learning rates).
`optimizer.encoder_lr_mult` in the config asks for that: the encoder's
variables are updated with `learning_rate * encoder_lr_mult`, everything
else with `learning_rate`.

This is done per variable inside the optimizer's update, not by scaling
gradients: Adam and RMSprop normalise the gradient, so a scaled gradient
would give (almost) the same step. Each variable's update is exactly the
one of the plain optimizer at its own learning rate, as PyTorch's
parameter groups do (decoupled weight decay too: `var -= var * wd * lr`
with the variable's learning rate). One optimizer keeps one set of slots,
one iteration count and the one `learning_rate` variable that
`callbacks.StageLR` assigns each batch, so schedules, gradient
accumulation, EMA, clipping, mixed precision, `tf.distribute` and
`jit_compile=True` work as with the plain optimizer.

    cfg.optimizer (name, encoder_lr_mult) + model
      -> make_optimizer(cfg, lr, model)
      -> EncoderLRAdam / ...AdamW / ...SGD / ...RMSprop
         (encoder_variables = paths of the encoder's variables)
"""

import keras
from keras import ops

from kaggle_tf.training.accumulation import ReplicaAccumulationMixin

ENCODER_PREFIX = "encoder"


def _unwrap(model):
    """The plain model inside a training wrapper (`augmented`), or it."""
    return getattr(model, "inner_model", model)


def encoder_layers(model):
    """The model's layers named "encoder" or starting with "encoder"."""
    return [layer for layer in _unwrap(model).layers
            if layer.name.startswith(ENCODER_PREFIX)]


def encoder_variable_paths(model):
    """Paths (`variable.path`) of every variable of the model's encoder.

    Raises:
        ValueError: when the model has no encoder layer, or when an encoder
            variable's path is also the path of another variable of the
            model (the optimizer could not tell them apart).
    """
    layers = encoder_layers(model)
    if not layers:
        raise ValueError(
            "`optimizer.encoder_lr_mult`: model "
            f"{_unwrap(model).name!r} has no layer named 'encoder*'")
    paths = {v.path for layer in layers for v in layer.weights}
    encoder_ids = {id(v) for layer in layers for v in layer.weights}
    clash = sorted(v.path for v in _unwrap(model).weights
                   if id(v) not in encoder_ids and v.path in paths)
    if clash:
        raise ValueError(
            "`optimizer.encoder_lr_mult`: variables outside the encoder "
            f"share the paths of encoder variables: {clash[:5]}")
    return sorted(paths)


class EncoderLRMixin:
    """Gives the variables listed in `encoder_variables` a scaled LR.

    Mixed into a Keras optimizer class (before it); see the module
    docstring. Variables are matched by `variable.path` when the optimizer
    is built, then by the optimizer's own variable index, which also works
    for the per-replica variables of a `tf.distribute` strategy.

    Args:
        encoder_lr_mult: the encoder's learning rate is
            `learning_rate * encoder_lr_mult`. Defaults to `1.0`.
        encoder_variables: paths of the encoder's variables (see
            `encoder_variable_paths`) or the variables themselves.
            Defaults to `None` (none: the plain optimizer).
        **kwargs: the base optimizer's arguments.
    """

    def __init__(self, *args, encoder_lr_mult=1.0, encoder_variables=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not encoder_lr_mult >= 0:
            raise ValueError("`encoder_lr_mult` must be >= 0. Received: "
                             f"encoder_lr_mult={encoder_lr_mult!r}")
        self.encoder_lr_mult = float(encoder_lr_mult)
        self.encoder_variables = tuple(sorted(
            v if isinstance(v, str) else v.path
            for v in (encoder_variables or ())))
        self._encoder_indices = frozenset()

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        paths = set(self.encoder_variables)
        self._encoder_indices = frozenset(
            i for i, v in enumerate(variables)
            if getattr(v, "path", None) in paths)

    def is_encoder_variable(self, variable):
        """Whether `variable` (a built variable) gets the encoder's LR."""
        return self._get_variable_index(variable) in self._encoder_indices

    def _variable_lr(self, variable, learning_rate):
        if (self.encoder_lr_mult == 1.0
                or not self.is_encoder_variable(variable)):
            return learning_rate
        return ops.multiply(ops.cast(learning_rate, variable.dtype),
                            ops.cast(self.encoder_lr_mult, variable.dtype))

    def _decays_in_update_step(self):
        return bool(self._encoder_indices) and self.encoder_lr_mult != 1.0

    def _apply_weight_decay(self, variables):
        # Decoupled decay runs in `update_step`, at each variable's LR.
        if not self._decays_in_update_step():
            super()._apply_weight_decay(variables)

    def update_step(self, gradient, variable, learning_rate):
        lr = self._variable_lr(variable, learning_rate)
        if (self.weight_decay is not None and self._decays_in_update_step()
                and self._use_weight_decay(variable)):
            wd = ops.cast(self.weight_decay, variable.dtype)
            decay = ops.multiply(variable, ops.multiply(
                wd, ops.cast(lr, variable.dtype)))
            self.assign_sub(variable, decay)
        return super().update_step(gradient, variable, lr)

    def get_config(self):
        config = super().get_config()
        config.update(encoder_lr_mult=self.encoder_lr_mult,
                      encoder_variables=list(self.encoder_variables))
        return config


@keras.saving.register_keras_serializable(package="kaggle_tf")
class EncoderLRAdam(EncoderLRMixin, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with `encoder_lr_mult` (see the mixin).

    Example:

    >>> opt = EncoderLRAdam(learning_rate=1e-3, encoder_lr_mult=0.1,
    ...                     encoder_variables=encoder_variable_paths(model))
    """


@keras.saving.register_keras_serializable(package="kaggle_tf")
class EncoderLRAdamW(EncoderLRMixin, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with `encoder_lr_mult` (see the mixin)."""


@keras.saving.register_keras_serializable(package="kaggle_tf")
class EncoderLRSGD(EncoderLRMixin, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with `encoder_lr_mult` (see the mixin)."""


@keras.saving.register_keras_serializable(package="kaggle_tf")
class EncoderLRRMSprop(EncoderLRMixin, keras.optimizers.RMSprop):
    """`keras.optimizers.RMSprop` with `encoder_lr_mult` (see the mixin)."""


PLAIN = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW,
         "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
DISCRIMINATIVE = {"adam": EncoderLRAdam, "adamw": EncoderLRAdamW,
                  "sgd": EncoderLRSGD, "rmsprop": EncoderLRRMSprop}


def _accumulating(base):
    """`base` with `ReplicaAccumulationMixin`, registered as
    `kaggle_tf>Accumulating<base name>`."""
    cls = type(f"Accumulating{base.__name__}",
               (ReplicaAccumulationMixin, base),
               {"__module__": __name__,
                "__doc__": f"`{base.__name__}` whose gradient accumulation "
                           "also runs on several TensorFlow replicas "
                           "(`training.accumulation`)."})
    return keras.saving.register_keras_serializable(package="kaggle_tf")(cls)


# Used when `train.grad_accum_steps` > 1.
ACCUMULATING = {name: _accumulating(cls) for name, cls in PLAIN.items()}
ACCUMULATING_DISCRIMINATIVE = {name: _accumulating(cls)
                               for name, cls in DISCRIMINATIVE.items()}


def optimizer_kwargs(cfg, lr):
    """Keyword arguments of the Keras optimizer `cfg.optimizer` names.

    Gradient accumulation (`train.grad_accum_steps`), EMA (`train.ema`) and
    clipping (`optimizer.clipnorm`) use Keras' built-in options.
    """
    opt = cfg.optimizer
    kwargs = dict(learning_rate=float(lr))
    if opt.clipnorm:
        kwargs["clipnorm"] = opt.clipnorm
    if cfg.train.grad_accum_steps > 1:
        kwargs["gradient_accumulation_steps"] = cfg.train.grad_accum_steps
    if cfg.train.ema:
        kwargs["use_ema"] = True
        kwargs["ema_momentum"] = cfg.train.ema
    if opt.name == "adamw":
        kwargs["weight_decay"] = opt.weight_decay
    elif opt.name == "sgd":
        kwargs.update(momentum=opt.momentum, nesterov=True)
    elif opt.name == "rmsprop":
        kwargs["momentum"] = opt.momentum
    elif opt.name != "adam":
        raise ValueError(f"unknown `optimizer.name` {opt.name!r}. Choices: "
                         f"{', '.join(PLAIN)}")
    return kwargs


def make_optimizer(cfg, lr, model=None):
    """The optimizer of `cfg.optimizer` at learning rate `lr`.

    With `optimizer.encoder_lr_mult` != 1 the model's encoder variables
    (layers named "encoder*") train at `lr * encoder_lr_mult` and the rest
    at `lr`; otherwise this is the plain Keras optimizer.

    Args:
        cfg: a validated `Config` (`optimizer`, `train.grad_accum_steps`,
            `train.ema`).
        lr: the base learning rate (a stage's `lr`).
        model: the model to train; needed when `encoder_lr_mult` != 1.

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: `encoder_lr_mult` != 1 without a model, or a model
            without an encoder layer.

    Example:

    >>> cfg = config.load("configs/protein.json",
    ...                   ["optimizer.encoder_lr_mult=0.1"])  # doctest: +SKIP
    >>> model.compile(optimizer=make_optimizer(cfg, 3e-4, model), ...)
    """
    kwargs = optimizer_kwargs(cfg, lr)
    mult = float(cfg.optimizer.encoder_lr_mult)
    accumulates = cfg.train.grad_accum_steps > 1
    if mult == 1.0:
        plain = ACCUMULATING if accumulates else PLAIN
        return plain[cfg.optimizer.name](**kwargs)
    if model is None:
        raise ValueError("`optimizer.encoder_lr_mult` != 1 needs the model "
                         "(make_optimizer(cfg, lr, model))")
    classes = ACCUMULATING_DISCRIMINATIVE if accumulates else DISCRIMINATIVE
    return classes[cfg.optimizer.name](
        encoder_lr_mult=mult, encoder_variables=encoder_variable_paths(model),
        **kwargs)

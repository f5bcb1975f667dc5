"""The registry of augmentation ops: name -> op class.

Example:

>>> from kaggle_tf.augment import ops
>>> ops.get("Flip")("horizontal", p=0.5)
"""

OPS = {}


def register_op(name):
    """Class decorator: registers an op class under `name`."""

    def wrap(cls):
        if name in OPS:
            raise ValueError(f"augment op {name!r} is already registered")
        OPS[name] = cls
        return cls

    return wrap


def names():
    """Every registered op name, sorted."""
    return sorted(OPS)


def get(name):
    """The op class registered as `name`; the error lists the choices."""
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown augment op {name!r}; known: "
                         f"{', '.join(names())}") from None

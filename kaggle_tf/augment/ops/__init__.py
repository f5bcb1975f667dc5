"""Pure-TensorFlow augmentation ops (the only TF code of `augment`).

Each op draws its parameters once per batch (per sample, from a stateless
seed) and applies them to images and masks; containers combine them. See
`base` for how a tree runs and `warp` for the resampling primitive. No op
here calls Python at run time (the CPU-only albumentations fallback is
`kaggle_tf.augment.cpu_fallback`, imported only when asked for).

Example:

>>> from kaggle_tf.augment import ops
>>> tree = ops.Compose([ops.Flip("horizontal", p=0.5),
...                     ops.Gamma((80, 120), p=0.3)])
>>> ops.names()[:3]
['Affine', 'BrightnessContrast', 'CenterCrop']
"""

from kaggle_tf.augment.ops.base import Compose
from kaggle_tf.augment.ops.base import Container
from kaggle_tf.augment.ops.base import Node
from kaggle_tf.augment.ops.base import OneOf
from kaggle_tf.augment.ops.base import OneOrOther
from kaggle_tf.augment.ops.base import Op
from kaggle_tf.augment.ops.base import Sequential
from kaggle_tf.augment.ops.base import SomeOf
from kaggle_tf.augment.ops.base import run
from kaggle_tf.augment.ops.dropout import CoarseDropout
from kaggle_tf.augment.ops.geometric import Affine
from kaggle_tf.augment.ops.geometric import CenterCrop
from kaggle_tf.augment.ops.geometric import Dihedral
from kaggle_tf.augment.ops.geometric import ElasticTransform
from kaggle_tf.augment.ops.geometric import Flip
from kaggle_tf.augment.ops.geometric import GridDistortion
from kaggle_tf.augment.ops.geometric import OpticalDistortion
from kaggle_tf.augment.ops.geometric import RandomCrop
from kaggle_tf.augment.ops.geometric import RandomResizedCrop
from kaggle_tf.augment.ops.geometric import Resize
from kaggle_tf.augment.ops.keras_layers import KerasLayer
from kaggle_tf.augment.ops.photometric import BrightnessContrast
from kaggle_tf.augment.ops.photometric import Gamma
from kaggle_tf.augment.ops.registry import OPS
from kaggle_tf.augment.ops.registry import get
from kaggle_tf.augment.ops.registry import names
from kaggle_tf.augment.ops.registry import register_op

__all__ = [
    "OPS", "Affine", "BrightnessContrast", "CenterCrop", "CoarseDropout",
    "Compose", "Container", "Dihedral", "ElasticTransform", "Flip", "Gamma",
    "GridDistortion", "KerasLayer", "Node", "OneOf", "OneOrOther", "Op",
    "OpticalDistortion", "RandomCrop", "RandomResizedCrop", "Resize",
    "Sequential", "SomeOf", "get", "names", "register_op", "run",
]

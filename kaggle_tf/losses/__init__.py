"""Training losses: a pure `keras.ops` function per loss
(`losses.functional`) and a thin, serializable `keras.losses.Loss` class.

Classes: `BCE`, `Dice`, `Focal`, `Combo`, `LovaszHinge`, `LovaszSoftmax`,
`LSEP`, `WeightedLogLoss`, `LumbarLogLoss`. Modes and shapes:
`losses.constants`. Configs name losses through `build(loss_cfg)`;
`names()` lists the choices.
"""

from kaggle_tf.losses import constants
from kaggle_tf.losses import functional
from kaggle_tf.losses.bce import BCE
from kaggle_tf.losses.combo import Combo
from kaggle_tf.losses.dice import Dice
from kaggle_tf.losses.focal import Focal
from kaggle_tf.losses.log_loss import WeightedLogLoss
from kaggle_tf.losses.lovasz import LovaszHinge
from kaggle_tf.losses.lovasz import LovaszSoftmax
from kaggle_tf.losses.lsep import LSEP
from kaggle_tf.losses.lumbar import LumbarLogLoss
from kaggle_tf.losses.registry import LOSSES
from kaggle_tf.losses.registry import build
from kaggle_tf.losses.registry import names
from kaggle_tf.losses.registry import register_loss

__all__ = ["BCE", "Combo", "Dice", "Focal", "LOSSES", "LSEP", "LovaszHinge",
           "LovaszSoftmax", "LumbarLogLoss", "WeightedLogLoss", "build",
           "constants", "functional", "names", "register_loss"]

"""A tiny encoder for tests: timm's `test_resnet`, exactly.

timm's `test_resnet` is a ResNet-D with a deep stem of width 16, one block
per stage (basic, basic, bottleneck, basic) and planes (32, 48, 48, 96), so
the pyramid has channels (32, 32, 48, 192, 96). It has about 0.3 M
parameters and is parity-testable against timm.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("test_resnet", input_shape=(64, 64, 3))
>>> [enc.output[k].shape[-1] for k in ("P1", "P2", "P3", "P4", "P5")]
[32, 32, 48, 192, 96]
"""

from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.encoders.resnet import BASIC
from kaggle_tf.models.encoders.resnet import BOTTLENECK
from kaggle_tf.models.encoders.resnet import resnet
from kaggle_tf.models.encoders.resnet import torch_mapping


@register_encoder("test_resnet", channels=(32, 32, 48, 192, 96),
                  timm_name="test_resnet", torch_mapping=torch_mapping,
                  first_conv="conv1.0.weight")
def test_resnet(input_shape):
    """timm's `test_resnet` (for tests)."""
    return resnet(input_shape, (BASIC, BASIC, BOTTLENECK, BASIC),
                  (1, 1, 1, 1), channels=(32, 48, 48, 96), stem_width=16,
                  stem_type="deep", avg_down=True, name="test_resnet")

"""SE-ResNeXt encoders in timm's layout (`seresnext50_32x4d`).

timm's SE-ResNeXt is its `ResNet` with ResNeXt bottlenecks (32 groups of
width 4 in the first stage) and an `SEModule` after the last BatchNorm of
every block (`se.fc1` / `se.fc2`: 1x1 convs with bias, reduction 16 rounded
to a multiple of 8). The 3x3 grouped conv is a Keras `Conv2D(groups=32)`,
which runs on CPU under TensorFlow, under XLA and on GPU/TPU; its kernel
`(3, 3, in / 32, out)` is PyTorch's `(out, in / 32, 3, 3)` transposed.

This is timm's layout (`conv1`, `layer1.0.se.fc1`, ...), not Cadene's
`pretrainedmodels` one (`layer0.conv1`, `se_module.fc1`) that smp's
`se_resnext50_32x4d` uses: those checkpoints (and smp models on them) load
into `legacy_seresnext50_32x4d` (`kaggle_tf.models.encoders.smp`), which
also keeps their ceil-mode stem pooling.

Example:

>>> from kaggle_tf.models import encoders
>>> enc = encoders.build("seresnext50_32x4d", input_shape=(64, 64, 3))
>>> enc.output["P5"].shape
(None, 2, 2, 2048)
"""

from kaggle_tf.models.encoders.registry import register_encoder
from kaggle_tf.models.encoders.resnet import BOTTLENECK
from kaggle_tf.models.encoders.resnet import resnet
from kaggle_tf.models.encoders.resnet import torch_mapping


@register_encoder("seresnext50_32x4d", channels=(64, 256, 512, 1024, 2048),
                  timm_name="seresnext50_32x4d", torch_mapping=torch_mapping,
                  first_conv="conv1.weight")
def seresnext50_32x4d(input_shape):
    """SE-ResNeXt-50 32x4d (timm `seresnext50_32x4d`)."""
    return resnet(input_shape, BOTTLENECK, (3, 4, 6, 3), cardinality=32,
                  base_width=4, attn="se", name="seresnext50_32x4d")

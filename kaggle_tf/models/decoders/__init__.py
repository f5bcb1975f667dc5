"""Segmentation decoders on top of an encoder pyramid: U-Net and FPN.

Both follow segmentation_models_pytorch (smp): same blocks, same parameter
counts, and layers named after smp's modules (`decoder.blocks.0.conv1.0` ->
`decoder_blocks_0_conv1_0`), so an smp checkpoint loads with
`weights.load_smp_state_dict`.

Example:

>>> from kaggle_tf.models.decoders import FPN, Unet
>>> model = Unet("resnet34", classes=4, input_shape=(256, 1600, 3))
"""

from kaggle_tf.models.decoders.fpn import FPN
from kaggle_tf.models.decoders.unet import Unet

__all__ = ["FPN", "Unet"]

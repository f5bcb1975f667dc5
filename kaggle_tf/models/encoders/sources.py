"""What `encoder_weights="imagenet"` means: a timm hub id per encoder.

Each entry is a Hugging Face hub repo in timm's format (`config.json` with
the `pretrained_cfg`, plus `model.safetensors`) and the mean / std that
repo's weights were trained with (copied from its `pretrained_cfg`, so
a model can be built with the right input normalization without the
download; the downloaded `config.json` wins when it says otherwise).

Choice of tag (checked against timm 1.0's `list_pretrained()` and
`get_pretrained_cfg()`): timm's default tag (what
`timm.create_model(name, pretrained=True)` loads), except where a Kaggle
seed's weights are closer to another ImageNet-1k tag:

============================  =====================================  =====
encoder                       default source (hf://...)              note
============================  =====================================  =====
resnet18 / 34 / 50            timm/resnet{18,34,50}.a1_in1k          a
seresnext50_32x4d             timm/seresnext50_32x4d.gluon_in1k      b
densenet121                   timm/densenet121.ra_in1k               a
convnext_tiny                 timm/convnext_tiny.fb_in22k_ft_in1k    c
edgenext_base                 timm/edgenext_base.in21k_ft_in1k       h
efficientnet_b0 / b2          timm/efficientnet_b{0,2}.ra_in1k       a
efficientnet_b1               timm/efficientnet_b1.ft_in1k           a
efficientnet_b3 / b4          timm/efficientnet_b{3,4}.ra2_in1k      a
tf_efficientnet_b0..b4        timm/tf_efficientnet_b*.in1k           d
efficientnet_b5               timm/efficientnet_b5.sw_in12k_ft_in1k  a
tf_efficientnet_b5            timm/tf_efficientnet_b5.in1k           d
tf_efficientnet_b6 / b7       timm/tf_efficientnet_b{6,7}.aa_in1k    f
mobilenetv2_100               timm/mobilenetv2_100.ra_in1k           a
resnext50_32x4d               timm/resnext50_32x4d.a1h_in1k          a
resnext101_32x4d              timm/resnext101_32x4d.gluon_in1k       g
resnext101_32x8d              timm/resnext101_32x8d.tv_in1k          a
inception_v3                  timm/inception_v3.tv_in1k              a
inception_v4                  timm/inception_v4.tf_in1k              a
test_resnet                   timm/test_resnet.r160_in1k             e
============================  =====================================  =====

a. timm's default tag.
b. timm's default is `racm_in1k`; the seeds (HPA, RSNA ICH, SIIM) used the
   Gluon / Cadene ImageNet-1k SE-ResNeXt50, of which `gluon_in1k` is the
   port timm keeps under this architecture.
c. timm's default is `in12k_ft_in1k`; the RSNA 2024 lumbar seeds used the
   Facebook ImageNet-22k -> 1k fine-tune.
d. The original TensorFlow ImageNet-1k weights (smp's
   `timm-efficientnet-b*` "imagenet"); timm's default is the noisy
   student `ns_jft_in1k` (JFT data), available as
   `hf://timm/tf_efficientnet_b4.ns_jft_in1k`.
e. timm's tiny test model (mean = std = 0.5); the test suite serves it
   from a local cache of random tensors.
f. No plain `in1k` tag for b6 / b7: the AutoAugment ImageNet-1k weights
   of the original TensorFlow release (timm's default is `ns_jft_in1k`).
g. ImageNet-1k only (timm's default is the semi-supervised YFCC100M
   fine-tune).
h. timm's default is `usi_in1k`; the RSNA 2024 lumbar seed used the
   ImageNet-21k -> 1k fine-tune. timm's model source gives EdgeNeXt-Base
   82.5% top-1 (83.7% with USI training), at 256 x 256.

No default: efficientnet_b6 / b7 (timm has no weights for them; the
`tf_` variants have), legacy_xception and the smp-layout encoders
(`legacy_seresnext50_32x4d`, `smp-*`), whose timm weights are not on the
Hugging Face hub: give them a local file or folder.

ImageNet top-1 accuracies are not listed: timm's results tables
(`results/results-imagenet.csv`) are not shipped in its wheel, and this
table records only what the installed timm states.

Add a line here when registering an encoder that has ImageNet weights.
"""

from kaggle_tf.models.encoders import registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# encoder -> (hub repo id, mean, std)
SOURCES = {
    "resnet18": ("timm/resnet18.a1_in1k", IMAGENET_MEAN, IMAGENET_STD),
    "resnet34": ("timm/resnet34.a1_in1k", IMAGENET_MEAN, IMAGENET_STD),
    "resnet50": ("timm/resnet50.a1_in1k", IMAGENET_MEAN, IMAGENET_STD),
    "seresnext50_32x4d": ("timm/seresnext50_32x4d.gluon_in1k",
                          IMAGENET_MEAN, IMAGENET_STD),
    "densenet121": ("timm/densenet121.ra_in1k", IMAGENET_MEAN, IMAGENET_STD),
    "convnext_tiny": ("timm/convnext_tiny.fb_in22k_ft_in1k", IMAGENET_MEAN,
                      IMAGENET_STD),
    "edgenext_base": ("timm/edgenext_base.in21k_ft_in1k", IMAGENET_MEAN,
                      IMAGENET_STD),
    "efficientnet_b0": ("timm/efficientnet_b0.ra_in1k", IMAGENET_MEAN,
                        IMAGENET_STD),
    "efficientnet_b1": ("timm/efficientnet_b1.ft_in1k", IMAGENET_MEAN,
                        IMAGENET_STD),
    "efficientnet_b2": ("timm/efficientnet_b2.ra_in1k", IMAGENET_MEAN,
                        IMAGENET_STD),
    "efficientnet_b3": ("timm/efficientnet_b3.ra2_in1k", IMAGENET_MEAN,
                        IMAGENET_STD),
    "efficientnet_b4": ("timm/efficientnet_b4.ra2_in1k", IMAGENET_MEAN,
                        IMAGENET_STD),
    "tf_efficientnet_b0": ("timm/tf_efficientnet_b0.in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "tf_efficientnet_b1": ("timm/tf_efficientnet_b1.in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "tf_efficientnet_b2": ("timm/tf_efficientnet_b2.in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "tf_efficientnet_b3": ("timm/tf_efficientnet_b3.in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "tf_efficientnet_b4": ("timm/tf_efficientnet_b4.in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "efficientnet_b5": ("timm/efficientnet_b5.sw_in12k_ft_in1k",
                        IMAGENET_MEAN, IMAGENET_STD),
    "tf_efficientnet_b5": ("timm/tf_efficientnet_b5.in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "tf_efficientnet_b6": ("timm/tf_efficientnet_b6.aa_in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "tf_efficientnet_b7": ("timm/tf_efficientnet_b7.aa_in1k", IMAGENET_MEAN,
                           IMAGENET_STD),
    "mobilenetv2_100": ("timm/mobilenetv2_100.ra_in1k", IMAGENET_MEAN,
                        IMAGENET_STD),
    "resnext50_32x4d": ("timm/resnext50_32x4d.a1h_in1k", IMAGENET_MEAN,
                        IMAGENET_STD),
    "resnext101_32x4d": ("timm/resnext101_32x4d.gluon_in1k", IMAGENET_MEAN,
                         IMAGENET_STD),
    "resnext101_32x8d": ("timm/resnext101_32x8d.tv_in1k", IMAGENET_MEAN,
                         IMAGENET_STD),
    "inception_v3": ("timm/inception_v3.tv_in1k", HALF, HALF),
    "inception_v4": ("timm/inception_v4.tf_in1k", HALF, HALF),
    "test_resnet": ("timm/test_resnet.r160_in1k", HALF, HALF),
}

HUB_PREFIX = "hf://"


def pretrained_source(name):
    """The hub source `encoder_weights="imagenet"` loads for `name`.

    Args:
        name: a registered encoder name.

    Returns:
        `"hf://<repo_id>"`.

    Raises:
        ValueError: `name` is unknown, or has no ImageNet weights here.

    Example:

    >>> pretrained_source("resnet34")
    'hf://timm/resnet34.a1_in1k'
    """
    registry.spec(name)  # unknown names list the choices
    if name not in SOURCES:
        raise ValueError(
            f"encoder {name!r} has no default pretrained source "
            "(encoder_weights='imagenet'); give encoder_weights='hf://"
            "<repo_id>', a weight file or a directory. Encoders with one: "
            f"{', '.join(sorted(SOURCES))}. Received: encoder={name!r}")
    return HUB_PREFIX + SOURCES[name][0]


def default_stats(name):
    """`(mean, std)` of `name`'s default source, or None without one."""
    entry = SOURCES.get(name)
    return None if entry is None else (entry[1], entry[2])


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "SOURCES", "default_stats",
           "pretrained_source"]

"""albumentations specs: accepted forms, errors, CPU fallback, build()."""

import json
import os
import warnings

import numpy as np
import pytest

from kaggle_tf.augment import Augmenter
from kaggle_tf.augment import UnsupportedError
from kaggle_tf.augment import albumentations as alb
from kaggle_tf.augment import build
from kaggle_tf.augment import cpu_fallback
from kaggle_tf.augment import from_albumentations
from kaggle_tf.augment import names
from kaggle_tf.augment import ops
from kaggle_tf.config.schema import AugmentConfig

from augment_helpers import blob_mask
from augment_helpers import smooth_image

A = pytest.importorskip("albumentations")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
TRANSFORMS = os.path.join(ROOT, "configs", "transforms")
REFLECT_101 = 4


def _siim_1st():
    """The SIIM 1st-place "complex" list (sneddy's train_transforms_complex
    JSON, albumentations 0.3) in albumentations 2.x terms: RandomContrast /
    RandomBrightness became RandomBrightnessContrast with one limit at 0;
    ElasticTransform keeps alpha=120, sigma=6 with 0.3's uniform noise
    (2.x dropped alpha_affine); OpticalDistortion keeps distort_limit=2
    (2.x dropped shift_limit); Resize and Normalize are the model's input
    size and preprocessing, not augmentation."""
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.OneOf([
            A.RandomBrightnessContrast(brightness_limit=0,
                                       contrast_limit=0.2, p=0.5),
            A.RandomGamma(gamma_limit=(80, 120), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.2,
                                       contrast_limit=0, p=0.5),
        ], p=0.3),
        A.OneOf([
            A.ElasticTransform(alpha=120, sigma=6.0,
                               noise_distribution="uniform",
                               border_mode=REFLECT_101, p=0.5),
            A.GridDistortion(num_steps=5, distort_limit=0.3,
                             border_mode=REFLECT_101, p=0.5),
            A.OpticalDistortion(distort_limit=2, border_mode=REFLECT_101,
                                p=0.5),
        ], p=0.3),
        A.ShiftScaleRotate(shift_limit=0.0625, scale_limit=0.1,
                           rotate_limit=45, border_mode=REFLECT_101, p=0.5),
    ])


def _hpa_d4():
    """D4 symmetries, brightness, scale and rotation (HPA)."""
    return A.Compose([
        A.D4(p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0,
                                   p=0.5),
        A.Affine(scale=(0.9, 1.1), rotate=(-15, 15),
                 border_mode=REFLECT_101, p=0.5),
    ])


@pytest.mark.parametrize("name,make", [("siim_1st", _siim_1st),
                                       ("hpa_d4", _hpa_d4)])
def test_checked_in_specs_are_albumentations_output(name, make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = A.to_dict(make())
    with open(os.path.join(TRANSFORMS, f"{name}.json")) as f:
        stored = json.load(f)
    assert stored["transform"] == json.loads(json.dumps(
        expected["transform"]))
    # albumentations reads it back, and so do we.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        A.from_dict(stored)
    tree = alb.to_tree(stored)
    assert isinstance(tree, ops.Compose)


def test_every_spec_form_gives_the_same_tree(tmp_path):
    flip = {"__class_fullname__": "HorizontalFlip", "p": 0.5}
    prefixed = {"__class_fullname__":
                "albumentations.augmentations.transforms.HorizontalFlip",
                "always_apply": False, "p": 0.5}
    to_dict = A.to_dict(A.Compose([A.HorizontalFlip(p=0.5)]))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(to_dict))
    forms = [flip, [flip], prefixed, to_dict, str(path), path,
             {"__class_fullname__": "Compose", "p": 1.0,
              "transforms": [flip]}]
    reprs = {repr(alb.to_tree(form)) for form in forms}
    assert reprs == {"Compose([Flip(p=0.5)], p=1.0)"}


def test_converted_arguments_match_albumentations():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ssr = A.ShiftScaleRotate(shift_limit=0.1, scale_limit=0.2,
                                 rotate_limit=30)
        affine = A.Affine(scale={"x": 1.2}, rotate=10, shear=5)
    op = alb.to_tree(A.to_dict(ssr)["transform"]).transforms[0]
    assert op.scale_x == pytest.approx(ssr.scale["x"])
    assert op.translate_x == pytest.approx(ssr.translate_percent["x"])
    assert op.rotate == pytest.approx(ssr.rotate)
    op = alb.to_tree({"__class_fullname__": "Affine", "scale": {"x": 1.2},
                      "rotate": 10, "shear": 5}).transforms[0]
    assert op.scale_x == pytest.approx(affine.scale["x"])
    assert op.scale_y == pytest.approx(affine.scale["y"])
    assert op.rotate == pytest.approx(affine.rotate)
    assert op.shear_x == pytest.approx(affine.shear["x"])
    gamma = alb.to_tree({"__class_fullname__": "RandomGamma",
                         "gamma_limit": 120}).transforms[0]
    assert gamma.gamma_limit == A.RandomGamma(gamma_limit=120).gamma_limit


@pytest.mark.parametrize("spec,words", [
    ({"__class_fullname__": "Blur", "p": 0.5}, ["Blur", "unsupported"]),
    ({"__class_fullname__": "HorizontalFlip", "p": 0.5, "foo": 1},
     ["HorizontalFlip", "`foo`"]),
    ({"__class_fullname__": "ShiftScaleRotate", "interpolation": 2},
     ["ShiftScaleRotate", "interpolation=2"]),
    ({"__class_fullname__": "Affine", "fit_output": True},
     ["Affine", "fit_output"]),
    ({"__class_fullname__": "CLAHE", "p": 0.5}, ["CLAHE", "uint8"]),
    ({"__class_fullname__": "ElasticTransform", "alpha_affine": 3.6},
     ["ElasticTransform", "alpha_affine"]),
    ({"__class_fullname__": "CoarseDropout", "fill": "inpaint_ns"},
     ["CoarseDropout", "fill"]),
    ({"__class_fullname__": "Resize", "height": 8, "width": 8, "p": 0.5},
     ["Resize", "p=1"]),
    ({"__class_fullname__": "OneOf", "transforms": [
        {"__class_fullname__": "Resize", "height": 8, "width": 8}]},
     ["Resize", "OneOf"]),
    ({"__class_fullname__": "keras.layers.RandomNope"}, ["RandomNope"]),
    ({"__class_fullname__": "keras.layers.RandomRotation"},
     ["RandomRotation", "factor"]),
    ({"__class_fullname__": "HorizontalFlip", "p": 2}, ["HorizontalFlip",
                                                        "p"]),
])
def test_unsupported_raises_naming_it(spec, words):
    with pytest.raises(ValueError) as info:
        from_albumentations(
            {"__class_fullname__": "Compose", "p": 1.0, "transforms": [
                {"__class_fullname__": "VerticalFlip", "p": 0.5}, spec]})
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert "transforms[1]" in message or "RandomNope" in message


def test_unsupported_error_type_and_bad_specs(tmp_path):
    with pytest.raises(UnsupportedError):
        alb.to_tree({"__class_fullname__": "Blur"})
    with pytest.raises(ValueError, match="not found"):
        from_albumentations(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="invalid JSON"):
        from_albumentations(str(tmp_path / "bad.json"))
    with pytest.raises(ValueError, match="__class_fullname__"):
        from_albumentations({"transforms": []})
    with pytest.raises(ValueError, match="placement"):
        from_albumentations([], placement="gpu")
    with pytest.raises(ValueError, match="images"):
        from_albumentations([])({"masks": np.zeros((1, 4, 4, 1))})
    with pytest.raises(ValueError, match="square"):
        from_albumentations([{"__class_fullname__": "D4", "p": 1.0}],
                            placement="model")(np.zeros((1, 4, 6, 1)))


def test_cpu_fallback_runs_albumentations_with_masks():
    spec = [{"__class_fullname__": "HorizontalFlip", "p": 1.0},
            {"__class_fullname__": "PiecewiseAffine", "p": 1.0,
             "scale": [0.03, 0.05]}]
    with pytest.warns(UserWarning, match="CPU"):
        aug = from_albumentations(spec, seed=0, allow_cpu_fallback=True)
    assert not aug.xla_compatible
    leaves = aug.tree.leaves()
    assert isinstance(leaves[0], ops.Flip)
    assert isinstance(leaves[1], cpu_fallback.AlbumentationsCPU)
    images = smooth_image()[None]
    masks = blob_mask()[None, ..., None]
    out = aug({"images": images, "segmentation_masks": masks})
    assert out["images"].shape == images.shape
    assert set(np.unique(out["segmentation_masks"])) <= {0.0, 1.0}
    assert not np.allclose(out["images"], images[:, :, ::-1])


def test_keras_layers_in_specs():
    spec = [{"__class_fullname__": "keras.layers.RandomRotation",
             "factor": 0.1, "fill_mode": "reflect", "p": 1.0},
            {"__class_fullname__": "keras.layers.RandomBrightness",
             "factor": 0.2, "p": 0.5}]
    aug = from_albumentations(spec, seed=1)
    assert not aug.xla_compatible  # RandomRotation uses an op XLA lacks
    assert not aug._runner.jit_compile
    images = np.repeat(smooth_image()[None], 3, 0)
    masks = np.repeat(blob_mask()[None, ..., None], 3, 0)
    out = aug({"images": images, "segmentation_masks": masks})
    assert set(np.unique(out["segmentation_masks"])) <= {0.0, 1.0}
    assert float(out["images"].numpy().max()) <= 1.0
    again = from_albumentations(spec, seed=1)(
        {"images": images, "segmentation_masks": masks})
    np.testing.assert_array_equal(out["images"], again["images"])


def test_build_from_config(tmp_path):
    assert build(AugmentConfig()) is None
    assert build(AugmentConfig(transforms=[])) is None
    aug = build(AugmentConfig(transforms=[
        {"__class_fullname__": "HorizontalFlip", "p": 0.5}],
        placement="model", seed=3))
    assert isinstance(aug, Augmenter)
    assert aug.placement == "model" and aug.seed == 3
    # A relative path is found next to the config file too.
    aug = build({"transforms": "transforms/hpa_d4.json"},
                base_dir=os.path.join(ROOT, "configs"))
    assert aug.placement == "dataset"
    assert isinstance(aug.tree.transforms[0], ops.Dihedral)
    with pytest.raises(UnsupportedError):
        build(AugmentConfig(transforms=[{"__class_fullname__": "Blur"}]))


def test_names_lists_supported_transforms():
    supported = names()
    for name in ("HorizontalFlip", "ShiftScaleRotate", "ElasticTransform",
                 "GridDistortion", "OpticalDistortion", "D4", "OneOf",
                 "CoarseDropout", "RandomResizedCrop"):
        assert name in supported
    assert "Flip" in ops.names()
    # The CPU fallback is not one of the pure-TF ops.
    assert "AlbumentationsCPU" not in ops.names()
    with pytest.raises(ValueError, match="known"):
        ops.get("Nope")


def test_shape_changing_transforms_set_the_output_shape():
    aug = from_albumentations(
        [{"__class_fullname__": "RandomCrop", "height": 32, "width": 40},
         {"__class_fullname__": "Resize", "height": 16, "width": 20}],
        seed=0)
    images = np.stack([smooth_image(seed=i) for i in range(2)])
    masks = np.stack([blob_mask(seed=i) for i in range(2)])[..., None]
    out = aug({"images": images, "segmentation_masks": masks})
    assert out["images"].shape == (2, 16, 20, 3)
    assert out["segmentation_masks"].shape == (2, 16, 20, 1)
    assert aug.compute_output_shape((None, 48, 64, 3)) == (None, 16, 20, 3)


def test_cpu_fallback_is_never_imported_unless_asked_for():
    code = (
        "import sys\n"
        "import kaggle_tf.augment, kaggle_tf.training.run, "
        "kaggle_tf.inference.predict\n"
        "from kaggle_tf.augment import from_albumentations\n"
        "from_albumentations([{'__class_fullname__': 'HorizontalFlip', "
        "'p': 0.5}], allow_cpu_fallback=True)\n"
        "print('kaggle_tf.augment.cpu_fallback' in sys.modules)\n")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_cpu_fallback_is_refused_where_it_would_run_on_the_device():
    spec = [{"__class_fullname__": "Blur", "p": 1.0, "blur_limit": [3, 3]}]
    with pytest.raises(ValueError, match="placement='dataset'"):
        from_albumentations(spec, placement="model",
                            allow_cpu_fallback=True)
    from kaggle_tf import config

    base = {"task": "steel", "augment": {"transforms": spec,
                                         "allow_cpu_fallback": True}}
    config.from_dict(base)  # dataset placement on CPU/GPU: allowed
    for key, value, named in (("augment", {"placement": "model"},
                               "augment.placement"),
                              ("train", {"strategy": "tpu"},
                               "train.strategy")):
        data = json.loads(json.dumps(base))
        data.setdefault(key, {}).update(value)
        with pytest.raises(config.ConfigError, match=named):
            config.from_dict(data)

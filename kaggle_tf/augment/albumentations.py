"""albumentations specs -> trees of our TF ops.

A spec is what `albumentations.to_dict` writes (`{"__version__": ...,
"transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms":
[...]}}`), a bare transform dict, a list of transform dicts, or a path to a
JSON file holding one of those. Class names may carry module prefixes
(`albumentations.augmentations.transforms.HorizontalFlip`). Keras' own
layers are written `keras.layers.RandomRotation` with the layer's arguments
and an optional `p`.

Each supported name has a converter below (`register_albumentations`),
which maps the transform's arguments to an op and rejects what it cannot
honour: an unknown transform, an unknown argument, or a value without a TF
equivalent raises `UnsupportedError` (a `ValueError`) naming the transform,
the argument and where it sits in the spec. With `allow_cpu_fallback=True`
such a transform runs in albumentations on the CPU instead
(`kaggle_tf.augment.cpu_fallback`).

Supported (albumentations 2.x names; old 1.x names and arguments where
noted): HorizontalFlip, VerticalFlip, Transpose, RandomRotate90, D4,
RandomBrightnessContrast, RandomBrightness, RandomContrast (1.x),
RandomGamma, ShiftScaleRotate, Affine (no `fit_output`), Rotate (no
`crop_border`), RandomScale (keeps the image size), ElasticTransform (no
1.x `alpha_affine`), GridDistortion, OpticalDistortion (no 1.x
`shift_limit`), CoarseDropout (1.x `max_holes`... too), Cutout (1.x),
Resize, RandomCrop, CenterCrop, RandomResizedCrop, and the containers
Compose, Sequential, OneOf, SomeOf, OneOrOther. Interpolation 0 (nearest)
and 1 (linear) only.

Example:

>>> tree = to_tree({"__class_fullname__": "HorizontalFlip", "p": 0.5})
>>> names()[:3]
['Affine', 'CenterCrop', 'CoarseDropout']
"""

import copy
import json
import os

from kaggle_tf.augment import ops

CONVERTERS = {}
CONTAINERS = ("Compose", "Sequential", "OneOf", "SomeOf", "OneOrOther")
KERAS_PREFIXES = ("keras.layers.", "keras.")


class UnsupportedError(ValueError):
    """A transform or an argument that has no TF op here."""


def register_albumentations(*names_):
    """Registers a converter `fn(args) -> op` under albumentations names."""

    def wrap(fn):
        for name in names_:
            CONVERTERS[name] = fn
        return fn

    return wrap


# Names we refuse with an explanation rather than "unsupported".
REFUSED = ("CLAHE",)


def names():
    """Every supported transform name (containers included), sorted."""
    return sorted((set(CONVERTERS) | set(CONTAINERS)) - set(REFUSED))


# --- reading specs -------------------------------------------------------


def load_spec(spec):
    """Any accepted spec form -> `{"__version__", "transform": Compose}`.

    Args:
        spec: a dict (`A.to_dict` output or one transform), a list of
            transform dicts, or a path to a JSON file with one of those.

    Returns:
        A new dict whose "transform" is a Compose dict.

    Example:

    >>> load_spec([{"__class_fullname__": "HorizontalFlip", "p": 0.5}])
    {'transform': {'__class_fullname__': 'Compose', 'p': 1.0, 'transforms':
    [{'__class_fullname__': 'HorizontalFlip', 'p': 0.5}]}}
    """
    source = None
    if isinstance(spec, (str, os.PathLike)):
        source = os.fspath(spec)
        try:
            with open(source, encoding="utf-8") as f:
                spec = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"augment spec file not found: {source}") \
                from None
        except json.JSONDecodeError as e:
            raise ValueError(f"augment spec {source}: invalid JSON at line "
                             f"{e.lineno}: {e.msg}") from None
    spec = copy.deepcopy(spec)
    version = None
    if isinstance(spec, dict) and "transform" in spec \
            and "__class_fullname__" not in spec:
        version = spec.get("__version__")
        spec = spec["transform"]
    if isinstance(spec, list):
        spec = {"__class_fullname__": "Compose", "p": 1.0,
                "transforms": spec}
    if not isinstance(spec, dict) or "__class_fullname__" not in spec:
        where = f" ({source})" if source else ""
        raise ValueError(
            "an augment spec must be albumentations' to_dict output, a "
            "transform dict with `__class_fullname__`, or a list of them"
            f"{where}. Received: {str(spec)[:120]}")
    if short_name(spec["__class_fullname__"]) != "Compose":
        spec = {"__class_fullname__": "Compose", "p": 1.0,
                "transforms": [spec]}
    out = {"transform": spec}
    if version is not None:
        out["__version__"] = version
    return out


def short_name(fullname):
    """`albumentations.augmentations.transforms.HorizontalFlip` ->
    `HorizontalFlip`; Keras layers keep a `keras.layers.` prefix.

    Example:

    >>> short_name("keras.src.layers.RandomFlip")
    'keras.layers.RandomFlip'
    """
    if not isinstance(fullname, str):
        raise UnsupportedError(f"`__class_fullname__` must be a string. "
                               f"Received: {fullname!r}")
    for prefix in KERAS_PREFIXES:
        if fullname.startswith(prefix):
            return "keras.layers." + fullname[len(prefix):].split(".")[-1]
    return fullname.rsplit(".", 1)[-1]


class Args:
    """A transform's arguments; `done()` rejects any not consumed."""

    def __init__(self, name, spec, where):
        self.name = name
        self.where = where
        self.values = {k: v for k, v in spec.items()
                       if k != "__class_fullname__"}
        self.used = set()

    def error(self, message):
        return UnsupportedError(f"{self.name} ({self.where}): {message}")

    def has(self, key):
        return key in self.values and self.values[key] is not None

    def get(self, key, default=None):
        self.used.add(key)
        value = self.values.get(key)
        return default if value is None else value

    def ignore(self, *keys):
        """Arguments that only affect bounding boxes or keypoints."""
        self.used.update(keys)

    def p(self, default=0.5):
        if self.get("always_apply", False):
            self.get("p")
            return 1.0
        return self.get("p", default)

    def only(self, key, allowed, default, why=""):
        value = self.get(key, default)
        if value not in allowed:
            raise self.error(f"{key}={value!r} is not supported{why}; "
                             f"use one of {list(allowed)}")
        return value

    def interpolation(self, key="interpolation", default=1):
        return self.only(key, (0, 1), default,
                         " (only 0 nearest and 1 linear)")

    def border(self, default=0):
        return {
            "border_mode": self.only("border_mode", (0, 1, 2, 3, 4),
                                     default),
            "fill": self.get("fill", self.get("value", 0.0)),
            "fill_mask": self.get("fill_mask", self.get("mask_value", 0.0)),
        }

    def done(self):
        unknown = sorted(set(self.values) - self.used)
        if unknown:
            raise self.error(f"unsupported argument `{unknown[0]}`; "
                             f"supported: {sorted(self.used)}")


def symmetric(value, name, args, bias=0.0):
    """albumentations' symmetric range: x -> (-x, x); pairs pass through;
    `bias` is added to both ends."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = -abs(value), abs(value)
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = value
    else:
        raise args.error(f"`{name}` must be a number or a pair. "
                         f"Received: {value!r}")
    return float(low) + bias, float(high) + bias


def fixed_or_range(value, name, args):
    """Affine's arguments: x -> (x, x); pairs pass through."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), float(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return float(value[0]), float(value[1])
    raise args.error(f"`{name}` must be a number or a pair. "
                     f"Received: {value!r}")


def per_axis(value, name, args, default):
    """Affine's `scale`/`shear`/`translate_*`: number, pair or {"x", "y"}
    -> ((x_low, x_high), (y_low, y_high))."""
    if isinstance(value, dict):
        unknown = set(value) - {"x", "y"}
        if unknown or not value:
            raise args.error(f"`{name}` as a dict takes keys 'x' and 'y'. "
                             f"Received: {value!r}")
        return (fixed_or_range(value.get("x", default), name, args),
                fixed_or_range(value.get("y", default), name, args))
    pair = fixed_or_range(value, name, args)
    return pair, pair


# --- converters ----------------------------------------------------------


@register_albumentations("HorizontalFlip")
def _horizontal_flip(args):
    return ops.Flip("horizontal", p=args.p())


@register_albumentations("VerticalFlip")
def _vertical_flip(args):
    return ops.Flip("vertical", p=args.p())


@register_albumentations("Transpose")
def _transpose(args):
    return ops.Dihedral(["t"], p=args.p())


@register_albumentations("RandomRotate90")
def _random_rotate90(args):
    return ops.Dihedral(["e", "r90", "r180", "r270"], p=args.p())


@register_albumentations("D4")
def _d4(args):
    return ops.Dihedral(p=args.p(1.0))


@register_albumentations("RandomBrightnessContrast")
def _brightness_contrast(args):
    return ops.BrightnessContrast(
        brightness_limit=symmetric(args.get("brightness_limit", 0.2),
                                   "brightness_limit", args),
        contrast_limit=symmetric(args.get("contrast_limit", 0.2),
                                 "contrast_limit", args),
        brightness_by_max=args.get("brightness_by_max", True),
        ensure_safe_range=args.get("ensure_safe_range", False),
        p=args.p())


@register_albumentations("RandomBrightness")
def _brightness(args):
    return ops.BrightnessContrast(
        brightness_limit=symmetric(args.get("limit", 0.2), "limit", args),
        contrast_limit=(0.0, 0.0),
        brightness_by_max=args.get("brightness_by_max", True), p=args.p())


@register_albumentations("RandomContrast")
def _contrast(args):
    return ops.BrightnessContrast(
        brightness_limit=(0.0, 0.0),
        contrast_limit=symmetric(args.get("limit", 0.2), "limit", args),
        p=args.p())


@register_albumentations("RandomGamma")
def _gamma(args):
    limit = args.get("gamma_limit", (80, 120))
    if isinstance(limit, (int, float)) and not isinstance(limit, bool):
        limit = (min(1.0, limit), max(1.0, limit))
    args.ignore("eps")
    return ops.Gamma(fixed_or_range(limit, "gamma_limit", args), p=args.p())


def _affine_common(args, border_default):
    return dict(interpolation=args.interpolation(),
                mask_interpolation=args.interpolation("mask_interpolation",
                                                      0),
                **args.border(border_default))


@register_albumentations("ShiftScaleRotate")
def _shift_scale_rotate(args):
    shift = args.get("shift_limit", 0.0625)
    shift_x = symmetric(args.get("shift_limit_x", shift), "shift_limit_x",
                        args)
    shift_y = symmetric(args.get("shift_limit_y", shift), "shift_limit_y",
                        args)
    scale = symmetric(args.get("scale_limit", 0.1), "scale_limit", args,
                      bias=1.0)
    args.ignore("rotate_method")
    return ops.Affine(
        scale_x=scale, scale_y=scale, translate_x=shift_x,
        translate_y=shift_y,
        rotate=symmetric(args.get("rotate_limit", 45), "rotate_limit", args),
        p=args.p(), **_affine_common(args, 0))


@register_albumentations("Affine")
def _affine(args):
    if args.get("fit_output", False):
        raise args.error("fit_output=True is not supported (it changes the "
                         "output size per sample)")
    scale_x, scale_y = per_axis(args.get("scale", (1.0, 1.0)), "scale",
                                args, 1.0)
    shear_x, shear_y = per_axis(args.get("shear", (0.0, 0.0)), "shear",
                                args, 0.0)
    unit = "percent"
    translate = args.get("translate_percent")
    if args.has("translate_px"):
        if translate is not None:
            raise args.error("give translate_percent or translate_px, not "
                             "both")
        unit, translate = "px", args.get("translate_px")
    translate_x, translate_y = per_axis(
        translate if translate is not None else 0.0, "translate", args, 0.0)
    args.ignore("rotate_method")
    return ops.Affine(
        scale_x=scale_x, scale_y=scale_y, translate_x=translate_x,
        translate_y=translate_y, translate_unit=unit,
        rotate=fixed_or_range(args.get("rotate", 0.0), "rotate", args),
        shear_x=shear_x, shear_y=shear_y,
        keep_ratio=args.get("keep_ratio", False),
        balanced_scale=args.get("balanced_scale", False), p=args.p(),
        **_affine_common(args, 0))


@register_albumentations("Rotate")
def _rotate(args):
    if args.get("crop_border", False):
        raise args.error("crop_border=True is not supported (it changes "
                         "the output size per sample)")
    args.ignore("rotate_method")
    return ops.Affine(rotate=symmetric(args.get("limit", 90), "limit", args),
                      p=args.p(), **_affine_common(args, 0))


@register_albumentations("RandomScale")
def _random_scale(args):
    # A batch has one shape: the scaled image is centre-cropped or
    # zero-padded back to the input size (RandomScale + CenterCrop /
    # PadIfNeeded(border_mode=0)).
    scale = symmetric(args.get("scale_limit", 0.1), "scale_limit", args,
                      bias=1.0)
    args.only("area_for_downscale", (None,), None)
    return ops.Affine(scale_x=scale, scale_y=scale, keep_ratio=True,
                      interpolation=args.interpolation(),
                      mask_interpolation=args.interpolation(
                          "mask_interpolation", 0),
                      border_mode=0, p=args.p())


def _distortion_common(args):
    args.ignore("keypoint_remapping_method")
    return _affine_common(args, 0)


@register_albumentations("ElasticTransform")
def _elastic(args):
    if args.get("alpha_affine", 0):
        raise args.error(
            "alpha_affine (albumentations 1.x) is not supported; "
            "albumentations 2.x dropped it: add an Affine instead")
    return ops.ElasticTransform(
        alpha=args.get("alpha", 1.0), sigma=args.get("sigma", 50.0),
        approximate=args.get("approximate", False),
        same_dxdy=args.get("same_dxdy", False),
        noise_distribution=args.get("noise_distribution", "gaussian"),
        p=args.p(), **_distortion_common(args))


@register_albumentations("GridDistortion")
def _grid(args):
    return ops.GridDistortion(
        num_steps=args.get("num_steps", 5),
        distort_limit=symmetric(args.get("distort_limit", 0.3),
                                "distort_limit", args),
        normalized=args.get("normalized", True), p=args.p(),
        **_distortion_common(args))


@register_albumentations("OpticalDistortion")
def _optical(args):
    shift = args.get("shift_limit", 0)
    if shift and symmetric(shift, "shift_limit", args) != (0.0, 0.0):
        raise args.error("shift_limit (albumentations 1.x) is not "
                         "supported; albumentations 2.x dropped it")
    return ops.OpticalDistortion(
        distort_limit=symmetric(args.get("distort_limit", 0.05),
                                "distort_limit", args),
        mode=args.only("mode", ("camera", "fisheye"), "camera"),
        p=args.p(), **_distortion_common(args))


@register_albumentations("CoarseDropout")
def _coarse_dropout(args):
    if any(args.has(k) for k in ("max_holes", "max_height", "max_width")):
        # albumentations 1.x arguments.
        most = args.get("max_holes", 8)
        high_h = args.get("max_height", 8)
        high_w = args.get("max_width", 8)
        holes = (args.get("min_holes", most), most)
        heights = (args.get("min_height", high_h), high_h)
        widths = (args.get("min_width", high_w), high_w)
    else:
        holes = args.get("num_holes_range", (1, 2))
        heights = args.get("hole_height_range", (0.1, 0.2))
        widths = args.get("hole_width_range", (0.1, 0.2))
    return ops.CoarseDropout(
        num_holes_range=holes, hole_height_range=heights,
        hole_width_range=widths,
        fill=args.get("fill", args.get("fill_value", 0.0)),
        fill_mask=args.get("fill_mask", args.get("mask_fill_value")),
        p=args.p())


@register_albumentations("Cutout")
def _cutout(args):
    count = args.get("num_holes", 8)
    height = args.get("max_h_size", 8)
    width = args.get("max_w_size", 8)
    return ops.CoarseDropout(
        num_holes_range=(count, count), hole_height_range=(height, height),
        hole_width_range=(width, width), fill=args.get("fill_value", 0.0),
        p=args.p())


def _size(args):
    if args.has("size"):
        size = args.get("size")
        if isinstance(size, int):
            return size, size
        return tuple(size)
    if not (args.has("height") and args.has("width")):
        raise args.error("needs `height` and `width` (or `size`)")
    return args.get("height"), args.get("width")


def _crop_common(args):
    return dict(interpolation=args.interpolation(),
                mask_interpolation=args.interpolation("mask_interpolation",
                                                      0))


@register_albumentations("Resize")
def _resize(args):
    height, width = _size(args)
    args.only("area_for_downscale", (None,), None)
    return ops.Resize(height, width, p=args.p(1.0), **_crop_common(args))


@register_albumentations("RandomCrop", "CenterCrop")
def _crop(args):
    height, width = _size(args)
    args.only("pad_if_needed", (False,), False,
              " (padding to a crop larger than the image)")
    args.ignore("pad_position", "border_mode", "fill", "fill_mask",
                "pad_mode", "pad_cval", "pad_cval_mask")
    cls = ops.RandomCrop if args.name == "RandomCrop" else ops.CenterCrop
    return cls(height, width, p=args.p(1.0))


@register_albumentations("RandomResizedCrop")
def _random_resized_crop(args):
    height, width = _size(args)
    args.only("area_for_downscale", (None,), None)
    return ops.RandomResizedCrop(
        height, width,
        scale=fixed_or_range(args.get("scale", (0.08, 1.0)), "scale", args),
        ratio=fixed_or_range(args.get("ratio", (0.75, 4 / 3)), "ratio",
                             args),
        p=args.p(1.0), **_crop_common(args))


@register_albumentations("CLAHE")
def _clahe(args):
    raise args.error(
        "CLAHE has no TF op here: albumentations equalizes the L channel "
        "of LAB on uint8 images with OpenCV's tile histograms, which we "
        "do not reproduce; Keras' ContrastLimitedAdaptiveHistogramEqualiz"
        "ation builds one-hot histograms of (batch, H, W, C, 256), too "
        "large for full-size images")


# --- the tree ------------------------------------------------------------


def _container(name, args, convert):
    children = args.get("transforms")
    if name == "OneOrOther" and children is None:
        children = [args.get("first"), args.get("second")]
    if not isinstance(children, list):
        raise args.error("`transforms` must be a list of transform dicts")
    nodes = [convert(child, f"{args.where}.transforms[{i}]")
             for i, child in enumerate(children)]
    if name in ("Compose", "Sequential"):
        for key in ("bbox_params", "keypoint_params"):
            args.get(key)  # boxes and keypoints are not augmented here
        if args.get("additional_targets"):
            raise args.error("additional_targets is not supported (only "
                             "'image' and 'mask')")
        args.only("mask_interpolation", (None, 0), None)
        args.ignore("is_check_shapes", "strict", "seed",
                    "save_applied_params")
        cls = ops.Compose if name == "Compose" else ops.Sequential
        return cls(nodes, p=args.p(1.0 if name == "Compose" else 0.5))
    if name == "OneOf":
        return ops.OneOf(nodes, p=args.p(0.5))
    if name == "SomeOf":
        return ops.SomeOf(nodes, n=args.get("n", 1),
                          replace=args.get("replace", False), p=args.p(1.0))
    return ops.OneOrOther(nodes, p=args.p(0.5))


def to_tree(spec, allow_cpu_fallback=False):
    """Converts a spec (any form `load_spec` takes) to an op tree.

    Args:
        spec: see `load_spec`.
        allow_cpu_fallback: run unsupported transforms in albumentations
            on the CPU instead of raising.

    Returns:
        The root `ops.Compose`, node indices assigned.

    Raises:
        UnsupportedError: naming the transform and argument.

    Example:

    >>> to_tree({"__class_fullname__": "D4", "p": 1.0})
    Compose([Dihedral(p=1.0)], p=1.0)
    """
    root = load_spec(spec)["transform"]

    def convert(node, where):
        if not isinstance(node, dict) or "__class_fullname__" not in node:
            raise UnsupportedError(f"{where}: a transform must be a dict "
                                   f"with `__class_fullname__`. Received: "
                                   f"{str(node)[:80]}")
        name = short_name(node["__class_fullname__"])
        args = Args(name, node, where)
        if name in CONTAINERS:
            out = _container(name, args, convert)
            args.done()
            return out
        try:
            if name.startswith("keras.layers."):
                layer = name[len("keras.layers."):]
                config = {k: v for k, v in args.values.items() if k != "p"}
                args.used.update(args.values)
                return ops.KerasLayer(layer, config, p=args.p(1.0))
            if name not in CONVERTERS:
                raise UnsupportedError(
                    f"{name} ({where}): unsupported transform; supported: "
                    f"{', '.join(names())}, and keras.layers."
                    f"{{{', '.join(ops.keras_layers.XLA_SAFE)}}}")
            out = CONVERTERS[name](args)
            args.done()
            return out
        except UnsupportedError as e:
            if not allow_cpu_fallback:
                raise UnsupportedError(
                    f"{e}. Pass allow_cpu_fallback=True to run it in "
                    "albumentations on the CPU (not on a TPU).") from None
            from kaggle_tf.augment import cpu_fallback

            return cpu_fallback.AlbumentationsCPU(node)
        except ValueError as e:
            message = str(e)
            for prefix in (f"{name}: ", f"{name.split('.')[-1]}: "):
                if message.startswith(prefix):
                    message = message[len(prefix):]
                    break
            raise ValueError(f"{name} ({where}): {message}") from None

    tree = convert(root, "transform")
    _check_sizes(tree, "transform")
    tree.assign_indices()
    return tree


def _check_sizes(node, where, always=True):
    """Ops that set the output size must always apply: a batch has one
    shape, so they cannot sit under a OneOf/SomeOf or a p < 1 Compose."""
    if isinstance(node, ops.Op):
        if node.changes_size() and not always:
            raise ValueError(
                f"{node.name} ({where}): sets the output size, so it must "
                "always apply; it cannot be inside OneOf, SomeOf, "
                "OneOrOther or a Compose/Sequential with p < 1")
        return
    keeps = isinstance(node, ops.Compose) and node.p == 1.0 and always
    for i, child in enumerate(node.transforms):
        _check_sizes(child, f"{where}.transforms[{i}]", keeps)

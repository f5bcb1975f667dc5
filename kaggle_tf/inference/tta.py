"""Test-time augmentation in the graph: transform, predict, invert, average.

>>> tta_model = wrap(model, mode="hflip")        # same inputs and outputs
>>> tta_model = wrap(model, mode={"d4": True, "scales": [0.875, 1.0, 1.125]},
...                  image_size=(1024, 1024))

A mode is a name (`MODES`) or a composition, every combination of its
parts being one pass:

- `"hflip"`, `"vflip"`, `"d4"`: flips / the D4 group. The D4 group is
  indexed 0..7: `k = 4 * t + r` means an optional transpose (`t`)
  followed by `r` quarter turns.
- `"scales"`: the image resized by each factor (bilinear; sides rounded
  to a multiple of `stride`, 32 by default, so that U-Nets take them).
- `"crops"`: `[h, w]`: five crops (the four corners and the centre) of
  that size, each predicted on its own (HPA: crops of a larger image).

Segmentation maps (rank-4 outputs) are transformed back exactly: flips
and turns inverted, scaled maps resized back to the crop, crops pasted
at their place and merged where they overlap; vector outputs
(classification) are merged as they are. `merge` ("mean",
"geometric_mean", "max") merges the passes (HPA's crops: "max").
"""

import keras
import numpy as np
from keras import ops

MODES = {
    "none": (0,),
    "hflip": (0, "h"),
    "vflip": (0, "v"),
    "d4": tuple(range(8)),
}


def plan(mode):
    """`mode` -> `(geometric ops, scales, crop size or None)`.

    Raises:
        ValueError: an unknown mode or composition key.
    """
    if isinstance(mode, str):
        if mode not in MODES:
            raise ValueError(f"unknown TTA mode {mode!r}. Choices: "
                             f"{', '.join(MODES)} or a composition such "
                             "as {'d4': True, 'scales': [0.875, 1.0]}")
        return MODES[mode], (1.0,), None
    if not isinstance(mode, dict):
        raise ValueError(f"a TTA mode is a name or a dict. Received: "
                         f"{mode!r}")
    unknown = sorted(set(mode) - {"hflip", "vflip", "d4", "scales",
                                  "crops"})
    if unknown:
        raise ValueError(f"unknown TTA key {unknown[0]!r}. Choices: "
                         "crops, d4, hflip, scales, vflip")
    if mode.get("d4"):
        geometric = MODES["d4"]
    else:
        geometric = (0,) + (("h",) if mode.get("hflip") else ()) + (
            ("v",) if mode.get("vflip") else ())
    scales = tuple(float(s) for s in (mode.get("scales") or (1.0,)))
    crops = mode.get("crops")
    return geometric, scales, (tuple(int(v) for v in crops)
                               if crops else None)


def needs_any_size(mode, input_shape):
    """Whether a model of `input_shape` must take other sizes under
    `mode` (scales, crops, or D4 on a non-square image)."""
    geometric, scales, crops = plan(mode)
    if crops or any(s != 1.0 for s in scales):
        return True
    return (len(input_shape) == 4 and input_shape[1] != input_shape[2]
            and any(not isinstance(op, str) and op != 0 for op in geometric))


def crop_boxes(size, crop):
    """The five crops `(y, x, h, w)` of `crop` in an image of `size`
    (corners, then centre; duplicates removed).

    Raises:
        ValueError: a crop larger than the image, or less than half of it
            (some pixels would be in no crop).
    """
    (height, width), (h, w) = size, crop
    if h > height or w > width or 2 * h < height or 2 * w < width:
        raise ValueError(f"TTA crops {list(crop)} must be at most the "
                         f"image ({height} x {width}) and at least half "
                         "of it")
    corners = [(0, 0), (0, width - w), (height - h, 0),
               (height - h, width - w),
               ((height - h) // 2, (width - w) // 2)]
    boxes = []
    for y, x in corners:
        if (y, x, h, w) not in boxes:
            boxes.append((y, x, h, w))
    return boxes


def scaled_size(size, scale, stride=32):
    """`size * scale`, each side rounded to a multiple of `stride`."""
    return tuple(max(stride, int(round(v * scale / stride)) * stride)
                 for v in size)


def _apply(x, op):
    """Applies one transform to a (B, H, W, C) tensor."""
    if op == 0:
        return x
    if op == "h":
        return ops.flip(x, axis=2)
    if op == "v":
        return ops.flip(x, axis=1)
    t, r = divmod(int(op), 4)
    if t:
        x = ops.transpose(x, (0, 2, 1, 3))
    for _ in range(r):  # one quarter turn counter-clockwise
        x = ops.flip(ops.transpose(x, (0, 2, 1, 3)), axis=1)
    return x


def _invert(x, op):
    if op in (0, "h", "v"):
        return _apply(x, op)
    t, r = divmod(int(op), 4)
    for _ in range(r):  # undo a quarter turn: turn clockwise
        x = ops.transpose(ops.flip(x, axis=1), (0, 2, 1, 3))
    if t:
        x = ops.transpose(x, (0, 2, 1, 3))
    return x


@keras.saving.register_keras_serializable(package="kaggle_tf")
class TTATransform(keras.layers.Layer):
    """One D4/flip transform of an image batch, or its inverse.

    Args:
        op: 0..7 (D4 index), "h" or "v".
        inverse: apply the inverse transform.
    """

    def __init__(self, op=0, inverse=False, **kwargs):
        super().__init__(**kwargs)
        self.op = op
        self.inverse = inverse

    def call(self, x):
        return _invert(x, self.op) if self.inverse else _apply(x, self.op)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        if self.op in (0, "h", "v"):
            return input_shape
        t, r = divmod(int(self.op), 4)
        return (b, w, h, c) if (t + r) % 2 else input_shape

    def get_config(self):
        return {**super().get_config(), "op": self.op,
                "inverse": self.inverse}


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Activation(keras.layers.Layer):
    """sigmoid / softmax / identity applied in float32."""

    def __init__(self, activation=None, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.activation = activation

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.activation == "sigmoid":
            return ops.sigmoid(x)
        if self.activation == "softmax":
            return ops.softmax(x, axis=-1)
        return x

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "activation": self.activation}


def _outputs_list(y):
    if isinstance(y, dict):
        return list(y.keys()), list(y.values())
    if isinstance(y, (list, tuple)):
        return None, list(y)
    return None, [y]


def wrap(model, mode="none", activation=None, merge="mean", name=None,
         image_size=None, stride=32):
    """Wraps `model` so that it predicts under TTA.

    Args:
        model: a Keras model taking (B, H, W, C) images (of any size when
            `mode` scales or crops: `needs_any_size`).
        mode: "none", "hflip", "vflip", "d4" or a composition (`plan`).
        activation: None (average the model's outputs as they are),
            "sigmoid" or "softmax" (average probabilities).
        merge: "mean", "geometric_mean" (of probabilities) or "max".
        name: the wrapper's name.
        image_size: `(H, W)` of the images, for scales and crops when the
            model's input size is not fixed.
        stride: scaled sides are rounded to a multiple of it.

    Returns:
        A `keras.Model` with the same inputs and output structure.
    """
    geometric, scales, crop = plan(mode)
    if merge not in ("mean", "geometric_mean", "max"):
        raise ValueError(f"unknown merge {merge!r}. Choices: mean, "
                         "geometric_mean, max")
    shape = tuple(model.input_shape[1:])
    resized = crop is not None or any(s != 1.0 for s in scales)
    if resized:
        size = tuple(shape[:2]) if None not in shape[:2] else image_size
        if size is None or None in tuple(size):
            raise ValueError("TTA scales and crops need the image size: "
                             "pass image_size=(H, W)")
        size = tuple(int(v) for v in size)
        shape = (*size, shape[-1])
    inputs = keras.Input(shape=shape, name="images")
    boxes = crop_boxes(shape[:2], crop) if crop is not None else [None]
    per_box, keys, n = [], None, 0
    for box in boxes:
        base = inputs if box is None else TTACrop(box, name=f"tta_crop_{n}")(
            inputs)
        here = tuple(shape[:2]) if box is None else box[2:]
        per_op = []
        for scale in scales:
            target = here if scale == 1.0 else scaled_size(here, scale,
                                                           stride)
            xs = base if target == here else TTAResize(
                target, name=f"tta_scale_{n}")(base)
            for op in geometric:
                x = TTATransform(op, name=f"tta_{n}")(xs)
                keys, outs = _outputs_list(model(x))
                fixed = []
                for j, y in enumerate(outs):
                    y = Activation(activation, name=f"tta_{n}_act_{j}")(y)
                    if len(y.shape) == 4:
                        y = TTATransform(op, inverse=True,
                                         name=f"tta_{n}_inv_{j}")(y)
                        if target != here:
                            y = TTAResize(here, name=f"tta_{n}_back_{j}")(y)
                    fixed.append(y)
                per_op.append(fixed)
                n += 1
        per_box.append(per_op)
    merged = []
    for j in range(len(per_box[0][0])):
        if crop is not None and len(per_box[0][0][j].shape) == 4:
            # Segmentation crops: merged per crop, pasted, then merged
            # where crops overlap.
            parts = [_merge([p[j] for p in per_op], merge,
                            f"tta_merge_{j}_crop_{b}")
                     for b, per_op in enumerate(per_box)]
            merged.append(PasteMerge(boxes, shape[:2], merge,
                                     name=f"tta_merge_{j}")(parts))
        else:
            merged.append(_merge([p[j] for per_op in per_box
                                  for p in per_op], merge,
                                 f"tta_merge_{j}"))
    if keys is not None:
        out = dict(zip(keys, merged))
    elif len(merged) == 1:
        out = merged[0]
    else:
        out = merged
    label = mode if isinstance(mode, str) else "composed"
    return keras.Model(inputs, out, name=name or f"{model.name}_tta_{label}")


def _merge(tensors, mode, name):
    return Merge(mode, name=name)(tensors)


@keras.saving.register_keras_serializable(package="kaggle_tf")
class TTAResize(keras.layers.Layer):
    """Bilinear resize of `(B, H, W, C)` to `size` (TTA scales)."""

    def __init__(self, size, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.size = tuple(int(v) for v in size)

    def call(self, x):
        return ops.image.resize(ops.cast(x, "float32"), self.size,
                                interpolation="bilinear")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "size": list(self.size)}


@keras.saving.register_keras_serializable(package="kaggle_tf")
class TTACrop(keras.layers.Layer):
    """The crop `(y, x, h, w)` of `(B, H, W, C)` images."""

    def __init__(self, box, **kwargs):
        super().__init__(**kwargs)
        self.box = tuple(int(v) for v in box)

    def call(self, x):
        y, x0, h, w = self.box
        return x[:, y:y + h, x0:x0 + w, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.box[2], self.box[3], input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "box": list(self.box)}


@keras.saving.register_keras_serializable(package="kaggle_tf")
class PasteMerge(keras.layers.Layer):
    """Crop predictions pasted back at their boxes, merged where they
    overlap: mean (or geometric mean) over the crops covering a pixel, or
    their max."""

    def __init__(self, boxes, size, mode="mean", **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.boxes = [tuple(int(v) for v in b) for b in boxes]
        self.size = tuple(int(v) for v in size)
        self.mode = mode

    def _pad(self, x, box, value=0.0):
        y, x0, h, w = box
        height, width = self.size
        return ops.pad(x, [[0, 0], [y, height - y - h],
                           [x0, width - x0 - w], [0, 0]],
                       constant_values=value)

    def call(self, xs):
        xs = [ops.cast(v, "float32") for v in xs]
        if self.mode == "max":
            return ops.max(ops.stack([self._pad(v, b, -1e30) for v, b in
                                      zip(xs, self.boxes)]), axis=0)
        cover = np.zeros(self.size, np.float32)
        for y, x0, h, w in self.boxes:
            cover[y:y + h, x0:x0 + w] += 1.0
        cover = ops.convert_to_tensor(cover[None, :, :, None])
        if self.mode == "geometric_mean":
            logs = [self._pad(ops.log(ops.maximum(v, 1e-7)), b)
                    for v, b in zip(xs, self.boxes)]
            return ops.exp(sum(logs[1:], logs[0]) / cover)
        padded = [self._pad(v, b) for v, b in zip(xs, self.boxes)]
        return sum(padded[1:], padded[0]) / cover

    def compute_output_shape(self, input_shape):
        first = input_shape[0]
        return (first[0], *self.size, first[-1])

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "boxes": [list(b) for b in self.boxes],
                "size": list(self.size), "mode": self.mode}


@keras.saving.register_keras_serializable(package="kaggle_tf")
class Merge(keras.layers.Layer):
    """Mean, geometric mean or max over a list of same-shape tensors.

    Masked inputs (per-slice outputs of sequence models) share one mask,
    which the output keeps.
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.mode = mode
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            return mask[0]
        return mask

    def call(self, xs):
        x = ops.stack([ops.cast(v, "float32") for v in xs], axis=0)
        if self.mode == "max":
            return ops.max(x, axis=0)
        if self.mode == "geometric_mean":
            return ops.exp(ops.mean(ops.log(ops.maximum(x, 1e-7)), axis=0))
        return ops.mean(x, axis=0)

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "mode": self.mode}

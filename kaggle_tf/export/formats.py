"""ONNX and TFLite exports of image models (float32, TTA inside).

Models trained in mixed precision are exported computing in float32
(their float32 variables copied into a float32 rebuild).

`export(cfg, out_dir, fmt)` writes `out_dir/model.onnx` (tf2onnx, run with
onnxruntime; the `[onnx]` extra) or `out_dir/model.tflite` (TensorFlow's
own converter, run with `tf.lite.Interpreter`). The input is `images`,
float32 `(batch, H, W, C)` in [0, 1] at `data.image_size` (decoding and
DICOM windowing are the caller's, as for the SavedModel's
`predict_images`); the outputs are those of `predict_images`: `probs` and
`masks` / `labels`, with the fold/checkpoint ensemble, TTA and the
post-processing in the graph.

Where the format lacks an op of the post-processing (TFLite's builtins
have no `Greater` on uint8, which the min-area rule uses), one line names
the op and the format, and the file holds `probs` only, at the model's
resolution (before the resize to Kaggle's mask size): post-processing
(`kaggle_tf.inference.predict.postprocess`) is then left to the caller.
"""

import os
import re
import tempfile

import tensorflow as tf

from kaggle_tf.export import images as images_export
from kaggle_tf.models.build import family

FORMATS = ("onnx", "tflite")
ONNX_OPSET = 17
FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}


class UnsupportedOp(ValueError):
    """The format has no kernel for an op of the graph."""


def _functions(cfg, tta, folds):
    # Mixed-precision models are exported computing in float32.
    graph, predictor = images_export.build_graph(cfg, tta, folds,
                                                 float32=True)
    shape = predictor.model.input_shape
    h, w = (shape[1], shape[2]) if None not in shape[1:3] else tuple(
        cfg.data.image_size)
    spec = [tf.TensorSpec([None, h, w, shape[-1]], tf.float32,
                          name=images_export.INPUT_IMAGES)]

    @tf.function(input_signature=spec)
    def full(images):
        return graph.outputs(images)

    @tf.function(input_signature=spec)
    def probs(images):
        return {"probs": tf.cast(graph.model(images, training=False),
                                 tf.float32)}

    return graph, spec, full, probs


def _op_name(error):
    text = str(error)
    for pattern in (r"TF Select ops: ([\w, ]+)",
                    r"'tf\.(\w+)' op is neither a custom op",
                    r"No conversion function registered for op ([\w.]+)",
                    r"Unsupported ops: [^\w]*(\w+)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()
    return (text.strip().splitlines() or ["?"])[0][:120]


def to_onnx(fn, spec, path):
    """Converts `fn` with tf2onnx; raises UnsupportedOp naming the op."""
    try:
        import tf2onnx
    except ImportError:
        raise ImportError("--format onnx needs tf2onnx and onnxruntime: "
                          "pip install 'kaggle_tf[onnx]'") from None
    try:
        tf2onnx.convert.from_function(fn, input_signature=spec,
                                      opset=ONNX_OPSET, output_path=path)
    except Exception as e:  # tf2onnx raises plain exceptions per op
        raise UnsupportedOp(_op_name(e)) from None
    return path


def to_tflite(fn, graph, path):
    """Converts `fn` with TFLite's builtin ops only; raises UnsupportedOp
    naming the op.

    The function goes through a SavedModel first: converting it there
    freezes the variables (a concrete function converted directly keeps
    them as resource variables the interpreter never initializes).
    """
    root = tf.Module()
    root.ensemble_variables = graph.variables
    root.fn = fn
    with tempfile.TemporaryDirectory(prefix="kaggle_tf-tflite-") as tmp:
        tf.saved_model.save(root, tmp, signatures={
            "serving_default": fn.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            data = converter.convert()
        except Exception as e:  # ConverterError and MLIR errors
            raise UnsupportedOp(_op_name(e)) from None
    with open(path, "wb") as f:
        f.write(data)
    return path


def export(cfg, out_dir, fmt, tta=None, folds=None, log=print):
    """Writes `out_dir/model.<fmt>`; returns `(path, outputs)`, outputs
    the names the file serves.

    Raises:
        ValueError: a series model or an unknown format.
        UnsupportedOp: even the probabilities do not convert.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of savedmodel, "
                         f"{', '.join(FORMATS)}. Received: {fmt!r}")
    if family(cfg.model.arch) != "image":
        raise ValueError(f"--format {fmt} exports image models; "
                         f"model.arch={cfg.model.arch!r} is a series model")
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, FILES[fmt])
    tmp = f"{final}.tmp-{os.getpid()}"
    graph, spec, full, probs = _functions(cfg, tta, folds)

    def convert(fn):
        if fmt == "onnx":
            return to_onnx(fn, spec, tmp)
        return to_tflite(fn, graph, tmp)

    try:
        try:
            convert(full)
            outputs = sorted(full.get_concrete_function(
                *spec).structured_outputs)
        except UnsupportedOp as e:
            if log:
                log(f"{fmt}: op {e} is not supported; the file holds "
                    "`probs` only, post-processing is left to the caller")
            convert(probs)
            outputs = ["probs"]
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return final, outputs

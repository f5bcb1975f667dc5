"""The exported SavedModel: signatures, pure-TF graph, outputs equal to
`kaggle_tf.inference.predict`, and requests as TF Serving would feed them.
"""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tiny_runs
from tensorflow_serving.apis import predict_pb2

from kaggle_tf.data import records
from kaggle_tf.export import run as export_run
from kaggle_tf.export import saved_model
from kaggle_tf.inference import predict

SIZE = (64, 128)


def encode(arrays, fmt):
    if fmt == "png":
        return [tf.io.encode_png(a).numpy() for a in arrays]
    return [tf.io.encode_jpeg(a, quality=90).numpy() for a in arrays]


def decoded(blobs, size=SIZE, channels=3):
    """Images decoded and resized as the data pipeline does."""
    return np.stack([records.resize_image(
        records.decode_image(b, channels), size).numpy() for b in blobs])


def assert_same(out, want):
    """Probabilities within 1e-5, masks / labels equal."""
    np.testing.assert_allclose(np.asarray(out["probs"], np.float32),
                               want["probs"], atol=1e-5)
    key = "masks" if "masks" in want else "labels"
    got = np.asarray(out[key])
    assert got.dtype == np.uint8 and got.shape == want[key].shape
    np.testing.assert_array_equal(got, want[key])


@pytest.fixture(scope="module")
def served(steel_export):
    return tf.saved_model.load(steel_export[1])


@pytest.fixture(scope="module")
def predictor(steel_export):
    return predict.Predictor(steel_export[0])


@pytest.fixture(scope="module")
def blobs():
    """Two PNGs at the model's size, one larger (resized in the graph)."""
    small = encode(tiny_runs.images(2, SIZE, seed=1), "png")
    large = encode(tiny_runs.images(1, (96, 200), seed=2), "png")
    return small + large


def test_cli_lists_both_signatures(steel_export):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    command = ([cli] if os.path.exists(cli) else
               [sys.executable, "-m", "tensorflow.python.tools."
                "saved_model_cli"])
    res = subprocess.run(command + ["show", "--dir", steel_export[1],
                                    "--all"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "signature_def['serving_default']" in text
    assert "signature_def['predict_images']" in text
    assert ("inputs['image_bytes'] tensor_info: dtype: DT_STRING "
            "shape: (-1)") in text
    assert ("inputs['images'] tensor_info: dtype: DT_FLOAT "
            "shape: (-1, 64, 128, 3)") in text
    # Masks at the raw images' size (manifest: 80 x 160), 4 classes.
    assert ("outputs['masks'] tensor_info: dtype: DT_UINT8 "
            "shape: (-1, 80, 160, 4)") in text
    assert ("outputs['probs'] tensor_info: dtype: DT_FLOAT "
            "shape: (-1, 80, 160, 4)") in text


def op_types(graph_def):
    types = {node.op for node in graph_def.node}
    for fn in graph_def.library.function:
        types |= {node.op for node in fn.node_def}
    return types


def test_graph_is_pure_tensorflow(steel_export, served):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(steel_export[1], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    types = set()
    for meta in proto.meta_graphs:
        types |= op_types(meta.graph_def)
    for name in ("serving_default", "predict_images"):
        types |= op_types(served.signatures[name].graph.as_graph_def())
    assert not [t for t in types if "PyFunc" in t or "py_func" in t.lower()]
    # The ensemble, the decoder and the post-processing are in the graph.
    assert {"Conv2D", "DecodeImage", "ResizeBilinear", "Sigmoid",
            "ReverseV2", "Greater"} <= types


def test_predict_images_equals_predictor(served, predictor, blobs):
    images = decoded(blobs)
    out = served.signatures["predict_images"](images=tf.constant(images))
    want = predictor(images)
    assert_same(out, want)
    # The case is not trivial: kept, dropped and empty class masks.
    per_class = want["masks"].sum(axis=(1, 2))
    assert (per_class > 0).any() and (per_class == 0).any()
    # The classifier gates class index 0 off although the U-Nets find it.
    assert (predictor.probs(images)[..., 0] > 0.5).sum() > 100
    assert not want["masks"][..., 0].any()


def serve_grpc(served, wire):
    """What the model server does with a serialized PredictRequest."""
    request = predict_pb2.PredictRequest.FromString(wire)
    fn = served.signatures[request.model_spec.signature_name
                           or "serving_default"]
    _, expected = fn.structured_input_signature
    assert set(request.inputs) == set(expected)
    feeds = {k: tf.constant(tf.make_ndarray(v))
             for k, v in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for key, value in fn(**feeds).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response.SerializeToString()


def test_grpc_predict_request(served, predictor, blobs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "steel"
    request.model_spec.signature_name = "serving_default"
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto(blobs, dtype=tf.string, shape=[len(blobs)]))
    response = predict_pb2.PredictResponse.FromString(
        serve_grpc(served, request.SerializeToString()))
    out = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    assert set(out) == {"probs", "masks"}
    assert_same(out, predictor(decoded(blobs)))


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def serve_rest(served, body):
    """What the model server does with a REST `:predict` body."""
    body = json.loads(body)
    fn = served.signatures[body.get("signature_name", "serving_default")]
    _, expected = fn.structured_input_signature
    if "instances" in body:
        rows = body["instances"]
        feeds = {k: [_from_json(r[k]) for r in rows] for k in expected}
        out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
        return json.dumps({"predictions": [
            {k: v[i].numpy().tolist() for k, v in out.items()}
            for i in range(len(rows))]})
    inputs = body["inputs"]
    if not isinstance(inputs, dict):
        (name,) = expected
        inputs = {name: inputs}
    out = fn(**{k: tf.constant(_from_json(v)) for k, v in inputs.items()})
    return json.dumps({"outputs": {k: v.numpy().tolist()
                                   for k, v in out.items()}})


def test_rest_row_and_columnar(served, predictor):
    blobs = encode(tiny_runs.images(2, SIZE, seed=3), "jpeg")
    want = predictor(decoded(blobs))
    b64 = [{"b64": base64.b64encode(b).decode("ascii")} for b in blobs]
    row = json.dumps({"signature_name": "serving_default",
                      "instances": [{"image_bytes": v} for v in b64]})
    predictions = json.loads(serve_rest(served, row))["predictions"]
    assert len(predictions) == 2
    out = {k: np.array([p[k] for p in predictions]) for k in predictions[0]}
    out["masks"] = out["masks"].astype(np.uint8)
    assert_same(out, want)
    columnar = json.dumps({"signature_name": "serving_default",
                           "inputs": {"image_bytes": b64}})
    outputs = json.loads(serve_rest(served, columnar))["outputs"]
    outputs = {"probs": np.array(outputs["probs"]),
               "masks": np.array(outputs["masks"], np.uint8)}
    assert_same(outputs, want)
    bare = json.dumps({"inputs": b64})  # the single-input shorthand
    outputs = json.loads(serve_rest(served, bare))["outputs"]
    np.testing.assert_array_equal(np.array(outputs["masks"], np.uint8),
                                  want["masks"])


FRESH = """
import os, sys
import numpy as np
import tensorflow as tf
folder, out = sys.argv[1], sys.argv[2]
blobs = [open(os.path.join(folder, f"{i}.png"), "rb").read()
         for i in range(int(sys.argv[3]))]
served = tf.saved_model.load(os.path.join(folder, "model"))
a = served.signatures["serving_default"](image_bytes=tf.constant(blobs))
b = served.signatures["predict_images"](
    images=tf.constant(np.load(os.path.join(folder, "images.npy"))))
np.savez(out, **{f"bytes_{k}": v.numpy() for k, v in a.items()},
         **{f"images_{k}": v.numpy() for k, v in b.items()})
assert "kaggle_tf" not in sys.modules, "kaggle_tf was imported"
print("keras" in sys.modules)
"""


def test_fresh_process_needs_only_tensorflow(steel_export, served, blobs,
                                             tmp_path):
    os.symlink(steel_export[1], tmp_path / "model")
    for i, b in enumerate(blobs):
        (tmp_path / f"{i}.png").write_bytes(b)
    images = decoded(blobs)
    np.save(tmp_path / "images.npy", images)
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path),
         str(tmp_path / "out.npz"), str(len(blobs))],
        capture_output=True, text=True, timeout=180, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    here = {"bytes": served.signatures["serving_default"](
                image_bytes=tf.constant(blobs)),
            "images": served.signatures["predict_images"](
                images=tf.constant(images))}
    for sig, out in here.items():
        for key, value in out.items():
            np.testing.assert_allclose(got[f"{sig}_{key}"], value.numpy(),
                                       atol=1e-6)
            if key == "masks":
                np.testing.assert_array_equal(got[f"{sig}_{key}"],
                                              value.numpy())


def test_versions(steel_export, tmp_path):
    assert saved_model.next_version(str(tmp_path / "none")) == 1
    for name in ("1", "3", "tmp", ".tmp-4-1"):
        (tmp_path / name).mkdir()
    assert saved_model.next_version(str(tmp_path)) == 4
    with pytest.raises(FileExistsError, match="immutable"):
        export_run.export(steel_export[0], str(tmp_path), version=3)


def test_cli_without_checkpoints_writes_nothing(tmp_path, capsys):
    from kaggle_tf.export import __main__ as cli

    cfg = tiny_runs.make_config(tmp_path / "run")
    data = cfg.to_dict()
    data.pop("source")
    (tmp_path / "c.json").write_text(json.dumps(data))
    out = tmp_path / "exports"
    assert cli.main(["--config", str(tmp_path / "c.json"), "--out",
                     str(out)]) == 1
    assert "no trained checkpoints" in capsys.readouterr().err
    assert not out.exists()

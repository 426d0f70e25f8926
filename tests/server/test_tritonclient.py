"""End-to-end: the official tritonclient (HTTP and gRPC) against a real `kiln serve` process,
outputs compared with onnxruntime on the same demo models.

Run: KILN=target/release/kiln python -m pytest tests/server -q
"""

import os
import signal
import threading
import socket
import subprocess
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KILN = os.environ.get("KILN", os.path.join(ROOT, "target", "release", "kiln"))
MODELS = os.path.join(ROOT, "models", "demo")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [KILN, "serve", "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    deadline = time.time() + 30
    while True:
        try:
            if client.is_server_ready():
                break
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"kiln serve did not become ready: {err.decode()}")
        time.sleep(0.05)
    yield http_port, grpc_port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read().decode()


def reference(model, x):
    sess = ort.InferenceSession(os.path.join(MODELS, model, "1", "model.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"X": x})))


def inputs(model):
    rng = np.random.default_rng(0)
    if model == "iris":
        return (rng.random((5, 4)) * np.array([4, 2, 6, 2.5]) + np.array([4, 2, 1, 0.1])).astype(np.float32)
    return (rng.random((7, 64)) * 16).astype(np.float32)


@pytest.mark.parametrize("model", ["iris", "digits"])
@pytest.mark.parametrize("binary", [False, True])
def test_http_infer_matches_onnxruntime(server, model, binary):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server[0]}")
    x = inputs(model)
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outs = [httpclient.InferRequestedOutput("label", binary_data=binary),
            httpclient.InferRequestedOutput("probabilities", binary_data=binary)]
    res = client.infer(model, [inp], outputs=outs, request_id="abc")
    ref = reference(model, x)
    np.testing.assert_array_equal(res.as_numpy("label"), ref["label"])
    np.testing.assert_allclose(res.as_numpy("probabilities"), ref["probabilities"], rtol=1e-4, atol=1e-6)
    assert res.get_response()["id"] == "abc"


def test_http_metadata_and_errors(server):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server[0]}")
    assert client.is_server_live()
    assert client.get_server_metadata()["name"] == "kiln"
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "1")
    assert not client.is_model_ready("iris", "2")
    md = client.get_model_metadata("digits")
    assert md["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 64]}]
    assert client.get_model_config("iris")["name"] == "iris"
    x = inputs("iris").astype(np.float64)
    inp = httpclient.InferInput("X", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="expects FP32"):
        client.infer("iris", [inp])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("nope", [inp])
    stats = client.get_inference_statistics("iris")
    assert stats["model_stats"][0]["inference_count"] >= 1
    index = client.get_model_repository_index()
    assert {m["name"] for m in index} == {"iris", "digits"}


@pytest.mark.parametrize("model", ["iris", "digits"])
def test_grpc_infer_matches_onnxruntime(server, model):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server[1]}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model)
    md = client.get_model_metadata(model, as_json=True)
    assert md["inputs"][0]["name"] == "X"
    x = inputs(model)
    inp = grpcclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput("label"),
                                               grpcclient.InferRequestedOutput("probabilities")])
    ref = reference(model, x)
    np.testing.assert_array_equal(res.as_numpy("label"), ref["label"])
    np.testing.assert_allclose(res.as_numpy("probabilities"), ref["probabilities"], rtol=1e-4, atol=1e-6)


def test_grpc_errors(server):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server[1]}")
    x = inputs("iris")[:, :3].copy()
    inp = grpcclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="expects \\[-1, 4\\]"):
        client.infer("iris", [inp])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("nope", [inp])
    assert client.get_server_metadata().name == "kiln"


def test_single_rows_match_onnxruntime(server):
    # Many one-row requests: after a few timed runs these take the inline path.
    client = httpclient.InferenceServerClient(f"127.0.0.1:{server[0]}")
    x = (np.random.default_rng(1).random((60, 4)) * np.array([4, 2, 6, 2.5]) + np.array([4, 2, 1, 0.1])).astype(np.float32)
    ref = reference("iris", x)
    for i in range(len(x)):
        inp = httpclient.InferInput("X", [1, 4], "FP32")
        inp.set_data_from_numpy(x[i:i + 1], binary_data=False)
        res = client.infer("iris", [inp])
        np.testing.assert_array_equal(res.as_numpy("label"), ref["label"][i:i + 1])
        np.testing.assert_allclose(res.as_numpy("probabilities"), ref["probabilities"][i:i + 1], rtol=1e-4, atol=1e-6)


def start_kiln(*args):
    port = free_port()
    proc = subprocess.Popen([KILN, "serve", "--http-port", str(port), "--no-grpc", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.time() + 30
    while True:
        try:
            if client.is_server_ready():
                return proc, port, client
        except Exception:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise RuntimeError("kiln serve did not become ready: " + proc.communicate()[1])
        time.sleep(0.02)


def test_access_log_is_json_lines():
    import json
    proc, port, client = start_kiln("--access-log")
    x = inputs("iris")
    inp = httpclient.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    client.infer("iris", [inp])
    with pytest.raises(InferenceServerException):
        client.infer("nope", [inp])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    infers = [l for l in lines if l["path"].endswith("/infer")]
    assert [(l["method"], l["path"], l["status"]) for l in infers] == [
        ("POST", "/v2/models/iris/infer", 200), ("POST", "/v2/models/nope/infer", 404)]
    for l in lines:
        assert l["duration_ms"] >= 0 and l["ts"] > 1.6e9


def test_sigterm_finishes_in_flight_request():
    proc, port, client = start_kiln()
    x = (np.random.default_rng(2).random((100_000, 64)) * 16).astype(np.float32)
    result = {}

    def run():
        c = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=True)
        try:
            result["res"] = c.infer("digits", [inp], outputs=[httpclient.InferRequestedOutput("label", binary_data=True)])
        except Exception as e:  # reported below
            result["err"] = e

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        st = client.get_inference_statistics("digits")["model_stats"][0]["inference_stats"]
        if st["queue"]["count"] >= 1:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    t.join(120)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "err" not in result, result.get("err")
    np.testing.assert_array_equal(result["res"].as_numpy("label"), reference("digits", x)["label"])

"""Peer: FastAPI + onnxruntime serving the same V2 JSON infer endpoint (run under uvicorn)."""
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request

opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
sess = ort.InferenceSession(os.environ["IRIS_MODEL"], opts, providers=["CPUExecutionProvider"])
app = FastAPI()


@app.post("/v2/models/iris/infer")
async def infer(request: Request):
    body = await request.json()
    inp = body["inputs"][0]
    x = np.asarray(inp["data"], dtype=np.float32).reshape(inp["shape"])
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(None, {"X": x})
    return {"model_name": "iris", "model_version": "1", "outputs": [
        {"name": n, "datatype": "INT64" if o.dtype == np.int64 else "FP32", "shape": list(o.shape),
         "data": o.ravel().tolist()} for n, o in zip(names, outs)]}

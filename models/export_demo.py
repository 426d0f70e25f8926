"""Exports the built-in demo models of `kiln serve` into models/demo/ (Triton repository layout).

iris:   an MLPClassifier on scikit-learn's iris data (input X float [N,4]).
digits: an MLPClassifier on scikit-learn's 8x8 digits data (input X float [N,64]).

Both are exported with skl2onnx without ZipMap (outputs: label int64 [N], probabilities float [N,C]).
skl2onnx maps class indices to labels with ai.onnx.ml ArrayFeatureExtractor; for a 1-D class list
that is exactly ai.onnx Gather(axis=0), so the graph is rewritten to use only ai.onnx ops.

Run: python models/export_demo.py   (needs scikit-learn, skl2onnx, onnx)
"""

import os

import numpy as np
import onnx
from onnx import helper
from skl2onnx import to_onnx
from sklearn.datasets import load_digits, load_iris
from sklearn.neural_network import MLPClassifier

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "demo")


def only_ai_onnx(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    for node in g.node:
        if node.domain == "ai.onnx.ml" and node.op_type == "ArrayFeatureExtractor":
            node.op_type = "Gather"
            node.domain = ""
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axis", 0))
    left = [n for n in g.node if n.domain not in ("", "ai.onnx")]
    if left:
        raise SystemExit("ops outside ai.onnx remain: " + ", ".join(n.op_type for n in left))
    for vi in list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > 0 and not dims[0].HasField("dim_value") and not dims[0].dim_param:
            dims[0].dim_param = "N"
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.checker.check_model(model)
    return model


def export(name, x, y, hidden):
    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=2000, random_state=0)
    clf.fit(x, y)
    onx = to_onnx(clf, x[:1].astype(np.float32), options={id(clf): {"zipmap": False}}, target_opset=17)
    onx = only_ai_onnx(onx)
    path = os.path.join(OUT, name, "1")
    os.makedirs(path, exist_ok=True)
    onnx.save(onx, os.path.join(path, "model.onnx"))
    print(f"{name}: train accuracy {clf.score(x, y):.3f} -> {os.path.join(path, 'model.onnx')}")


def main():
    iris = load_iris()
    export("iris", iris.data.astype(np.float32), iris.target, (16,))
    digits = load_digits()
    export("digits", digits.data.astype(np.float32), digits.target, (64,))


if __name__ == "__main__":
    main()

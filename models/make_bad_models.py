"""Writes the small models the CLI's bad-input tests use (crates/kiln-cli/tests/data/).

Each is a deliberately broken or edge-case ONNX model built with onnx.helper; the tests check
that Kiln rejects each with one clear line and exit code 2. Run with any Python that has onnx.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "kiln-cli", "tests", "data")


def save(model, name):
    onnx.save(model, os.path.join(OUT, name))


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-tests")
    m.ir_version = 8
    return m


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    # A valid tiny model: y = relu(x @ W + b), x: [batch, 4].
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10 - 0.5, "W")
    b = numpy_helper.from_array(np.array([0.1, -0.2, 0.3], dtype=np.float32), "b")
    ok = model(
        [helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
         helper.make_node("Add", ["xw", "b"], ["xwb"], name="add"),
         helper.make_node("Relu", ["xwb"], ["y"], name="relu")],
        [vi("x", ["batch", 4])], [vi("y", ["batch", 3])], [w, b])
    save(ok, "mlp.onnx")
    np.save(os.path.join(OUT, "mlp_x.npy"), np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4))
    np.save(os.path.join(OUT, "mlp_x_f64.npy"), np.linspace(-1, 1, 8, dtype=np.float64).reshape(2, 4))
    np.save(os.path.join(OUT, "mlp_x_badshape.npy"), np.zeros((2, 5), dtype=np.float32))
    # Reference output computed with numpy (independent of Kiln).
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.save(os.path.join(OUT, "mlp_y_ref.npy"), np.maximum(x @ numpy_helper.to_array(w) + numpy_helper.to_array(b), 0))

    # The same model with its weights in an external data file (location= relative to the model).
    ext = onnx.ModelProto()
    ext.CopyFrom(ok)
    onnx.save(ext, os.path.join(OUT, "mlp_external.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="mlp_external.weights", size_threshold=0)

    # Truncated and garbage files.
    data = ok.SerializeToString()
    with open(os.path.join(OUT, "truncated.onnx"), "wb") as f:
        f.write(data[: len(data) // 2])
    with open(os.path.join(OUT, "garbage.onnx"), "wb") as f:
        f.write(bytes((i * 37 + 11) % 256 for i in range(300)))

    # A cycle: a = Relu(b), b = Relu(a).
    save(model([helper.make_node("Relu", ["b"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2"),
                helper.make_node("Add", ["x", "a"], ["y"], name="add")],
               [vi("x", [2])], [vi("y", [2])]), "cycle.onnx")

    # A node reads an initializer that does not exist.
    save(model([helper.make_node("Add", ["x", "missing_weight"], ["y"], name="add")],
               [vi("x", [2])], [vi("y", [2])]), "missing_initializer.onnx")

    # Two unsupported ops.
    save(model([helper.make_node("FrobnicateA", ["x"], ["t"], name="frob_a", domain="com.example"),
                helper.make_node("FrobnicateB", ["t"], ["y"], name="frob_b", domain="com.example")],
               [vi("x", [2])], [vi("y", [2])]), "unsupported.onnx")

    # A declared tensor too large to allocate: ConstantOfShape with shape [2^40, 2^40].
    shape = numpy_helper.from_array(np.array([1 << 40, 1 << 40], dtype=np.int64), "shape")
    save(model([helper.make_node("ConstantOfShape", ["shape"], ["big"], name="huge"),
                helper.make_node("Add", ["x", "big"], ["y"], name="add")],
               [vi("x", [2])], [vi("y", [2])], [shape]), "huge_tensor.onnx")

    # Shapes that do not fit: [2,3] + [4] at load (both constants).
    a = numpy_helper.from_array(np.zeros((2, 3), np.float32), "A")
    c = numpy_helper.from_array(np.zeros((4,), np.float32), "C")
    save(model([helper.make_node("Add", ["A", "C"], ["s"], name="bad_add"),
                helper.make_node("Add", ["x", "s"], ["y"], name="add")],
               [vi("x", [2, 3])], [vi("y", [2, 3])], [a, c]), "shape_mismatch.onnx")


if __name__ == "__main__":
    main()

"""Writes the ONNX backend node tests of the pinned onnx package to conformance/data/node/.

Each case becomes <out>/node/<name>/model.onnx plus test_data_set_<i>/{input,output}_<j>.pb,
the layout onnx's own `backend-test-tools generate-data` uses. The cases come from
onnx.backend.test.case.node.collect_testcases(), so the reference outputs are onnx's own
(numpy reference implementations), not Kiln's.
"""
from __future__ import annotations

import argparse
import os
import shutil
import warnings

import onnx
from onnx import TensorProto, numpy_helper
from onnx.backend.test.case import node as node_cases

PINNED = "1.23.2"


def serialize(value, vi) -> bytes:
    t = vi.type
    if t.HasField("map_type"):
        return numpy_helper.from_dict(value, vi.name).SerializeToString()
    if t.HasField("sequence_type"):
        return numpy_helper.from_list(value, vi.name).SerializeToString()
    if t.HasField("optional_type"):
        return numpy_helper.from_optional(value, vi.name).SerializeToString()
    if isinstance(value, TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(value, vi.name).SerializeToString()


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", default=os.path.join(here, "data"))
    args = ap.parse_args()
    if onnx.__version__ != PINNED:
        raise SystemExit(f"onnx {PINNED} is required, found {onnx.__version__}")
    warnings.simplefilter("ignore")
    cases = node_cases.collect_testcases()
    root = os.path.join(args.output, "node")
    if os.path.exists(root):
        shutil.rmtree(root)
    for case in cases:
        d = os.path.join(root, case.name)
        os.makedirs(d)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        g = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(ds)
            for j, v in enumerate(inputs):
                with open(os.path.join(ds, f"input_{j}.pb"), "wb") as f:
                    f.write(serialize(v, g.input[j]))
            for j, v in enumerate(outputs):
                with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                    f.write(serialize(v, g.output[j]))
    print(f"wrote {len(cases)} node test cases to {root}")


if __name__ == "__main__":
    main()

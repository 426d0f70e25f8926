#!/usr/bin/env python3
"""Writes the small .npy files the kiln-tensor npy tests read, and expected.json describing what
each file holds (dtype as numpy names it, shape, values in C order) or which error reading it must
give. Floats are written with Python's repr (exact for f2/f4/f8); NaN and infinities as the strings
"nan", "inf", "-inf"; 64-bit integers as JSON integers (exact).

Run from anywhere: python3 crates/kiln-tensor/tests/data/make.py
"""

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def value(x):
    if isinstance(x, (np.floating, float)):
        f = float(x)
        if np.isnan(f):
            return "nan"
        if np.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, bytes):
        return x.decode("utf-8")
    return str(x)


def main():
    entries = []

    def save(name, arr, version=None, kind="ok", dtype_name=None):
        path = os.path.join(HERE, name)
        with open(path, "wb") as fh:
            np.lib.format.write_array(fh, arr, version=version, allow_pickle=False)
        e = {"file": name, "numpy_descr": np.lib.format.dtype_to_descr(arr.dtype)}
        if kind == "ok":
            flat = np.ascontiguousarray(arr).reshape(-1)
            e.update(
                dtype=dtype_name or ("string" if arr.dtype.kind in "US" else arr.dtype.newbyteorder("=").name),
                shape=list(arr.shape),
                values=[value(v) for v in flat.tolist()] if arr.dtype.kind not in "US" else [value(v) for v in flat],
            )
        else:
            e["error"] = kind
        entries.append(e)

    rng = np.random.default_rng(1234)
    save("f4.npy", np.array([[1.5, -2.25, 0.0], [np.nan, np.inf, -np.inf]], dtype=np.float32).copy())
    save("f4_random.npy", rng.standard_normal((3, 4, 5)).astype(np.float32))
    save("f8.npy", np.array([np.pi, -1e300, 5e-324, -0.0], dtype=np.float64))
    save("f2.npy", np.array([1.0, -0.5, 65504.0, 6e-8, np.nan], dtype=np.float16))
    save("i1.npy", np.array([-128, -1, 0, 127], dtype=np.int8))
    save("i2.npy", np.array([-32768, 12345, 32767], dtype=np.int16))
    save("i4.npy", np.array([[-(2**31), 0], [7, 2**31 - 1]], dtype=np.int32))
    save("i8.npy", np.array([-(2**63), -1, 2**63 - 1], dtype=np.int64))
    save("u1.npy", np.array([0, 1, 255], dtype=np.uint8))
    save("u2.npy", np.array([0, 65535], dtype=np.uint16))
    save("u4.npy", np.array([0, 2**32 - 1], dtype=np.uint32))
    save("u8.npy", np.array([0, 2**64 - 1], dtype=np.uint64))
    save("b1.npy", np.array([[True, False, True]], dtype=np.bool_))
    save("unicode.npy", np.array([["a", "héllo"], ["日本語", ""]]))
    save("bytes.npy", np.array([b"ab", b"", b"xyz"]))
    save("scalar_f4.npy", np.array(3.5, dtype=np.float32))
    save("scalar_i8.npy", np.array(-7, dtype=np.int64))
    save("empty_0x3.npy", np.zeros((0, 3), dtype=np.float32))
    save("be_f4.npy", np.array([1.0, -2.5, 1e-3], dtype=">f4"), dtype_name="float32")
    save("be_i8.npy", np.array([[1, -2], [2**40, -(2**62)]], dtype=">i8"), dtype_name="int64")
    save("be_u2.npy", np.array([1, 65534], dtype=">u2"), dtype_name="uint16")
    save("be_unicode.npy", np.array(["ab", "ü"], dtype=">U2"))
    save("v2_f4.npy", np.arange(6, dtype=np.float32).reshape(2, 3), version=(2, 0))
    save("v3_i4.npy", np.arange(4, dtype=np.int32), version=(3, 0))
    save("fortran_2d.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)), kind="FortranOrder")
    save("complex.npy", np.array([1 + 2j], dtype=np.complex64), kind="UnsupportedDtype")

    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as fh:
        fh.write('{"numpy_version": %s, "files": [\n' % json.dumps(np.__version__))
        fh.write(",\n".join(json.dumps(e, ensure_ascii=False) for e in entries))
        fh.write("\n]}\n")


if __name__ == "__main__":
    main()

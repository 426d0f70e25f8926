"""Writes the JPEG test fixtures of ImageDecoder and the reference decodings next to them.

Each case is <name>.jpg plus <name>.ppm (RGB) or <name>.pgm (grayscale) holding Pillow's decoding
(libjpeg-turbo, default settings; CMYK/YCCK files are converted with Image.convert("RGB")).
Files Pillow cannot write (4:4:0 and 4:1:1 sampling, non-interleaved sequential scans, custom
progressive scan scripts, arithmetic coding) are written with cjpeg/jpegtran from
libjpeg-turbo-progs; the reference decoding is still Pillow's. Files whose name starts with
"unsupported_" have no reference: the decoder must reject them with a clear error.

Usage: python make_fixtures.py   (needs numpy, Pillow and cjpeg/jpegtran on PATH)
       python make_fixtures.py --bench OUT.jpg   writes a 1024x768 progressive 4:2:0 JPEG (not a
       fixture) and prints Pillow's decode time, to compare with
       KILN_IMAGE_BENCH=OUT.jpg cargo test --release -p kiln-engine --lib bench_decode -- --ignored --nocapture
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))

sys.path.insert(0, os.path.dirname(HERE))
from synthetic import synthetic  # noqa: E402


def image(w: int, h: int, mode: str, seed: int) -> Image.Image:
    channels = {"L": 1, "RGB": 3, "CMYK": 4}[mode]
    return Image.fromarray(synthetic(w, h, channels, seed), mode)


def pillow_jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def cjpeg(img: Image.Image, *args: str) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.pnm")
        img.save(src)
        return subprocess.run(["cjpeg", *args, src], check=True, capture_output=True).stdout


def jpegtran(data: bytes, *args: str, scans: str | None = None) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        extra = []
        if scans is not None:
            path = os.path.join(d, "scans.txt")
            with open(path, "w") as f:
                f.write(scans)
            extra = ["-scans", path]
        return subprocess.run(["jpegtran", *args, *extra], input=data, check=True, capture_output=True).stdout


def set_adobe_transform(data: bytes, transform: int) -> bytes:
    """Rewrites the colour transform byte of the Adobe APP14 segment."""
    i = data.index(b"\xff\xee\x00\x0eAdobe") + 4
    b = bytearray(data)
    b[i + 11] = transform
    return bytes(b)


def cases() -> dict[str, bytes]:
    c: dict[str, bytes] = {}
    rgb = lambda w, h, s=1: image(w, h, "RGB", s)  # noqa: E731
    gray = lambda w, h, s=2: image(w, h, "L", s)  # noqa: E731
    # Progressive (libjpeg's default scan script: DC first/refine, spectral selection, AC refinement).
    c["prog_444_q90"] = pillow_jpeg(rgb(37, 23), progressive=True, subsampling="4:4:4", quality=90)
    c["prog_422_q75"] = pillow_jpeg(rgb(45, 29, 3), progressive=True, subsampling="4:2:2", quality=75)
    c["prog_420_q50_opt"] = pillow_jpeg(rgb(37, 23, 4), progressive=True, subsampling="4:2:0", quality=50, optimize=True)
    c["prog_420_q100"] = pillow_jpeg(rgb(24, 17, 5), progressive=True, subsampling="4:2:0", quality=100)
    c["prog_gray_q85"] = pillow_jpeg(gray(41, 19), progressive=True, quality=85)
    c["prog_420_restart"] = pillow_jpeg(rgb(50, 35, 6), progressive=True, subsampling="4:2:0", restart_marker_blocks=3)
    c["prog_adobe_rgb"] = pillow_jpeg(rgb(29, 17, 7), progressive=True, keep_rgb=True, quality=80)
    # Tiny images: chroma planes one or two samples wide (libjpeg upsamples those without filtering).
    c["prog_420_3x3"] = pillow_jpeg(rgb(3, 3, 8), progressive=True, subsampling="4:2:0")
    c["prog_422_4x5"] = pillow_jpeg(rgb(4, 5, 9), progressive=True, subsampling="4:2:2")
    c["base_420_2x7"] = pillow_jpeg(rgb(2, 7, 10), subsampling="4:2:0")
    c["base_422_6x3"] = pillow_jpeg(rgb(6, 3, 11), subsampling="4:2:2")
    c["base_1x1"] = pillow_jpeg(rgb(1, 1, 12))
    # Baseline with restart markers (the sequential path).
    c["base_420_restart_rows"] = pillow_jpeg(rgb(33, 31, 13), subsampling="4:2:0", restart_marker_rows=1)
    # CMYK (Adobe, inverted) and the same data marked YCCK.
    cmyk = pillow_jpeg(image(23, 19, "CMYK", 14), quality=85)
    c["base_cmyk"] = cmyk
    c["base_ycck"] = set_adobe_transform(cmyk, 2)
    c["prog_cmyk"] = pillow_jpeg(image(21, 13, "CMYK", 15), progressive=True, quality=85)
    # Sampling factors Pillow does not write.
    c["prog_440"] = cjpeg(rgb(27, 21, 16), "-sample", "1x2", "-progressive")
    c["base_411"] = cjpeg(rgb(43, 13, 17), "-sample", "4x1")
    c["prog_mixed_sampling"] = cjpeg(rgb(31, 25, 18), "-sample", "2x2,1x2,2x1", "-progressive")
    c["base_gray_2x2"] = cjpeg(gray(35, 21, 19), "-grayscale", "-sample", "2x2")
    # Multi-scan sequential: one component per scan, then luma alone and chroma interleaved.
    base420 = pillow_jpeg(rgb(38, 26, 20), subsampling="4:2:0", quality=80)
    c["seq_noninterleaved"] = jpegtran(base420, scans="0;\n2;\n1;\n")
    c["seq_mixed_scans"] = jpegtran(base420, "-restart", "2B", scans="0;\n1 2;\n")
    # Progressive with a custom script: interleaved DC with two refinements, split spectral bands,
    # several AC refinement passes, components in odd order; restart every MCU row.
    script = (
        "0 1 2: 0-0, 0, 2;\n"
        "0 1 2: 0-0, 2, 1;\n"
        "2: 1-63, 0, 1;\n"
        "0: 1-2, 0, 2;\n"
        "0: 3-20, 0, 2;\n"
        "0: 21-63, 0, 2;\n"
        "1: 1-63, 0, 0;\n"
        "0 1 2: 0-0, 1, 0;\n"
        "0: 1-63, 2, 1;\n"
        "2: 1-63, 1, 0;\n"
        "0: 1-63, 1, 0;\n"
    )
    prog420 = pillow_jpeg(rgb(47, 33, 21), subsampling="4:2:0", quality=92)
    c["prog_custom_script"] = jpegtran(prog420, "-restart", "1", scans=script)
    # Arithmetic coding is not supported by the decoder.
    c["unsupported_arithmetic"] = jpegtran(prog420, "-arithmetic")
    return c


def bench(out: str, runs: int = 20) -> None:
    data = pillow_jpeg(image(1024, 768, "RGB", 99), progressive=True, subsampling="4:2:0", quality=85)
    with open(out, "wb") as f:
        f.write(data)
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        Image.open(io.BytesIO(data)).load()
        best = min(best, time.perf_counter() - t)
    print(f"{out}: {len(data)} bytes; Pillow decode: {best * 1e3:.3f} ms (best of {runs})")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        return bench(sys.argv[2])
    for tool in ("cjpeg", "jpegtran"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found (Debian package libjpeg-turbo-progs)")
    for name in os.listdir(HERE):
        if name.endswith((".jpg", ".ppm", ".pgm")):
            os.remove(os.path.join(HERE, name))
    total = 0
    all_cases = cases()
    for name, data in all_cases.items():
        with open(os.path.join(HERE, name + ".jpg"), "wb") as f:
            f.write(data)
        total += len(data)
        if name.startswith("unsupported_"):
            continue
        img = Image.open(io.BytesIO(data))
        img.load()
        if img.mode == "CMYK":
            img = img.convert("RGB")
        assert img.mode in ("L", "RGB"), (name, img.mode)
        ext = ".pgm" if img.mode == "L" else ".ppm"
        img.save(os.path.join(HERE, name + ext))
        total += os.path.getsize(os.path.join(HERE, name + ext))
    print(f"{len(all_cases)} cases, {total} bytes")


if __name__ == "__main__":
    main()

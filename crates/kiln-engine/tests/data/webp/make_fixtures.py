"""Writes the WebP test fixtures of ImageDecoder and the reference decodings next to them.

Each case is <name>.webp plus <name>.ppm holding Pillow's decoding converted to RGB
(Image.open(f).convert("RGB"): libwebp's WebPAnimDecoder, fancy chroma upsampling, alpha
dropped). Most files are written by Pillow; encoder settings Pillow does not expose (simple loop
filter, sharpness, token partitions, segment count, sharp YUV, no filtering) are set through
libwebp's advanced API, called with ctypes from the libwebp Pillow links. A few files are
assembled by hand from encoded bitstreams: an animation whose first frame is smaller than the
canvas and sits at an offset, an extended still image with a raw ALPH chunk. Files whose name
starts with "invalid_" have no reference: the decoder must reject them.

Usage: python make_fixtures.py   (needs numpy and Pillow with WebP support)
"""
from __future__ import annotations

import ctypes
import glob
import io
import os
import struct
import sys

import numpy as np
import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))

sys.path.insert(0, os.path.dirname(HERE))
from synthetic import synthetic  # noqa: E402


def rgb(w: int, h: int, seed: int = 1) -> Image.Image:
    return Image.fromarray(synthetic(w, h, 3, seed), "RGB")


def rgba(w: int, h: int, seed: int = 1) -> Image.Image:
    """RGB content with an alpha ramp that is fully transparent on the left."""
    a = synthetic(w, h, 3, seed)
    x = np.arange(w)[None, :].repeat(h, 0)
    alpha = np.clip((x - w // 4) * 255 // max(w // 2, 1), 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([a, alpha]), "RGBA")


def gray_like(w: int, h: int, seed: int = 3) -> Image.Image:
    g = synthetic(w, h, 1, seed)
    return Image.fromarray(np.dstack([g, g, g]), "RGB")


def few_colors(w: int, h: int, n: int, seed: int = 4) -> Image.Image:
    """An image with exactly n distinct colours (palette / colour indexing with bundling)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
    y, x = np.mgrid[0:h, 0:w]
    idx = ((x // 3 + y // 2 + (x * y) % 5) % n).astype(np.int64)
    return Image.fromarray(palette[idx], "RGB")


def flat_scene(w: int, h: int) -> Image.Image:
    """Flat background with a box: macroblocks without residuals (skipped) occur."""
    a = np.full((h, w, 3), 255, np.uint8)
    a[h // 8:h // 2, w // 10:w // 3] = (0, 0, 0)
    return Image.fromarray(a, "RGB")


def regions(w: int, h: int, seed: int) -> Image.Image:
    """Three differently textured regions: lossless files use several prefix-code groups."""
    a = synthetic(w, h, 3, seed)
    a[:, w // 2:] = np.asarray(few_colors(w, h, 7, seed))[:, w // 2:]
    a[h // 2:, :w // 2] = 255 - a[h // 2:, :w // 2] // 4 * 4
    return Image.fromarray(a, "RGB")


def pillow_webp(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "WEBP", **kw)
    return buf.getvalue()


# --- libwebp's advanced encoding API through ctypes -------------------------------------------

class WebPConfig(ctypes.Structure):
    _fields_ = [(n, ctypes.c_float if n in ("quality", "target_PSNR") else ctypes.c_int) for n in (
        "lossless quality method image_hint target_size target_PSNR segments sns_strength "
        "filter_strength filter_sharpness filter_type autofilter alpha_compression alpha_filtering "
        "alpha_quality pass show_compressed preprocessing partitions partition_limit "
        "emulate_jpeg_size thread_level low_memory near_lossless exact use_delta_palette "
        "use_sharp_yuv qmin qmax").split()] + [("pad", ctypes.c_uint32 * 16)]


class WebPMemoryWriter(ctypes.Structure):
    _fields_ = [("mem", ctypes.POINTER(ctypes.c_uint8)), ("size", ctypes.c_size_t),
                ("max_size", ctypes.c_size_t), ("pad", ctypes.c_uint32 * 1)]


class WebPPicture(ctypes.Structure):
    _fields_ = [
        ("use_argb", ctypes.c_int), ("colorspace", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
        ("y", ctypes.c_void_p), ("u", ctypes.c_void_p), ("v", ctypes.c_void_p),
        ("y_stride", ctypes.c_int), ("uv_stride", ctypes.c_int), ("a", ctypes.c_void_p), ("a_stride", ctypes.c_int),
        ("pad1", ctypes.c_uint32 * 2), ("argb", ctypes.c_void_p), ("argb_stride", ctypes.c_int),
        ("pad2", ctypes.c_uint32 * 3), ("writer", ctypes.c_void_p), ("custom_ptr", ctypes.c_void_p),
        ("extra_info_type", ctypes.c_int), ("extra_info", ctypes.c_void_p), ("stats", ctypes.c_void_p),
        ("error_code", ctypes.c_int), ("progress_hook", ctypes.c_void_p), ("user_data", ctypes.c_void_p),
        ("pad3", ctypes.c_uint32 * 3), ("pad4", ctypes.c_void_p), ("pad5", ctypes.c_void_p),
        ("pad6", ctypes.c_uint32 * 8), ("memory_", ctypes.c_void_p), ("memory_argb_", ctypes.c_void_p),
        ("pad7", ctypes.c_void_p * 2), ("spare", ctypes.c_uint8 * 256),
    ]


def libwebp() -> ctypes.CDLL:
    libs = os.path.join(os.path.dirname(PIL.__file__), "..", "pillow.libs")
    found = glob.glob(os.path.join(libs, "libsharpyuv*.so*"))
    for path in found:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    found = glob.glob(os.path.join(libs, "libwebp-*.so*")) or ["libwebp.so.7"]
    return ctypes.CDLL(found[0])


LIB = libwebp()
ABI = 0x0200  # major version of WEBP_ENCODER_ABI_VERSION


def advanced_webp(img: Image.Image, quality: float = 75, **fields) -> bytes:
    """Encodes a simple-format WebP (VP8 or VP8L, plus VP8X/ALPH for RGBA) with WebPConfig fields set."""
    cfg = WebPConfig()
    assert LIB.WebPConfigInitInternal(ctypes.byref(cfg), 0, ctypes.c_float(quality), ABI)
    for k, v in fields.items():
        setattr(cfg, k, v)
    assert LIB.WebPValidateConfig(ctypes.byref(cfg)), fields
    pic = WebPPicture()
    assert LIB.WebPPictureInitInternal(ctypes.byref(pic), ABI)
    pic.width, pic.height = img.size
    pic.use_argb = cfg.lossless
    data = np.ascontiguousarray(np.asarray(img))
    ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
    importer = LIB.WebPPictureImportRGBA if img.mode == "RGBA" else LIB.WebPPictureImportRGB
    assert importer(ctypes.byref(pic), ptr, data.strides[0])
    writer = WebPMemoryWriter()
    LIB.WebPMemoryWriterInit(ctypes.byref(writer))
    pic.writer = ctypes.cast(LIB.WebPMemoryWrite, ctypes.c_void_p)
    pic.custom_ptr = ctypes.cast(ctypes.pointer(writer), ctypes.c_void_p)
    ok = LIB.WebPEncode(ctypes.byref(cfg), ctypes.byref(pic))
    LIB.WebPPictureFree(ctypes.byref(pic))
    assert ok, pic.error_code
    out = ctypes.string_at(writer.mem, writer.size)
    LIB.WebPMemoryWriterClear(ctypes.byref(writer))
    return out


# --- RIFF assembly ------------------------------------------------------------------------------

def chunk(tag: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) & 1 else b""
    return tag + struct.pack("<I", len(payload)) + payload + pad


def riff(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def chunks_of(data: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 12
    while i + 8 <= len(data):
        tag, size = data[i:i + 4], struct.unpack("<I", data[i + 4:i + 8])[0]
        out.append((tag, data[i + 8:i + 8 + size]))
        i += 8 + size + (size & 1)
    return out


def u24(v: int) -> bytes:
    return struct.pack("<I", v)[:3]


def vp8x(flags: int, w: int, h: int) -> bytes:
    return chunk(b"VP8X", bytes([flags, 0, 0, 0]) + u24(w - 1) + u24(h - 1))


def animation_at_offset() -> bytes:
    """Two frames on a 23x19 canvas; the first (lossy with alpha, 13x9) sits at (4, 6)."""
    first = chunks_of(pillow_webp(rgba(13, 9, 21), quality=70))
    second = chunks_of(pillow_webp(rgb(23, 19, 22), lossless=True))
    frame1 = b"".join(chunk(t, p) for t, p in first if t in (b"ALPH", b"VP8 "))
    frame2 = b"".join(chunk(t, p) for t, p in second if t == b"VP8L")
    anmf1 = chunk(b"ANMF", u24(2) + u24(3) + u24(12) + u24(8) + u24(100) + bytes([0]) + frame1)
    anmf2 = chunk(b"ANMF", u24(0) + u24(0) + u24(22) + u24(18) + u24(100) + bytes([2]) + frame2)
    anim = chunk(b"ANIM", bytes([10, 20, 30, 255]) + struct.pack("<H", 0))
    return riff(vp8x(0x12, 23, 19) + anim + anmf1 + anmf2)


def raw_alpha_still() -> bytes:
    """An extended still lossy image with an uncompressed ALPH chunk and an unknown chunk."""
    img = rgb(21, 14, 23)
    vp8 = [p for t, p in chunks_of(pillow_webp(img, quality=60)) if t == b"VP8 "][0]
    alpha = bytes([1 << 4 | 0]) + bytes((x * 11) & 0xFF for x in range(21 * 14))
    return riff(vp8x(0x10, 21, 14) + chunk(b"ALPH", alpha) + chunk(b"VP8 ", vp8) + chunk(b"XYZW", b"abc"))


def cases() -> dict[str, bytes]:
    c: dict[str, bytes] = {}
    # Lossy (VP8): qualities, sizes, methods; libwebp uses 4 segments and the normal filter by default.
    c["lossy_q75"] = pillow_webp(rgb(64, 48, 1), quality=75)
    c["lossy_q5"] = pillow_webp(rgb(50, 37, 2), quality=5)
    c["lossy_q100"] = pillow_webp(rgb(40, 33, 3), quality=100)
    c["lossy_1x1"] = pillow_webp(rgb(1, 1, 4), quality=80)
    c["lossy_3x5"] = pillow_webp(rgb(3, 5, 5), quality=80)
    c["lossy_17x33"] = pillow_webp(rgb(17, 33, 6), quality=50)
    c["lossy_m0"] = pillow_webp(rgb(45, 29, 7), quality=60, method=0)
    c["lossy_m6"] = pillow_webp(rgb(45, 29, 8), quality=60, method=6)
    c["lossy_gray"] = pillow_webp(gray_like(33, 20), quality=70)
    c["lossy_q30_wide"] = pillow_webp(rgb(130, 18, 9), quality=30)
    # Encoder settings Pillow does not expose.
    c["lossy_simple_filter"] = advanced_webp(rgb(41, 35, 10), 20, filter_type=0, filter_strength=80)
    c["lossy_sharpness"] = advanced_webp(rgb(39, 27, 11), 25, filter_sharpness=6, filter_strength=70)
    c["lossy_sharpness2"] = advanced_webp(rgb(36, 20, 19), 40, filter_sharpness=3, filter_strength=100)
    c["lossy_partitions"] = advanced_webp(rgb(48, 80, 12), 50, partitions=3)
    c["lossy_one_segment"] = advanced_webp(rgb(35, 25, 13), 40, segments=1)
    c["lossy_no_filter"] = advanced_webp(rgb(30, 22, 14), 40, filter_strength=0, sns_strength=0)
    c["lossy_sharp_yuv"] = advanced_webp(rgb(29, 23, 15), 70, use_sharp_yuv=1)
    c["lossy_q0_m6"] = advanced_webp(rgb(27, 31, 16), 0, method=6, segments=3)
    c["lossy_skip"] = pillow_webp(flat_scene(64, 48), quality=75)
    c["lossy_skip_m2"] = advanced_webp(flat_scene(64, 48), 75, method=2)
    c["lossy_flat"] = pillow_webp(Image.new("RGB", (20, 12), (200, 30, 90)), quality=90)
    # Lossless (VP8L): method/quality select transforms, colour cache and LZ77 effort.
    c["lossless_m0_q0"] = pillow_webp(rgb(37, 23, 30), lossless=True, method=0, quality=0)
    c["lossless_m4_q75"] = pillow_webp(rgb(37, 23, 31), lossless=True, method=4, quality=75)
    c["lossless_m6_q100"] = pillow_webp(rgb(53, 41, 32), lossless=True, method=6, quality=100)
    c["lossless_1x1"] = pillow_webp(rgb(1, 1, 33), lossless=True)
    c["lossless_gray"] = pillow_webp(gray_like(31, 17, 34), lossless=True, method=5)
    for n in (2, 3, 11, 16, 40, 200):
        c[f"lossless_{n}colors"] = pillow_webp(few_colors(29 + n % 7, 13, n, n), lossless=True, method=4)
    c["lossless_meta_codes"] = pillow_webp(regions(64, 48, 5), lossless=True, method=6, quality=90)
    c["lossless_2colors_odd"] = pillow_webp(few_colors(9, 5, 2, 1), lossless=True, method=6, quality=100)
    c["lossless_big_cache"] = advanced_webp(rgb(64, 64, 35).resize((96, 64)), 100, lossless=1, method=6)
    # Alpha: lossless RGBA (with and without exact), lossy with compressed and quantized alpha.
    c["lossless_alpha_exact"] = pillow_webp(rgba(33, 21, 40), lossless=True, exact=True)
    c["lossless_alpha"] = pillow_webp(rgba(33, 21, 41), lossless=True)
    c["lossy_alpha"] = pillow_webp(rgba(34, 22, 42), quality=70)
    c["lossy_alpha_q30"] = pillow_webp(rgba(34, 22, 43), quality=30, alpha_quality=30)
    c["lossy_alpha_exact"] = pillow_webp(rgba(19, 26, 44), quality=80, exact=True)
    c["lossy_alpha_filtered"] = advanced_webp(rgba(25, 18, 45), 60, alpha_filtering=2, alpha_compression=1)
    c["lossy_alpha_raw"] = advanced_webp(rgba(25, 18, 46), 60, alpha_compression=0)
    c["extended_raw_alpha"] = raw_alpha_still()
    # Animation: the first frame is what ImageDecoder returns.
    frames = [rgb(24, 16, 50), rgb(24, 16, 51)]
    c["anim_lossy"] = pillow_webp(frames[0], save_all=True, append_images=frames[1:], duration=100, quality=60)
    c["anim_lossless"] = pillow_webp(frames[0], save_all=True, append_images=frames[1:], lossless=True)
    c["anim_offset"] = animation_at_offset()
    # Invalid files.
    good = c["lossy_q75"]
    c["invalid_riff_size"] = good[:4] + struct.pack("<I", len(good) * 2) + good[8:]
    c["invalid_keyframe"] = good[:20] + bytes([good[20] | 1]) + good[21:]
    lossless = bytearray(c["lossless_m4_q75"])
    lossless[21] = 0  # VP8L signature
    c["invalid_vp8l_signature"] = bytes(lossless)
    return c


def main() -> None:
    for name in os.listdir(HERE):
        if name.endswith((".webp", ".ppm")):
            os.remove(os.path.join(HERE, name))
    total = 0
    all_cases = cases()
    for name, data in all_cases.items():
        with open(os.path.join(HERE, name + ".webp"), "wb") as f:
            f.write(data)
        total += len(data)
        if name.startswith("invalid_"):
            try:
                Image.open(io.BytesIO(data)).load()
            except Exception:
                continue
            raise SystemExit(f"{name}: Pillow decodes it")
        img = Image.open(io.BytesIO(data))
        img.load()
        img.convert("RGB").save(os.path.join(HERE, name + ".ppm"))
        total += os.path.getsize(os.path.join(HERE, name + ".ppm"))
    print(f"{len(all_cases)} cases, {total} bytes")


if __name__ == "__main__":
    main()

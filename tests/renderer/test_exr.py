"""OpenEXR reader/writer: round trips (FLOAT exact, HALF to float16 precision) for every supported
compression; files assembled byte by byte here from the OpenEXR File Layout document (plain,
ZIP- and RLE-packed); the document's own sample file; the writer's layout parsed independently;
malformed, truncated and unsupported files; cross-checks against ffmpeg's independent EXR codec.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import subprocess
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from renderer.exr import ExrError, read_exr, read_exr_channels, write_exr

COMPRESSIONS = ["none", "rle", "zips", "zip"]
UINT, HALF, FLOAT = 0, 1, 2

# The 415-byte sample file listed byte by byte in the "Sample File" section of the OpenEXR File
# Layout document (website/downloads/sample.exr; Copyright Contributors to the OpenEXR Project,
# BSD-3-Clause): 4×3 pixels, channels G (HALF) and Z (FLOAT), uncompressed, written by the
# OpenEXR library.
SPEC_SAMPLE = bytes.fromhex(
    "762f3101020000006368616e6e656c730063686c6973740025000000470001000000000000000100"
    "0000010000005a000200000000000000010000000100000000636f6d7072657373696f6e00636f6d"
    "7072657373696f6e0001000000006461746157696e646f7700626f78326900100000000000000000"
    "0000000300000002000000646973706c617957696e646f7700626f78326900100000000000000000"
    "00000003000000020000006c696e654f72646572006c696e654f7264657200010000000070697865"
    "6c417370656374526174696f00666c6f617400040000000000803f73637265656e57696e646f7743"
    "656e746572007632660008000000000000000000000073637265656e57696e646f77576964746800"
    "666c6f617400040000000000803f003f010000000000005f010000000000007f0100000000000000"
    "0000001800000000005429d535e82d5c28813acfe1343e8b0bbb3d8974f93e010000001800000037"
    "387633743b73387fabe83e8acf543f5b6c113f2035503d0200000018000000233a0a34023b5d3b38"
    "f39a3c4dad983e1c14083f4cf3033f"
)
# The decoded values the document prints beside those bytes (G to 3 decimals, Z to 6 digits).
SPEC_G = [[0.000, 0.042, 0.365, 0.092], [0.527, 0.233, 0.932, 0.556], [0.767, 0.252, 0.876, 0.920]]
SPEC_Z = [
    [0.000985395, 0.176643, 0.0913306, 0.487217],
    [0.454433, 0.831292, 0.56806, 0.0508319],
    [0.0189148, 0.298197, 0.531557, 0.515431],
]


# ----------------------------------------------------------------------------------------------
# Byte-level builders, written from the layout document independently of renderer.exr
# ----------------------------------------------------------------------------------------------


def _attr(name: str, type_name: str, value: bytes) -> bytes:
    """``name\\0 type\\0 size:int value`` (Attribute Layout)."""
    size = struct.pack("<i", len(value))
    return name.encode() + b"\0" + type_name.encode() + b"\0" + size + value


def _chlist(channels: list[tuple[str, int]]) -> bytes:
    """Per channel ``name\\0, pixel type:int, pLinear:uchar, 3 reserved, xSampling, ySampling``."""
    body = b"".join(
        n.encode() + b"\0" + struct.pack("<i", t) + bytes(4) + struct.pack("<ii", 1, 1)
        for n, t in channels
    )
    return body + b"\0"


def _exr(
    channels: list[tuple[str, int]],
    width: int,
    height: int,
    compression: int,
    blocks: list[tuple[int, bytes]],
    *,
    version: int = 2,
    line_order: int = 0,
    extra: bytes = b"",
) -> bytes:
    """A single-part scan-line file: blocks ``(y, stored pixel data)``, in file order."""
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = (
        struct.pack("<iI", 20000630, version)
        + _attr("compression", "compression", bytes([compression]))  # any attribute order
        + _attr("channels", "chlist", _chlist(channels))
        + extra
        + _attr("dataWindow", "box2i", window)
        + _attr("displayWindow", "box2i", window)
        + _attr("lineOrder", "lineOrder", bytes([line_order]))
        + _attr("pixelAspectRatio", "float", struct.pack("<f", 1.0))
        + _attr("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0))
        + _attr("screenWindowWidth", "float", struct.pack("<f", 1.0))
        + b"\0"
    )
    pos = len(header) + 8 * len(blocks)
    where = {}
    body = b""
    for y, data in blocks:
        where[y] = pos + len(body)
        body += struct.pack("<ii", y, len(data)) + data
    table = b"".join(struct.pack("<Q", where[y]) for y in sorted(where))  # by increasing y
    return header + table + body


def _scanlines(img: np.ndarray, y0: int, y1: int, fmt: str) -> bytes:
    """Raw pixel data of rows ``y0:y1`` of an RGB image: per row B, G, R, pixels left to right."""
    return b"".join(
        struct.pack(f"<{img.shape[1]}{fmt}", *img[y, :, c].tolist())
        for y in range(y0, y1)
        for c in (2, 1, 0)
    )


def _predict(raw: bytes) -> bytes:
    """Even-index bytes then odd-index bytes, then ``(b[i] − b[i−1] + 128) mod 256``."""
    t = raw[0::2] + raw[1::2]
    return bytes([t[0]] + [(t[i] - t[i - 1] + 128) % 256 for i in range(1, len(t))])


def _rle(data: bytes) -> bytes:
    """Runs of ≥ 2 equal bytes as ``(n − 1, b)``; other bytes as ``(−n, b1 … bn)``."""
    out, lit, i = bytearray(), bytearray(), 0

    def flush() -> None:
        for s in range(0, len(lit), 100):
            seg = lit[s : s + 100]
            out.append(256 - len(seg))
            out.extend(seg)
        lit.clear()

    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i] and j - i < 128:
            j += 1
        if j - i >= 2:
            flush()
            out += bytes([j - i - 1, data[i]])
        else:
            lit.append(data[i])
        i = j
    flush()
    return bytes(out)


def _file(tmp_path: Path, data: bytes, name: str = "hand.exr") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _image(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """HDR test pixels: a flat patch (runs for RLE), values over 1 and tiny ones, negatives."""
    rng = np.random.default_rng(seed)
    img = (rng.standard_normal((h, w, c)) * np.exp(rng.uniform(-6, 6, (h, w, c)))).astype(
        np.float32
    )
    img[: h // 2, : w // 2] = 0.25
    return img


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("shape", [(37, 23, 3), (1, 1, 3), (16, 5, 3), (33, 8, 4)])
def test_round_trip_float_is_exact(tmp_path: Path, compression: str, shape: tuple) -> None:
    img = _image(*shape)
    p = tmp_path / "a.exr"
    write_exr(p, img, compression=compression)
    out = read_exr(p)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("shape", [(37, 23, 3), (1, 1, 3), (18, 7, 4)])
def test_round_trip_half_to_float16_precision(
    tmp_path: Path, compression: str, shape: tuple
) -> None:
    img = _image(*shape, seed=1) / 8  # |values| < 65504 so all stay finite in half
    p = tmp_path / "h.exr"
    write_exr(p, img, half=True, compression=compression)
    out = read_exr(p)
    assert out.dtype == np.float32 and out.shape == shape
    np.testing.assert_array_equal(out, img.astype(np.float16).astype(np.float32))
    normal = np.abs(img) > 2.0**-14  # float16's normal range: relative error ≤ 2^-11
    assert np.all(np.abs(out[normal] / img[normal] - 1) <= 2.0**-11)


def test_rgba_round_trip_and_torch_input(tmp_path: Path) -> None:
    img = _image(9, 11, 4)
    img[..., 3] = np.linspace(0, 1, 11, dtype=np.float32)
    p = tmp_path / "rgba.exr"
    write_exr(p, torch.from_numpy(img))
    out = read_exr(p)
    assert out.shape == (9, 11, 4)
    np.testing.assert_array_equal(out, img)
    assert list(read_exr_channels(p)) == ["A", "B", "G", "R"]


def test_hdr_and_special_values_are_kept(tmp_path: Path) -> None:
    special = [1e4, 3e38, 1e-30, 1e-42, -5.5, -0.0, np.inf, -np.inf, np.nan, 65504.0, 7e-8, 1.0]
    img = np.array(special, dtype=np.float32).reshape(2, 2, 3)
    for compression in COMPRESSIONS:
        write_exr(tmp_path / "s.exr", img, compression=compression)
        out = read_exr(tmp_path / "s.exr")
        np.testing.assert_array_equal(out, img)  # NaN compares equal to NaN here
        assert np.signbit(out.ravel()[5])  # −0 stays −0

        write_exr(tmp_path / "s16.exr", img, half=True, compression=compression)
        out16 = read_exr(tmp_path / "s16.exr")
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(out16, img.astype(np.float16).astype(np.float32))
    assert out16.ravel()[0] == 1e4 and out16.ravel()[9] == 65504.0  # big values survive half
    assert out16.ravel()[10] > 0  # a float16 subnormal, not flushed to 0
    assert np.isinf(out16.ravel()[1])  # 3e38 is beyond half's range


def test_rle_and_zip_actually_compress_flat_images(tmp_path: Path) -> None:
    img = np.full((64, 64, 3), 0.5, dtype=np.float32)
    sizes = {}
    for half in (False, True):
        for compression in COMPRESSIONS:
            p = tmp_path / f"{compression}{half}.exr"
            write_exr(p, img, compression=compression, half=half)
            sizes[compression, half] = p.stat().st_size
            np.testing.assert_array_equal(read_exr(p), img)
    assert sizes["none", False] > 64 * 64 * 12 and sizes["none", True] > 64 * 64 * 6
    assert max(sizes["zips", False], sizes["zip", False]) < sizes["none", False] / 10
    # FLOAT 0.5 is the bytes 00 00 00 3f: after reordering, the odd bytes alternate 00, 3f, so
    # RLE finds runs only in the even half; HALF 0.5 (00 38) is runs throughout.
    assert sizes["rle", False] < 0.6 * sizes["none", False]
    assert sizes["rle", True] < sizes["none", True] / 10


# ----------------------------------------------------------------------------------------------
# Hand-built files (an independent check of the layout) and the specification's sample file
# ----------------------------------------------------------------------------------------------


def test_hand_built_uncompressed_file_decodes(tmp_path: Path) -> None:
    # 2×1 pixels; channels in alphabetical order B (HALF), G (FLOAT), R (UINT); one scan line.
    pixels = (
        struct.pack("<2e", 0.5, -2.0)
        + struct.pack("<2f", 1.5, 1e30)
        + struct.pack("<2I", 7, 4_000_000_000)
    )
    custom = _attr("owner", "string", b"fields-app test")  # unknown attributes are skipped
    data = _exr([("B", HALF), ("G", FLOAT), ("R", UINT)], 2, 1, 0, [(0, pixels)], extra=custom)
    out = read_exr(_file(tmp_path, data))
    expected = np.array([[[7.0, 1.5, 0.5], [4e9, 1e30, -2.0]]], dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_hand_built_zip_file_with_a_short_last_block(tmp_path: Path) -> None:
    img = np.full((18, 3, 3), 1.5, dtype=np.float32)  # ZIP blocks: rows 0–15 and 16–17
    img[5, 1] = [1e5, -3.0, 1e-3]
    img[17, 2] = [0.0, 2.0, 7.0]
    raw = [_scanlines(img, y, min(y + 16, 18), "f") for y in (0, 16)]
    blocks = [(y, zlib.compress(_predict(r))) for y, r in zip((0, 16), raw)]
    assert all(len(b) < len(r) for (_, b), r in zip(blocks, raw))  # really compressed
    p = _file(tmp_path, _exr([("B", FLOAT), ("G", FLOAT), ("R", FLOAT)], 3, 18, 3, blocks))
    np.testing.assert_array_equal(read_exr(p), img)


def test_hand_built_rle_file_and_blocks_in_decreasing_order(tmp_path: Path) -> None:
    img = np.zeros((3, 40, 3), dtype=np.float32)
    img[:, 10:] = [[1.0, 2.0, 3.0]]
    img[1, 5] = [0.1, -0.2, 6e4]
    blocks = [(y, _rle(_predict(_scanlines(img, y, y + 1, "e")))) for y in (2, 1, 0)]
    assert all(len(b) < 40 * 3 * 2 for _, b in blocks)
    half = [("B", HALF), ("G", HALF), ("R", HALF)]
    p = _file(tmp_path, _exr(half, 40, 3, 1, blocks, line_order=1))
    np.testing.assert_array_equal(read_exr(p), img.astype(np.float16).astype(np.float32))


def test_a_block_stored_raw_in_a_compressed_file_is_read(tmp_path: Path) -> None:
    # "either the compressed or the uncompressed data are stored, whichever is smaller"
    img = _image(2, 4)
    rgb = [("B", FLOAT), ("G", FLOAT), ("R", FLOAT)]
    for code in (1, 2):
        blocks = [(y, _scanlines(img, y, y + 1, "f")) for y in (0, 1)]
        np.testing.assert_array_equal(read_exr(_file(tmp_path, _exr(rgb, 4, 2, code, blocks))), img)


def test_specification_sample_file(tmp_path: Path) -> None:
    p = _file(tmp_path, SPEC_SAMPLE, "sample.exr")
    assert len(SPEC_SAMPLE) == 415
    channels = read_exr_channels(p)
    assert list(channels) == ["G", "Z"]
    assert channels["G"].shape == channels["Z"].shape == (3, 4)
    np.testing.assert_allclose(channels["G"], SPEC_G, atol=5e-4)
    np.testing.assert_allclose(channels["Z"], SPEC_Z, rtol=1e-5)
    with pytest.raises(ExrError, match=r"sample\.exr: no R, B channel\(s\).*G, Z"):
        read_exr(p)


def test_written_file_layout_parsed_independently(tmp_path: Path) -> None:
    img = _image(3, 2)
    p = tmp_path / "w.exr"
    write_exr(p, img, compression="none")
    data = p.read_bytes()
    assert struct.unpack("<iI", data[:8]) == (20000630, 2)
    pos, attrs = 8, {}
    while data[pos] != 0:
        name, type_name, rest = data[pos:].split(b"\0", 2)
        (size,) = struct.unpack("<i", rest[:4])
        attrs[name.decode()] = (type_name.decode(), rest[4 : 4 + size])
        pos += len(name) + len(type_name) + 2 + 4 + size
    pos += 1
    assert list(attrs) == [
        "channels", "compression", "dataWindow", "displayWindow", "lineOrder",
        "pixelAspectRatio", "screenWindowCenter", "screenWindowWidth",
    ]
    assert attrs["channels"] == ("chlist", _chlist([("B", FLOAT), ("G", FLOAT), ("R", FLOAT)]))
    assert attrs["compression"] == ("compression", b"\0")
    window = ("box2i", struct.pack("<4i", 0, 0, 1, 2))
    assert attrs["dataWindow"] == attrs["displayWindow"] == window
    assert attrs["lineOrder"] == ("lineOrder", b"\0")
    assert attrs["pixelAspectRatio"] == attrs["screenWindowWidth"] == ("float", b"\0\0\x80\x3f")
    assert attrs["screenWindowCenter"] == ("v2f", bytes(8))
    offsets = struct.unpack("<3Q", data[pos : pos + 24])
    assert offsets[0] == pos + 24
    for y, offset in enumerate(offsets):
        row = _scanlines(img, y, y + 1, "f")
        assert data[offset : offset + 8] == struct.pack("<ii", y, len(row))
        assert data[offset + 8 : offset + 8 + len(row)] == row
    assert offsets[2] + 8 + 24 == len(data)

    write_exr(p, _image(37, 2, 4), half=True)  # ZIP: ceil(37 / 16) = 3 blocks, y = 0, 16, 32
    data = p.read_bytes()
    assert _chlist([("A", HALF), ("B", HALF), ("G", HALF), ("R", HALF)]) in data
    table = data.index(b"screenWindowWidth\0float\0") + len(b"screenWindowWidth\0float\0") + 9
    offsets = struct.unpack("<3Q", data[table : table + 24])
    assert [struct.unpack("<i", data[o : o + 4])[0] for o in offsets] == [0, 16, 32]


# ----------------------------------------------------------------------------------------------
# Writing: argument checks, atomicity
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 1), (4, 4, 2), (4, 4, 5), (0, 4, 3), (4, 0, 4)])
def test_write_refuses_wrong_shapes(tmp_path: Path, shape: tuple) -> None:
    with pytest.raises(ValueError, match=r"\[H, W, 3\] or \[H, W, 4\]"):
        write_exr(tmp_path / "x.exr", np.zeros(shape, dtype=np.float32))
    assert not (tmp_path / "x.exr").exists()


def test_write_refuses_bad_dtype_and_compression(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="real-valued"):
        write_exr(tmp_path / "x.exr", np.zeros((2, 2, 3), dtype=np.complex64))
    with pytest.raises(ValueError, match="unknown compression 'piz'"):
        write_exr(tmp_path / "x.exr", np.zeros((2, 2, 3)), compression="piz")
    write_exr(tmp_path / "i.exr", np.arange(12).reshape(2, 2, 3))  # integers are converted
    np.testing.assert_array_equal(read_exr(tmp_path / "i.exr"), np.arange(12).reshape(2, 2, 3))


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "a.exr"
    write_exr(p, np.ones((2, 3, 3)))
    write_exr(p, np.full((2, 3, 3), 2.0))  # overwrite
    assert os.listdir(tmp_path) == ["a.exr"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    before = p.read_bytes()

    def fail(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        write_exr(p, np.zeros((5, 5, 3)))
    assert os.listdir(tmp_path) == ["a.exr"] and p.read_bytes() == before  # no temp file left


# ----------------------------------------------------------------------------------------------
# Malformed and unsupported files
# ----------------------------------------------------------------------------------------------


def _small(tmp_path: Path, compression: str = "zip") -> bytes:
    write_exr(tmp_path / "src.exr", _image(5, 4), compression=compression)
    return (tmp_path / "src.exr").read_bytes()


def test_every_truncation_raises_exr_error_naming_the_file(tmp_path: Path) -> None:
    data = _small(tmp_path)
    p = tmp_path / "cut.exr"
    cuts = np.r_[0:12, np.linspace(12, len(data) - 9, 50).astype(int), len(data) - 8 : len(data)]
    for n in np.unique(cuts).tolist():
        p.write_bytes(data[:n])
        with pytest.raises(ExrError, match=re.escape(str(p))):
            read_exr(p)


def test_bad_magic(tmp_path: Path) -> None:
    p = _file(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(100), "png.exr")
    with pytest.raises(ExrError, match=re.escape(str(p)) + ".*not an OpenEXR file"):
        read_exr(p)


@pytest.mark.parametrize(
    ("flags", "feature"),
    [
        (0x200, "tiled"),
        (0x800, "deep"),
        (0x1000, "multi-part"),
        (0x1800, "deep"),
        (0x4000, "unknown version flags"),
    ],
)
def test_unsupported_version_flags(tmp_path: Path, flags: int, feature: str) -> None:
    data = bytearray(_small(tmp_path))
    data[4:8] = struct.pack("<I", 2 | flags)
    p = _file(tmp_path, bytes(data), "flags.exr")
    with pytest.raises(ExrError, match=re.escape(str(p)) + ".*unsupported.*" + feature):
        read_exr(p)


def test_unsupported_format_version(tmp_path: Path) -> None:
    data = bytearray(_small(tmp_path))
    data[4] = 1
    with pytest.raises(ExrError, match="format version 1"):
        read_exr(_file(tmp_path, bytes(data)))


@pytest.mark.parametrize(
    ("code", "label"),
    [(4, "PIZ"), (5, "PXR24"), (6, "B44"), (7, "B44A"), (8, "DWAA"), (9, "DWAB"), (10, "HTJ2K"),
     (42, "UNKNOWN")],
)
def test_unsupported_compression(tmp_path: Path, code: int, label: str) -> None:
    data = bytearray(_small(tmp_path, "none"))
    at = data.index(b"compression\0compression\0") + len(b"compression\0compression\0") + 4
    data[at] = code
    p = _file(tmp_path, bytes(data), "comp.exr")
    with pytest.raises(ExrError, match=re.escape(str(p)) + f".*{label} compression \\({code}\\)"):
        read_exr(p)


def test_other_unsupported_features(tmp_path: Path) -> None:
    rgb = [("B", FLOAT), ("G", FLOAT), ("R", FLOAT)]
    block = [(0, bytes(12))]
    deep = _attr("type", "string", b"deepscanline")
    with pytest.raises(ExrError, match="part type 'deepscanline'"):
        read_exr(_file(tmp_path, _exr(rgb, 1, 1, 0, block, extra=deep)))
    good = _exr(rgb, 1, 1, 0, block)
    sub = good.replace(struct.pack("<ii", 1, 1) + b"R", struct.pack("<ii", 2, 2) + b"R")
    assert sub != good
    with pytest.raises(ExrError, match="sub-sampled channel 'G'"):
        read_exr(_file(tmp_path, sub))


def test_structural_errors(tmp_path: Path) -> None:
    rgb = [("B", FLOAT), ("G", FLOAT), ("R", FLOAT)]
    good = _exr(rgb, 1, 2, 0, [(0, bytes(12)), (1, bytes(12))])
    np.testing.assert_array_equal(read_exr(_file(tmp_path, good)), np.zeros((2, 1, 3)))
    cases = {
        "repeated y": _exr(rgb, 1, 2, 0, [(0, bytes(12)), (1, bytes(12))]).replace(
            struct.pack("<ii", 1, 12), struct.pack("<ii", 0, 12)
        ),
        "pixel data size": _exr(rgb, 1, 2, 0, [(0, bytes(12)), (1, bytes(11))]),
        # the table's 2nd entry (2 blocks of 8 + 12 bytes follow the table)
        "outside the pixel data": good[:-48] + struct.pack("<Q", 10**9) + good[-40:],
        "required attribute 'dataWindow'": good.replace(b"dataWindow\0", b"dataWindoX\0"),
        "implausibly big|cannot hold": good.replace(
            struct.pack("<4i", 0, 0, 0, 1), struct.pack("<4i", 0, 0, 10**6, 10**5), 1
        ),
        "empty or inverted": good.replace(
            struct.pack("<4i", 0, 0, 0, 1), struct.pack("<4i", 5, 0, 0, 1), 1
        ),
        "channel list is empty": _exr([], 1, 2, 0, [(0, b""), (1, b"")]),
        "duplicate channel": _exr([("R", FLOAT)] * 3, 1, 2, 0, [(0, bytes(12)), (1, bytes(12))]),
        "pixel type 7": _exr([("B", 7)] + rgb[1:], 1, 2, 0, [(0, bytes(12)), (1, bytes(12))]),
        "no G channel": _exr([("B", FLOAT), ("R", FLOAT)], 1, 2, 0, [(0, bytes(8)), (1, bytes(8))]),
        "corrupt ZIP": _exr(rgb, 1, 2, 3, [(0, b"not zlib at all!")]),
        "corrupt RLE": _exr(rgb, 1, 2, 1, [(0, b"\x7f"), (1, b"\x05")]),
    }
    for message, data in cases.items():
        p = _file(tmp_path, data, "bad.exr")
        with pytest.raises(ExrError, match=re.escape(str(p)) + f".*({message})"):
            read_exr(p)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_random_corruption_raises_only_exr_error(tmp_path: Path, compression: str) -> None:
    data = _small(tmp_path, compression)
    rng = np.random.default_rng(7)
    p = tmp_path / "fuzz.exr"
    for _ in range(60):
        bad = bytearray(data)
        for i in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            bad[i] = int(rng.integers(0, 256))
        p.write_bytes(bytes(bad))
        try:
            read_exr_channels(p)
        except ExrError as err:
            assert str(p) in str(err)


# ----------------------------------------------------------------------------------------------
# Cross-checks against other readers and writers
# ----------------------------------------------------------------------------------------------


def test_imageio_cross_check(tmp_path: Path) -> None:
    img = _image(6, 5)
    p = tmp_path / "iio.exr"
    write_exr(p, img)
    import imageio.v3 as iio

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            other = np.asarray(iio.imread(p))
    except Exception as err:  # noqa: BLE001 - any failure means "this imageio has no EXR"
        pytest.skip(f"imageio.v3.imread cannot read OpenEXR in this venv ({type(err).__name__})")
    np.testing.assert_array_equal(other[..., :3], img)


def _ffmpeg() -> str:
    """imageio-ffmpeg's ffmpeg binary (which has its own EXR codec), or skip."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"no ffmpeg binary from imageio-ffmpeg ({type(err).__name__})")
    codecs = subprocess.run([exe, "-hide_banner", "-codecs"], capture_output=True, text=True)
    if not re.search(r"^\s*DE\S*\s+exr\s", codecs.stdout, re.M):  # decoder and encoder
        pytest.skip("this ffmpeg has no EXR codec")
    return exe


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_ffmpeg_decodes_our_files(tmp_path: Path, compression: str) -> None:
    exe = _ffmpeg()
    for half, channels in ((False, 3), (True, 4)):
        img = _image(37, 23, channels) / 8
        p = tmp_path / "ours.exr"
        write_exr(p, img, half=half, compression=compression)
        # Raw frames in ffmpeg's native EXR pixel format: planes G, B, R (, A), f32 or f16.
        run = subprocess.run(
            [exe, "-v", "error", "-i", str(p), "-f", "rawvideo", "-c:v", "rawvideo", "-"],
            capture_output=True,
            check=True,
        )
        planes = np.frombuffer(run.stdout, "<f2" if half else "<f4").reshape(channels, 37, 23)
        got = np.stack([planes[i] for i in (2, 0, 1, 3)[:channels]], axis=-1)
        expected = img.astype(np.float16) if half else img
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("compression", "ff_name"), [("none", "none"), ("rle", "rle"),
                                                      ("zips", "zip1"), ("zip", "zip16")])
def test_we_decode_ffmpeg_files(tmp_path: Path, compression: str, ff_name: str) -> None:
    exe = _ffmpeg()
    img = _image(37, 23, 4, seed=3) / 8  # |values| < 65504: finite in half
    img[..., 3] = np.linspace(0.1, 1.0, 23)
    raw = np.ascontiguousarray(img[:, :, [1, 2, 0, 3]].transpose(2, 0, 1)).astype("<f4")
    p = tmp_path / "ff.exr"
    for pixel_format in ("float", "half"):
        subprocess.run(
            [exe, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gbrapf32le",
             "-s", "23x37", "-i", "-", "-frames:v", "1", "-c:v", "exr", "-compression", ff_name,
             "-format", pixel_format, "-update", "1", str(p)],
            input=raw.tobytes(),
            capture_output=True,
            check=True,
        )
        got = read_exr(p)
        # ffmpeg's encoder premultiplies colour by alpha and truncates float → half.
        expected = np.concatenate([img[..., :3] * img[..., 3:], img[..., 3:]], axis=-1)
        if pixel_format == "float":
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=2.0**-10, atol=2.0**-24)

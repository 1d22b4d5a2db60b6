"""A minimal OpenEXR reader and writer for linear-radiance RGB(A) images.

Written from the *OpenEXR File Layout* document (https://openexr.com/en/latest/
OpenEXRFileLayout.html), not from another implementation. Section names below refer to it.

Layout of a single-part scan-line file (*High-Level Layout*):

1. magic number ``20000630`` (``int``; the bytes ``76 2f 31 01``);
2. version field (``int``): format version ``2`` in the low 8 bits, flags above it — bit 9
   (``0x200``) tiled, bit 10 (``0x400``) long names, bit 11 (``0x800``) non-image (deep),
   bit 12 (``0x1000``) multi-part (*Version Field*);
3. header: attributes ``name\\0 type\\0 size:int value[size]``, ended by a null byte
   (*Attribute Layout*);
4. line offset table: one ``unsigned long`` (uint64) file offset per scan-line block, in
   increasing ``y`` (*Offset Tables*);
5. scan-line blocks: ``y:int``, ``pixel data size:int``, pixel data. Uncompressed, a block is
   its scan lines top to bottom, each scan line every channel in alphabetical order of
   channel name, each channel's pixels left to right (*Regular Scan Line Blocks*). All numbers
   are little-endian; ``half`` is IEEE-754 binary16.

Compression (the *compression* attribute). The layout document leaves the compressed formats to
the library; the byte-level schemes handled here (checked against files written by the OpenEXR
library and by ffmpeg's independent EXR codec) are:

* ``NO_COMPRESSION`` (0), one scan line per block.
* ``RLE_COMPRESSION`` (1), one scan line per block; ``ZIPS_COMPRESSION`` (2), one scan line per
  block; ``ZIP_COMPRESSION`` (3), 16 scan lines per block. All three first *reorder* the
  block's bytes — the bytes at even positions, then those at odd positions — and then apply a
  *predictor*: every byte but the first is replaced by ``(b[i] − b[i−1] + 128) mod 256``. ZIP(S)
  then deflates the result with zlib; RLE run-length encodes it as signed count bytes — a count
  ``c ≥ 0`` repeats the next byte ``c + 1`` times, ``c < 0`` copies the next ``−c`` bytes.
* A block whose compressed form would not be smaller than the raw pixels is stored raw
  (*Compressed data*); the reader recognises it by its pixel data size.

PIZ, PXR24, B44(A), DWAA/B and HTJ2K, tiled, multi-part and deep files, and sub-sampled
channels are refused with :class:`ExrError`.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from jaxtyping import Float32
from torch import Tensor

from renderer.files import write_atomically

__all__ = ["ExrError", "read_exr", "read_exr_channels", "write_exr"]

MAGIC = 20000630
"""The first four bytes of every OpenEXR file, as a little-endian ``int`` (*Magic Number*)."""

_VERSION = 2
_FLAG_TILED, _FLAG_LONG_NAMES, _FLAG_NON_IMAGE, _FLAG_MULTIPART = 0x200, 0x400, 0x800, 0x1000
_KNOWN_FLAGS = _FLAG_TILED | _FLAG_LONG_NAMES | _FLAG_NON_IMAGE | _FLAG_MULTIPART

_COMPRESSION_NAMES = {
    0: "none", 1: "rle", 2: "zips", 3: "zip", 4: "piz", 5: "pxr24", 6: "b44", 7: "b44a",
    8: "dwaa", 9: "dwab", 10: "htj2k",
}
_COMPRESSION_CODES = {"none": 0, "rle": 1, "zips": 2, "zip": 3}
_LINES_PER_BLOCK = {0: 1, 1: 1, 2: 1, 3: 16}  # the supported ones (*Regular Scan Line Blocks*)

_UINT, _HALF, _FLOAT = 0, 1, 2
_PIXEL_DTYPES = {_UINT: np.dtype("<u4"), _HALF: np.dtype("<f2"), _FLOAT: np.dtype("<f4")}
_PIXEL_NAMES = {_UINT: "UINT", _HALF: "HALF", _FLOAT: "FLOAT"}
_LINE_ORDERS = {0: "INCREASING_Y", 1: "DECREASING_Y", 2: "RANDOM_Y"}

_MAX_RATIO = {0: 1, 1: 64, 2: 1100, 3: 1100}  # > 128/2 for RLE, > deflate's 1032:1 for ZIP
_MAX_SAMPLES = 1 << 31  # width × height × channels beyond this is taken as corrupt
_ZLIB_LEVEL = 6
_RLE_MAX = 127  # longest run / literal stretch one RLE count byte describes here


class ExrError(ValueError):
    """A malformed or unsupported OpenEXR file; the message names the file and the problem."""


# ----------------------------------------------------------------------------------------------
# Byte-level schemes shared by RLE, ZIPS and ZIP
# ----------------------------------------------------------------------------------------------


def _reorder_and_predict(raw: np.ndarray) -> np.ndarray:
    """Even-position bytes then odd-position ones, then the byte-difference predictor."""
    t = np.concatenate([raw[0::2], raw[1::2]]).astype(np.uint8)
    out = t.copy()
    out[1:] = t[1:] - t[:-1] + np.uint8(128)  # uint8 arithmetic wraps: mod 256
    return out


def _unpredict_and_unorder(data: np.ndarray) -> np.ndarray:
    """The inverse of :func:`_reorder_and_predict`."""
    steps = data.astype(np.uint8)
    steps[1:] -= np.uint8(128)
    t = np.cumsum(steps, dtype=np.uint8)  # b[i] = b[i−1] + d[i] − 128 (mod 256)
    out = np.empty_like(t)
    half = (t.size + 1) // 2
    out[0::2] = t[:half]
    out[1::2] = t[half:]
    return out


def _rle_encode(data: np.ndarray) -> bytes:
    """Run-length encode bytes: runs of ≥ 3 equal bytes as ``(n − 1, byte)``, others literal."""
    n = int(data.size)
    raw = data.tobytes()
    out = bytearray()

    def literal(a: int, b: int) -> None:
        for s in range(a, b, _RLE_MAX):
            seg = raw[s : min(s + _RLE_MAX, b)]
            out.append(256 - len(seg))  # the count byte −len as a signed char
            out.extend(seg)

    if n == 0:
        return b""
    starts = np.concatenate([[0], np.flatnonzero(data[1:] != data[:-1]) + 1])
    ends = np.append(starts[1:], n)
    pos = 0
    for k in np.flatnonzero(ends - starts >= 3):
        s, e = int(starts[k]), int(ends[k])
        literal(pos, s)
        while s < e:
            m = min(e - s, _RLE_MAX)
            out.append(m - 1)
            out.append(raw[s])
            s += m
        pos = e
    literal(pos, n)
    return bytes(out)


def _rle_decode(src: bytes, n: int) -> np.ndarray | None:
    """Undo :func:`_rle_encode`; ``None`` if the runs do not produce exactly ``n`` bytes."""
    out = bytearray()
    i, size = 0, len(src)
    while i < size:
        c = src[i]
        i += 1
        if c >= 128:  # negative signed char: 256 − c literal bytes follow
            count = 256 - c
            if i + count > size:
                return None
            out += src[i : i + count]
            i += count
        else:  # c + 1 copies of the next byte
            if i >= size:
                return None
            out += src[i : i + 1] * (c + 1)
            i += 1
        if len(out) > n:
            return None
    if len(out) != n:
        return None
    return np.frombuffer(bytes(out), dtype=np.uint8)


def _compress(raw: bytes, code: int) -> bytes:
    """One block's pixel data as stored: compressed, or raw when that is not smaller."""
    if code == 0:
        return raw
    pred = _reorder_and_predict(np.frombuffer(raw, dtype=np.uint8))
    packed = zlib.compress(pred.tobytes(), _ZLIB_LEVEL) if code in (2, 3) else _rle_encode(pred)
    return packed if len(packed) < len(raw) else raw


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _attribute(name: str, type_name: str, value: bytes) -> bytes:
    """One header attribute: ``name\\0 type\\0 size value`` (*Attribute Layout*)."""
    size = struct.pack("<i", len(value))
    return name.encode() + b"\0" + type_name.encode() + b"\0" + size + value


def write_exr(
    path: str | os.PathLike[str],
    image: np.ndarray | Tensor,
    *,
    half: bool = False,
    compression: str = "zip",
) -> None:
    """Write linear radiance as a single-part scan-line OpenEXR file, with no tone mapping.

    Channels ``R, G, B`` (and ``A`` for a 4-channel image) are listed — and stored in each
    scan-line block — in alphabetical order (``A, B, G, R``) as the *OpenEXR File Layout*
    requires. The header holds exactly the attributes every file must have (*Header
    Attributes*): ``channels``, ``compression``, ``dataWindow`` = ``displayWindow`` =
    ``(0, 0)–(W − 1, H − 1)``, ``lineOrder`` ``INCREASING_Y``, ``pixelAspectRatio`` 1,
    ``screenWindowCenter`` (0, 0) and ``screenWindowWidth`` 1. Version field 2 with no flags.

    Values are written as given: negative values, NaN and ±inf are legal in OpenEXR and kept.
    With ``half=True`` values are rounded to float16; magnitudes above 65504 become ±inf and
    ones below about 6e-8 become 0. The file is written to a temporary file in the same
    directory and then ``os.replace``d over ``path``, so readers never see a partial file.

    Args:
        path: the file to write (its directory must exist).
        image: ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA linear values (numpy array or tensor,
            any real dtype; converted to float32, or float16 with ``half``).
        half: store ``HALF`` (16-bit) pixels instead of ``FLOAT`` (32-bit).
        compression: ``"zip"`` (zlib, 16 scan lines per block; the default), ``"zips"``
            (zlib, one scan line per block), ``"rle"`` (run-length) or ``"none"``.

    Raises:
        ValueError: ``image`` is not ``[H, W, 3|4]`` with ``H, W ≥ 1`` and a real dtype, or
            ``compression`` is unknown.
        OSError: the file cannot be written.

    Example:
        >>> import tempfile
        >>> img = np.array([[[0.5, 2.0, 1000.0]]], dtype=np.float32)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_exr(f"{d}/a.exr", img)
        ...     read_exr(f"{d}/a.exr").tolist()
        [[[0.5, 2.0, 1000.0]]]
    """
    a = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"write_exr: want an [H, W, 3] or [H, W, 4] image, got {list(a.shape)}")
    if a.dtype == np.bool_ or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise ValueError(f"write_exr: want a real-valued image, got dtype {a.dtype}")
    code = _COMPRESSION_CODES.get(compression.lower()) if isinstance(compression, str) else None
    if code is None:
        raise ValueError(
            f"write_exr: unknown compression {compression!r}; "
            f"choose one of {', '.join(_COMPRESSION_CODES)}"
        )
    height, width, n_channels = a.shape
    names = ["R", "G", "B", "A"][:n_channels]
    order = sorted(range(n_channels), key=lambda c: names[c])  # alphabetical: A, B, G, R
    pixel_type, dtype = (_HALF, np.dtype("<f2")) if half else (_FLOAT, np.dtype("<f4"))
    with np.errstate(over="ignore", invalid="ignore"):
        # [H, C, W]: every scan line is its channels one after another (*Regular Scan Line
        # Blocks*).
        planar = np.ascontiguousarray(a[:, :, order].transpose(0, 2, 1).astype(dtype))

    chlist = b"".join(
        names[c].encode() + b"\0" + struct.pack("<iB3xii", pixel_type, 0, 1, 1) for c in order
    )
    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = b"".join(
        [
            struct.pack("<ii", MAGIC, _VERSION),
            _attribute("channels", "chlist", chlist + b"\0"),
            _attribute("compression", "compression", struct.pack("<B", code)),
            _attribute("dataWindow", "box2i", window),
            _attribute("displayWindow", "box2i", window),
            _attribute("lineOrder", "lineOrder", struct.pack("<B", 0)),
            _attribute("pixelAspectRatio", "float", struct.pack("<f", 1.0)),
            _attribute("screenWindowCenter", "v2f", struct.pack("<2f", 0.0, 0.0)),
            _attribute("screenWindowWidth", "float", struct.pack("<f", 1.0)),
            b"\0",
        ]
    )
    lines = _LINES_PER_BLOCK[code]
    chunks = []
    for y in range(0, height, lines):
        packed = _compress(planar[y : y + lines].tobytes(), code)
        chunks.append(struct.pack("<ii", y, len(packed)) + packed)
    offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]], dtype=np.uint64)
    offsets += np.uint64(len(header) + 8 * len(chunks))
    data = b"".join([header, offsets.astype("<u8").tobytes(), *chunks])
    write_atomically(path, data, "OpenEXR image")


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


class _Bytes:
    """A cursor over the file's bytes whose reads past the end raise :class:`ExrError`."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name, self.pos = data, name, 0

    def error(self, message: str) -> ExrError:
        return ExrError(f"{self.name}: {message}")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.error(f"truncated file: {what} runs past the end ({len(self.data)} bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def cstring(self, limit: int, what: str) -> str:
        end = self.data.find(b"\0", self.pos, self.pos + limit + 1)
        if end < 0:
            if len(self.data) - self.pos <= limit:
                raise self.error(f"truncated file: unterminated {what}")
            raise self.error(f"{what} is longer than {limit} bytes")
        text = self.data[self.pos : end].decode("latin-1")
        self.pos = end + 1
        return text


def _value(
    r: _Bytes, attrs: dict[str, tuple[str, bytes]], name: str, type_name: str, fmt: str
) -> tuple:
    """Decode a fixed-size attribute (*Predefined Attribute Types*), checking type and size."""
    t, raw = attrs[name]
    if t != type_name or len(raw) != struct.calcsize(fmt):
        raise r.error(
            f"attribute {name!r} has type {t!r} and {len(raw)} bytes "
            f"(want {type_name!r}, {struct.calcsize(fmt)} bytes)"
        )
    return struct.unpack(fmt, raw)


def _channels(r: _Bytes, raw: bytes, limit: int) -> list[tuple[str, int]]:
    """``(name, pixel type)`` per channel of a ``chlist`` value, in the file's data order."""
    c = _Bytes(raw, r.name)
    out: list[tuple[str, int]] = []
    while True:
        if c.pos >= len(raw):
            raise r.error("the channel list is not terminated by a null byte")
        if raw[c.pos] == 0:
            break
        name = c.cstring(limit, "channel name")
        pixel_type, _linear, x_sampling, y_sampling = c.unpack("<iB3xii", f"channel {name!r}")
        if pixel_type not in _PIXEL_DTYPES:
            raise r.error(f"channel {name!r} has unknown pixel type {pixel_type}")
        if (x_sampling, y_sampling) != (1, 1):
            raise r.error(
                f"unsupported OpenEXR feature: sub-sampled channel {name!r} "
                f"(xSampling {x_sampling}, ySampling {y_sampling})"
            )
        out.append((name, pixel_type))
    if not out:
        raise r.error("the channel list is empty")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise r.error(f"duplicate channel names in {names}")
    # Pixel data follow the alphabetical order of channel names (byte-wise, as strcmp).
    return sorted(out, key=lambda ch: ch[0].encode("latin-1"))


def _decode(data: bytes, name: str) -> dict[str, np.ndarray]:
    """The channels of the file ``data`` (called ``name`` in messages); see read_exr_channels."""
    r = _Bytes(data, name)
    if len(data) < 4 or struct.unpack("<i", data[:4])[0] != MAGIC:
        raise r.error(f"not an OpenEXR file (bad magic number {data[:4].hex(' ')!r})")
    r.pos = 4
    (version,) = r.unpack("<I", "version field")
    number, flags = version & 0xFF, version & ~0xFF
    if number != _VERSION:
        raise r.error(f"unsupported OpenEXR format version {number} (want {_VERSION})")
    for bit, feature in (
        (_FLAG_TILED, "tiled image (version flag 0x200)"),
        (_FLAG_NON_IMAGE, "deep data (version flag 0x800)"),
        (_FLAG_MULTIPART, "multi-part file (version flag 0x1000)"),
    ):
        if flags & bit:
            raise r.error(f"unsupported OpenEXR feature: {feature}")
    if flags & ~_KNOWN_FLAGS:
        raise r.error(f"unsupported OpenEXR feature: unknown version flags {flags:#x}")
    limit = 255 if flags & _FLAG_LONG_NAMES else 31

    attrs: dict[str, tuple[str, bytes]] = {}
    while True:
        if r.pos >= len(data):
            raise r.error("truncated file: the header has no terminating null byte")
        if data[r.pos] == 0:
            r.pos += 1
            break
        attr = r.cstring(limit, "attribute name")
        type_name = r.cstring(limit, f"type name of attribute {attr!r}")
        (size,) = r.unpack("<i", f"size of attribute {attr!r}")
        if size < 0:
            raise r.error(f"attribute {attr!r} has negative size {size}")
        attrs[attr] = (type_name, r.take(size, f"value of attribute {attr!r}"))

    for required in ("channels", "compression", "dataWindow"):
        if required not in attrs:
            raise r.error(f"the header lacks the required attribute {required!r}")
    if "type" in attrs:
        part_type = attrs["type"][1].rstrip(b"\0")  # a string attribute: its bytes, unprefixed
        if part_type != b"scanlineimage":
            raise r.error(f"unsupported OpenEXR feature: part type {part_type.decode('latin-1')!r}")
    (code,) = _value(r, attrs, "compression", "compression", "<B")
    if code not in _LINES_PER_BLOCK:
        label = _COMPRESSION_NAMES.get(code, "unknown").upper()
        raise r.error(
            f"unsupported OpenEXR feature: {label} compression ({code}); "
            f"supported: {', '.join(_COMPRESSION_CODES)}"
        )
    if "lineOrder" in attrs:
        (line_order,) = _value(r, attrs, "lineOrder", "lineOrder", "<B")
        if line_order not in _LINE_ORDERS:
            raise r.error(f"unknown lineOrder {line_order}")
    channels = _channels(r, _value_raw(r, attrs, "channels", "chlist"), limit)
    x_min, y_min, x_max, y_max = _value(r, attrs, "dataWindow", "box2i", "<4i")
    width, height = x_max - x_min + 1, y_max - y_min + 1
    if width < 1 or height < 1:
        raise r.error(f"empty or inverted dataWindow ({x_min}, {y_min})–({x_max}, {y_max})")
    if width * height * len(channels) > _MAX_SAMPLES:
        raise r.error(f"dataWindow {width}×{height} × {len(channels)} channels is implausibly big")

    lines = _LINES_PER_BLOCK[code]
    n_chunks = -(-height // lines)
    table = np.frombuffer(r.take(8 * n_chunks, "the line offset table"), dtype="<u8")
    table_end = r.pos
    sizes = [_PIXEL_DTYPES[t].itemsize for _, t in channels]
    line_bytes = width * sum(sizes)
    # No scheme packs more than _MAX_RATIO raw bytes into one stored byte: a tiny (corrupt) file
    # cannot claim a huge image and make us allocate it.
    if (len(data) - table_end) * _MAX_RATIO[code] < height * line_bytes:
        raise r.error(
            f"truncated file: {len(data) - table_end} bytes of pixel data cannot hold "
            f"{width}×{height} pixels of {len(channels)} channel(s)"
        )

    planes = {n: np.empty((height, width), dtype=np.float32) for n, _ in channels}
    seen = np.zeros(n_chunks, dtype=bool)
    for offset in table.tolist():
        if not table_end <= offset <= len(data) - 8:
            raise r.error(f"scan-line block offset {offset} lies outside the pixel data")
        r.pos = offset
        y, packed_size = r.unpack("<ii", f"the scan-line block header at {offset}")
        index, misaligned = divmod(y - y_min, lines)
        if misaligned or not 0 <= index < n_chunks or seen[index]:
            raise r.error(f"scan-line block at offset {offset} has a bad or repeated y = {y}")
        seen[index] = True
        n_lines = min(lines, height - index * lines)
        expected = n_lines * line_bytes
        if not 0 <= packed_size <= expected or (code == 0 and packed_size != expected):
            raise r.error(
                f"scan-line block y = {y} has pixel data size {packed_size} "
                f"(want {'' if code == 0 else 'at most '}{expected})"
            )
        packed = r.take(packed_size, f"the pixel data of scan-line block y = {y}")
        block = _unpack_block(packed, expected, code)
        if block is None:
            raise r.error(
                f"corrupt {_COMPRESSION_NAMES[code].upper()} data in scan-line block y = {y}"
            )
        block = block.reshape(n_lines, line_bytes)
        col = 0
        row = index * lines
        for (ch, t), size in zip(channels, sizes):
            dt = _PIXEL_DTYPES[t]
            values = np.ascontiguousarray(block[:, col : col + width * size]).view(dt)
            planes[ch][row : row + n_lines] = values.astype(np.float32)
            col += width * size
    if not seen.all():
        raise r.error(f"{int((~seen).sum())} scan-line block(s) missing from the offset table")
    return planes


def _value_raw(r: _Bytes, attrs: dict[str, tuple[str, bytes]], name: str, type_name: str) -> bytes:
    """A variable-size attribute's value, checking its type name."""
    t, raw = attrs[name]
    if t != type_name:
        raise r.error(f"attribute {name!r} has type {t!r} (want {type_name!r})")
    return raw


def _unpack_block(packed: bytes, expected: int, code: int) -> np.ndarray | None:
    """A block's raw pixel bytes (``expected`` of them), or ``None`` if the data is corrupt."""
    if len(packed) == expected:  # stored raw: compression did not make it smaller
        return np.frombuffer(packed, dtype=np.uint8)
    if code == 0:
        return None
    if code == 1:
        pred = _rle_decode(packed, expected)
    else:
        z = zlib.decompressobj()
        try:
            out = z.decompress(packed, expected + 1)
        except zlib.error:
            return None
        if len(out) != expected or not z.eof:
            return None
        pred = np.frombuffer(out, dtype=np.uint8)
    return None if pred is None else _unpredict_and_unorder(pred)


def read_exr_channels(path: str | os.PathLike[str]) -> dict[str, Float32[np.ndarray, "h w"]]:
    """Read every channel of a single-part scan-line OpenEXR file.

    Supported: format version 2, short or long names; compression none, RLE, ZIPS and ZIP;
    pixel types ``HALF``, ``FLOAT`` and ``UINT``; any ``lineOrder`` (blocks are placed by their
    own ``y``); any ``dataWindow`` origin. Only the ``channels``, ``compression`` and
    ``dataWindow`` attributes are required; the others (``displayWindow`` included) are
    ignored.

    Args:
        path: the file.

    Returns:
        ``{channel name: [H, W] float32}`` over the data window, row 0 at its top, in the
        file's (alphabetical) channel order. ``HALF`` converts exactly; ``UINT`` values above
        2^24 are rounded to float32. NaN and ±inf are returned as stored.

    Raises:
        ExrError: the file is not an OpenEXR file, is malformed or truncated, or uses an
            unsupported feature (tiled, multi-part, deep, sub-sampled channels, PIZ, PXR24,
            B44(A), DWAA/B, HTJ2K compression); the message names the file and the problem.
        OSError: the file cannot be read.
    """
    name = os.fspath(path)
    data = Path(path).read_bytes()
    try:
        return _decode(data, name)
    except ExrError:
        raise
    except (struct.error, zlib.error, IndexError, ValueError, OverflowError) as err:
        raise ExrError(f"{name}: malformed OpenEXR file ({err})") from err


def read_exr(path: str | os.PathLike[str]) -> Float32[np.ndarray, "h w c"]:
    """Read an OpenEXR file's ``R, G, B`` (and ``A``, if present) channels as linear values.

    See :func:`read_exr_channels` for what is supported; other channels are read but dropped.

    Args:
        path: the file.

    Returns:
        ``[H, W, 3]`` float32 ``R, G, B`` — or ``[H, W, 4]`` with ``A`` when the file has an
        ``A`` channel — over the data window, row 0 at the top. No tone mapping or colour
        conversion is applied; NaN and ±inf are returned as stored.

    Raises:
        ExrError: as :func:`read_exr_channels`, or the file lacks one of ``R``, ``G``, ``B``
            (the message lists the channels it has).
        OSError: the file cannot be read.
    """
    planes = read_exr_channels(path)
    missing = [c for c in "RGB" if c not in planes]
    if missing:
        raise ExrError(
            f"{os.fspath(path)}: no {', '.join(missing)} channel(s); the file has channels "
            f"{', '.join(planes)} (use read_exr_channels)"
        )
    names = ["R", "G", "B", "A"] if "A" in planes else ["R", "G", "B"]
    return np.stack([planes[c] for c in names], axis=-1)

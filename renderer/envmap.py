"""Environment maps: a Radiance ``.hdr`` reader/writer and equirectangular image-based lighting.

Conventions (used by every function here):

* Directions ``d = (x, y, z)`` are unit vectors in world space with ``+y`` **up** (the same frame
  as :mod:`renderer.cameras`: a default camera looks down ``−z`` with ``+x`` to its right).
* Polar angle ``θ = arccos(y) ∈ [0, π]`` (0 = straight up), longitude
  ``φ = atan2(x, −z) ∈ (−π, π]`` (0 = towards ``−z``, ``+π/2`` = towards ``+x``). Conversely
  ``d = (sin θ sin φ, cos θ, −sin θ cos φ)``.
* An equirectangular map ``[H, W, 3]`` stores pixel ``(row, col)`` over the patch
  ``θ ∈ [π·row/H, π·(row+1)/H]`` × ``φ ∈ [2π·col/W − π, 2π·(col+1)/W − π]``: row 0 is the top
  (up), the centre column looks towards ``−z`` and the image reads left to right
  ``+z, −x, −z, +x`` — a panorama seen from inside, not mirrored.
* Radiance is linear RGB (not display-encoded). Irradiance ``E(n) = ∫ L(ω) max(n·ω, 0) dω``.

The ``.hdr`` format is Radiance's RGBE picture format (Greg Ward): a text header, a resolution
line and 4-byte pixels ``(r, g, b, e)`` sharing the exponent ``e``, stored flat or run-length
encoded per scanline. :func:`read_hdr` is written from the format description, not from
another reader; :func:`write_hdr` writes the new-style run-length encoding.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

__all__ = [
    "EnvMapError",
    "read_hdr",
    "write_hdr",
    "EnvironmentMap",
    "sh9_basis",
    "sh9_irradiance",
    "COSINE_LOBE",
]

COSINE_LOBE: tuple[float, float, float] = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)
"""Ramamoorthi & Hanrahan's ``(Â0, Â1, Â2)``: the clamped cosine ``max(cos θ, 0)``'s zonal SH
coefficients, scaled by ``√(4π/(2l+1))``. Convolving radiance with the clamped cosine multiplies
its band-``l`` SH coefficients by ``Â_l``."""

_MAGICS = (b"#?RADIANCE", b"#?RGBE")
_RGBE_FORMAT = "32-bit_rle_rgbe"
_XYZE_FORMAT = "32-bit_rle_xyze"
_RLE_MIN_WIDTH, _RLE_MAX_WIDTH = 8, 0x7FFF  # new-style RLE is only defined for these widths
_MAX_HEADER = 1 << 16  # bytes searched for the end of the header
_MAX_PIXELS = 1 << 30  # a resolution line beyond this is taken as corrupt
_RESOLUTION = re.compile(rb"([-+])([XY]) +(\d+) +([-+])([XY]) +(\d+)")


class EnvMapError(ValueError):
    """A malformed or unsupported environment-map file; the message names the file."""


# ----------------------------------------------------------------------------------------------
# Radiance RGBE (.hdr) reading
# ----------------------------------------------------------------------------------------------


def _rgbe_to_float(rgbe: np.ndarray) -> np.ndarray:
    """``[..., 4]`` uint8 RGBE to ``[..., 3]`` float32: ``(m + 0.5)·2^(e − 136)``, 0 where e=0."""
    e = rgbe[..., 3:4].astype(np.int32)
    scale = np.ldexp(1.0, e - 136)  # float64: 2^(e − 128) / 256
    rgb = (rgbe[..., :3].astype(np.float64) + 0.5) * scale
    return np.where(e == 0, 0.0, rgb).astype(np.float32)


def _parse_header(data: bytes, name: str) -> tuple[int, int, int]:
    """``(height, width, offset of the first scanline byte)``; raises :class:`EnvMapError`."""
    if not data.startswith(_MAGICS):
        head = data[:16]
        raise EnvMapError(
            f"{name}: not a Radiance HDR file (starts with {head!r}, expected '#?RADIANCE' or "
            "'#?RGBE')"
        )
    end = data.find(b"\n\n", 0, _MAX_HEADER)
    if end < 0:
        raise EnvMapError(
            f"{name}: header has no terminating blank line (truncated or not an HDR file)"
        )
    lines = data[:end].split(b"\n")
    for line in lines[1:]:
        if line.startswith(b"FORMAT="):
            fmt = line[len(b"FORMAT="):].decode("latin-1").strip()
            if fmt == _XYZE_FORMAT:
                raise EnvMapError(
                    f"{name}: FORMAT={fmt} (CIE XYZ pixels) is not supported; only "
                    f"{_RGBE_FORMAT} is. Convert the file to RGB first."
                )
            if fmt != _RGBE_FORMAT:
                raise EnvMapError(f"{name}: unknown pixel FORMAT={fmt!r} (want {_RGBE_FORMAT})")
    res_start = end + 2
    res_end = data.find(b"\n", res_start, res_start + 256)
    if res_end < 0:
        raise EnvMapError(f"{name}: missing or unterminated resolution line after the header")
    res = data[res_start:res_end].strip()
    m = _RESOLUTION.fullmatch(res)
    if m is None:
        raise EnvMapError(
            f"{name}: bad resolution line {res!r} (expected '-Y <height> +X <width>')"
        )
    if (m.group(1), m.group(2), m.group(4), m.group(5)) != (b"-", b"Y", b"+", b"X"):
        raise EnvMapError(
            f"{name}: unsupported orientation {res.decode('latin-1')!r}; only the standard "
            "'-Y <height> +X <width>' (top-to-bottom, left-to-right) is supported"
        )
    height, width = int(m.group(3)), int(m.group(6))
    if height <= 0 or width <= 0:
        raise EnvMapError(f"{name}: empty image ({height} × {width}) in resolution line")
    if height * width > _MAX_PIXELS:
        raise EnvMapError(f"{name}: implausible size {height} × {width} in resolution line")
    return height, width, res_end + 1


def _min_scanline_bytes(width: int) -> int:
    """The fewest bytes any valid encoding of one scanline can take."""
    if _RLE_MIN_WIDTH <= width <= _RLE_MAX_WIDTH:
        return 4 + 4 * 2 * math.ceil(width / 127)  # 4-byte marker, then runs of ≤ 127 (2 bytes)
    return 4 if width == 1 else 8  # flat with old-style runs: a pixel, then run markers


def _read_rle_scanline(data: bytes, p: int, width: int, name: str, y: int) -> tuple[bytes, int]:
    """One new-style RLE scanline starting after its 4-byte marker: planar ``r…g…b…e…`` bytes."""
    n = len(data)
    planes = []
    for c in range(4):
        buf = bytearray()
        j = 0
        while j < width:
            if p >= n:
                raise EnvMapError(f"{name}: truncated data in RLE scanline {y} (channel {c})")
            code = data[p]
            p += 1
            if code > 128:  # a run: the next byte repeated code − 128 times
                count = code - 128
                if j + count > width:
                    raise EnvMapError(
                        f"{name}: bad run length in scanline {y} (channel {c}): a run of {count} "
                        f"at pixel {j} overruns the width {width}"
                    )
                if p >= n:
                    raise EnvMapError(f"{name}: truncated data in RLE scanline {y} (channel {c})")
                buf += bytes((data[p],)) * count
                p += 1
            else:  # code literal bytes (0 is a no-op, as in Radiance's own reader)
                count = code
                if j + count > width:
                    raise EnvMapError(
                        f"{name}: bad run length in scanline {y} (channel {c}): {count} literal "
                        f"bytes at pixel {j} overrun the width {width}"
                    )
                if p + count > n:
                    raise EnvMapError(f"{name}: truncated data in RLE scanline {y} (channel {c})")
                buf += data[p:p + count]
                p += count
            j += count
        planes.append(bytes(buf))
    return b"".join(planes), p


def _read_flat_scanline(
    data: bytes, p: int, width: int, name: str, y: int
) -> tuple[np.ndarray, int]:
    """One flat scanline (``[W, 4]`` uint8), expanding old-style ``(1, 1, 1, n)`` run pixels."""
    n = len(data)
    need = 4 * width
    if p + need <= n:
        line = np.frombuffer(data[p:p + need], dtype=np.uint8).reshape(width, 4)
        if not np.any((line[:, 0] == 1) & (line[:, 1] == 1) & (line[:, 2] == 1)):
            return line, p + need
    # Slow path: old-style run-length pixels (or truncation). A pixel (1, 1, 1, n) repeats the
    # previous pixel n << shift times, shift growing by 8 for each consecutive run pixel.
    out = np.empty((width, 4), dtype=np.uint8)
    stream = data[p:p + need]  # never more than the flat size; runs shorten it
    q, j, shift = 0, 0, 0
    while j < width:
        if q + 4 > len(stream):
            raise EnvMapError(f"{name}: truncated data in flat scanline {y} (pixel {j})")
        px = stream[q:q + 4]
        q += 4
        if px[0] == 1 and px[1] == 1 and px[2] == 1:
            count = px[3] << shift
            if j == 0:
                raise EnvMapError(f"{name}: scanline {y} starts with a run of a missing pixel")
            if j + count > width:
                raise EnvMapError(
                    f"{name}: bad run length in scanline {y}: an old-style run of {count} at "
                    f"pixel {j} overruns the width {width}"
                )
            out[j:j + count] = out[j - 1]
            j += count
            shift += 8
        else:
            out[j] = np.frombuffer(px, dtype=np.uint8)
            j += 1
            shift = 0
    return out, p + q


def read_hdr(path: str | os.PathLike[str]) -> Float[np.ndarray, "h w 3"]:
    """Read a Radiance RGBE ``.hdr`` picture as linear radiance.

    Supported: magic ``#?RADIANCE`` or ``#?RGBE``; ``FORMAT=32-bit_rle_rgbe`` (or no FORMAT
    line, which Radiance treats as RGBE); the standard resolution line ``-Y H +X W`` (rows top to
    bottom, columns left to right); scanlines flat, new-style run-length encoded (marker bytes
    ``2, 2, W >> 8, W & 255``, then each channel as runs — a code ``c > 128`` repeats the next
    byte ``c − 128`` times, otherwise ``c`` literal bytes follow) or old-style run-length encoded
    (a pixel ``(1, 1, 1, n)`` repeats the previous one). Header variables such as ``EXPOSURE``
    are ignored (as most readers do): values are returned as stored.

    Pixels decode with Radiance's own convention (``colr_color``), the centre of each mantissa
    bin: ``value = (m + 0.5) / 256 · 2^(e − 128) = ldexp(m + 0.5, e − 136)``, and 0 when
    ``e == 0``. (stb_image omits the ``+ 0.5``; the difference is under 0.4 % of a channel's
    value for normalised pixels.)

    Args:
        path: the file.

    Returns:
        ``[H, W, 3]`` float32, finite and non-negative, row 0 at the top.

    Raises:
        EnvMapError: for anything malformed or unsupported — bad magic, missing blank line,
            XYZE pixels, an unknown FORMAT, a bad or non-standard resolution line, truncated
            data, runs that overrun a scanline, a scanline width that disagrees with the
            header, trailing bytes — with the file's name and the problem in the message.
        OSError: if the file cannot be read.
    """
    name = os.fspath(path)
    data = Path(path).read_bytes()
    height, width, p = _parse_header(data, name)
    n = len(data)
    if n - p < height * _min_scanline_bytes(width):
        raise EnvMapError(
            f"{name}: truncated: {n - p} bytes of pixel data cannot hold {height} scanlines of "
            f"width {width}"
        )
    rgbe = np.empty((height, width, 4), dtype=np.uint8)
    rle_width = _RLE_MIN_WIDTH <= width <= _RLE_MAX_WIDTH
    for y in range(height):
        if p + 4 > n:
            raise EnvMapError(f"{name}: truncated data at scanline {y} of {height}")
        head = data[p:p + 4]
        if rle_width and head[0] == 2 and head[1] == 2 and not head[2] & 0x80:
            encoded = (head[2] << 8) | head[3]
            if encoded != width:
                raise EnvMapError(
                    f"{name}: RLE scanline {y} says width {encoded} but the header says {width}"
                )
            planes, p = _read_rle_scanline(data, p + 4, width, name, y)
            rgbe[y] = np.frombuffer(planes, dtype=np.uint8).reshape(4, width).T
        else:
            rgbe[y], p = _read_flat_scanline(data, p, width, name, y)
    if p != n:
        raise EnvMapError(
            f"{name}: {n - p} unexpected bytes after the last scanline (wrong size in the "
            "resolution line?)"
        )
    return _rgbe_to_float(rgbe)


# ----------------------------------------------------------------------------------------------
# Radiance RGBE (.hdr) writing
# ----------------------------------------------------------------------------------------------


def _float_to_rgbe(img: np.ndarray) -> np.ndarray:
    """``[..., 3]`` float to ``[..., 4]`` uint8 RGBE (Radiance's ``setcolr``: truncation)."""
    rgb = np.clip(img.astype(np.float64), 0.0, None)
    v = rgb.max(axis=-1)
    mant, exp = np.frexp(v)  # v = mant · 2^exp, mant ∈ [0.5, 1)
    ok = (v > 1e-38) & (exp > -128)
    exp = np.clip(exp, -127, 127)
    scale = np.where(ok, np.ldexp(256.0, -exp), 0.0)  # 256 · mant / v
    m = np.clip(np.floor(rgb * scale[..., None]), 0, 255)
    e = np.where(ok, exp + 128, 0)
    out = np.concatenate([m, e[..., None]], axis=-1).astype(np.uint8)
    out[~ok] = 0
    return out


def _rle_channel(c: np.ndarray) -> bytes:
    """One channel of one scanline as new-style runs (repeats of ≥ 4 become runs)."""
    width = c.shape[0]
    change = np.flatnonzero(c[1:] != c[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [width]]))
    out = bytearray()

    def literal(a: int, b: int) -> None:
        for s in range(a, b, 128):
            t = min(s + 128, b)
            out.append(t - s)
            out.extend(c[s:t].tobytes())

    pos = 0
    long = lengths >= 4
    for s, length in zip(starts[long].tolist(), lengths[long].tolist()):
        literal(pos, s)
        value = int(c[s])
        pos = s + length
        while length > 0:
            k = min(length, 127)
            out += bytes((128 + k, value))
            length -= k
    literal(pos, width)
    return bytes(out)


def write_hdr(path: str | os.PathLike[str], img: np.ndarray | Tensor, rle: bool = True) -> None:
    """Write linear radiance as a Radiance RGBE ``.hdr`` file (``-Y H +X W``).

    Encoding follows Radiance: the largest channel ``v = m·2^k`` (``m ∈ [0.5, 1)``) sets the
    shared exponent ``e = k + 128`` and each channel stores ``floor(c · 256 / 2^k)``; with
    :func:`read_hdr`'s mid-bin decoding the relative error of the largest channel is under
    ``0.5/128 ≈ 0.4 %``. Negative values are written as 0, values below ``2^−128`` as 0, values
    at or above ``2^127`` are clamped.

    Args:
        path: the file to write.
        img: ``[H, W, 3]`` finite radiance (numpy array or tensor).
        rle: new-style run-length encoding (when ``8 ≤ W ≤ 32767``, else flat); ``False``
            writes flat scanlines.

    Raises:
        ValueError: if ``img`` is not ``[H, W, 3]`` or holds NaN or infinity.

    Example:
        >>> import tempfile
        >>> img = np.full((2, 16, 3), 0.25, dtype=np.float32)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_hdr(f"{d}/a.hdr", img)
        ...     float(read_hdr(f"{d}/a.hdr")[0, 0, 0])
        0.2509765625
    """
    a = img.detach().cpu().numpy() if isinstance(img, Tensor) else np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"write_hdr: want an [H, W, 3] image, got shape {list(a.shape)}")
    if not np.all(np.isfinite(a)):
        raise ValueError("write_hdr: the image holds NaN or infinite values")
    height, width = a.shape[:2]
    rgbe = _float_to_rgbe(a)
    parts = [
        b"#?RADIANCE\n# written by fields-app renderer.envmap\n",
        f"FORMAT={_RGBE_FORMAT}\n\n-Y {height} +X {width}\n".encode("ascii"),
    ]
    if rle and _RLE_MIN_WIDTH <= width <= _RLE_MAX_WIDTH:
        marker = bytes((2, 2, width >> 8, width & 0xFF))
        for y in range(height):
            parts.append(marker)
            parts.extend(_rle_channel(np.ascontiguousarray(rgbe[y, :, c])) for c in range(4))
    else:
        # Normalised pixels have a largest mantissa ≥ 128, so a flat pixel never looks like a
        # run marker (2, 2, <128, ·) or (1, 1, 1, ·).
        flat = rgbe.tobytes()
        parts.append(flat)
    Path(path).write_bytes(b"".join(parts))


# ----------------------------------------------------------------------------------------------
# Spherical harmonics (Ramamoorthi & Hanrahan 2001)
# ----------------------------------------------------------------------------------------------

_C0 = 0.5 / math.sqrt(math.pi)  # 0.282095
_C1 = math.sqrt(3.0 / (4.0 * math.pi))  # 0.488603
_C2 = math.sqrt(15.0 / (4.0 * math.pi))  # 1.092548
_C20 = math.sqrt(5.0 / (16.0 * math.pi))  # 0.315392
_C22 = math.sqrt(15.0 / (16.0 * math.pi))  # 0.546274
_BAND = (0, 1, 1, 1, 2, 2, 2, 2, 2)  # the order l of each of the 9 coefficients

# Y_k as sums of coef · f(θ) · g(φ) over the pixel patch, for the exact per-pixel integrals in
# EnvironmentMap.sh9: (k, coef, θ-factor, φ-factor), with x = sin θ sin φ, y = cos θ,
# z = −sin θ cos φ and dω = sin θ dθ dφ. θ-factors (each times sin θ): "1", "c" = cos θ,
# "cc" = cos²θ, "s" = sin θ, "sc" = sin θ cos θ, "ss" = sin²θ; φ-factors: "1", "s" = sin φ,
# "c" = cos φ, "sc" = sin φ cos φ, "ss" = sin²φ, "cc" = cos²φ.
_SH_TERMS = (
    (0, _C0, "1", "1"),  # Y00 = c0
    (1, _C1, "c", "1"),  # Y1-1 = c1 y
    (2, -_C1, "s", "c"),  # Y10 = c1 z
    (3, _C1, "s", "s"),  # Y11 = c1 x
    (4, _C2, "sc", "s"),  # Y2-2 = c2 xy
    (5, -_C2, "sc", "c"),  # Y2-1 = c2 yz
    (6, 3.0 * _C20, "ss", "cc"), (6, -_C20, "1", "1"),  # Y20 = c20 (3z² − 1)
    (7, -_C2, "ss", "sc"),  # Y21 = c2 xz
    (8, _C22, "ss", "ss"), (8, -_C22, "cc", "1"),  # Y22 = c22 (x² − y²)
)


def sh9_basis(dirs: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 9"]:
    """The 9 real spherical harmonics of order ≤ 2 at unit directions ``dirs``.

    Ramamoorthi & Hanrahan (2001), eq. 3, evaluated on this module's ``(x, y, z)`` in the order
    ``[Y00, Y1−1, Y10, Y11, Y2−2, Y2−1, Y20, Y21, Y22]``::

        Y00 = 0.282095;   (Y1−1, Y10, Y11) = 0.488603 (y, z, x);
        (Y2−2, Y2−1, Y21) = 1.092548 (xy, yz, xz);   Y20 = 0.315392 (3z² − 1);
        Y22 = 0.546274 (x² − y²).

    The basis's polar axis is therefore ``z``, not the map's up axis ``y``: any orthonormal
    basis of the order-≤2 functions gives the same irradiance. ``dirs`` are not normalised here.

    Example:
        >>> [round(v, 6) for v in sh9_basis(torch.tensor([0.0, 0.0, 1.0])).tolist()][:4]
        [0.282095, 0.0, 0.488603, 0.0]
    """
    x, y, z = dirs.unbind(-1)
    return torch.stack([
        torch.full_like(x, _C0),
        _C1 * y, _C1 * z, _C1 * x,
        _C2 * x * y, _C2 * y * z, _C20 * (3.0 * z * z - 1.0), _C2 * x * z,
        _C22 * (x * x - y * y),
    ], dim=-1)


def sh9_irradiance(
    coeffs: Float[Tensor, "9 3"],
    normals: Float[Tensor, "*batch 3"],
    lobe: Sequence[float] = COSINE_LOBE,
) -> Float[Tensor, "*batch 3"]:
    """Irradiance from radiance SH coefficients: ``E(n) = Σ_lm Â_l L_lm Y_lm(n)``.

    Ramamoorthi & Hanrahan, "An Efficient Representation for Irradiance Environment Maps",
    SIGGRAPH 2001, eqs. 7–8: the clamped-cosine kernel multiplies band ``l`` by
    ``Â0 = π, Â1 = 2π/3, Â2 = π/4`` (:data:`COSINE_LOBE`). The error of the order-2 truncation
    is bounded because ``Â_l`` is 0 for odd ``l > 1`` and falls as ``l^(−5/2)`` for even ``l``.

    Args:
        coeffs: ``[9, 3]`` radiance coefficients (:meth:`EnvironmentMap.sh9`).
        normals: ``[*batch, 3]`` surface normals (normalised here).
        lobe: ``(Â0, Â1, Â2)``; the default is the clamped cosine. Other values are for tests.

    Returns:
        ``[*batch, 3]`` irradiance in ``normals``' dtype and device.
    """
    if len(lobe) != 3:
        raise ValueError(f"lobe must be (Â0, Â1, Â2), got {lobe!r}")
    n = torch.nn.functional.normalize(normals.to(torch.float64), dim=-1)
    a = torch.tensor([lobe[band] for band in _BAND], dtype=torch.float64, device=n.device)
    c = coeffs.to(device=n.device, dtype=torch.float64) * a[:, None]
    return (sh9_basis(n) @ c).to(normals.dtype)


# ----------------------------------------------------------------------------------------------
# Equirectangular environment maps
# ----------------------------------------------------------------------------------------------

_HDR_SUFFIXES = (".hdr", ".pic", ".rgbe")
_LDR_SUFFIXES = (".png", ".jpg", ".jpeg")


def _rgb3(name: str, value: float | Sequence[float] | Tensor) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float64)
    if v.ndim == 0:
        v = v.expand(3)
    if v.shape != (3,):
        raise ValueError(f"{name} must be a number or 3 numbers, got shape {list(v.shape)}")
    return v


class EnvironmentMap:
    """Distant lighting stored as an equirectangular ``[H, W, 3]`` radiance image.

    Directions, rows and columns follow the module's conventions (``+y`` up, row 0 up,
    ``φ = atan2(x, −z)``, column ``(φ + π)/(2π)·W``; see :mod:`renderer.envmap`). The radiance
    tensor is treated as read-only: derived quantities are recomputed on each call.

    Example:
        >>> env = EnvironmentMap.constant((1.0, 0.5, 0.25), height=8)
        >>> e = env.irradiance(torch.tensor([[0.0, 1.0, 0.0]])) / math.pi
        >>> [round(v, 4) for v in e[0].tolist()]
        [1.0, 0.5, 0.25]
    """

    def __init__(self, radiance: Tensor | np.ndarray) -> None:
        """Wrap ``radiance``: ``[H, W, 3]`` linear RGB, finite (float32 unless already float).

        (Annotated loosely so that a wrong shape meets the clear ``ValueError`` below.)

        Raises:
            ValueError: on a wrong shape, an empty image or non-finite values.
        """
        r = torch.as_tensor(radiance)
        if not r.is_floating_point():
            r = r.to(torch.float32)
        if r.ndim != 3 or r.shape[2] != 3 or r.shape[0] < 1 or r.shape[1] < 1:
            raise ValueError(f"an environment map is [H, W, 3], got shape {list(r.shape)}")
        if not bool(torch.isfinite(r).all()):
            raise ValueError("the environment map holds NaN or infinite radiance")
        self.radiance: Tensor = r

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> EnvironmentMap:
        """Load ``.hdr`` (``.pic``, ``.rgbe``) with :func:`read_hdr`, ``.exr`` with
        :func:`renderer.exr.read_exr`, or an 8/16-bit ``.png`` /
        ``.jpg`` with imageio, decoded from sRGB to linear (alpha dropped, grey repeated).

        Raises:
            EnvMapError: on a malformed file or an unsupported extension.
            FileNotFoundError: if the file does not exist.
        """
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix in _HDR_SUFFIXES:
            return cls(read_hdr(p))
        if suffix == ".exr":  # linear already (renderer.exr: our OpenEXR reader)
            from renderer.exr import ExrError, read_exr

            try:
                rgb = read_exr(p)[..., :3]
            except ExrError as e:
                raise EnvMapError(str(e)) from e
            if not np.isfinite(rgb).all():  # legal in OpenEXR, not as radiance to light with
                raise EnvMapError(f"{p}: the image holds NaN or infinite values")
            return cls(rgb)
        if suffix not in _LDR_SUFFIXES:
            raise EnvMapError(
                f"{p}: unsupported environment-map extension {suffix!r} "
                f"(want one of {', '.join(_HDR_SUFFIXES + ('.exr',) + _LDR_SUFFIXES)})"
            )
        if not p.exists():
            raise FileNotFoundError(p)
        import imageio.v3 as iio

        from renderer.shading import srgb_to_linear

        try:
            img = np.asarray(iio.imread(p))
        except Exception as e:  # imageio raises many kinds for a corrupt file
            raise EnvMapError(f"{p}: cannot decode the image ({e})") from e
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        if img.ndim != 3 or img.shape[2] < 3:
            raise EnvMapError(f"{p}: want an RGB image, got shape {list(img.shape)}")
        if img.dtype == np.uint8:
            srgb = img[..., :3].astype(np.float32) / 255.0
        elif img.dtype == np.uint16:
            srgb = img[..., :3].astype(np.float32) / 65535.0
        else:
            raise EnvMapError(f"{p}: unsupported pixel type {img.dtype} (want 8 or 16 bit)")
        return cls(srgb_to_linear(torch.from_numpy(np.ascontiguousarray(srgb))))

    @classmethod
    def constant(
        cls, rgb: float | Sequence[float] | Tensor, height: int = 16
    ) -> EnvironmentMap:
        """A uniform map of radiance ``rgb``, ``height × 2·height`` pixels.

        Example:
            >>> EnvironmentMap.constant(2.0, height=4).radiance.shape
            torch.Size([4, 8, 3])
        """
        if height < 1:
            raise ValueError(f"height must be ≥ 1, got {height}")
        c = _rgb3("rgb", rgb).to(torch.float32)
        return cls(c.expand(height, 2 * height, 3).clone())

    @classmethod
    def sky(
        cls,
        height: int = 32,
        zenith: float | Sequence[float] | Tensor = (0.25, 0.45, 1.0),
        horizon: float | Sequence[float] | Tensor = (0.9, 0.95, 1.0),
        ground: float | Sequence[float] | Tensor = (0.25, 0.22, 0.2),
        sun_dir: Sequence[float] | Tensor | None = None,
        sun_radiance: float | Sequence[float] | Tensor = 50.0,
        sun_angle_deg: float = 5.0,
    ) -> EnvironmentMap:
        """A simple analytic sky, ``height × 2·height``: above the horizon radiance blends from
        ``horizon`` to ``zenith`` as ``√y``; below it is ``ground``.

        With ``sun_dir``, a disc of angular radius ``sun_angle_deg`` and radiance
        ``sun_radiance`` replaces the sky: its power ``sun_radiance · Ω_sun`` (``Ω_sun =
        2π(1 − cos r)``) is spread evenly over the pixels whose centres lie in the disc — or put
        in the nearest pixel when the disc is smaller than a pixel — so the sun's irradiance does
        not depend on the resolution.
        """
        if height < 1:
            raise ValueError(f"height must be ≥ 1, got {height}")
        env = cls(torch.zeros(height, 2 * height, 3))
        d = env.direction_of_pixels().to(torch.float64)
        t = d[..., 1:2].clamp_min(0.0).sqrt()
        sky = (1 - t) * _rgb3("horizon", horizon) + t * _rgb3("zenith", zenith)
        img = torch.where(d[..., 1:2] > 0, sky, _rgb3("ground", ground))
        if sun_dir is not None:
            s = torch.nn.functional.normalize(_rgb3("sun_dir", sun_dir), dim=0)
            cos_r = math.cos(math.radians(sun_angle_deg))
            cos_d = d @ s
            inside = cos_d >= cos_r
            if not bool(inside.any()):
                inside = cos_d == cos_d.max()
            area = float(env.solid_angles().double()[inside].sum())
            power = _rgb3("sun_radiance", sun_radiance) * (2.0 * math.pi * (1.0 - cos_r))
            img = torch.where(inside[..., None], power / area, img)
        return cls(img.to(torch.float32))

    # -- geometry -----------------------------------------------------------------------------

    @property
    def height(self) -> int:
        """Rows ``H`` (the polar angle ``θ`` spans ``[0, π]``)."""
        return int(self.radiance.shape[0])

    @property
    def width(self) -> int:
        """Columns ``W`` (the longitude ``φ`` spans ``(−π, π]``)."""
        return int(self.radiance.shape[1])

    def to(self, device: str | torch.device) -> EnvironmentMap:
        """The same map with its radiance on ``device``."""
        return EnvironmentMap(self.radiance.to(device))

    def _edges(self) -> tuple[Tensor, Tensor]:
        """Float64 pixel edges: ``θ`` ``[H + 1]`` (0 … π) and ``φ`` ``[W + 1]`` (−π … π)."""
        dev = self.radiance.device
        theta = torch.arange(self.height + 1, dtype=torch.float64, device=dev) * (
            math.pi / self.height
        )
        phi = torch.arange(self.width + 1, dtype=torch.float64, device=dev) * (
            2.0 * math.pi / self.width
        ) - math.pi
        return theta, phi

    def direction_of_pixels(self) -> Float[Tensor, "h w 3"]:
        """Unit directions of the pixel centres, ``θ = π(row + ½)/H``, ``φ = 2π(col + ½)/W − π``.

        Example:
            >>> EnvironmentMap.constant(1.0, height=2).direction_of_pixels()[0, 1]
            tensor([-0.5000,  0.7071, -0.5000])
        """
        theta, phi = self._edges()
        t = (theta[:-1] + theta[1:]) / 2
        p = (phi[:-1] + phi[1:]) / 2
        st, ct = torch.sin(t)[:, None], torch.cos(t)[:, None]
        d = torch.stack(torch.broadcast_tensors(
            st * torch.sin(p)[None], ct.expand(-1, self.width), -st * torch.cos(p)[None]
        ), dim=-1)
        return d.to(self.radiance.dtype)

    def solid_angles(self) -> Float[Tensor, "h w"]:
        """Exact solid angle of each pixel's patch, ``(2π/W)(cos θ_top − cos θ_bottom)``; they
        sum to ``4π`` up to rounding.

        Example:
            >>> round(float(EnvironmentMap.constant(1.0, height=3).solid_angles().sum()), 4)
            12.5664
        """
        theta, _ = self._edges()
        band = (torch.cos(theta[:-1]) - torch.cos(theta[1:])) * (2.0 * math.pi / self.width)
        return band[:, None].expand(-1, self.width).to(self.radiance.dtype).contiguous()

    # -- sampling -----------------------------------------------------------------------------

    def lookup(self, dirs: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
        """Bilinear radiance in directions ``dirs`` (normalised here).

        Continuous pixel coordinates ``col = (φ + π)/(2π)·W − ½``, ``row = θ/π·H − ½``, so a
        pixel-centre direction returns exactly that pixel. Columns wrap around in longitude;
        rows are clamped at the poles (the first and last half-rows take the edge row's value).

        Raises:
            ValueError: if ``dirs`` holds NaN or infinity.
        """
        if not bool(torch.isfinite(dirs).all()):
            raise ValueError("lookup: directions hold NaN or infinite values")
        d = torch.nn.functional.normalize(dirs.to(self.radiance.device, torch.float64), dim=-1)
        x, y, z = d.unbind(-1)
        theta = torch.arccos(y.clamp(-1.0, 1.0))
        phi = torch.atan2(x, -z)
        col = (phi + math.pi) * (self.width / (2.0 * math.pi)) - 0.5
        row = (theta * (self.height / math.pi) - 0.5).clamp(0.0, self.height - 1.0)
        c0 = torch.floor(col)
        fc = (col - c0)[..., None]
        c0 = c0.long() % self.width
        c1 = (c0 + 1) % self.width
        r0 = torch.floor(row).long().clamp(0, self.height - 1)
        fr = (row - r0)[..., None]
        r1 = (r0 + 1).clamp(max=self.height - 1)
        img = self.radiance.to(torch.float64)
        top = img[r0, c0] * (1 - fc) + img[r0, c1] * fc
        bottom = img[r1, c0] * (1 - fc) + img[r1, c1] * fc
        out = top * (1 - fr) + bottom * fr
        return out.to(dtype=self.radiance.dtype, device=dirs.device)

    def rotated(self, yaw_deg: float) -> EnvironmentMap:
        """This map turned by ``yaw_deg`` about ``+y`` (right-hand rule, seen from above:
        counter-clockwise), so ``new.lookup(R @ d) == old.lookup(d)`` with
        ``R = [[cos a, 0, sin a], [0, 1, 0], [−sin a, 0, cos a]]``.

        In the image this shifts content **left** by ``yaw_deg/360 · W`` columns (``φ``
        decreases by ``a``), wrapping around. Whole-pixel shifts are an exact column roll;
        fractional shifts interpolate linearly between the two nearest columns.

        Example:
            >>> env = EnvironmentMap(torch.arange(8.0).repeat(3, 1).T.reshape(1, 8, 3))
            >>> env.rotated(90.0).radiance[0, :, 0].tolist()
            [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.0, 1.0]
        """
        shift = float(yaw_deg) / 360.0 * self.width  # new[:, j] = old[:, j + shift]
        k = round(shift)
        if abs(shift - k) < 1e-6:
            return EnvironmentMap(torch.roll(self.radiance, shifts=-k, dims=1))
        j = torch.arange(self.width, dtype=torch.float64, device=self.radiance.device) + shift
        j0 = torch.floor(j)
        f = (j - j0).to(self.radiance.dtype)[None, :, None]
        j0 = j0.long() % self.width
        j1 = (j0 + 1) % self.width
        img = self.radiance
        return EnvironmentMap(img[:, j0] * (1 - f) + img[:, j1] * f)

    # -- lighting -----------------------------------------------------------------------------

    def sh9(self) -> Float[Tensor, "9 3"]:
        """Radiance projected onto the 9 real SH of order ≤ 2 (:func:`sh9_basis` order).

        ``L_lm = ∫ L(ω) Y_lm(ω) dω`` with the map taken as constant over each pixel's patch
        and ``∫_patch Y_lm dω`` integrated **exactly** in closed form (``Y_lm`` are
        polynomials in ``x, y, z``; the patch is a ``θ × φ`` rectangle). So the coefficients
        are exact for the piecewise-constant map at any resolution: a constant map has no
        ``l > 0`` leak, a map split at the equator (even ``H``) is an exact hemisphere.
        Computed in float64, returned in the map's dtype.
        """
        theta, phi = self._edges()
        a, b = torch.cos(theta[:-1]), torch.cos(theta[1:])
        sa, sb = torch.sin(theta[:-1]), torch.sin(theta[1:])
        s2t = (torch.sin(2 * theta[1:]) - torch.sin(2 * theta[:-1])) / 4
        t_1 = a - b
        t_cc = (a**3 - b**3) / 3
        th = {  # ∫ f(θ) sin θ dθ over each row
            "1": t_1,
            "c": (a**2 - b**2) / 2,
            "cc": t_cc,
            "ss": t_1 - t_cc,
            "s": (theta[1:] - theta[:-1]) / 2 - s2t,
            "sc": (sb**3 - sa**3) / 3,
        }
        p0, p1 = phi[:-1], phi[1:]
        dp = p1 - p0
        s2 = (torch.sin(2 * p1) - torch.sin(2 * p0)) / 4
        ph = {  # ∫ g(φ) dφ over each column
            "1": dp,
            "s": torch.cos(p0) - torch.cos(p1),
            "c": torch.sin(p1) - torch.sin(p0),
            "sc": (torch.sin(p1) ** 2 - torch.sin(p0) ** 2) / 2,
            "ss": dp / 2 - s2,
            "cc": dp / 2 + s2,
        }
        img = self.radiance.to(torch.float64)
        theta_w = torch.stack([coef * th[tk] for _, coef, tk, _ in _SH_TERMS])  # [T, H]
        phi_w = torch.stack([ph[pk] for _, _, _, pk in _SH_TERMS])  # [T, W]
        per_term = torch.einsum("th,tw,hwc->tc", theta_w, phi_w, img)  # [T, 3]
        index = torch.tensor([k for k, *_ in _SH_TERMS], device=img.device)
        out = torch.zeros(9, 3, dtype=torch.float64, device=img.device)
        out.index_add_(0, index, per_term)
        return out.to(self.radiance.dtype)

    def irradiance(self, normals: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3"]:
        """Irradiance ``E(n) = ∫ L(ω) max(n·ω, 0) dω`` from the order-2 SH of the map.

        Ramamoorthi & Hanrahan, "An Efficient Representation for Irradiance Environment Maps"
        (SIGGRAPH 2001): ``E(n) ≈ Σ_{l ≤ 2} Â_l Σ_m L_lm Y_lm(n)`` with ``Â0 = π``,
        ``Â1 = 2π/3``, ``Â2 = π/4`` (see :func:`sh9_irradiance`). Exact for radiance with no
        even-order ``l ≥ 4`` content (constant maps, hemispheres, linear gradients); otherwise
        the paper reports an average error of a few percent on real maps.

        Args:
            normals: ``[*batch, 3]`` surface normals (normalised here).

        Returns:
            ``[*batch, 3]`` irradiance, in ``normals``' dtype and device.
        """
        return sh9_irradiance(self.sh9(), normals)

    def diffuse(
        self, normals: Float[Tensor, "*batch 3"], albedo: float | Sequence[float] | Tensor = 1.0
    ) -> Float[Tensor, "*batch 3"]:
        """Outgoing radiance of a Lambertian surface: ``albedo / π · E(n)``.

        Args:
            normals: ``[*batch, 3]`` surface normals.
            albedo: a number, ``[3]`` or anything broadcastable to ``[*batch, 3]``.
        """
        e = self.irradiance(normals)
        alb = torch.as_tensor(albedo, dtype=e.dtype, device=e.device)
        return alb / math.pi * e

    def light_weights(self, directions: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
        """The map as intensities of ``n`` directional lights: every pixel's radiance times its
        solid angle goes to the light nearest its direction (a spherical Voronoi partition),
        ``I_j = Σ_{pixels in cell j} L(ω)·ΔΩ``.

        Area integration, never point sampling: the total ``Σ_j I_j = ∫ L dω`` is kept exactly,
        so a sun smaller than a light's cell keeps its energy (URHand's environment lights,
        with the per-texel solid angle that matches an OLAT light stage's ground truth
        ``Σ_j I_j·OLAT_j``).

        Args:
            directions: ``[n, 3]`` light directions (towards the lights; normalised here).

        Returns:
            ``[n, 3]`` RGB intensities (irradiance at normal incidence).

        Example:
            >>> env = EnvironmentMap.constant(1.0, height=16)
            >>> up_down = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
            >>> [round(v, 3) for v in env.light_weights(up_down)[:, 0].tolist()]  # 2π each
            [6.283, 6.283]
        """
        dtype = directions.dtype if directions.is_floating_point() else self.radiance.dtype
        d = torch.nn.functional.normalize(directions.to(dtype), dim=-1)
        pix = self.direction_of_pixels().reshape(-1, 3).to(d)
        energy = (self.radiance * self.solid_angles()[..., None]).reshape(-1, 3).to(d)
        owner = torch.cat([(c @ d.T).argmax(-1) for c in pix.split(1 << 14)])
        out = torch.zeros(len(d), 3, dtype=d.dtype, device=d.device)
        return out.index_add_(0, owner, energy)

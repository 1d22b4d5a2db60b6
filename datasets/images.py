"""2-D images as fields: loading with validation, the pixel lattice, a stratified pixel sampler.

Vocabulary: an image is ``[H, W, C]`` float32 in ``[0, 1]`` (``C`` = 1 or 3; alpha is dropped);
pixel ``(i, j)`` (row ``i`` from the top, column ``j``) has its centre at
``x = (2(j + ½)/W − 1, 1 − 2(i + ½)/H)`` — both axes in ``[−1, 1]``, ``y`` up — as NeuRBF lays
pixel centres out (its ``±H/128 × ±W/128`` lattice divided by its extent).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from datasets.errors import DataError

__all__ = ["load_image", "pixel_coordinates", "stratified_pixels"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".exr", ".hdr")
"""File types :func:`load_image` reads."""
_FORMATS = IMAGE_SUFFIXES


def load_image(path: str | os.PathLike[str], max_side: int | None = None) -> Float[Tensor, "H W C"]:
    """Read an image file as float32 ``[H, W, C]`` in ``[0, 1]`` (``C`` = 1 or 3).

    8- and 16-bit integers are divided by their maximum; float images (EXR/HDR) are clipped to
    ``[0, 1]``. Alpha is dropped, grey-with-alpha keeps one channel. ``max_side`` shrinks the
    image by an integer box filter until its longer side is at most that.

    Raises:
        DataError: the file is missing, not an image, empty, or has an unsupported layout.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    p = Path(path)
    if not p.is_file():
        raise DataError(p, "file not found" if not p.exists() else "not a file")
    if p.suffix.lower() not in _FORMATS:
        raise DataError(p, f"unsupported image type {p.suffix!r}; use one of {', '.join(_FORMATS)}")
    import imageio.v3 as iio

    try:
        with warnings.catch_warnings():  # imageio's fallback plugins warn while probing
            warnings.simplefilter("ignore")
            arr = np.asarray(iio.imread(p))
    except Exception as exc:  # imageio raises many kinds; one line naming the file
        hint = " (EXR needs an imageio plugin: pip install imageio[freeimage])" if (
            p.suffix.lower() == ".exr") else ""
        raise DataError(p, f"cannot read the image ({type(exc).__name__}: {exc}){hint}") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(p, f"expected an H×W or H×W×C image, got shape {arr.shape}")
    if arr.shape[2] in (2, 4):
        arr = arr[..., :-1]  # drop alpha
    if arr.shape[2] not in (1, 3):
        raise DataError(p, f"expected 1 or 3 channels (plus alpha), got {arr.shape[2]}")
    if np.issubdtype(arr.dtype, np.integer):
        img = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    else:
        img = np.clip(np.nan_to_num(arr.astype(np.float32)), 0.0, 1.0)
    out = torch.from_numpy(np.ascontiguousarray(img))
    if max_side is not None:
        factor = int(np.ceil(max(out.shape[:2]) / max_side))
        if factor > 1:
            # A side shorter than the factor becomes one pixel (it cannot fill a full block).
            fh, fw = min(factor, out.shape[0]), min(factor, out.shape[1])
            h, w = (out.shape[0] // fh) * fh, (out.shape[1] // fw) * fw
            out = out[:h, :w].reshape(h // fh, fh, w // fw, fw, -1).mean((1, 3))
    return out


def pixel_coordinates(height: int, width: int) -> Float[Tensor, "HW 2"]:
    """Centres of all pixels in row-major order, ``x`` right and ``y`` up, both in ``[−1, 1]``.

    Example:
        >>> pixel_coordinates(2, 2).tolist()
        [[-0.5, 0.5], [0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]]
    """
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * (2.0 / width) - 1.0
    ys = 1.0 - (torch.arange(height, dtype=torch.float32) + 0.5) * (2.0 / height)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def stratified_pixels(height: int, width: int, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Int[Tensor, " n"]:
    """About ``n`` flat pixel indices, one uniformly random pixel in each block of a regular
    tiling of the image into ``n`` blocks (NeuRBF's stratified batches: every region of the image
    is seen every step); every pixel once when ``n`` is at least the number of pixels.

    Example:
        >>> idx = stratified_pixels(8, 8, 16, torch.Generator().manual_seed(0))
        >>> idx.shape, bool((idx // 8 // 2 * 4 + idx % 8 // 2).sort().values.eq(
        ...     torch.arange(16)).all())
        (torch.Size([16]), True)
    """
    total = height * width
    if n >= total:
        return torch.arange(total, device=device)
    # Near-square blocks of bh × bw pixels, about n of them.
    bh = max(1, int(round((total / n) ** 0.5)))
    bw = max(1, int(round(total / n / bh)))
    rows, cols = -(-height // bh), -(-width // bw)
    r = torch.arange(rows, device=device).repeat_interleave(cols)
    c = torch.arange(cols, device=device).repeat(rows)
    u = torch.rand(r.shape[0], 2, generator=generator).to(device)
    pi = (r * bh + (u[:, 0] * bh).long()).clamp(max=height - 1)
    pj = (c * bw + (u[:, 1] * bw).long()).clamp(max=width - 1)
    return pi * width + pj

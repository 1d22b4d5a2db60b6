"""Writing images and videos (PNG via imageio, MP4 via imageio-ffmpeg), atomically."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from renderer import shading

__all__ = ["to_uint8", "save_image", "save_video", "contact_sheet"]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float ``[H, W, C]`` in [0, 1] → uint8 (``renderer.shading.to_uint8`` on arrays)."""
    if img.dtype == np.uint8:
        return img
    return shading.to_uint8(torch.from_numpy(np.ascontiguousarray(img))).numpy()


def _tmp_for(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return tmp


def _publish(tmp: str | Path, path: Path) -> None:
    """Give the finished temporary file ordinary permissions (``mkstemp`` makes it 0600; keep
    the mode of a file it replaces) and move it over ``path``."""
    os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    os.replace(tmp, path)


def save_image(path: str | Path, img: np.ndarray) -> Path:
    """Write a PNG/JPEG (format from the extension) atomically."""
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        imageio.imwrite(tmp, to_uint8(img))
        _publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def save_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 24) -> Path:
    """Write an H.264 MP4 (yuv420p, even sizes padded) atomically."""
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8,
                                macro_block_size=2, format="FFMPEG") as writer:
            for f in frames:
                f8 = to_uint8(f)
                h, w = f8.shape[:2]
                f8 = np.pad(f8, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                writer.append_data(f8)
        _publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def contact_sheet(images: Sequence[np.ndarray], columns: int | None = None) -> np.ndarray:
    """Tile equally sized images into one grid image (row-major), white padding."""
    n = len(images)
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w, c = images[0].shape
    sheet = np.ones((rows * h, cols * w, c), dtype=np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        sheet[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return sheet

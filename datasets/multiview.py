"""Multi-view image datasets for NeRF and NeuS: Blender, instant-ngp, tiny NeRF and NeuS/DTU.

Every loader returns one :class:`MultiViewDataset`. Vocabulary (ARCHITECTURE.md):

* ``images`` — ``[N, H, W, 3]`` float32 in ``[0, 1]``, **sRGB as stored in the files** (no
  linearisation); RGBA inputs are composited over ``background`` with their own alpha.
* ``alpha`` — ``[N, H, W]`` coverage from the files' alpha channel; ``masks`` — ``[N, H, W]``
  binary object masks (NeuS/DTU).
* ``c2w`` — ``[N, 4, 4]`` camera-to-world, OpenGL/Blender convention (camera looks down ``−z``,
  ``+y`` up). Datasets stored in the OpenCV convention (``+z`` forward, ``+y`` down) are converted
  by flipping the camera's ``y`` and ``z`` axes: ``c2w_gl = c2w_cv · diag(1, −1, −1, 1)``.
* ``fx, fy, cx, cy`` — ``[N]`` intrinsics in pixels, with the project's pixel convention: pixel
  ``(i, j)`` covers ``[j, j+1) × [i, i+1)``, its centre is ``(j + ½, i + ½)``
  (see :mod:`renderer.cameras`).
* ``distortion`` — ``[N, 4]`` OpenCV radial-tangential coefficients ``(k1, k2, p1, p2)`` acting on
  normalised image coordinates ``x = (u − cx)/fx``, ``y = (v − cy)/fy`` (``y`` down), or ``None``.
* ``rays_o``, ``rays_d``, ``rgb`` — ``[R, 3]`` ray origins, unit directions and target colours.

Integer ``downscale`` factors average ``d×d`` pixel blocks (trailing rows/columns that do not fill a
block are dropped) in premultiplied colour, so that ``downscale`` commutes with compositing; the
intrinsics are divided by ``d`` exactly, because new pixel ``j'`` covers old ``[d j', d j' + d)``.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import re
import struct
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from datasets.errors import DataError, DataWarning
from renderer.cameras import Camera

__all__ = [
    "MultiViewDataset",
    "decompose_projection",
    "distort",
    "load_blender",
    "load_multiview",
    "load_neus_dtu",
    "load_ngp_transforms",
    "load_tiny_nerf",
    "opencv_to_opengl",
    "pixel_directions",
    "undistort",
]

_BLENDER_AABB = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
"""Scene box of the NeRF-synthetic scenes (every object fits ``[-1.5, 1.5]³``)."""

_ROTATION_TOL = 1e-4  # the tolerance renderer.cameras.Camera applies to c2w
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # camera data is stored as float32
_IMAGE_SUFFIXES = ("", ".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


# ---------------------------------------------------------------------------------- dataset


@dataclass(eq=False)
class MultiViewDataset:
    """Posed images of one scene: pixels, pinhole intrinsics, poses and a region of interest.

    Attributes:
        images: ``[N, H, W, 3]`` float32 colours in ``[0, 1]``, sRGB as stored (not linear).
        c2w: ``[N, 4, 4]`` float32 camera-to-world, OpenGL convention.
        fx: ``[N]`` focal lengths along ``u`` in pixels (likewise ``fy``).
        fy: ``[N]`` focal lengths along ``v``.
        cx: ``[N]`` principal points ``u`` in pixels (likewise ``cy``).
        cy: ``[N]`` principal points ``v``.
        names: the image file names, one per view.
        split: which split this is (``"train"``, ``"test"``, ``"all"``, …).
        alpha: ``[N, H, W]`` alpha of RGBA inputs (images are already composited), or ``None``.
        masks: ``[N, H, W]`` binary object masks (0./1.), or ``None``.
        distortion: ``[N, 4]`` ``(k1, k2, p1, p2)`` per view, or ``None`` for ideal pinholes.
        aabb: ``[6]`` scene box ``(x_min, y_min, z_min, x_max, y_max, z_max)``.
        near: nearest ray distance worth sampling.
        far: farthest ray distance worth sampling.
        background: the colour RGBA images were composited over, or ``None``.

    Example:
        >>> ds = MultiViewDataset(
        ...     images=torch.zeros(1, 2, 3, 3), c2w=torch.eye(4)[None], fx=torch.tensor([2.0]),
        ...     fy=torch.tensor([2.0]), cx=torch.tensor([1.5]), cy=torch.tensor([1.0]),
        ...     names=["a.png"])
        >>> len(ds), ds.width, ds.height
        (1, 3, 2)
        >>> rays_o, rays_d, rgb = ds.rays(0)
        >>> rays_d.shape, rgb.shape
        (torch.Size([6, 3]), torch.Size([6, 3]))
    """

    images: Float[Tensor, "N H W 3"]
    c2w: Float[Tensor, "N 4 4"]
    fx: Float[Tensor, " N"]
    fy: Float[Tensor, " N"]
    cx: Float[Tensor, " N"]
    cy: Float[Tensor, " N"]
    names: list[str]
    split: str = "all"
    alpha: Float[Tensor, "N H W"] | None = None
    masks: Float[Tensor, "N H W"] | None = None
    distortion: Float[Tensor, "N 4"] | None = None
    aabb: Float[Tensor, " 6"] = field(default_factory=lambda: torch.tensor(_BLENDER_AABB))
    near: float = 2.0
    far: float = 6.0
    background: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        n, h, w = self.images.shape[:3]
        if n == 0:
            raise ValueError("a MultiViewDataset needs at least one view")
        # The same checks as the jaxtyping annotations, for callers running without a checker.
        expected = {
            "images": (n, h, w, 3),
            "c2w": (n, 4, 4),
            "fx": (n,),
            "fy": (n,),
            "cx": (n,),
            "cy": (n,),
            "alpha": (n, h, w),
            "masks": (n, h, w),
            "distortion": (n, 4),
            "aabb": (6,),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
        if len(self.names) != n:
            raise ValueError(f"{len(self.names)} names for {n} images")
        if not (0.0 <= self.near < self.far):
            raise ValueError(f"need 0 <= near < far, got near={self.near}, far={self.far}")
        if not bool((self.aabb[:3] < self.aabb[3:]).all()):
            raise ValueError(f"aabb must have min < max on every axis, got {self.aabb.tolist()}")
        self.near, self.far = float(self.near), float(self.far)

    @property
    def width(self) -> int:
        """Image width ``W`` in pixels."""
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        """Image height ``H`` in pixels."""
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def camera(self, i: int) -> Camera:
        """The pinhole :class:`~renderer.cameras.Camera` of view ``i`` (distortion not included)."""
        return Camera(
            self.width,
            self.height,
            float(self.fx[i]),
            float(self.fy[i]),
            float(self.cx[i]),
            float(self.cy[i]),
            self.c2w[i],
        )

    def cameras(self) -> list[Camera]:
        """One :class:`~renderer.cameras.Camera` per view, in order (pinhole part only)."""
        return [self.camera(i) for i in range(len(self))]

    def subset(self, indices: Sequence[int] | Tensor) -> MultiViewDataset:
        """The views ``indices`` (in that order) as a new dataset sharing box, near/far, split.

        Example:
            >>> ds = MultiViewDataset(torch.zeros(3, 2, 2, 3), torch.eye(4).repeat(3, 1, 1),
            ...     *torch.ones(4, 3), names=["a", "b", "c"])
            >>> ds.subset([2, 0]).names
            ['c', 'a']
        """
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(idx) == 0:
            raise ValueError("subset needs at least one index")
        pick = lambda t: None if t is None else t[idx].clone()  # noqa: E731
        return replace(
            self,
            images=pick(self.images),
            c2w=pick(self.c2w),
            fx=pick(self.fx),
            fy=pick(self.fy),
            cx=pick(self.cx),
            cy=pick(self.cy),
            names=[self.names[int(k)] for k in idx],
            alpha=pick(self.alpha),
            masks=pick(self.masks),
            distortion=pick(self.distortion),
            aabb=self.aabb.clone(),
        )

    def rays(
        self, i: int
    ) -> tuple[Float[Tensor, "R 3"], Float[Tensor, "R 3"], Float[Tensor, "R 3"]]:
        """Rays through every pixel centre of view ``i`` and the pixels' colours.

        Row-major from the top-left pixel, ``R = H·W`` (ray ``k`` is pixel ``(k // W, k % W)``).
        Without distortion this is :meth:`renderer.cameras.Camera.rays`; with distortion the
        pixel centres are undistorted first (:func:`pixel_directions`).

        Returns:
            ``(rays_o, rays_d, rgb)``, each ``[H·W, 3]``; ``rays_d`` has unit length.
        """
        rgb = self.images[i].reshape(-1, 3)
        coeffs = None if self.distortion is None else self.distortion[i]
        if coeffs is None or not bool(coeffs.any()):
            rays_o, rays_d = self.camera(i).rays()
            return rays_o, rays_d, rgb
        u = torch.arange(self.width, dtype=torch.float32) + 0.5
        v = torch.arange(self.height, dtype=torch.float32) + 0.5
        vv, uu = torch.meshgrid(v, u, indexing="ij")
        pixels = torch.stack([uu, vv], dim=-1).reshape(-1, 2)
        d_cam = pixel_directions(
            pixels,
            float(self.fx[i]),
            float(self.fy[i]),
            float(self.cx[i]),
            float(self.cy[i]),
            coeffs,
        )
        c2w = self.c2w[i]
        rays_d = d_cam @ c2w[:3, :3].T
        rays_d = rays_d / torch.linalg.norm(rays_d, dim=-1, keepdim=True)
        rays_o = c2w[:3, 3].expand_as(rays_d).contiguous()
        return rays_o, rays_d, rgb

    def training_rays(
        self, indices: Sequence[int] | None = None
    ) -> tuple[Float[Tensor, "R 3"], Float[Tensor, "R 3"], Float[Tensor, "R 3"]]:
        """All rays and colours of the views ``indices`` (default: all) as flat tensors.

        Concatenates :meth:`rays` over the views: ``R = len(indices)·H·W``. Memory is
        ``36 bytes`` per ray (100 views of 400×400 take 576 MB).
        """
        chosen = range(len(self)) if indices is None else indices
        parts = [self.rays(int(i)) for i in chosen]
        return tuple(torch.cat([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- distortion


def distort(
    xy: Float[Tensor, "*batch 2"], coeffs: Float[Tensor, " 4"]
) -> Float[Tensor, "*batch 2"]:
    """OpenCV's radial-tangential distortion of normalised image coordinates.

    With ``(k1, k2, p1, p2) = coeffs``, ``r² = x² + y²`` and ``ρ = 1 + k1 r² + k2 r⁴``:

        x_d = x ρ + 2 p1 x y + p2 (r² + 2x²),      y_d = y ρ + p1 (r² + 2y²) + 2 p2 x y.

    Example:
        >>> distort(torch.tensor([[0.5, 0.0]]), torch.tensor([0.1, 0.0, 0.0, 0.0]))
        tensor([[0.5125, 0.0000]])
    """
    k1, k2, p1, p2 = coeffs.to(xy.dtype).unbind(-1)
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], dim=-1)


def undistort(
    xy_distorted: Float[Tensor, "*batch 2"], coeffs: Float[Tensor, " 4"], iterations: int = 40
) -> Float[Tensor, "*batch 2"]:
    """Invert :func:`distort` by fixed-point iteration (as OpenCV's ``undistortPoints``).

    Starting from ``x = x_d``, repeat ``x ← (x_d − Δx(x, y)) / ρ(x, y)`` (likewise ``y``), where
    ``Δ`` is the tangential term. It converges for the mild distortion of real lenses
    (``|k1| r² ≲ 0.3``); strong fisheye distortion needs another model.

    Example:
        >>> k = torch.tensor([-0.2, 0.05, 0.001, -0.002])
        >>> xy = torch.tensor([[0.3, -0.2]])
        >>> bool(torch.allclose(undistort(distort(xy, k), k), xy, atol=1e-6))
        True
    """
    k1, k2, p1, p2 = coeffs.to(xy_distorted.dtype).unbind(-1)
    xd, yd = xy_distorted[..., 0], xy_distorted[..., 1]
    x, y = xd, yd
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x, y = (xd - dx) / radial, (yd - dy) / radial
    return torch.stack([x, y], dim=-1)


def pixel_directions(
    pixels: Float[Tensor, "*batch 2"],
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    distortion: Float[Tensor, " 4"] | None = None,
    iterations: int = 40,
) -> Float[Tensor, "*batch 3"]:
    """Camera-space unit ray directions (OpenGL: ``−z`` forward, ``+y`` up) through pixels.

    ``(x, y) = ((u − cx)/fx, (v − cy)/fy)`` is undistorted with :func:`undistort` when
    ``distortion`` is given, then ``d = (x, −y, −1) / ‖·‖``.

    Example:
        >>> d = pixel_directions(torch.tensor([[2.0, 2.0]]), 10.0, 10.0, 2.0, 2.0)
        >>> [v + 0.0 for v in d[0].tolist()]  # the principal point looks straight ahead
        [0.0, 0.0, -1.0]
    """
    xy = torch.stack([(pixels[..., 0] - cx) / fx, (pixels[..., 1] - cy) / fy], dim=-1)
    if distortion is not None:
        xy = undistort(xy, distortion, iterations)
    d = torch.stack([xy[..., 0], -xy[..., 1], -torch.ones_like(xy[..., 0])], dim=-1)
    return d / torch.linalg.norm(d, dim=-1, keepdim=True)


# ---------------------------------------------------------------------------------- projection


def decompose_projection(projection: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a ``3×4`` projection ``P ~ K [R | t]`` into intrinsics and an OpenCV camera pose.

    ``P[:, :3] = K R`` is factored by an RQ decomposition, computed from the QR decomposition of
    the row-flipped matrix: with ``J`` the exchange matrix, ``(J M)ᵀ = Q U`` gives
    ``M = (J Uᵀ J)(J Qᵀ)``, upper-triangular times orthogonal. Signs are fixed so that ``K`` has a
    positive diagonal and ``R`` is a proper rotation (``P`` is first multiplied by
    ``sign det M``, which does not change the projection), then ``K`` is scaled to
    ``K[2, 2] = 1``. The camera centre is ``C = −M⁻¹ P[:, 3]``.

    Args:
        projection: ``[3, 4]`` (or ``[4, 4]``, last row ignored) projection matrix.

    Returns:
        ``(K, c2w)``: float64 ``[3, 3]`` intrinsics (pixel centres at integer coordinates, the
        OpenCV convention) and ``[4, 4]`` camera-to-world in the OpenCV convention
        (``+z`` forward, ``+y`` down): ``c2w[:3, :3] = Rᵀ``, ``c2w[:3, 3] = C``.

    Example:
        >>> K = np.array([[100.0, 0, 50], [0, 120.0, 40], [0, 0, 1]])
        >>> P = K @ np.hstack([np.eye(3), [[0.0], [0.0], [4.0]]])
        >>> K2, c2w = decompose_projection(P)
        >>> bool(np.allclose(K2, K)), [round(v, 6) + 0.0 for v in c2w[:3, 3].tolist()]
        (True, [0.0, 0.0, -4.0])
    """
    p = np.asarray(projection, dtype=np.float64)[:3, :4]
    m = p[:, :3]
    det = np.linalg.det(m)
    if not np.isfinite(p).all() or abs(det) < 1e-300:
        raise ValueError("projection matrix must be finite with an invertible left 3×3 block")
    p = p * np.sign(det)
    m = p[:, :3]
    flip = np.eye(3)[::-1]
    q, u = np.linalg.qr((flip @ m).T)
    k = flip @ u.T @ flip
    r = flip @ q.T
    signs = np.diag(np.sign(np.diag(k)))
    k, r = k @ signs, signs @ r
    k = k / k[2, 2]
    centre = -np.linalg.solve(m, p[:, 3])
    c2w = np.eye(4)
    c2w[:3, :3] = r.T
    c2w[:3, 3] = centre
    return k, c2w


def opencv_to_opengl(c2w: np.ndarray) -> np.ndarray:
    """``c2w`` with the camera's ``y`` and ``z`` axes flipped: OpenCV ⇄ OpenGL (its own inverse).

    Example:
        >>> opencv_to_opengl(np.eye(4)).diagonal().tolist()
        [1.0, -1.0, -1.0, 1.0]
    """
    return np.asarray(c2w, dtype=np.float64) @ _OPENCV_TO_OPENGL


# ---------------------------------------------------------------------------------- helpers


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, expected a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(
            path, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(path, f"could not read as text ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object at the top level, got {type(data).__name__}")
    return data


def _frames(meta: dict, path: Path) -> list[dict]:
    frames = meta.get("frames")
    if frames is None:
        raise DataError(path, "missing key 'frames'")
    if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
        raise DataError(path, "'frames' must be a list of objects")
    if not frames:
        raise DataError(path, "no usable frames: 'frames' is empty")
    return frames


def _number(value: object, path: Path, what: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(path, f"{what} must be a number, got {value!r}")
    try:
        x = float(value)
    except OverflowError:  # an int beyond the float range (JSON has unbounded integers)
        x = math.inf
    if not abs(x) <= _FLOAT32_MAX or (positive and x <= 0):
        raise DataError(path, f"{what} must be a finite{' positive' if positive else ''} number")
    return x


def _angle(value: object, path: Path, what: str) -> float:
    """A field of view in radians, in ``(0, π)``."""
    angle = _number(value, path, what, positive=True)
    if angle >= math.pi:
        raise DataError(path, f"{what} must be below π radians, got {angle}")
    return angle


def _rigid(matrix: object, path: Path, what: str) -> np.ndarray:
    """A ``4×4`` float64 rigid transform (``3×4`` accepted), or a DataError naming ``what``."""
    if isinstance(matrix, np.ndarray) and matrix.dtype.kind not in "biuf":
        raise DataError(path, f"{what} is not a matrix of numbers (dtype {matrix.dtype})")
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(path, f"{what} is not a matrix of numbers") from None
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if m.shape != (4, 4):
        raise DataError(path, f"{what} must be 4×4, got shape {list(m.shape)}")
    if not (np.abs(m) <= _FLOAT32_MAX).all():
        raise DataError(path, f"{what} is not finite (or beyond the float32 range)")
    rot = m[:3, :3]
    err = float(np.abs(rot.T @ rot - np.eye(3)).max())
    if err > _ROTATION_TOL or np.linalg.det(rot) < 0 or not np.allclose(m[3], [0, 0, 0, 1]):
        raise DataError(path, f"{what} is not a rigid transform (rotation + translation)")
    return m


def _resolve_image(folder: Path, file_path: str) -> Path | None:
    base = folder / file_path
    for suffix in _IMAGE_SUFFIXES:
        candidate = base.with_name(base.name + suffix)
        if candidate.is_file():
            return candidate
    return None


def _read_image(path: Path) -> np.ndarray:
    """``[H, W, 3 or 4]`` float32 in ``[0, 1]`` (grey expanded to RGB), or a DataError."""
    try:
        with warnings.catch_warnings():  # imageio's plugin probing warns about legacy plugins
            warnings.simplefilter("ignore", DeprecationWarning)
            arr = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many kinds of errors on bad bytes
        detail = " ".join(str(exc).split())[:160]
        raise DataError(path, f"could not read image ({type(exc).__name__}: {detail})") from exc
    if arr.dtype == np.uint8:
        img = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        img = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        img = arr.astype(np.float32)
    else:
        raise DataError(path, f"unsupported image pixel type {arr.dtype}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.shape[0] * img.shape[1] == 0:
        raise DataError(path, f"unsupported image shape {list(arr.shape)}")
    if img.shape[2] <= 2:  # grey or grey + alpha
        img = np.concatenate([np.repeat(img[..., :1], 3, axis=2), img[..., 1:]], axis=2)
    return img


def _area_downscale(img: np.ndarray, d: int) -> np.ndarray:
    """Average ``d×d`` blocks of ``[H, W, ...]``, dropping rows/columns that do not fill one."""
    if d == 1:
        return img
    h, w = img.shape[0] // d, img.shape[1] // d
    blocks = img[: h * d, : w * d].reshape(h, d, w, d, *img.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(np.float32)


def _check_downscale(downscale: int) -> None:
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ValueError(f"downscale must be a positive int, got {downscale!r}")


def _load_rgba(
    path: Path, background: Sequence[float], downscale: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Composited ``rgb [h, w, 3]``, ``alpha [h, w]`` and the file's ``(W, H)``."""
    img = _read_image(path)
    full = (img.shape[1], img.shape[0])
    if img.shape[1] < downscale or img.shape[0] < downscale:
        raise DataError(path, f"image {full[0]}×{full[1]} is smaller than downscale {downscale}")
    alpha = img[..., 3] if img.shape[2] == 4 else np.ones(img.shape[:2], np.float32)
    premultiplied = _area_downscale(img[..., :3] * alpha[..., None], downscale)
    alpha = _area_downscale(alpha, downscale)
    bg = np.asarray(background, dtype=np.float32).reshape(3)
    rgb = premultiplied + (1.0 - alpha[..., None]) * bg
    return np.clip(rgb, 0.0, 1.0), alpha, full


def _check_size(path: Path, size: tuple[int, int], first: tuple[int, int], first_name: str) -> None:
    if size != first:
        raise DataError(
            path,
            f"image is {size[0]}×{size[1]} but the first frame ({first_name}) is "
            f"{first[0]}×{first[1]}; all views must have the same size",
        )


def _t(values: object) -> Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def _near_far_from_box(c2w: np.ndarray, aabb: np.ndarray) -> tuple[float, float]:
    """Heuristic ``near, far`` enclosing the box from every camera centre."""
    centre, half = (aabb[:3] + aabb[3:]) / 2, float(np.linalg.norm(aabb[3:] - aabb[:3]) / 2)
    dist = np.linalg.norm(c2w[:, :3, 3] - centre, axis=1)
    return max(0.05, float(dist.min()) - half), float(dist.max()) + half


def _check_cameras(
    path: Path, near: float, far: float, focal: object, aabb: object, **arrays: object
) -> None:
    """A DataError unless the derived camera data fit float32 — finite, focal lengths > 0, a
    non-empty box — and ``near < far``: huge or tiny but finite values in a file (a focal
    length of 1e300, a field of view of 1e-300) overflow or vanish in float32."""
    for name, values in {"focal lengths": focal, "scene box": aabb, **arrays}.items():
        a = np.asarray(values, dtype=np.float64)
        if not (np.abs(a) <= _FLOAT32_MAX).all():
            raise DataError(path, f"the {name} it gives are not finite (or overflow float32)")
    if not (np.asarray(focal, dtype=np.float32) > 0).all():
        raise DataError(path, "it gives a focal length that is zero in float32")
    box = np.asarray(aabb, dtype=np.float32)
    if not (box[:3] < box[3:]).all():
        raise DataError(path, f"it gives an empty scene box {box.tolist()}")
    if not (math.isfinite(near) and math.isfinite(far) and 0 <= near < far <= _FLOAT32_MAX):
        raise DataError(path, f"its cameras and scene box give no usable near/far ({near}, {far})")


# ---------------------------------------------------------------------------------- loaders


def load_blender(
    root_or_json: str | os.PathLike[str],
    split: str = "train",
    background: Sequence[float] = (1.0, 1.0, 1.0),
    downscale: int = 1,
) -> MultiViewDataset:
    """Load a NeRF-synthetic (Blender) scene: ``transforms_{split}.json`` and RGBA PNGs.

    Each frame's ``file_path`` is relative to the JSON's folder, usually without extension
    (``.png`` is tried). RGBA images are composited over ``background`` (alpha is kept in
    ``alpha``); intrinsics come from ``camera_angle_x``: ``fx = fy = (W/2) / tan(angle_x / 2)``,
    ``cx = W/2``, ``cy = H/2``, all divided by ``downscale``. The scene box is ``[-1.5, 1.5]³``
    and ``near, far = 2, 6`` (the NeRF paper's bounds).

    Args:
        root_or_json: the scene folder, or one ``transforms_*.json`` (its name sets the split).
        split: ``"train"``, ``"val"`` or ``"test"`` when a folder is given.
        background: RGB in ``[0, 1]`` to composite over.
        downscale: integer factor; ``d×d`` blocks are averaged in premultiplied colour.

    Raises:
        DataError: naming the file, for a missing folder/JSON/image, bad JSON, missing keys,
            a malformed matrix, an unreadable image or images of different sizes.

    Example:
        >>> ds = load_blender("../shared/data/nerf/lego_400", "train", downscale=4)
        >>> len(ds), ds.width, ds.height
        (100, 100, 100)
    """
    _check_downscale(downscale)
    path = Path(root_or_json)
    if path.is_dir():
        path = path / f"transforms_{split}.json"
    elif not path.exists():
        raise DataError(path, "file or folder not found")
    else:
        match = re.fullmatch(r"transforms_(\w+)\.json", path.name)
        split = match.group(1) if match else split
    meta = _read_json(path)
    if "camera_angle_x" not in meta:
        raise DataError(path, "missing key 'camera_angle_x'")
    angle = _angle(meta["camera_angle_x"], path, "camera_angle_x")
    frames = _frames(meta, path)
    images, alphas, poses, names = [], [], [], []
    first: tuple[int, int] | None = None
    for k, frame in enumerate(frames):
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise DataError(path, f"frame {k} is missing key {key!r}")
        if not isinstance(frame["file_path"], str):
            raise DataError(path, f"frame {k}: 'file_path' must be a string")
        image_path = _resolve_image(path.parent, frame["file_path"])
        if image_path is None:
            raise DataError(path.parent / frame["file_path"], "image file not found (tried .png)")
        poses.append(_rigid(frame["transform_matrix"], path, f"frame {k}'s transform_matrix"))
        rgb, alpha, size = _load_rgba(image_path, background, downscale)
        first = first or size
        _check_size(image_path, size, first, names[0] if names else image_path.name)
        images.append(rgb)
        alphas.append(alpha)
        names.append(image_path.name)
    w, h = first
    f = 0.5 * w / math.tan(0.5 * angle) / downscale
    n = len(images)
    _check_cameras(path, 2.0, 6.0, focal=f, aabb=_BLENDER_AABB)
    return MultiViewDataset(
        images=torch.from_numpy(np.stack(images)),
        c2w=_t(np.stack(poses)),
        fx=torch.full((n,), f),
        fy=torch.full((n,), f),
        cx=torch.full((n,), w / 2 / downscale),
        cy=torch.full((n,), h / 2 / downscale),
        names=names,
        split=split,
        alpha=torch.from_numpy(np.stack(alphas)),
        aabb=_t(_BLENDER_AABB),
        near=2.0,
        far=6.0,
        background=tuple(float(c) for c in background),  # type: ignore[arg-type]
    )


def load_ngp_transforms(
    path: str | os.PathLike[str],
    background: Sequence[float] = (1.0, 1.0, 1.0),
    downscale: int = 1,
) -> MultiViewDataset:
    """Load instant-ngp's ``transforms.json`` (the COLMAP dialect written by ``colmap2nerf``).

    Camera keys may sit at the top level or in each frame (the frame wins): ``fl_x``, ``fl_y``,
    ``cx``, ``cy``, ``w``, ``h``, ``k1``, ``k2``, ``p1``, ``p2``, ``camera_angle_x``,
    ``camera_angle_y``. Fallbacks: ``fl_x`` from ``camera_angle_x``, ``fl_y`` from
    ``camera_angle_y`` else ``fl_x``, ``cx, cy = W/2, H/2``. Poses are used as stored (NeRF/OpenGL
    convention; instant-ngp's own rescaling and axis cycle are *not* applied). The box is
    instant-ngp's ``aabb_scale`` cube mapped back into the file's frame:
    ``[(½ − a/2 − offset)/scale, (½ + a/2 − offset)/scale]`` per axis, with the file's ``scale``
    (default 0.33) and ``offset`` (default 0.5); near/far enclose that box from every camera.

    Frames whose image file is missing are skipped with one :class:`DataWarning` naming them.

    Raises:
        DataError: for a missing/bad JSON, missing keys, no focal length, declared ``w``/``h``
            that disagree with the image, images of different sizes, or no frame left.

    Example:
        >>> ds = load_ngp_transforms("scenes/fox/transforms.json")  # doctest: +SKIP
    """
    _check_downscale(downscale)
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    meta = _read_json(path)
    frames = _frames(meta, path)
    images, alphas, poses, names, intr, dist, missing = [], [], [], [], [], [], []
    first: tuple[int, int] | None = None
    for k, frame in enumerate(frames):
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise DataError(path, f"frame {k} is missing key {key!r}")
        file_path = frame["file_path"]
        if not isinstance(file_path, str):
            raise DataError(path, f"frame {k}: 'file_path' must be a string")
        image_path = _resolve_image(path.parent, file_path)
        if image_path is None:
            missing.append(file_path)
            continue
        poses.append(_rigid(frame["transform_matrix"], path, f"frame {k}'s transform_matrix"))

        def get(key: str, frame: dict = frame) -> object:
            return frame.get(key, meta.get(key))

        rgb, alpha, size = _load_rgba(image_path, background, downscale)
        w, h = size
        for key, actual in (("w", w), ("h", h)):
            declared = get(key)
            if declared is not None and _number(declared, path, key) != actual:
                raise DataError(
                    image_path, f"image is {w}×{h} but {path.name} declares {key}={declared}"
                )
        first = first or size
        _check_size(image_path, size, first, names[0] if names else image_path.name)
        if get("fl_x") is not None:
            fx = _number(get("fl_x"), path, f"frame {k}: fl_x", positive=True)
        elif get("camera_angle_x") is not None:
            angle = _angle(get("camera_angle_x"), path, "camera_angle_x")
            fx = 0.5 * w / math.tan(0.5 * angle)
        else:
            raise DataError(
                path,
                f"frame {k} ({file_path}) has no focal length: expected 'fl_x' or "
                "'camera_angle_x' in the frame or at the top level",
            )
        if get("fl_y") is not None:
            fy = _number(get("fl_y"), path, f"frame {k}: fl_y", positive=True)
        elif get("camera_angle_y") is not None:
            angle = _angle(get("camera_angle_y"), path, "camera_angle_y")
            fy = 0.5 * h / math.tan(0.5 * angle)
        else:
            fy = fx
        cx = _number(get("cx"), path, "cx") if get("cx") is not None else w / 2
        cy = _number(get("cy"), path, "cy") if get("cy") is not None else h / 2
        intr.append([fx / downscale, fy / downscale, cx / downscale, cy / downscale])
        dist.append([_number(get(c) or 0.0, path, c) for c in ("k1", "k2", "p1", "p2")])
        images.append(rgb)
        alphas.append(alpha)
        names.append(image_path.name)
    if missing:
        shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
        warnings.warn(
            f"{path}: skipped {len(missing)} of {len(frames)} frames whose image file is "
            f"missing: {shown}",
            DataWarning,
            stacklevel=2,
        )
    if not images:
        raise DataError(path, f"no usable frames: all {len(frames)} image files are missing")

    a = _number(meta.get("aabb_scale", 1), path, "aabb_scale", positive=True)
    scale = _number(meta.get("scale", 0.33), path, "scale", positive=True)
    try:
        offset = np.broadcast_to(np.asarray(meta.get("offset", 0.5), dtype=np.float64), (3,))
    except (TypeError, ValueError, OverflowError):
        raise DataError(path, "'offset' must be a number or three numbers") from None
    if not np.isfinite(offset).all():
        raise DataError(path, "'offset' must be finite")
    aabb = np.concatenate([(0.5 - a / 2 - offset) / scale, (0.5 + a / 2 - offset) / scale])
    c2w = np.stack(poses)
    with np.errstate(all="ignore"):  # overflow shows up as inf, refused just below
        near, far = _near_far_from_box(c2w, aabb)
    _check_cameras(path, near, far, focal=[i[:2] for i in intr], aabb=aabb, intrinsics=intr)
    intrinsics = _t(intr)
    distortion = _t(dist)
    has_alpha = any(float(al.min()) < 1.0 for al in alphas)
    return MultiViewDataset(
        images=torch.from_numpy(np.stack(images)),
        c2w=_t(c2w),
        fx=intrinsics[:, 0].contiguous(),
        fy=intrinsics[:, 1].contiguous(),
        cx=intrinsics[:, 2].contiguous(),
        cy=intrinsics[:, 3].contiguous(),
        names=names,
        split="all",
        alpha=torch.from_numpy(np.stack(alphas)) if has_alpha else None,
        distortion=distortion if bool(distortion.any()) else None,
        aabb=_t(aabb),
        near=near,
        far=far,
        background=tuple(float(c) for c in background) if has_alpha else None,  # type: ignore[arg-type]
    )


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, never unpickling (``allow_pickle=False``)."""
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, expected an .npz file")
    if not zipfile.is_zipfile(path):  # np.load would take other bytes for a pickle
        raise DataError(path, "not a readable .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise DataError(path, "is a single .npy array, expected an .npz archive")
            return {key: data[key] for key in data.files}
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(
                path,
                "contains pickled Python objects, which are never loaded (allow_pickle=False); "
                "save plain numeric arrays",
            ) from exc
        raise DataError(path, f"not a readable .npz archive ({exc})") from exc
    except (
        # What zipfile, zlib/lzma and numpy's .npy reader raise on a damaged archive: bad
        # headers and CRCs, corrupt compressed streams, unknown compression methods,
        # "encrypted" flags (RuntimeError), sizes beyond memory.
        OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, struct.error,
        NotImplementedError, RuntimeError, AttributeError, KeyError, OverflowError, MemoryError,
    ) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise DataError(
            path, f"not a readable .npz archive ({type(exc).__name__}: {detail})"
        ) from exc


def load_tiny_nerf(
    npz: str | os.PathLike[str],
    split: str = "train",
    holdout: tuple[int, int] = (100, 106),
    downscale: int = 1,
) -> MultiViewDataset:
    """Load the tiny-NeRF ``.npz``: ``images`` ``(N, H, W, 3)`` on black, ``poses``, ``focal``.

    Frames ``holdout[0] ≤ k < holdout[1]`` are the ``"test"`` (alias ``"val"``) split, the rest
    ``"train"``; ``"all"`` keeps every frame. ``fx = fy = focal``, ``cx, cy = W/2, H/2``, poses in
    the OpenGL convention as stored, box ``[-1.5, 1.5]³``, ``near, far = 2, 6``. The archive is
    read with ``allow_pickle=False``.

    Raises:
        DataError: for a missing or unreadable file, a pickled archive, missing keys or
            inconsistent shapes, or a split with no frames.
        ValueError: for an unknown ``split``.

    Example:
        >>> ds = load_tiny_nerf("../shared/data/nerf/tiny_nerf/tiny_nerf_data_reconstructed.npz")
        >>> len(ds), ds.width
        (100, 100)
    """
    _check_downscale(downscale)
    if split not in ("train", "test", "val", "all"):
        raise ValueError(f"split must be 'train', 'test', 'val' or 'all', got {split!r}")
    path = Path(npz)
    data = _load_npz(path)
    missing = [k for k in ("images", "poses", "focal") if k not in data]
    if missing:
        raise DataError(path, f"missing arrays {missing}; found {sorted(data)}")
    images, poses, focal = data["images"], data["poses"], data["focal"]
    for key, arr in (("images", images), ("poses", poses), ("focal", focal)):
        if arr.dtype.kind not in "iuf":
            raise DataError(path, f"'{key}' must hold real numbers, got dtype {arr.dtype}")
    if images.ndim != 4 or images.shape[3] not in (3, 4) or 0 in images.shape:
        raise DataError(path, f"'images' must have shape (N, H, W, 3), got {list(images.shape)}")
    if not np.issubdtype(images.dtype, np.floating):
        images = images.astype(np.float32) / np.float32(np.iinfo(images.dtype).max)
    elif not np.isfinite(images).all():
        raise DataError(path, "'images' holds NaN or infinite values")
    n, h, w = images.shape[:3]
    if poses.shape not in ((n, 4, 4), (n, 3, 4)):
        raise DataError(path, f"'poses' must have shape ({n}, 4, 4), got {list(poses.shape)}")
    if focal.size != 1:
        raise DataError(path, f"'focal' must be one number, got shape {list(focal.shape)}")
    f = _number(float(focal.reshape(())), path, "focal", positive=True)
    held = np.zeros(n, dtype=bool)
    held[max(0, holdout[0]) : max(0, holdout[1])] = True
    keep = {"train": ~held, "test": held, "val": held, "all": np.ones(n, bool)}[split]
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise DataError(path, f"no frames in split {split!r} (holdout {holdout}, {n} frames)")
    c2w = np.stack([_rigid(poses[i], path, f"poses[{i}]") for i in idx])
    rgb = np.stack([_area_downscale(images[i, ..., :3].astype(np.float32), downscale) for i in idx])
    m = len(idx)
    return MultiViewDataset(
        images=torch.from_numpy(np.ascontiguousarray(np.clip(rgb, 0.0, 1.0))),
        c2w=_t(c2w),
        fx=torch.full((m,), f / downscale),
        fy=torch.full((m,), f / downscale),
        cx=torch.full((m,), w / 2 / downscale),
        cy=torch.full((m,), h / 2 / downscale),
        names=[f"{path.name}[{i}]" for i in idx],
        split=split,
        aabb=_t(_BLENDER_AABB),
        near=2.0,
        far=6.0,
        background=(0.0, 0.0, 0.0),
    )


def _numbered_files(folder: Path) -> dict[int, Path]:
    """``{view number: file}`` for the images in ``folder`` named by a number (``000123.png``)."""
    found: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg") and p.stem.isascii() and p.stem.isdigit():
            found[int(p.stem)] = p
    return found


def load_neus_dtu(
    root: str | os.PathLike[str], downscale: int = 1, mask_threshold: int = 127
) -> MultiViewDataset:
    """Load a NeuS/IDR scene (DTU): ``image/*.png``, ``mask/*.png``, ``cameras_sphere.npz``.

    Image ``000007.png`` is view 7, with ``world_mat_7`` and ``scale_mat_7`` (identity when
    absent) and mask ``mask/007.png`` (any zero padding). ``P = world_mat @ scale_mat`` maps the
    normalised frame — where the object sits inside the unit sphere — to pixels; it is split by
    :func:`decompose_projection` into ``K`` and an OpenCV pose, converted to OpenGL with
    :func:`opencv_to_opengl`, and ``½`` is added to ``cx, cy`` (OpenCV puts pixel centres at
    integer coordinates, the project at half-integers). Skew in ``K`` is ignored. Masks are
    block-averaged, then ``mask = value > mask_threshold`` (on the 0–255 scale).

    The region of interest is the unit sphere (the NeuS convention), so ``aabb = [-1, 1]³``;
    ``near, far`` enclose the sphere from every camera.

    Raises:
        DataError: for a missing folder/file, no images, a view without ``world_mat_i``, a
            missing or differently sized mask, unreadable images, or images of different sizes.

    Example:
        >>> ds = load_neus_dtu("../shared/data/nerf/dtu_scan24_subset", downscale=8)
        >>> len(ds), ds.width, ds.height
        (10, 200, 150)
    """
    _check_downscale(downscale)
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "folder not found" if not root.exists() else "is not a folder")
    cams_path = root / "cameras_sphere.npz"
    cams = _load_npz(cams_path)
    image_dir, mask_dir = root / "image", root / "mask"
    if not image_dir.is_dir():
        raise DataError(image_dir, "folder not found")
    image_files = _numbered_files(image_dir)
    if not image_files:
        raise DataError(image_dir, "no usable frames: no numbered .png/.jpg images")
    mask_files = _numbered_files(mask_dir) if mask_dir.is_dir() else None
    images, masks, poses, intr, names = [], [], [], [], []
    first: tuple[int, int] | None = None
    for view, image_path in image_files.items():
        key = f"world_mat_{view}"
        if key not in cams:
            raise DataError(cams_path, f"has no {key} for image {image_path.name}")
        world, scale = cams[key], cams.get(f"scale_mat_{view}", np.eye(4))
        if world.dtype.kind not in "biuf" or scale.dtype.kind not in "biuf":
            raise DataError(cams_path, f"{key} or scale_mat_{view} does not hold real numbers")
        world, scale = world.astype(np.float64), scale.astype(np.float64)
        if world.shape not in ((4, 4), (3, 4)) or scale.shape != (4, 4):
            raise DataError(cams_path, f"{key} or scale_mat_{view} has the wrong shape")
        try:
            k_mat, c2w_cv = decompose_projection(world[:3, :4] @ scale)
        except ValueError as exc:
            raise DataError(cams_path, f"{key} @ scale_mat_{view}: {exc}") from None
        img = _read_image(image_path)
        size = (img.shape[1], img.shape[0])
        first = first or size
        _check_size(image_path, size, first, names[0] if names else image_path.name)
        images.append(np.clip(_area_downscale(img[..., :3], downscale), 0.0, 1.0))
        if mask_files is not None:
            mask_path = mask_files.get(view)
            if mask_path is None:
                raise DataError(mask_dir, f"no mask for image {image_path.name} (view {view})")
            mask = _read_image(mask_path)
            if (mask.shape[1], mask.shape[0]) != size:
                raise DataError(
                    mask_path,
                    f"mask is {mask.shape[1]}×{mask.shape[0]}, image is {size[0]}×{size[1]}",
                )
            coverage = _area_downscale(mask[..., :3].mean(axis=2), downscale)
            masks.append((coverage * 255.0 > mask_threshold).astype(np.float32))
        poses.append(opencv_to_opengl(c2w_cv))
        intr.append(
            [
                k_mat[0, 0] / downscale,
                k_mat[1, 1] / downscale,
                (k_mat[0, 2] + 0.5) / downscale,
                (k_mat[1, 2] + 0.5) / downscale,
            ]
        )
        names.append(image_path.name)
    c2w = np.stack(poses)
    dist = np.linalg.norm(c2w[:, :3, 3], axis=1)
    near, far = max(0.05, float(dist.min()) - 1.0), float(dist.max()) + 1.0
    _check_cameras(cams_path, near, far, focal=[i[:2] for i in intr], aabb=[-1, -1, -1, 1, 1, 1],
                   intrinsics=intr, **{"camera poses": c2w})
    intrinsics = _t(intr)
    return MultiViewDataset(
        images=torch.from_numpy(np.stack(images)),
        c2w=_t(c2w),
        fx=intrinsics[:, 0].contiguous(),
        fy=intrinsics[:, 1].contiguous(),
        cx=intrinsics[:, 2].contiguous(),
        cy=intrinsics[:, 3].contiguous(),
        names=names,
        split="all",
        masks=torch.from_numpy(np.stack(masks)) if masks else None,
        aabb=_t([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]),
        near=near,
        far=far,
    )


def load_multiview(
    path: str | os.PathLike[str],
    split: str = "train",
    downscale: int = 1,
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> MultiViewDataset:
    """Load any supported multi-view dataset from a folder or a file (what ``--data`` takes).

    Dispatch: a folder with ``transforms_train.json`` (or ``transforms_{split}.json``) or a
    ``transforms_*.json`` file → :func:`load_blender`; a folder with ``transforms.json`` or any
    other ``.json`` → :func:`load_ngp_transforms`; a folder with ``cameras_sphere.npz`` (or that
    file) → :func:`load_neus_dtu`; another ``.npz`` → :func:`load_tiny_nerf`. ``split`` applies
    to Blender and tiny NeRF; instant-ngp and NeuS scenes are one ``"all"`` split. ``background``
    is what RGBA images (Blender, instant-ngp) are composited over.

    Raises:
        DataError: if ``path`` does not exist or matches none of the layouts above.

    Example:
        >>> ds = load_multiview("../shared/data/nerf/lego_400", split="test", downscale=4)
        >>> ds.split
        'test'
    """
    p = Path(path)
    if not p.exists():
        raise DataError(p, "file or folder not found")
    if p.is_dir():
        if (p / f"transforms_{split}.json").is_file() or (p / "transforms_train.json").is_file():
            return load_blender(p, split, background, downscale)
        if (p / "transforms.json").is_file():
            return load_ngp_transforms(p / "transforms.json", background, downscale)
        if (p / "cameras_sphere.npz").is_file():
            return load_neus_dtu(p, downscale=downscale)
        raise DataError(
            p,
            "no multi-view dataset found: expected transforms_train.json (Blender), "
            "transforms.json (instant-ngp) or cameras_sphere.npz (NeuS/DTU)",
        )
    if p.suffix.lower() == ".json":
        if re.fullmatch(r"transforms_\w+\.json", p.name):
            return load_blender(p, background=background, downscale=downscale)
        return load_ngp_transforms(p, background, downscale)
    if p.name == "cameras_sphere.npz":
        return load_neus_dtu(p.parent, downscale=downscale)
    if p.suffix.lower() == ".npz":
        return load_tiny_nerf(p, split, downscale=downscale)
    raise DataError(
        p, f"unsupported file type {p.suffix or '(none)'!r}: expected a folder, .json or .npz"
    )

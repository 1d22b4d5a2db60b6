"""Shape metrics for generated 2-D/3-D fields: boundary points, Chamfer, MMD/COV, IoU, disc fits.

Coordinates follow the raster convention of :mod:`datasets.procshapes`: pixel ``(row i, col j)``
of an ``R × R`` grid is the point ``(x = c[j], y = c[i])`` with
``c = linspace(−(R−1)/R, (R−1)/R, R)``.

Distribution metrics (Achlioptas et al., "Learning Representations and Generative Models for 3D
Point Clouds", ICML 2018), on the Chamfer distance between point sets
``CD(A, B) = mean_{a∈A} min_{b∈B} ‖a − b‖ + mean_{b∈B} min_{a∈A} ‖a − b‖``:

* **MMD** (minimum matching distance) = mean over *reference* shapes of the CD to their nearest
  *generated* shape — fidelity: every real shape should have a close generated one;
* **COV** (coverage) = fraction of reference shapes that are the nearest reference of at least
  one generated shape — diversity: 1 when the generated set spreads over the references.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = [
    "boundary_points_2d",
    "chamfer_matrix",
    "mmd_cov",
    "mmd_cov_from_matrix",
    "iou",
    "DiscFit",
    "fit_disc",
]

GridLike = (
    Float[Tensor, "*batch R R"] | Float[np.ndarray, "*batch R R"] | Bool[Tensor, "*batch R R"]
)
"""An occupancy-like grid (``[R, R]`` or a batch ``[B, R, R]``), inside where value > level."""


def _centers(res: int) -> np.ndarray:
    return (2.0 * np.arange(res) + 1.0) / res - 1.0


def _resample(contours: list[np.ndarray], n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length over all polylines (no jumps between them)."""
    starts = np.concatenate([c[:-1] for c in contours])
    ends = np.concatenate([c[1:] for c in contours])
    length = np.linalg.norm(ends - starts, axis=1)
    cum = np.cumsum(length)
    total = cum[-1]
    if not total > 0:
        return np.repeat(starts[:1], n, axis=0)
    s = (np.arange(n) + 0.5) * (total / n)
    seg = np.minimum(np.searchsorted(cum, s, side="right"), len(cum) - 1)
    before = cum[seg] - length[seg]
    t = np.clip((s - before) / np.maximum(length[seg], 1e-300), 0.0, 1.0)[:, None]
    return starts[seg] + t * (ends[seg] - starts[seg])


def _boundary_one(grid: np.ndarray, n: int, level: float, empty: str) -> np.ndarray:
    from skimage import measure

    res = grid.shape[0]
    pad = min(float(grid.min()), level) - 1e-3
    padded = np.pad(grid.astype(np.float64), 1, constant_values=pad)
    contours = [c for c in measure.find_contours(padded, level) if len(c) > 1]
    if not contours:
        if empty == "raise":
            raise ValueError("the field has no boundary on this grid (empty or full)")
        return np.zeros((n, 2))
    pts = _resample(contours, n)  # (row, col) in the padded grid
    row, col = pts[:, 0] - 1.0, pts[:, 1] - 1.0
    return np.stack([(2.0 * col + 1.0) / res - 1.0, (2.0 * row + 1.0) / res - 1.0], axis=1)


def boundary_points_2d(
    field: GridLike | Callable[[Tensor], Tensor],
    n: int = 256,
    res: int = 128,
    level: float | None = None,
    empty: str = "center",
) -> Float[Tensor, "*batch n 2"]:
    """``n`` points on a 2-D shape's boundary, evenly spaced by arc length, in ``[−1, 1]²``.

    Marching squares (``skimage.measure.find_contours``, linear interpolation between pixel
    centres) extracts the iso-line; all contours together are resampled to ``n`` points.

    Args:
        field: either a grid ``[R, R]`` / ``[B, R, R]`` of occupancy-like values, inside where
            ``value > level`` (default level 0.5; bool grids count as 0/1), or a callable SDF
            ``x [M, 2] → sdf [M]``, inside where ``sdf < level`` (default 0), evaluated at the
            ``res × res`` pixel centres. The grid is padded with an "outside" value, so a shape
            touching the border is closed along the grid's outer edge.
        n: points per shape.
        res: grid size for a callable (ignored for a grid).
        level: iso-value (see ``field``).
        empty: what a field without boundary (all outside or all inside) gives: ``"center"``
            returns ``n`` copies of ``(0, 0)`` (a degenerate set that scores badly in
            Chamfer metrics, so an empty generated sample is penalised rather than skipped),
            ``"raise"`` raises ``ValueError``.

    Returns:
        ``[n, 2]`` (or ``[B, n, 2]``) float32 ``(x, y)`` points.
    """
    if empty not in ("center", "raise"):
        raise ValueError(f"empty must be 'center' or 'raise', got {empty!r}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if callable(field):
        c = torch.from_numpy(_centers(res)).float()
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        with torch.no_grad():
            sdf = field(torch.stack([xx, yy], dim=-1).reshape(-1, 2))
        grid = -np.asarray(torch.as_tensor(sdf).detach().cpu().double()).reshape(res, res)
        lvl = -(0.0 if level is None else float(level))
        return torch.from_numpy(_boundary_one(grid, n, lvl, empty)).float()
    arr = field.detach().cpu().double().numpy() if isinstance(field, Tensor) else field
    arr = np.asarray(arr, dtype=np.float64)
    if arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"expected a square grid, got shape {arr.shape}")
    lvl = 0.5 if level is None else float(level)
    flat = arr.reshape(-1, *arr.shape[-2:])
    out = np.stack([_boundary_one(g, n, lvl, empty) for g in flat])
    return torch.from_numpy(out.reshape(*arr.shape[:-2], n, 2)).float()


def chamfer_matrix(
    a: Float[Tensor, "A P d"],
    b: Float[Tensor, "B Q d"],
    squared: bool = False,
    budget: int = 1 << 24,
) -> Float[Tensor, "A B"]:
    """Chamfer distance between every pair of point sets: ``D[i, j] = CD(a[i], b[j])``.

    ``CD = mean_p min_q ‖a_p − b_q‖ + mean_q min_p ‖a_p − b_q‖`` (squared distances with
    ``squared``). Computed in float64 with ``torch.cdist``, in blocks of at most ``budget``
    pairwise distances, so memory stays bounded for large sets.
    """
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"point dimensions differ: {a.shape[-1]} vs {b.shape[-1]}")
    a64, b64 = a.detach().double(), b.detach().double()
    na, p = a.shape[:2]
    nb, q = b.shape[:2]
    out = torch.empty(na, nb, dtype=torch.float64)
    cb = max(1, min(nb, budget // max(1, p * q)))
    ca = max(1, min(na, budget // max(1, cb * p * q)))
    for i in range(0, na, ca):
        ai = a64[i : i + ca]
        for j in range(0, nb, cb):
            bj = b64[j : j + cb]
            d = torch.cdist(
                ai[:, None].expand(-1, len(bj), -1, -1).reshape(-1, p, a.shape[-1]),
                bj[None].expand(len(ai), -1, -1, -1).reshape(-1, q, b.shape[-1]),
            ).reshape(len(ai), len(bj), p, q)
            if squared:
                d = d.square()
            out[i : i + ca, j : j + cb] = d.min(dim=3).values.mean(2) + d.min(dim=2).values.mean(2)
    return out.float()


def mmd_cov_from_matrix(distance: Float[Tensor, "G R"]) -> dict[str, float]:
    """MMD and COV from a ``[generated, reference]`` distance matrix (module docstring)."""
    if distance.numel() == 0:
        raise ValueError("MMD/COV need at least one generated and one reference shape")
    mmd = distance.min(dim=0).values.mean()
    covered = distance.argmin(dim=1).unique().numel()
    return {"mmd": float(mmd), "cov": covered / distance.shape[1]}


def mmd_cov(
    generated: Float[Tensor, "G P d"], reference: Float[Tensor, "R Q d"], squared: bool = False
) -> dict[str, float]:
    """``{"mmd": ..., "cov": ...}`` of ``generated`` against ``reference`` point sets, with the
    Chamfer distance of :func:`chamfer_matrix` (definitions in the module docstring).

    Example:
        >>> sets = torch.rand(5, 32, 2)
        >>> mmd_cov(sets, sets)
        {'mmd': 0.0, 'cov': 1.0}
    """
    return mmd_cov_from_matrix(chamfer_matrix(generated, reference, squared=squared))


def iou(
    a: Bool[Tensor, "*shape"] | Bool[np.ndarray, "*shape"],
    b: Bool[Tensor, "*shape"] | Bool[np.ndarray, "*shape"],
    per_item: bool = False,
) -> float | Float[Tensor, " B"]:
    """Intersection over union of boolean grids (two empty grids have IoU 1).

    With ``per_item`` the first dimension is a batch and a ``[B]`` tensor is returned;
    otherwise one float over all elements.
    """
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    if ta.shape != tb.shape:
        raise ValueError(f"shapes differ: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    if per_item:
        ta, tb = ta.reshape(ta.shape[0], -1), tb.reshape(tb.shape[0], -1)
        inter = (ta & tb).sum(1).double()
        union = (ta | tb).sum(1).double()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).float()
    union = int((ta | tb).sum())
    return 1.0 if union == 0 else int((ta & tb).sum()) / union


class DiscFit(NamedTuple):
    """A moment-fitted disc (:func:`fit_disc`): ``center [*batch, 2]`` ``(x, y)``,
    ``radius [*batch]`` and the ``iou [*batch]`` of the mask with that disc's raster."""

    center: Tensor
    radius: Tensor
    iou: Tensor


def fit_disc(mask: Bool[Tensor, "*batch R R"]) -> DiscFit:
    """Fit a disc to a boolean raster by moments and measure how disc-like the mask is.

    Centre = mean of the inside pixels' centres; radius = ``sqrt(area / π)`` with ``area`` =
    inside pixels × ``(2/R)²``; ``iou`` = IoU of the mask against that disc rasterised at the
    same pixel centres (``‖p − centre‖ < radius``). An empty mask gives centre 0, radius 0 and
    IoU 0 (it is not a disc).
    """
    res = mask.shape[-1]
    if mask.shape[-2] != res:
        raise ValueError(f"expected a square mask, got shape {tuple(mask.shape)}")
    c = torch.from_numpy(_centers(res)).double()
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    m = mask.double()
    count = m.sum(dim=(-2, -1))
    safe = count.clamp(min=1)
    cx = (m * xx).sum(dim=(-2, -1)) / safe
    cy = (m * yy).sum(dim=(-2, -1)) / safe
    radius = (count * (2.0 / res) ** 2 / math.pi).sqrt()
    disc = (xx - cx[..., None, None]).square() + (yy - cy[..., None, None]).square() < (
        radius[..., None, None].square()
    )
    inter = (disc & mask).sum(dim=(-2, -1)).double()
    union = (disc | mask).sum(dim=(-2, -1)).double()
    score = torch.where(count > 0, inter / union.clamp(min=1), torch.zeros_like(union))
    return DiscFit(torch.stack([cx, cy], dim=-1).float(), radius.float(), score.float())

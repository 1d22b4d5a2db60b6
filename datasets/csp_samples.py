"""Training samples of closest-surface-point (CSP) fields, and analytic surfaces with exact CSP.

Vocabulary: ``x`` / ``points`` query points ``[N, 3]``; ``csp`` ``[N, 3]`` their closest surface
points; ``normals`` ``[N, 3]`` the unit surface normal at ``csp`` (a triangle's geometric normal
for meshes). Outputs are CPU tensors.

Sampling follows CSP-Net's single-shape recipe (Venkatesh et al., "Deep Implicit Surface Point
Prediction Networks", ICCV 2021, arXiv 2106.05779; see ../shared/methods/csp.md): query points in
three bands — uniform in the box, surface + ``N(0, σ₁²)`` and surface + ``N(0, σ₂²)`` per axis —
each with its closest surface point as the target, plus *identity* surface points whose target
is themselves (they pin ``CSP = identity`` on the surface). The paper draws 25 k uniform, 250 k
+ 250 k near points and pairs every batch of 1024 queries with 1024 fresh surface samples.

Normalisation convention. The paper normalises meshes into ``[−0.5, 0.5]³`` (box side 1) and
uses ``σ₁ = √2.5e-4 ≈ 0.0158``, ``σ₂ = √2.5e-5 = 0.005``. This library's mesh frame
(:mod:`datasets.meshes`) is ``[−1, 1]³`` (longest side 2), so lengths double: the defaults here
are :data:`DEFAULT_SIGMAS` ``= 2 ×`` :data:`SPEC_SIGMAS` ``= (0.0316, 0.01)`` and the uniform
band fills ``bounds = (−1, 1)``. For another frame scale every length by its box side ``L``:
``σ = L · SPEC_SIGMAS`` (the renderer's hit threshold and step back scale the same way, see
:mod:`renderer.csp_trace`).

Ground truth is exact: open3d's point-to-triangle closest-point query for meshes
(:meth:`datasets.sdf_samples.MeshDistance.closest_points`, float32) and closed forms for the
analytic shapes. The paper's code instead takes the nearest of 250 k surface samples, which is
quantised to the sample spacing; that variant is not offered here.

Analytic shapes (exact CSP for every ``x``):

* :class:`AnalyticSphere` — radius ``R``: ``CSP(x) = R x / ‖x‖``.
* :class:`AnalyticPatch` — the open square ``z = 0``, ``|x|, |y| ≤ a``:
  ``CSP(x) = (clamp(x, −a, a), clamp(y, −a, a), 0)``.
* :class:`AnalyticTube` — the open cylinder of radius ``ρ`` around ``z``, ``|z| ≤ h``, no caps:
  ``CSP(x) = (ρ x / r, ρ y / r, clamp(z, −h, h))`` with ``r = ‖(x, y)‖``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np
import torch
import trimesh
from jaxtyping import Float, UInt8
from torch import Tensor

from datasets.sdf_samples import MeshDistance, SampleKind, sample_surface

__all__ = [
    "SPEC_SIGMAS",
    "DEFAULT_SIGMAS",
    "AnalyticSurface",
    "AnalyticSphere",
    "AnalyticPatch",
    "AnalyticTube",
    "CSPSamples",
    "sample_csp",
]

SPEC_SIGMAS: tuple[float, float] = (math.sqrt(2.5e-4), math.sqrt(2.5e-5))
"""The paper's near-surface noise ``(σ₁, σ₂) ≈ (0.0158, 0.005)`` per unit of box side."""

DEFAULT_SIGMAS: tuple[float, float] = (2.0 * SPEC_SIGMAS[0], 2.0 * SPEC_SIGMAS[1])
"""``SPEC_SIGMAS`` in this library's mesh frame ``[−1, 1]³`` (box side 2): ``≈ (0.0316, 0.01)``."""


def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# --------------------------------------------------------------------------- analytic surfaces


class AnalyticSurface(abc.ABC):
    """A surface with a closed-form closest point; subclasses give :meth:`csp`,
    :meth:`normal_at`, :meth:`sample_surface` and :meth:`to_mesh`."""

    @abc.abstractmethod
    def csp(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """The exact closest surface point of each ``x`` (in ``x``'s dtype, differentiable)."""

    @abc.abstractmethod
    def normal_at(self, p: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """The unit normal at surface points ``p`` (the shape's fixed orientation)."""

    @abc.abstractmethod
    def _sample_np(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` area-uniform surface points, float64 numpy ``[n, 3]``."""

    @abc.abstractmethod
    def to_mesh(self, resolution: int = 64) -> trimesh.Trimesh:
        """A triangulation of the surface (``resolution`` controls its density)."""

    def udf(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """The exact unsigned distance ``‖x − CSP(x)‖``."""
        return torch.linalg.vector_norm(x - self.csp(x), dim=-1)

    def sample_surface(
        self,
        n: int,
        seed: int | np.random.Generator = 0,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Float[Tensor, "n 3"], Float[Tensor, "n 3"]]:
        """``n`` area-uniform surface points and their unit normals (reproducible from ``seed``).

        Example:
            >>> p, n = AnalyticSphere(0.5).sample_surface(4, seed=0, dtype=torch.float64)
            >>> bool(torch.allclose(p.norm(dim=1), torch.full((4,), 0.5, dtype=torch.float64)))
            True
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        points = torch.from_numpy(self._sample_np(int(n), _generator(seed))).to(dtype)
        return points, self.normal_at(points)


class AnalyticSphere(AnalyticSurface):
    """The sphere of ``radius`` about the origin: ``CSP(x) = R x / ‖x‖``.

    At ``x = 0`` every surface point is closest; :meth:`csp` returns ``(R, 0, 0)`` there.

    Example:
        >>> AnalyticSphere(0.5).csp(torch.tensor([[0.0, 2.0, 0.0]]))
        tensor([[0.0000, 0.5000, 0.0000]])
    """

    def __init__(self, radius: float) -> None:
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"sphere radius must be finite and > 0, got {radius!r}")
        self.radius = float(radius)

    def __repr__(self) -> str:
        return f"AnalyticSphere(radius={self.radius})"

    def csp(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        at_centre = r == 0
        e_x = torch.zeros_like(x)
        e_x[:, 0] = 1.0
        direction = torch.where(at_centre, e_x, x / torch.where(at_centre, 1.0, r))
        return self.radius * direction

    def normal_at(self, p: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        return torch.nn.functional.normalize(p, dim=-1)

    def _sample_np(self, n: int, rng: np.random.Generator) -> np.ndarray:
        g = rng.standard_normal((n, 3))
        norm = np.linalg.norm(g, axis=1, keepdims=True)
        return self.radius * g / np.where(norm > 0, norm, 1.0)

    def to_mesh(self, resolution: int = 4) -> trimesh.Trimesh:
        """An icosphere with ``resolution`` subdivisions (vertices on the sphere, so the mesh
        lies inside it by at most ``R (1 − cos)`` of half a face's angular size)."""
        return trimesh.creation.icosphere(subdivisions=resolution, radius=self.radius)


class AnalyticPatch(AnalyticSurface):
    """The open square ``z = 0``, ``|x|, |y| ≤ half_size``, normal ``+z``.

    Example:
        >>> AnalyticPatch(0.5).csp(torch.tensor([[0.7, 0.2, -0.3]]))
        tensor([[0.5000, 0.2000, 0.0000]])
    """

    def __init__(self, half_size: float) -> None:
        if not (math.isfinite(half_size) and half_size > 0):
            raise ValueError(f"patch half_size must be finite and > 0, got {half_size!r}")
        self.half_size = float(half_size)

    def __repr__(self) -> str:
        return f"AnalyticPatch(half_size={self.half_size})"

    def csp(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        a = self.half_size
        return torch.stack([x[:, 0].clamp(-a, a), x[:, 1].clamp(-a, a), torch.zeros_like(x[:, 2])],
                           dim=-1)

    def normal_at(self, p: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        n = torch.zeros_like(p)
        n[:, 2] = 1.0
        return n

    def _sample_np(self, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = rng.uniform(-self.half_size, self.half_size, size=(n, 2))
        return np.concatenate([xy, np.zeros((n, 1))], axis=1)

    def to_mesh(self, resolution: int = 16) -> trimesh.Trimesh:
        """A ``resolution × resolution`` grid of quads, two triangles each, wound for ``+z``."""
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        s = np.linspace(-self.half_size, self.half_size, resolution + 1)
        xx, yy = np.meshgrid(s, s, indexing="xy")
        vertices = np.stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)], axis=1)
        faces = _grid_faces(resolution, resolution, wrap=False)
        return trimesh.Trimesh(vertices, faces, process=False)


class AnalyticTube(AnalyticSurface):
    """The open cylinder of ``radius`` around the z axis, ``|z| ≤ half_height``, without caps.

    ``CSP(x) = (ρ x / r, ρ y / r, clamp(z, −h, h))``, exact inside and outside (the radial and
    axial parts of the distance separate). On the axis (``r = 0``) the whole circle is closest;
    :meth:`csp` returns the point in the ``+x`` direction. Normals point away from the axis.

    Example:
        >>> AnalyticTube(0.5, 0.25).csp(torch.tensor([[0.0, 2.0, 1.0]]))
        tensor([[0.0000, 0.5000, 0.2500]])
    """

    def __init__(self, radius: float, half_height: float) -> None:
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"tube radius must be finite and > 0, got {radius!r}")
        if not (math.isfinite(half_height) and half_height > 0):
            raise ValueError(f"tube half_height must be finite and > 0, got {half_height!r}")
        self.radius = float(radius)
        self.half_height = float(half_height)

    def __repr__(self) -> str:
        return f"AnalyticTube(radius={self.radius}, half_height={self.half_height})"

    def _radial(self, x: Tensor) -> Tensor:
        """Unit direction of ``(x, y, 0)`` from the axis (``+x`` on the axis)."""
        xy = torch.cat([x[:, :2], torch.zeros_like(x[:, 2:])], dim=-1)
        r = torch.linalg.vector_norm(xy, dim=-1, keepdim=True)
        on_axis = r == 0
        e_x = torch.zeros_like(x)
        e_x[:, 0] = 1.0
        return torch.where(on_axis, e_x, xy / torch.where(on_axis, 1.0, r))

    def csp(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        z = x[:, 2:].clamp(-self.half_height, self.half_height)
        return self.radius * self._radial(x) + torch.cat([torch.zeros_like(x[:, :2]), z], dim=-1)

    def normal_at(self, p: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        return self._radial(p)

    def _sample_np(self, n: int, rng: np.random.Generator) -> np.ndarray:
        phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
        z = rng.uniform(-self.half_height, self.half_height, size=n)
        return np.stack([self.radius * np.cos(phi), self.radius * np.sin(phi), z], axis=1)

    def to_mesh(self, resolution: int = 64) -> trimesh.Trimesh:
        """``resolution`` segments around, enough rings for near-square quads; outward winding."""
        if resolution < 3:
            raise ValueError(f"resolution must be >= 3, got {resolution}")
        rings = max(1, round(2 * self.half_height / (2 * np.pi * self.radius / resolution)))
        phi = np.linspace(0.0, 2.0 * np.pi, resolution, endpoint=False)
        z = np.linspace(-self.half_height, self.half_height, rings + 1)
        pp, zz = np.meshgrid(phi, z, indexing="xy")
        vertices = np.stack([self.radius * np.cos(pp).ravel(), self.radius * np.sin(pp).ravel(),
                             zz.ravel()], axis=1)
        faces = _grid_faces(resolution, rings, wrap=True)
        return trimesh.Trimesh(vertices, faces, process=False)


def _grid_faces(nu: int, nv: int, wrap: bool) -> np.ndarray:
    """Triangles of a ``(nv + 1)``-row grid of vertices (row-major; ``nu + 1`` per row, or
    ``nu`` with ``wrap``), counter-clockwise in the (u, v) parameter plane."""
    cols = nu if wrap else nu + 1
    i, j = np.meshgrid(np.arange(nv), np.arange(nu), indexing="ij")
    i, j = i.ravel(), j.ravel()
    jn = (j + 1) % cols if wrap else j + 1
    v00, v01 = i * cols + j, i * cols + jn
    v10, v11 = (i + 1) * cols + j, (i + 1) * cols + jn
    return np.concatenate([np.stack([v00, v01, v11], 1), np.stack([v00, v11, v10], 1)])


# --------------------------------------------------------------------------- training samples


@dataclass
class CSPSamples:
    """Query points with their closest surface points, surface normals and how they were drawn.

    Attributes:
        points: ``[N, 3]`` query positions.
        csp: ``[N, 3]`` exact closest surface points (the training target).
        normals: ``[N, 3]`` unit surface normals at ``csp`` (triangle normals on meshes, so
            they follow the winding; the analytic shape's orientation otherwise).
        kind: ``[N]`` uint8 :class:`~datasets.sdf_samples.SampleKind` — 0 surface (identity:
            ``csp == points``), 1 near (σ₁), 2 near (σ₂), 3 uniform; rows grouped in that order.
    """

    points: Float[Tensor, "N 3"]
    csp: Float[Tensor, "N 3"]
    normals: Float[Tensor, "N 3"]
    kind: UInt8[Tensor, " N"]

    def __len__(self) -> int:
        return self.points.shape[0]

    def to(self, device: str | torch.device) -> CSPSamples:
        """The same samples on ``device``."""
        return CSPSamples(self.points.to(device), self.csp.to(device), self.normals.to(device),
                          self.kind.to(device))

    def select(self, *kinds: SampleKind) -> CSPSamples:
        """The rows of the given kinds (e.g. queries vs identity surface points)."""
        mask = torch.zeros_like(self.kind, dtype=torch.bool)
        for k in kinds:
            mask |= self.kind == int(k)
        return CSPSamples(self.points[mask], self.csp[mask], self.normals[mask], self.kind[mask])


def _check_mesh(mesh: trimesh.Trimesh) -> None:
    """Clear errors for meshes that cannot give closest points."""
    if len(mesh.faces) == 0:
        raise ValueError("sample_csp: the mesh has no faces (an empty mesh or a point cloud)")
    vertices = np.asarray(mesh.vertices)
    if not np.isfinite(vertices).all():
        raise ValueError("sample_csp: the mesh has non-finite vertices (NaN or inf)")
    if not float(np.asarray(mesh.area_faces).sum()) > 0:
        raise ValueError(f"sample_csp: all {len(mesh.faces)} faces of the mesh are degenerate "
                         f"(zero total area)")


def sample_csp(
    source: trimesh.Trimesh | AnalyticSurface,
    *,
    n_surface: int = 250_000,
    n_near: int = 500_000,
    n_uniform: int = 25_000,
    sigmas: tuple[float, float] = DEFAULT_SIGMAS,
    bounds: tuple[float, float] = (-1.0, 1.0),
    seed: int = 0,
    distance: MeshDistance | None = None,
    dtype: torch.dtype = torch.float32,
) -> CSPSamples:
    """CSP training samples of a mesh or an analytic surface: identity points and three bands.

    * ``n_surface`` area-uniform surface points ``s``, target ``CSP = s`` (kind 0);
    * ``n_near`` points ``s + σ·ε``, ``ε ~ N(0, I₃)``: the first ``⌈n_near/2⌉`` with ``σ₁``, the
      rest with ``σ₂`` (kinds 1, 2), from fresh surface points;
    * ``n_uniform`` points uniform in the cube ``bounds³`` (kind 3).

    Every point is clamped into ``bounds³`` before its target is computed (a surface point moved
    by the clamp gets its true closest point). The defaults are the paper's counts (25 k
    uniform, 250 k + 250 k near, 250 k surface points) and its σ scaled to the ``[−1, 1]³`` frame
    (see the module docstring); for the paper's ratio of uniform points pass ``n_uniform ≈
    n_near / 20``, for the acceptance tests' "10 % uniform" ``n_uniform = n_near / 9``.

    Cost, meshes: the closest-point queries dominate, roughly as :func:`sample_sdf`'s unsigned
    part (~0.4 M/s near the surface on 2 CPU cores). Draw a pool once and batch from it.

    Args:
        source: a triangle mesh (normally in the normalised frame of
            :func:`datasets.meshes.normalize_mesh`; open meshes are fine) or an
            :class:`AnalyticSurface`.
        n_surface: identity surface points (kind 0).
        n_near: near-surface points (kinds 1 and 2).
        n_uniform: uniform points (kind 3).
        sigmas: ``(σ₁, σ₂)``, per-axis standard deviations of the near-surface offsets.
        bounds: ``(lo, hi)`` of the sampling cube, normally the field's box.
        seed: seed of the ``numpy`` generator behind every random number drawn here.
        distance: a prebuilt :class:`MeshDistance` of ``source`` (meshes only; built if ``None``).
        dtype: dtype of the analytic results; mesh results are float32 (open3d computes in it).

    Returns:
        :class:`CSPSamples` with ``n_surface + n_near + n_uniform`` rows.

    Raises:
        ValueError: for negative counts, non-positive σ, an empty box, or a mesh without faces,
            with non-finite vertices or with zero area.

    Example:
        >>> s = sample_csp(AnalyticPatch(0.5), n_surface=10, n_near=20, n_uniform=10)
        >>> len(s), torch.bincount(s.kind.long()).tolist()
        (40, [10, 10, 10, 10])
        >>> bool(s.csp[:, 2].eq(0).all()), bool(s.csp[:, :2].abs().le(0.5).all())
        (True, True)
    """
    counts = (n_surface, n_near, n_uniform)
    if min(counts) < 0:
        raise ValueError(f"sample counts must be >= 0, got {counts}")
    if len(sigmas) != 2 or not min(sigmas) > 0:
        raise ValueError(f"sigmas must be two positive floats, got {sigmas}")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi, got {bounds}")
    is_mesh = isinstance(source, trimesh.Trimesh)
    if not is_mesh and not isinstance(source, AnalyticSurface):
        raise TypeError(f"source must be a trimesh.Trimesh or an AnalyticSurface, got "
                        f"{type(source).__name__}")
    if is_mesh:
        _check_mesh(source)
    elif distance is not None:
        raise ValueError("distance is only used with a mesh source")
    rng = np.random.default_rng(seed)
    n_near_1 = (n_near + 1) // 2
    n_base = n_surface + n_near

    if is_mesh:
        base, base_normals = (t.double().numpy() for t in sample_surface(source, n_base, rng))
    else:
        base = source._sample_np(n_base, rng)
    noise = rng.standard_normal((n_near, 3))
    noise[:n_near_1] *= sigmas[0]
    noise[n_near_1:] *= sigmas[1]
    uniform = rng.uniform(lo, hi, size=(n_uniform, 3))
    points = np.concatenate([base[:n_surface], base[n_surface:] + noise, uniform])
    moved = ((points[:n_surface] < lo) | (points[:n_surface] > hi)).any(axis=1)
    np.clip(points, lo, hi, out=points)

    out_dtype = torch.float32 if is_mesh else dtype
    x = torch.from_numpy(points).to(out_dtype)
    if is_mesh:
        distance = MeshDistance(source) if distance is None else distance
        csp = x.clone()
        normals = torch.from_numpy(base_normals[:n_surface]).to(out_dtype)
        normals = torch.cat([normals, torch.zeros(n_near + n_uniform, 3, dtype=out_dtype)])
        # Queries: near and uniform points, and surface points the clamp moved off the surface.
        idx = torch.cat([torch.from_numpy(np.flatnonzero(moved)),
                         torch.arange(n_surface, len(points))])
        if idx.numel():
            c, n = distance.closest_points(x[idx])
            csp[idx], normals[idx] = c, n
    else:
        x64 = torch.from_numpy(points)  # closed forms in float64, then the requested dtype
        csp64 = source.csp(x64)
        keep = torch.from_numpy(np.concatenate([~moved, np.zeros(len(points) - n_surface, bool)]))
        csp64[keep] = x64[keep]  # identity points: exactly themselves
        csp, normals = csp64.to(out_dtype), source.normal_at(csp64).to(out_dtype)

    kind = torch.from_numpy(np.repeat(
        np.array([int(k) for k in SampleKind], dtype=np.uint8),
        [n_surface, n_near_1, n_near - n_near_1, n_uniform],
    ))
    return CSPSamples(points=x, csp=csp, normals=normals, kind=kind)

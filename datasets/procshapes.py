"""Procedural shapes with analytic SDFs (ProcShapes-2D, single discs, 3-D primitives) and loaders.

The data of DDMI's CPU-scale checks (``docs``: ``shared/methods/ddmi.md``, "Data"): every shape is
a union of one or two primitives whose signed distance is known in closed form, so the ground
truth can be evaluated at *any* continuous point — at the 32² raster the VAE sees, at the 128²
grid of the super-resolution check, or at random points for supervision.

**Storage.** A shape set holds ``N`` shapes of at most ``K`` primitive *slots* each:
``kind [N, K]`` (an index into the set's ``KINDS``, ``-1`` for an empty slot; slot 0 is never
empty) and ``params [N, K, P]`` whose layout depends on the kind (:data:`PARAMS_2D`,
:data:`PARAMS_3D`). All SDF queries are vectorised over shapes, points and slots.

**SDF.** Each primitive's SDF is exact (negative inside). The union is ``min`` over slots: exact
outside the shape and a 1-Lipschitz under-estimate of the depth inside, so ``|∇sdf| = 1`` almost
everywhere and the zero level set is exactly the union's boundary.

**2-D layout (the raster convention).** Pixel centres along each axis are
``c = linspace(−(R−1)/R, (R−1)/R, R)``. Pixel ``(row i, col j)`` of a raster is the point
``(x = c[j], y = c[i])``: ``x`` grows to the right along columns and ``y`` grows *downwards*
along rows. This is the layout of ``torch.nn.functional.grid_sample`` with
``align_corners=False`` (``grid[..., 0]`` indexes width, ``grid[..., 1]`` height), so sampling a
raster at a point ``(x, y)`` reads the pixel of that point. (It differs from
:func:`datasets.images.pixel_coordinates`, which puts ``y`` up.) 3-D voxel grids follow the same
rule: ``voxels[b, k, i, j]`` is the point ``(x = c[j], y = c[i], z = c[k])`` (grid_sample's
``D, H, W`` = ``z, y, x``).

**Sizes.** A primitive draws a size ``s`` (the radius of a disc/ball centred at the primitive's
centre that contains it) and a centre uniform in ``[−(b − s), b − s]^d`` with ``b = 0.8``, so
every shape lies inside ``[−0.8, 0.8]^d`` whatever its rotation.

Loaders for user data: :func:`load_image_folder` (a folder of images → ``[N, C, R, R]``) and
:func:`load_mesh_folder` (watertight meshes → surface point clouds and occupancy samples).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import trimesh
from jaxtyping import Bool, Float, Int
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from datasets.errors import DataError
from datasets.images import IMAGE_SUFFIXES as IMAGE_EXTENSIONS
from datasets.images import load_image
from datasets.meshes import (
    SUPPORTED_MESH_EXTENSIONS,
    Normalization,
    load_mesh,
    normalization_for,
    watertight_problem,
)
from datasets.saved import read_sidecar
from datasets.sdf_samples import MeshDistance, sample_surface
from datasets.shape_metrics import boundary_points_2d
from renderer.files import write_atomically

__all__ = [
    "BOUND",
    "PARAMS_2D",
    "PARAMS_3D",
    "pixel_centers",
    "grid_points",
    "ShapeSet2D",
    "DiscSet",
    "ShapeSet3D",
    "make_procshapes_2d",
    "make_discs",
    "make_primitives_3d",
    "sample_points",
    "load_shape_set",
    "load_image_folder",
    "MeshSamples",
    "load_mesh_folder",
]

BOUND = 0.8
"""Every generated shape lies inside ``[−BOUND, BOUND]^d``."""

PARAMS_2D: dict[str, tuple[str, ...]] = {
    "disc": ("cx", "cy", "radius"),
    "box": ("cx", "cy", "half_x", "half_y", "angle"),
    "triangle": ("x0", "y0", "x1", "y1", "x2", "y2"),
}
"""Meaning of ``params[n, k, :]`` for each 2-D kind (unused trailing entries are 0). A box's
``angle`` (radians, counter-clockwise in the ``x``–``y`` frame) rotates its local axes."""

PARAMS_3D: dict[str, tuple[str, ...]] = {
    "sphere": ("radius",),
    "box": ("half_x", "half_y", "half_z"),
    "capsule": ("radius", "half_length"),
    "cylinder": ("radius", "half_height"),
    "torus": ("major_radius", "minor_radius"),
}
"""Meaning of ``params[n, k, 12:15]`` for each 3-D kind; ``params[n, k, 0:3]`` is the centre and
``params[n, k, 3:12]`` the row-major rotation ``Rot`` (local → world, ``x = centre + Rot·p``). In
the local frame a capsule is the segment ``z ∈ [−half_length, half_length]`` swept by a ball, a
cylinder has its axis along ``z``, and a torus lies in the ``x``–``y`` plane."""

FORMAT = "fields-app/shape-set/v1"
"""The ``format`` tag of a saved shape set's JSON sidecar."""

IndexLike = Int[Tensor, " B"] | Int[np.ndarray, " B"] | Sequence[int] | None
"""Which shapes: an int tensor/array or a list of indices, or ``None`` for all of them."""


def pixel_centers(res: int, dtype: torch.dtype = torch.float32) -> Float[Tensor, " R"]:
    """``linspace(−(R−1)/R, (R−1)/R, R)``: the centres of ``R`` equal cells tiling ``[−1, 1]``.

    Example:
        >>> pixel_centers(4).tolist()
        [-0.75, -0.25, 0.25, 0.75]
    """
    if res < 1:
        raise ValueError(f"res must be positive, got {res}")
    half = (res - 1) / res
    return torch.linspace(-half, half, res, dtype=dtype)


def grid_points(res: int, dim: int = 2, dtype: torch.dtype = torch.float32) -> Float[Tensor, "G d"]:
    """All pixel (voxel) centres of a ``res^dim`` grid in raster order, as ``(x, y[, z])`` rows.

    Row-major over the raster's axes: in 2-D point ``i·R + j`` is pixel ``(row i, col j)`` =
    ``(x = c[j], y = c[i])``; in 3-D point ``(k·R + i)·R + j`` is voxel ``[k, i, j]`` =
    ``(c[j], c[i], c[k])``. So ``values.reshape(R, R)`` (``(R, R, R)``) is a raster.

    Example:
        >>> grid_points(2).tolist()
        [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
    """
    c = pixel_centers(res, dtype)
    if dim == 2:
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        return torch.stack([xx, yy], dim=-1).reshape(-1, 2)
    if dim == 3:
        zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
        return torch.stack([xx, yy, zz], dim=-1).reshape(-1, 3)
    raise ValueError(f"dim must be 2 or 3, got {dim}")


def _indices(indices: IndexLike, n: int) -> Tensor:
    if indices is None:
        return torch.arange(n)
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
    if len(idx) and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"shape index out of range for a set of {n} shapes: {idx.tolist()}")
    return idx % n if n else idx


# ------------------------------------------------------------------------------------------------
# Per-kind SDFs. Each takes points ``p [S, M, d]`` and parameters ``q [S, P]`` of S slots.


def _disc_sdf(p: Tensor, q: Tensor) -> Tensor:
    return (p - q[:, None, 0:2]).norm(dim=-1) - q[:, None, 2]


def _box_sdf_2d(p: Tensor, q: Tensor) -> Tensor:
    d = p - q[:, None, 0:2]
    cos, sin = torch.cos(q[:, None, 4]), torch.sin(q[:, None, 4])
    local = torch.stack([cos * d[..., 0] + sin * d[..., 1], -sin * d[..., 0] + cos * d[..., 1]], -1)
    return _box_local(local, q[:, None, 2:4])


def _box_local(local: Tensor, half: Tensor) -> Tensor:
    """Exact SDF of the box ``|p_i| ≤ half_i`` centred at the origin (any dimension)."""
    dist = local.abs() - half
    return dist.clamp(min=0).norm(dim=-1) + dist.max(dim=-1).values.clamp(max=0)


def _triangle_sdf(p: Tensor, q: Tensor) -> Tensor:
    v = q[:, None, 0:6].reshape(q.shape[0], 1, 3, 2)
    e = v.roll(-1, dims=2) - v  # edges v0→v1, v1→v2, v2→v0: [S, 1, 3, 2]
    w = p[:, :, None, :] - v  # [S, M, 3, 2]
    t = ((w * e).sum(-1) / (e * e).sum(-1)).clamp(0, 1)
    dist2 = (w - e * t[..., None]).square().sum(-1).min(dim=-1).values
    cross = e[..., 0] * w[..., 1] - e[..., 1] * w[..., 0]  # [S, M, 3]
    orient = torch.sign(e[:, :, 0, 0] * e[:, :, 1, 1] - e[:, :, 0, 1] * e[:, :, 1, 0])  # [S, 1]
    inside = ((cross * orient[..., None]) > 0).all(dim=-1)
    dist = dist2.sqrt()
    return torch.where(inside, -dist, dist)


def _local_3d(p: Tensor, q: Tensor) -> Tensor:
    """World points → the slot's local frame: ``Rotᵀ (p − centre)``."""
    rot = q[:, 3:12].reshape(-1, 3, 3)
    return (p - q[:, None, 0:3]) @ rot


def _sphere_sdf(p: Tensor, q: Tensor) -> Tensor:
    return (p - q[:, None, 0:3]).norm(dim=-1) - q[:, None, 12]


def _box_sdf_3d(p: Tensor, q: Tensor) -> Tensor:
    return _box_local(_local_3d(p, q), q[:, None, 12:15])


def _capsule_sdf(p: Tensor, q: Tensor) -> Tensor:
    local = _local_3d(p, q)
    half = q[:, None, 13]
    axis = torch.stack(
        [torch.zeros_like(local[..., 0]), torch.zeros_like(local[..., 0]),
         torch.maximum(torch.minimum(local[..., 2], half), -half)], dim=-1)
    return (local - axis).norm(dim=-1) - q[:, None, 12]


def _cylinder_sdf(p: Tensor, q: Tensor) -> Tensor:
    local = _local_3d(p, q)
    radial = local[..., :2].norm(dim=-1) - q[:, None, 12]
    axial = local[..., 2].abs() - q[:, None, 13]
    d = torch.stack([radial, axial], dim=-1)
    return d.clamp(min=0).norm(dim=-1) + d.max(dim=-1).values.clamp(max=0)


def _torus_sdf(p: Tensor, q: Tensor) -> Tensor:
    local = _local_3d(p, q)
    ring = local[..., :2].norm(dim=-1) - q[:, None, 12]
    return torch.stack([ring, local[..., 2]], dim=-1).norm(dim=-1) - q[:, None, 13]


# ------------------------------------------------------------------------------------------------
# Shape sets.


@dataclass
class _ShapeSet:
    """Common storage and queries of :class:`ShapeSet2D` and :class:`ShapeSet3D`."""

    kind: Int[Tensor, "N K"]
    params: Float[Tensor, "N K P"]
    meta: dict = field(default_factory=dict)

    KINDS: ClassVar[tuple[str, ...]] = ()
    DIM: ClassVar[int] = 0
    N_PARAMS: ClassVar[int] = 0
    _SDFS: ClassVar[tuple] = ()  # per-kind SDFs, in KINDS order

    def __post_init__(self) -> None:
        self.kind = self.kind.long().cpu()
        self.params = self.params.float().cpu()
        name = type(self).__name__
        if self.params.shape[:2] != self.kind.shape or self.params.shape[2] != self.N_PARAMS:
            raise ValueError(
                f"{name}: params must be [N, K, {self.N_PARAMS}] matching kind [N, K]; got "
                f"{list(self.params.shape)} and {list(self.kind.shape)}"
            )
        if self.kind.numel() and (
            self.kind.min() < -1 or self.kind.max() >= len(self.KINDS)
        ):
            raise ValueError(f"{name}: kind values must be -1 or index {self.KINDS}")
        if len(self.kind) and (self.kind[:, 0] < 0).any():
            raise ValueError(f"{name}: every shape needs a primitive in slot 0")
        if not torch.isfinite(self.params).all():
            raise ValueError(f"{name}: params must be finite")

    def __len__(self) -> int:
        return self.kind.shape[0]

    def subset(self, indices: IndexLike) -> _ShapeSet:
        """A new set of the chosen shapes (same class, same meta)."""
        idx = _indices(indices, len(self))
        return type(self)(self.kind[idx].clone(), self.params[idx].clone(), dict(self.meta))

    def n_primitives(self) -> Int[Tensor, " N"]:
        """Number of primitives (non-empty slots) of every shape."""
        return (self.kind >= 0).sum(dim=1)

    def primitives(self, index: int) -> list[dict[str, object]]:
        """Shape ``index`` as a readable list of ``{"kind": ..., <param>: value, ...}`` (3-D
        entries also carry ``center`` and the row-major ``rotation``)."""
        out: list[dict[str, object]] = []
        for k in range(self.kind.shape[1]):
            kind = int(self.kind[index, k])
            if kind < 0:
                continue
            name = self.KINDS[kind]
            values = self.params[index, k].tolist()
            entry: dict[str, object] = {"kind": name}
            if self.DIM == 3:
                entry.update(center=values[0:3], rotation=values[3:12])
                values = values[12:]
            names = (PARAMS_2D if self.DIM == 2 else PARAMS_3D)[name]
            entry.update({n: float(v) for n, v in zip(names, values)})
            out.append(entry)
        return out

    def sdf(
        self, indices: IndexLike, x: Float[Tensor, "B M d"] | Float[Tensor, "M d"]
    ) -> Float[Tensor, "B M"]:
        """Signed distance (negative inside) of shapes ``indices`` at points ``x``.

        Args:
            indices: the ``B`` shapes (``None``: all ``N``).
            x: ``[B, M, d]`` points per shape, or ``[M, d]`` shared by all of them.

        Returns:
            ``[B, M]`` in ``x``'s dtype (parameters are cast to it; pass float64 for checks).
        """
        idx = _indices(indices, len(self))
        b = len(idx)
        if x.shape[-1] != self.DIM:
            raise ValueError(f"x must have {self.DIM} coordinates, got shape {list(x.shape)}")
        if x.ndim == 2:
            x = x.expand(b, *x.shape)
        elif x.shape[0] != b:
            raise ValueError(f"x has {x.shape[0]} point sets for {b} shapes")
        kind = self.kind[idx].to(x.device)  # [B, K]
        params = self.params[idx].to(device=x.device, dtype=x.dtype)
        k_slots, m = kind.shape[1], x.shape[1]
        flat_kind = kind.reshape(-1)
        flat_params = params.reshape(b * k_slots, -1)
        flat_x = x[:, None].expand(b, k_slots, m, self.DIM).reshape(b * k_slots, m, self.DIM)
        out = torch.full((b * k_slots, m), torch.inf, dtype=x.dtype, device=x.device)
        for k, fn in enumerate(self._SDFS):
            rows = (flat_kind == k).nonzero().squeeze(1)
            if len(rows):
                out = out.index_put((rows,), fn(flat_x[rows], flat_params[rows]))
        return out.reshape(b, k_slots, m).min(dim=1).values

    def sdf_chunked(
        self, index: int, x: Float[Tensor, "M d"], chunk: int = 1 << 16
    ) -> Float[Tensor, " M"]:
        """The SDF of one shape at many points, ``chunk`` points at a time."""
        parts = [self.sdf([index], c)[0] for c in x.split(chunk)] if len(x) else [x[:, 0]]
        return torch.cat(parts)

    def occupancy(
        self, indices: IndexLike, x: Float[Tensor, "B M d"] | Float[Tensor, "M d"]
    ) -> Bool[Tensor, "B M"]:
        """``sdf < 0`` (inside)."""
        return self.sdf(indices, x) < 0

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``<path>.safetensors`` (``kind``, ``params``) and a ``<path>.json`` sidecar.

        Returns:
            The ``.safetensors`` path; both files are written atomically.
        """
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        tensors = {"kind": self.kind.contiguous(), "params": self.params.contiguous()}
        sidecar = {
            "format": FORMAT, "tensors": path.name, "class": type(self).__name__,
            "dim": self.DIM, "kinds": list(self.KINDS), "meta": self.meta,
        }
        write_atomically(path, st_save(tensors), what="shape-set tensors")
        text = json.dumps(sidecar, indent=1) + "\n"
        write_atomically(path.with_suffix(".json"), text.encode(), what="shape-set sidecar")
        return path


@dataclass
class ShapeSet2D(_ShapeSet):
    """ProcShapes-2D: ``N`` unions of primitives in ``[−1, 1]²`` (see the module docstring).

    Attributes:
        kind: ``[N, K]`` index into :attr:`KINDS` = ``("disc", "box", "triangle")``, ``-1`` empty.
        params: ``[N, K, 6]`` per :data:`PARAMS_2D`.
        meta: how the set was made (JSON-able; saved with it).

    Example:
        >>> shapes = make_procshapes_2d(4, seed=0)
        >>> shapes.sdf(None, torch.zeros(1, 2)).shape, shapes.raster(32).shape
        (torch.Size([4, 1]), torch.Size([4, 1, 32, 32]))
    """

    KINDS: ClassVar[tuple[str, ...]] = ("disc", "box", "triangle")
    DIM: ClassVar[int] = 2
    N_PARAMS: ClassVar[int] = 6
    _SDFS: ClassVar[tuple] = (_disc_sdf, _box_sdf_2d, _triangle_sdf)

    def smooth_occupancy(
        self,
        indices: IndexLike,
        x: Float[Tensor, "B M 2"] | Float[Tensor, "M 2"],
        temperature: float = 0.01,
    ) -> Float[Tensor, "B M"]:
        """``σ(−sdf / temperature)``: ≈ 1 inside, 0.5 on the boundary, ≈ 0 outside."""
        return torch.sigmoid(-self.sdf(indices, x) / temperature)

    def clamped_sdf(
        self, indices: IndexLike, x: Float[Tensor, "B M 2"] | Float[Tensor, "M 2"],
        clamp: float = 0.1,
    ) -> Float[Tensor, "B M"]:
        """The SDF clamped to ``[−clamp, clamp]``."""
        return self.sdf(indices, x).clamp(-clamp, clamp)

    def field(
        self,
        indices: IndexLike,
        x: Float[Tensor, "B M 2"] | Float[Tensor, "M 2"],
        target: str = "occupancy",
    ) -> Float[Tensor, "B M"]:
        """One of the training targets as floats: ``"occupancy"`` (0/1), ``"smooth"``
        (:meth:`smooth_occupancy`) or ``"sdf"`` (:meth:`clamped_sdf`)."""
        if target == "occupancy":
            return self.occupancy(indices, x).to(x.dtype)
        if target == "smooth":
            return self.smooth_occupancy(indices, x)
        if target == "sdf":
            return self.clamped_sdf(indices, x)
        raise ValueError(f"target must be 'occupancy', 'smooth' or 'sdf', got {target!r}")

    def raster(
        self, res: int, indices: IndexLike = None, target: str = "occupancy"
    ) -> Float[Tensor, "B 1 R R"]:
        """:meth:`field` at the pixel centres of a ``res × res`` raster: ``[B, 1, res, res]``.

        Pixel ``(row i, col j)`` is the point ``(x = c[j], y = c[i])``, ``c`` =
        :func:`pixel_centers` (``y`` down the rows, as ``grid_sample`` reads it).
        """
        idx = _indices(indices, len(self))
        pts = grid_points(res, 2)
        rows = [self.field(idx[s : s + 256], pts, target) for s in range(0, len(idx), 256)]
        values = torch.cat(rows) if rows else torch.zeros(0, res * res)
        return values.reshape(len(idx), 1, res, res)

    def boundary_points(
        self, indices: IndexLike, n: int = 256, res: int = 128
    ) -> Float[Tensor, "B n 2"]:
        """``n`` points on each shape's boundary by marching squares of the SDF on the ``res²``
        pixel-centre grid (:func:`datasets.shape_metrics.boundary_points_2d`), i.e. the same
        discretisation as a generated field rendered at ``res``."""
        idx = _indices(indices, len(self))
        out = [
            boundary_points_2d(lambda x, i=int(i): self.sdf([i], x)[0], n=n, res=res)
            for i in idx
        ]
        return torch.stack(out) if out else torch.zeros(0, n, 2)


@dataclass
class DiscSet(ShapeSet2D):
    """A :class:`ShapeSet2D` of single discs, with :attr:`center` and :attr:`radius` at hand.

    Example:
        >>> discs = make_discs(3, seed=0)
        >>> discs.radius.shape, discs.center.shape
        (torch.Size([3]), torch.Size([3, 2]))
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind.shape[1] != 1 or (self.kind != 0).any():
            raise ValueError("DiscSet: every shape must be exactly one disc")

    @property
    def center(self) -> Float[Tensor, "N 2"]:
        """Disc centres ``(x, y)``."""
        return self.params[:, 0, 0:2]

    @property
    def radius(self) -> Float[Tensor, " N"]:
        """Disc radii."""
        return self.params[:, 0, 2]


@dataclass
class ShapeSet3D(_ShapeSet):
    """Unions of 3-D primitives in ``[−1, 1]³`` with exact SDFs (see the module docstring).

    Attributes:
        kind: ``[N, K]`` index into :attr:`KINDS` = ``("sphere", "box", "capsule", "cylinder",
            "torus")``, ``-1`` for an empty slot.
        params: ``[N, K, 15]``: centre (3), rotation (9, row-major, local → world), then the
            kind's parameters per :data:`PARAMS_3D`.
        meta: how the set was made (JSON-able; saved with it).

    Example:
        >>> shapes = make_primitives_3d(2, seed=0)
        >>> pc = shapes.point_cloud(None, 100, generator=torch.Generator().manual_seed(0))
        >>> pc.shape, bool(shapes.sdf(None, pc).abs().max() < 1e-4)
        (torch.Size([2, 100, 3]), True)
    """

    KINDS: ClassVar[tuple[str, ...]] = ("sphere", "box", "capsule", "cylinder", "torus")
    DIM: ClassVar[int] = 3
    N_PARAMS: ClassVar[int] = 15
    _SDFS: ClassVar[tuple] = (_sphere_sdf, _box_sdf_3d, _capsule_sdf, _cylinder_sdf, _torus_sdf)

    def surface_area(self) -> Float[Tensor, "N K"]:
        """Surface area of every primitive on its own (0 for empty slots)."""
        d = self.params[..., 12:15].double()
        a, b, c = d[..., 0], d[..., 1], d[..., 2]
        pi = math.pi
        areas = torch.stack([
            4 * pi * a * a,  # sphere
            8 * (a * b + b * c + a * c),  # box
            4 * pi * a * b + 4 * pi * a * a,  # capsule: tube + two hemispheres
            4 * pi * a * b + 2 * pi * a * a,  # cylinder: side + two caps
            4 * pi * pi * a * b,  # torus
        ], dim=-1)
        kind = self.kind.clamp(min=0)
        area = areas.gather(-1, kind[..., None])[..., 0]
        return torch.where(self.kind >= 0, area, torch.zeros_like(area)).float()

    def point_cloud(
        self,
        indices: IndexLike,
        n_points: int,
        noise: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "B n 3"]:
        """``n_points`` area-uniform samples of each shape's surface, plus ``N(0, noise²)``.

        Points are drawn on each primitive's surface analytically (a primitive chosen with
        probability ∝ its area, then uniformly on it), and those strictly inside another
        primitive of the union are rejected, so the result is uniform on the union's boundary.
        With ``noise = 0`` every point satisfies ``|sdf| ≲ 1e-6``.
        """
        idx = _indices(indices, len(self))
        out = torch.empty(len(idx), n_points, 3)
        for row, i in enumerate(idx.tolist()):
            out[row] = self._surface_samples(i, n_points, generator)
        if noise > 0:
            out = out + noise * torch.randn(out.shape, generator=generator)
        return out

    def _surface_samples(self, i: int, n: int, generator: torch.Generator | None) -> Tensor:
        slots = (self.kind[i] >= 0).nonzero().squeeze(1)
        kind, params = self.kind[i, slots], self.params[i, slots].double()
        area = self.surface_area()[i, slots].double()
        got: list[Tensor] = []
        count = 0
        for _ in range(100):
            m = max(64, int(1.5 * (n - count)) + 16)
            slot = torch.multinomial(area / area.sum(), m, replacement=True, generator=generator)
            u = torch.rand(m, 4, generator=generator, dtype=torch.float64)
            local = _sample_local_3d(kind[slot], params[slot, 12:15], u)
            rot = params[slot, 3:12].reshape(m, 3, 3)
            world = params[slot, 0:3] + (rot @ local[..., None])[..., 0]
            # Keep points not strictly inside another primitive of the union.
            if len(slots) > 1:
                per = torch.stack([
                    self._SDFS[int(k)](world[None], params[s : s + 1])[0]
                    for s, k in enumerate(kind.tolist())
                ])  # [S, m]
                per[slot, torch.arange(m)] = torch.inf
                world = world[per.min(dim=0).values >= 0]
            got.append(world.float())
            count += len(world)
            if count >= n:
                return torch.cat(got)[:n]
        raise RuntimeError(f"shape {i}: could not draw {n} surface points (union hides them)")

    def sample_occupancy(
        self,
        indices: IndexLike,
        n: int,
        generator: torch.Generator | None = None,
        near_sigma: float = 0.02,
    ) -> tuple[Float[Tensor, "B n 3"], Float[Tensor, "B n"]]:
        """Occupancy supervision: ``n`` query points per shape and their occupancy (0/1 floats).

        The first ``n // 2`` points are surface samples (:meth:`point_cloud`) displaced by
        ``N(0, near_sigma²)``; the rest are uniform in ``[−1, 1]³``.
        """
        idx = _indices(indices, len(self))
        n_near = n // 2
        near = self.point_cloud(idx, n_near, noise=near_sigma, generator=generator)
        uniform = torch.rand(len(idx), n - n_near, 3, generator=generator) * 2 - 1
        points = torch.cat([near, uniform], dim=1)
        return points, self.occupancy(idx, points).float()

    def voxels(self, res: int, indices: IndexLike = None) -> Bool[Tensor, "B R R R"]:
        """Occupancy at voxel centres, ``voxels[b, k, i, j]`` = point ``(c[j], c[i], c[k])``."""
        idx = _indices(indices, len(self))
        pts = grid_points(res, 3)
        out = torch.empty(len(idx), res, res, res, dtype=torch.bool)
        for row, i in enumerate(idx.tolist()):
            out[row] = (self.sdf_chunked(i, pts) < 0).reshape(res, res, res)
        return out

    def mesh(self, index: int, resolution: int = 64) -> trimesh.Trimesh:
        """Marching cubes of shape ``index``'s analytic SDF on a ``resolution³`` grid over
        ``[−1, 1]³`` (:func:`renderer.meshing.extract_mesh`, coarse to fine)."""
        from renderer.meshing import extract_mesh

        result = extract_mesh(
            lambda x: self.sdf([index], x)[0], resolution=resolution,
            coarse_resolution=min(32, resolution),
        )
        return result.mesh

    def is_watertight(self, index: int, resolution: int = 64) -> bool:
        """Whether the marching-cubes mesh (:meth:`mesh`) of shape ``index`` is watertight."""
        return bool(self.mesh(index, resolution).is_watertight)


def _sample_local_3d(kind: Tensor, dims: Tensor, u: Tensor) -> Tensor:
    """Uniform points on each primitive's surface in its local frame, from 4 uniforms each."""
    a, b = dims[:, 0], dims[:, 1]
    u1, u2, u3, u4 = u.unbind(-1)
    two_pi = 2 * math.pi
    out = torch.zeros(len(kind), 3, dtype=dims.dtype)

    def direction(s: Tensor, t: Tensor) -> Tensor:  # uniform on the unit sphere
        z = 2 * s - 1
        r = (1 - z * z).clamp(min=0).sqrt()
        return torch.stack([r * torch.cos(two_pi * t), r * torch.sin(two_pi * t), z], -1)

    m = kind == 0  # sphere
    out[m] = a[m, None] * direction(u1[m], u2[m])

    m = kind == 1  # box: a face pair with probability ∝ its area, a side, a point on it
    if m.any():
        h = dims[m]
        pair = torch.stack([h[:, 1] * h[:, 2], h[:, 0] * h[:, 2], h[:, 0] * h[:, 1]], -1)
        cdf = (pair / pair.sum(-1, keepdim=True)).cumsum(-1)
        axis = (u1[m, None] > cdf[:, :2]).sum(-1)
        side = torch.where(u4[m] < 0.5, -1.0, 1.0).to(h.dtype)
        face_pts = torch.stack([u2[m], u3[m]], -1) * 2 - 1
        other = torch.tensor([[1, 2], [0, 2], [0, 1]])[axis]
        pts = torch.zeros_like(h)
        pts.scatter_(1, other, face_pts * h.gather(1, other))
        pts.scatter_(1, axis[:, None], (side * h.gather(1, axis[:, None])[:, 0])[:, None])
        out[m] = pts

    m = kind == 2  # capsule: tube with probability 4πrh / (4πrh + 4πr²), else a hemisphere
    if m.any():
        r, hl = a[m], b[m]
        tube = u1[m] < hl / (hl + r)
        phi = two_pi * u3[m]
        tube_pts = torch.stack([r * torch.cos(phi), r * torch.sin(phi), (2 * u2[m] - 1) * hl], -1)
        d = direction(u2[m], u3[m])
        cap_pts = r[:, None] * d
        cap_pts[:, 2] += torch.sign(d[:, 2]) * hl
        out[m] = torch.where(tube[:, None], tube_pts, cap_pts)

    m = kind == 3  # cylinder: side 4πrh, caps 2πr²
    if m.any():
        r, hh = a[m], b[m]
        side = u1[m] < 2 * hh / (2 * hh + r)
        phi = two_pi * u3[m]
        side_pts = torch.stack([r * torch.cos(phi), r * torch.sin(phi), (2 * u2[m] - 1) * hh], -1)
        rho = r * u2[m].sqrt()
        z = torch.where(u4[m] < 0.5, -hh, hh)
        cap_pts = torch.stack([rho * torch.cos(phi), rho * torch.sin(phi), z], -1)
        out[m] = torch.where(side[:, None], side_pts, cap_pts)

    m = kind == 4  # torus: the tube angle v has density ∝ R + r cos v; invert its CDF by Newton
    if m.any():
        big, r = a[m], b[m]
        target = two_pi * big * u2[m]
        v = two_pi * u2[m]
        for _ in range(30):
            v = v - (big * v + r * torch.sin(v) - target) / (big + r * torch.cos(v))
        phi = two_pi * u3[m]
        ring = big + r * torch.cos(v)
        out[m] = torch.stack([ring * torch.cos(phi), ring * torch.sin(phi), r * torch.sin(v)], -1)
    return out


# ------------------------------------------------------------------------------------------------
# Generators.


def _check_count(n: int, max_primitives: int) -> None:
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if max_primitives < 1:
        raise ValueError(f"max_primitives must be at least 1, got {max_primitives}")


def _check_kinds(kinds: Sequence[str], names: tuple[str, ...]) -> None:
    unknown = [k for k in kinds if k not in names]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {names}, got {tuple(kinds)}")


def _check_range(name: str, lo: float, hi: float, top: float) -> None:
    if not 0 < lo <= hi < top:
        raise ValueError(f"{name} must satisfy 0 < low <= high < {top}, got ({lo}, {hi})")


def make_procshapes_2d(
    n: int,
    seed: int = 0,
    kinds: Sequence[str] = ("disc", "box", "triangle"),
    max_primitives: int = 2,
    size_range: tuple[float, float] = (0.2, 0.5),
    rotate_boxes: bool = True,
) -> ShapeSet2D:
    """ProcShapes-2D: ``n`` unions of 1 … ``max_primitives`` primitives (count uniform).

    Each primitive's kind is uniform over ``kinds``; its size ``s ~ U(size_range)`` is the radius
    of the circle around its centre that contains it, and the centre is uniform in
    ``[−(0.8 − s), 0.8 − s]²``:

    * disc: radius ``s``;
    * box: half-diagonal ``s`` at an angle ``φ ~ U(π/4 ± 0.4)`` to its ``x`` axis (aspect up to
      ~2.4), rotated by ``U(0, π/2)`` (0 when ``rotate_boxes`` is false);
    * triangle: vertices on the circle of radius ``s`` at ``θ₀ + 2πk/3 + U(±0.35)``, ``θ₀``
      uniform, stored counter-clockwise.

    Reproducible: all randomness comes from ``numpy.random.default_rng(seed)``.
    """
    _check_count(n, max_primitives)
    _check_range("size_range", size_range[0], size_range[1], BOUND)
    names = ShapeSet2D.KINDS
    _check_kinds(kinds, names)
    rng = np.random.default_rng(seed)
    kind = np.full((n, max_primitives), -1, dtype=np.int64)
    params = np.zeros((n, max_primitives, 6))
    for i in range(n):
        for k in range(int(rng.integers(1, max_primitives + 1))):
            name = kinds[int(rng.integers(len(kinds)))]
            s = rng.uniform(*size_range)
            cx, cy = rng.uniform(-(BOUND - s), BOUND - s, size=2)
            if name == "disc":
                p = [cx, cy, s]
            elif name == "box":
                phi = rng.uniform(math.pi / 4 - 0.4, math.pi / 4 + 0.4)
                angle = rng.uniform(0, math.pi / 2) if rotate_boxes else 0.0
                p = [cx, cy, s * math.cos(phi), s * math.sin(phi), angle]
            else:
                theta = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(3) / 3
                theta = theta + rng.uniform(-0.35, 0.35, size=3)
                p = np.stack([cx + s * np.cos(theta), cy + s * np.sin(theta)], -1).reshape(-1)
            kind[i, k] = names.index(name)
            params[i, k, : len(p)] = p
    meta = {"generator": "make_procshapes_2d", "n": n, "seed": seed, "kinds": list(kinds),
            "max_primitives": max_primitives, "size_range": list(size_range),
            "rotate_boxes": rotate_boxes}
    return ShapeSet2D(torch.from_numpy(kind), torch.from_numpy(params).float(), meta)


def make_discs(
    n: int, seed: int = 0, radius_range: tuple[float, float] = (0.2, 0.6)
) -> DiscSet:
    """``n`` single discs: radius ``r ~ U(radius_range)``, centre uniform in
    ``[−(0.8 − r), 0.8 − r]²`` (so each disc lies inside ``[−0.8, 0.8]²``)."""
    _check_count(n, 1)
    _check_range("radius_range", radius_range[0], radius_range[1], BOUND)
    rng = np.random.default_rng(seed)
    radius = rng.uniform(*radius_range, size=n)
    center = rng.uniform(-1, 1, size=(n, 2)) * (BOUND - radius)[:, None]
    params = np.zeros((n, 1, 6))
    params[:, 0, 0:2], params[:, 0, 2] = center, radius
    meta = {"generator": "make_discs", "n": n, "seed": seed, "radius_range": list(radius_range)}
    return DiscSet(torch.zeros(n, 1, dtype=torch.long), torch.from_numpy(params).float(), meta)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def make_primitives_3d(
    n: int,
    seed: int = 0,
    kinds: Sequence[str] = ("sphere", "box", "capsule", "cylinder", "torus"),
    max_primitives: int = 2,
    size_range: tuple[float, float] = (0.3, 0.55),
    rotate: bool = True,
) -> ShapeSet3D:
    """``n`` unions of 1 … ``max_primitives`` 3-D primitives (count and kind uniform).

    Size ``s ~ U(size_range)`` is the radius of the ball around the centre containing the
    primitive, centre uniform in ``[−(0.8 − s), 0.8 − s]³``, rotation uniformly random (identity
    when ``rotate`` is false):

    * sphere: radius ``s``;
    * box: half-sides ``s·v/|v|``, ``v ~ U(0.4, 1)³``;
    * capsule: radius ``s·U(0.25, 0.45)``, half-length ``s − radius``;
    * cylinder: radius ``s·sin φ``, half-height ``s·cos φ``, ``φ ~ U(0.5, 1.1)``;
    * torus: minor radius ``s·U(0.25, 0.4)``, major radius ``s − minor``.

    Reproducible: all randomness comes from ``numpy.random.default_rng(seed)``.
    """
    _check_count(n, max_primitives)
    _check_range("size_range", size_range[0], size_range[1], BOUND)
    names = ShapeSet3D.KINDS
    _check_kinds(kinds, names)
    rng = np.random.default_rng(seed)
    kind = np.full((n, max_primitives), -1, dtype=np.int64)
    params = np.zeros((n, max_primitives, 15))
    for i in range(n):
        for k in range(int(rng.integers(1, max_primitives + 1))):
            name = kinds[int(rng.integers(len(kinds)))]
            s = rng.uniform(*size_range)
            center = rng.uniform(-(BOUND - s), BOUND - s, size=3)
            rot = _random_rotation(rng) if rotate else np.eye(3)
            if name == "sphere":
                dims = [s, 0.0, 0.0]
            elif name == "box":
                v = rng.uniform(0.4, 1.0, size=3)
                dims = list(s * v / np.linalg.norm(v))
            elif name == "capsule":
                r = s * rng.uniform(0.25, 0.45)
                dims = [r, s - r, 0.0]
            elif name == "cylinder":
                phi = rng.uniform(0.5, 1.1)
                dims = [s * math.sin(phi), s * math.cos(phi), 0.0]
            else:
                r = s * rng.uniform(0.25, 0.4)
                dims = [s - r, r, 0.0]
            kind[i, k] = names.index(name)
            params[i, k] = np.concatenate([center, rot.reshape(-1), dims])
    meta = {"generator": "make_primitives_3d", "n": n, "seed": seed, "kinds": list(kinds),
            "max_primitives": max_primitives, "size_range": list(size_range), "rotate": rotate}
    return ShapeSet3D(torch.from_numpy(kind), torch.from_numpy(params).float(), meta)


def load_shape_set(path: str | os.PathLike[str]) -> ShapeSet2D | ShapeSet3D:
    """Read a set written by ``save`` (``path`` with or without ``.safetensors``).

    Raises:
        DataError: a missing, unreadable or inconsistent file (the message names it).
    """
    path, sidecar = read_sidecar(path, "shape set")
    side_path = path.with_suffix(".json")
    classes = {c.__name__: c for c in (ShapeSet2D, DiscSet, ShapeSet3D)}
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise DataError(side_path, f"not a shape-set sidecar (expected format {FORMAT!r})")
    name = sidecar.get("class", "")
    cls = classes.get(name) if isinstance(name, str) else None
    if cls is None:
        raise DataError(side_path, f"unknown shape-set class {sidecar.get('class')!r}")
    try:
        tensors = st_load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types
        raise DataError(path, f"unreadable safetensors file ({exc})") from None
    kind, params = tensors.get("kind"), tensors.get("params")
    if kind is None or params is None:
        raise DataError(path, f"missing tensors: expected kind and params, found {sorted(tensors)}")
    if kind.ndim != 2 or kind.dtype.is_floating_point or kind.dtype == torch.bool:
        raise DataError(path, f"kind must be an [N, K] integer tensor, got {kind.dtype} "
                        f"{list(kind.shape)}")
    if params.ndim != 3 or not params.dtype.is_floating_point:
        raise DataError(path, f"params must be an [N, K, P] float tensor, got {params.dtype} "
                        f"{list(params.shape)}")
    try:
        return cls(kind, params, dict(sidecar.get("meta") or {}))
    except (TypeError, ValueError) as exc:  # TypeError: meta is not a mapping
        raise DataError(path, f"inconsistent shape-set data ({exc})") from None


# ------------------------------------------------------------------------------------------------
# 2-D supervision.


def sample_points(
    shapes: ShapeSet2D,
    idx: IndexLike,
    n_random: int = 512,
    grid_res: int = 32,
    generator: torch.Generator | None = None,
    fine: bool = False,
    target: str = "occupancy",
) -> tuple[Float[Tensor, "B M 2"], Float[Tensor, "B M"]]:
    """Supervision for a batch of 2-D shapes: points and their :meth:`ShapeSet2D.field` values.

    Per shape, ``M = n_random + grid_res² (+ (2·grid_res)² if fine)`` points: first
    ``n_random`` uniform in ``[−1, 1]²`` (different for every shape), then the ``grid_res²``
    pixel centres in raster order (:func:`grid_points`), then — with ``fine`` — the pixel
    centres of the 2× finer grid.

    Returns:
        ``points [B, M, 2]`` and ``targets [B, M]`` (float32; 0/1 for ``"occupancy"``).
    """
    index = _indices(idx, len(shapes))
    b = len(index)
    parts = [torch.rand(b, n_random, 2, generator=generator) * 2 - 1]
    parts.append(grid_points(grid_res, 2).expand(b, -1, -1))
    if fine:
        parts.append(grid_points(2 * grid_res, 2).expand(b, -1, -1))
    points = torch.cat(parts, dim=1)
    return points, shapes.field(index, points, target)


# ------------------------------------------------------------------------------------------------
# Loaders for user data.


def load_image_folder(
    folder: str | os.PathLike[str], res: int, channels: int = 1
) -> Float[Tensor, "N C R R"]:
    """Every image in ``folder`` (sorted by name), centre-cropped to a square and resized.

    Files with an image extension (``.png``, ``.jpg``, …; see :mod:`datasets.images`) are read
    with :func:`datasets.images.load_image`; other files are ignored. Non-square images are
    cropped to their centred largest square, then resized to ``res × res`` (bilinear with
    antialiasing). ``channels = 1`` converts colour to luminance (Rec. 709 weights),
    ``channels = 3`` repeats grey images.

    Returns:
        ``[N, channels, res, res]`` float32 in ``[0, 1]`` (row 0 at the top, i.e. ``y = −1`` in
        the raster convention).

    Raises:
        DataError: the folder is missing or holds no image, or an image cannot be read (the
            message names that file).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if res < 1:
        raise ValueError(f"res must be positive, got {res}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "image folder not found (or not a directory)")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(folder, f"no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    out = []
    for path in files:
        img = load_image(path).permute(2, 0, 1)  # [C, H, W]
        h, w = img.shape[1:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = img[:, top : top + side, left : left + side]
        if channels == 1 and img.shape[0] == 3:
            weights = torch.tensor([0.2126, 0.7152, 0.0722])
            img = (img * weights[:, None, None]).sum(0, keepdim=True)
        elif channels == 3 and img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        if side != res:
            img = torch.nn.functional.interpolate(
                img[None], size=(res, res), mode="bilinear", align_corners=False,
                antialias=side > res,
            )[0]
        out.append(img.clamp(0, 1))
    return torch.stack(out).contiguous()


@dataclass
class MeshSamples:
    """Point clouds and occupancy samples of a folder of meshes (:func:`load_mesh_folder`).

    Attributes:
        points: ``[S, P, 3]`` surface samples (area-uniform, plus the requested noise).
        queries: ``[S, Q, 3]`` query points: half near the surface, half uniform in ``[−1, 1]³``.
        occupancy: ``[S, Q]`` 1.0 inside the mesh, 0.0 outside.
        files: the mesh files, in order.
        normalizations: each mesh's world → unit-frame map (:meth:`Normalization.to_dict`).
    """

    points: Float[Tensor, "S P 3"]
    queries: Float[Tensor, "S Q 3"]
    occupancy: Float[Tensor, "S Q"]
    files: list[str]
    normalizations: list[dict]

    def __len__(self) -> int:
        return self.points.shape[0]


def load_mesh_folder(
    folder: str | os.PathLike[str],
    n_points: int = 3000,
    n_queries: int = 4096,
    seed: int = 0,
    noise: float = 0.0,
    near_sigma: float = 0.02,
    extent: float = 0.9,
) -> MeshSamples:
    """Sample every watertight mesh in ``folder`` for point-cloud → occupancy training.

    Each mesh (:func:`datasets.meshes.load_mesh`) is normalised on its own: its bounding box is
    centred at the origin and its longest side scaled to ``2·extent``, so it fits
    ``[−extent, extent]³`` (relative sizes between meshes are *not* kept). Then ``n_points``
    area-uniform surface samples (:func:`datasets.sdf_samples.sample_surface`, plus
    ``N(0, noise²)``), and ``n_queries`` query points — the first half surface samples displaced
    by ``N(0, near_sigma²)``, the rest uniform in ``[−1, 1]³`` — labelled by ray-parity
    occupancy (:meth:`datasets.sdf_samples.MeshDistance.occupancy`). Files without a mesh
    extension are ignored; meshes are taken in name order.

    Raises:
        DataError: the folder is missing or holds no mesh file; a mesh does not load; a mesh is
            not watertight (its inside is undefined). Each message names the file.
    """
    if n_points < 1 or n_queries < 2:
        raise ValueError("n_points must be >= 1 and n_queries >= 2")
    if not 0 < extent <= 1:
        raise ValueError(f"extent must be in (0, 1], got {extent}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "mesh folder not found (or not a directory)")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in SUPPORTED_MESH_EXTENSIONS
    )
    if not files:
        raise DataError(
            folder, f"no mesh files found (looked for {', '.join(SUPPORTED_MESH_EXTENSIONS)})"
        )
    seeds = np.random.SeedSequence(seed).spawn(len(files))
    points, queries, occupancy, norms = [], [], [], []
    for path, ss in zip(files, seeds):
        mesh = load_mesh(path)
        problem = watertight_problem(mesh)
        if problem is not None:
            raise DataError(
                path, f"mesh is not watertight ({problem}): its occupancy is undefined; "
                "repair or close it first"
            )
        if not mesh.is_winding_consistent:
            trimesh.repair.fix_winding(mesh)
        if mesh.volume < 0:
            mesh.invert()
        base = normalization_for(mesh)
        norm = Normalization(center=base.center, scale=base.scale * extent)
        unit = norm.apply_mesh(mesh)
        rng = np.random.default_rng(ss)
        pc, _ = sample_surface(unit, n_points, seed=rng)
        if noise > 0:
            pc = pc + torch.from_numpy(rng.normal(0, noise, pc.shape)).float()
        n_near = n_queries // 2
        near, _ = sample_surface(unit, n_near, seed=rng)
        near = near + torch.from_numpy(rng.normal(0, near_sigma, near.shape)).float()
        uniform = torch.from_numpy(rng.uniform(-1, 1, (n_queries - n_near, 3))).float()
        q = torch.cat([near, uniform])
        points.append(pc)
        queries.append(q)
        occupancy.append(MeshDistance(unit).occupancy(q).float())
        norms.append(norm.to_dict())
    return MeshSamples(
        points=torch.stack(points),
        queries=torch.stack(queries),
        occupancy=torch.stack(occupancy),
        files=[str(p) for p in files],
        normalizations=norms,
    )

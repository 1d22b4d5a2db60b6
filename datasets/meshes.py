"""Triangle meshes: loading with validation, normalisation into the unit box, watertightness.

Vocabulary: ``points`` / ``x`` are ``[N, 3]`` (or ``[*batch, 3]``) positions; a *normalised*
frame is one where the mesh's axis-aligned bounding box is centred at the origin and its longest
side is 2, i.e. the mesh fits ``[-1, 1]³`` and touches it on at least one pair of faces. Every
mesh task (SDF, CSP, metrics) works in that frame and maps back with
:meth:`Normalization.invert`.

Loading goes through trimesh and keeps the geometry only: scenes (glTF) are flattened into one
mesh with their node transforms applied, and vertices are welded by position, so a textured
OBJ whose UV seams split vertices (``spot.obj``) comes back closed. Materials, UVs and colours
are dropped: none of the field tasks uses them, and UVs cannot survive the weld at a seam.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from jaxtyping import Float
from torch import Tensor

from datasets.errors import DataError, DataWarning

__all__ = [
    "SUPPORTED_MESH_EXTENSIONS",
    "load_mesh",
    "Normalization",
    "normalization_for",
    "normalize_mesh",
    "watertight_problem",
    "warn_if_open",
]

SUPPORTED_MESH_EXTENSIONS: tuple[str, ...] = (".glb", ".gltf", ".obj", ".off", ".ply", ".stl")
"""File extensions :func:`load_mesh` accepts (case-insensitive)."""

PointsLike = Float[Tensor, "*batch 3"] | Float[np.ndarray, "*batch 3"]
"""Points as a torch tensor or a numpy array; functions taking it return the same type."""

# Tasks that never need an inside: an open surface is fine for them.
_UNSIGNED_TASKS = frozenset({"csp", "udf"})


def load_mesh(path: str | os.PathLike[str]) -> trimesh.Trimesh:
    """Load a triangle mesh from ``.obj``, ``.ply``, ``.off``, ``.stl``, ``.glb`` or ``.gltf``.

    The file is read with trimesh (``force="mesh"``: a scene is concatenated into one mesh, node
    transforms applied), checked, then rebuilt as ``trimesh.Trimesh(vertices, faces,
    process=True)``, which welds duplicate vertices by position. Checks, in order, each failing
    with a one-line :class:`~datasets.errors.DataError` that names the file: the path exists, is
    a file, has a supported extension, is not 0 bytes; trimesh parses it into a mesh with faces;
    every vertex is finite; at least one face has non-zero area. Meshes that are merely open or
    partly degenerate load fine (see :func:`watertight_problem`).

    Args:
        path: the mesh file.

    Returns:
        The mesh, geometry only (no materials, UVs or colours), vertices welded.

    Raises:
        DataError: for a missing file, a directory, an unsupported extension, bytes that do not
            parse as a mesh, an empty mesh, non-finite vertices or only zero-area faces.

    Example:
        >>> mesh = load_mesh("assets/meshes/spot.obj")
        >>> len(mesh.faces), mesh.is_watertight
        (5856, True)
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, expected a mesh file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_MESH_EXTENSIONS:
        shown = suffix if suffix else "(none)"
        raise DataError(
            path,
            f"unsupported mesh extension {shown!r}; supported: "
            + ", ".join(SUPPORTED_MESH_EXTENSIONS),
        )
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty (0 bytes)")

    try:
        # process=False: trimesh's processing silently drops NaN vertices, which we must report.
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as exc:  # trimesh raises anything from ValueError to KeyError on garbage
        detail = " ".join(str(exc).split())[:200]
        raise DataError(
            path, f"could not parse {suffix} file as a mesh ({type(exc).__name__}: {detail})"
        ) from exc
    if not isinstance(loaded, trimesh.Trimesh):
        raise DataError(
            path, f"could not parse {suffix} file as a mesh (got a {type(loaded).__name__})"
        )

    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)
    if len(vertices) == 0:
        raise DataError(
            path,
            f"could not parse {suffix} file as a mesh: found no vertices or faces "
            f"(the mesh is empty, a point cloud, or this is not {suffix} data)",
        )
    if len(faces) == 0:
        raise DataError(path, f"empty mesh: {len(vertices)} vertices but no faces")
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise DataError(
            path, f"{int(bad.sum())} of {len(vertices)} vertices are not finite (NaN or inf)"
        )
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise DataError(path, f"face indices out of range for {len(vertices)} vertices")

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    # Relative to the mesh's size: rounding leaves ~1e-16·L² of area on a collapsed triangle.
    size = float(np.ptp(mesh.vertices, axis=0).max())
    if not (mesh.area_faces > 1e-12 * size * size).any():
        raise DataError(path, f"all {len(mesh.faces)} faces are degenerate (zero area)")
    return mesh


@dataclass
class Normalization:
    """The similarity ``world → normalised``: ``p' = (p − center) · scale``.

    Attributes:
        center: the world point that maps to the origin (three floats).
        scale: the uniform factor applied after centring (> 0).

    Example:
        >>> norm = Normalization(center=[1.0, 0.0, 0.0], scale=0.5)
        >>> norm.apply(torch.tensor([[3.0, 2.0, 0.0]]))
        tensor([[1., 1., 0.]])
        >>> norm.invert(norm.apply(torch.tensor([[3.0, 2.0, 0.0]])))
        tensor([[3., 2., 0.]])
        >>> Normalization.from_dict(norm.to_dict()) == norm
        True
    """

    center: list[float]
    scale: float

    def __post_init__(self) -> None:
        self.center = [float(c) for c in self.center]
        self.scale = float(self.scale)
        if len(self.center) != 3 or not np.isfinite(self.center).all():
            raise ValueError(f"Normalization.center must be 3 finite floats, got {self.center}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"Normalization.scale must be finite and > 0, got {self.scale}")

    def apply(self, points: PointsLike) -> PointsLike:
        """World → normalised: ``(points − center) · scale`` (same type, dtype and device)."""
        if isinstance(points, Tensor):
            center = torch.tensor(self.center, dtype=points.dtype, device=points.device)
            return (points - center) * self.scale
        return (points - np.asarray(self.center, dtype=points.dtype)) * points.dtype.type(
            self.scale
        )

    def invert(self, points: PointsLike) -> PointsLike:
        """Normalised → world: ``points / scale + center`` (same type, dtype and device)."""
        if isinstance(points, Tensor):
            center = torch.tensor(self.center, dtype=points.dtype, device=points.device)
            return points / self.scale + center
        return points / points.dtype.type(self.scale) + np.asarray(self.center, points.dtype)

    def matrix(self) -> np.ndarray:
        """The ``4×4`` homogeneous matrix of :meth:`apply` (float64)."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = -self.scale * np.asarray(self.center)
        return m

    def apply_mesh(self, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
        """A transformed copy of ``mesh`` (the input is left untouched)."""
        return mesh.copy().apply_transform(self.matrix())

    def invert_mesh(self, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
        """A copy of a normalised ``mesh`` mapped back to world units (e.g. for export)."""
        return mesh.copy().apply_transform(np.linalg.inv(self.matrix()))

    def to_dict(self) -> dict[str, list[float] | float]:
        """Plain JSON-able data: ``{"center": [x, y, z], "scale": s}``."""
        return {"center": list(self.center), "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(center=[float(c) for c in data["center"]], scale=float(data["scale"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a Normalization dict: {data!r}") from exc


def normalization_for(mesh: trimesh.Trimesh) -> Normalization:
    """The normalisation that centres ``mesh``'s bounding box and makes its longest side 2.

    With bounds ``lo, hi``: ``center = (lo + hi) / 2`` and ``scale = 2 / max(hi − lo)``, so the
    normalised mesh lies in ``[-1, 1]³`` and touches ``±1`` along its longest axis.

    Example:
        >>> box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
        >>> normalization_for(box.apply_translation([1.0, 0.0, 0.0]))
        Normalization(center=[1.0, 0.0, 0.0], scale=0.5)
    """
    lo, hi = np.asarray(mesh.bounds, dtype=np.float64)
    longest = float((hi - lo).max())
    if not (np.isfinite(longest) and longest > 0):
        raise ValueError(f"cannot normalise a mesh whose bounding box is {lo} .. {hi}")
    return Normalization(center=((lo + hi) / 2).tolist(), scale=2.0 / longest)


def normalize_mesh(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, Normalization]:
    """A copy of ``mesh`` in its normalised frame, and the :class:`Normalization` used.

    Example:
        >>> unit, norm = normalize_mesh(trimesh.creation.icosphere(radius=5.0))
        >>> bool(np.allclose(unit.bounds, [[-1, -1, -1], [1, 1, 1]])), norm.scale
        (True, 0.2)
    """
    norm = normalization_for(mesh)
    return norm.apply_mesh(mesh), norm


def watertight_problem(mesh: trimesh.Trimesh) -> str | None:
    """Why ``mesh`` is not watertight, or ``None`` when it is.

    Watertight here means every edge is shared by exactly two faces (trimesh's definition).
    Edges used by one face are *boundary* edges (holes, open garments); edges used by three or
    more are *non-manifold*. Vertices must be welded first (:func:`load_mesh` does), otherwise
    every seam counts as a boundary.

    Returns:
        ``None``, or a short reason such as ``"12 boundary edges"`` or
        ``"3 boundary edges, 2 non-manifold edges"``.

    Example:
        >>> sphere = trimesh.creation.icosphere(subdivisions=2)
        >>> watertight_problem(sphere) is None
        True
        >>> watertight_problem(trimesh.Trimesh(sphere.vertices, sphere.faces[1:]))
        '3 boundary edges'
    """
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0:
        return "no faces"
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    keys = edges[:, 0] * (int(faces.max()) + 1) + edges[:, 1]
    _, counts = np.unique(keys, return_counts=True)
    problems = []
    for label, count in (
        ("boundary", int((counts == 1).sum())),
        ("non-manifold", int((counts > 2).sum())),
    ):
        if count:
            problems.append(f"{count} {label} edge{'s' if count != 1 else ''}")
    return ", ".join(problems) if problems else None


def warn_if_open(
    mesh: trimesh.Trimesh, path: str | os.PathLike[str], task: str = "sdf"
) -> str | None:
    """Warn (:class:`~datasets.errors.DataWarning`) when ``mesh`` is open and ``task`` needs a sign.

    The warning reads ``"{path}: mesh is not watertight ({reason}): the sign of an SDF is
    ill-defined; use the `csp` task for open surfaces"``. Tasks that never need an inside
    (``csp``, ``udf``) are not warned.

    Args:
        mesh: the loaded mesh.
        path: the file it came from (for the message).
        task: the task that will use it.

    Returns:
        The reason from :func:`watertight_problem` (``None`` when watertight), warned or not.

    Example:
        >>> warn_if_open(trimesh.creation.icosphere(), "ball.obj") is None
        True
    """
    problem = watertight_problem(mesh)
    if problem is not None and task not in _UNSIGNED_TASKS:
        warnings.warn(
            f"{os.fspath(path)}: mesh is not watertight ({problem}): the sign of an SDF is "
            "ill-defined; use the `csp` task for open surfaces",
            DataWarning,
            stacklevel=2,
        )
    return problem

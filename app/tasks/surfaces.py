"""What the surface tasks (``sdf``, ``neus``, ``csp``) share: writing an extracted surface in the
source's units, scoring a surface against a reference mesh, and (``MeshFieldState``) the state of
a field fitted to one normalised mesh."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trimesh

from app.paths import resolve_input
from datasets.errors import DataWarning
from datasets.meshes import Normalization, load_mesh
from renderer.meshing import MeshResult, export_mesh

__all__ = ["MeshExportConfig", "MeshFieldState", "in_source_units", "export_surface",
           "compare_to_reference"]


class MeshFieldState:
    """Mixin for tasks that fit a field to one mesh normalised into ``[-bound, bound]³``
    (``sdf``, ``csp``): the box, the orbit camera, and the checkpoint meta (the normalisation,
    so exports land in the source's units, and the source path)."""

    bound: float
    normalization: Normalization | None
    source_path: str | None

    @property
    def aabb(self) -> tuple[float, ...]:
        b = self.bound
        return (-b, -b, -b, b, b, b)

    def default_camera(self, width: int = 256, height: int = 256):
        from renderer.cameras import Camera

        return Camera.orbit(30.0, 20.0, 3.2, width=width, height=height, fov_y_deg=40.0)

    def meta(self) -> dict[str, Any]:
        return {"normalization": self.normalization.to_dict() if self.normalization else None,
                "source_path": self.source_path}

    def load_meta(self, meta: dict[str, Any]) -> None:
        norm = meta.get("normalization")
        self.normalization = Normalization.from_dict(norm) if norm else None
        self.source_path = meta.get("source_path")


@dataclass
class MeshExportConfig:
    """Defaults of ``fields-app export`` / ``eval``."""

    resolution: int = 256
    """Marching-cubes grid points per axis."""
    method: str = "coarse_to_fine"
    """``coarse_to_fine`` (evaluates only near the surface) or ``dense``."""


def in_source_units(result: MeshResult, normalization: Normalization | None) -> trimesh.Trimesh:
    """The extracted mesh mapped back from the field's normalised frame (if it has one)."""
    return result.mesh if normalization is None else normalization.invert_mesh(result.mesh)


def export_surface(result: MeshResult, normalization: Normalization | None,
                   path: str | Path) -> dict[str, Any]:
    """Write ``result`` in source units to ``path`` (atomic); return facts about it."""
    mesh = in_source_units(result, normalization)
    written = export_mesh(mesh, path)
    return {
        "path": str(written), "vertices": len(mesh.vertices), "faces": len(mesh.faces),
        "resolution": result.resolution, "field_evaluations": result.num_evaluations,
        "evaluation_fraction": round(result.evaluation_fraction, 4),
        "seconds": round(result.seconds, 2),
    }


def compare_to_reference(
    reference: str | Path,
    mesh: str | Path | None,
    extract: Callable[[], trimesh.Trimesh],
    label: str,
    n_samples: int,
) -> dict[str, Any]:
    """Chamfer-L1, normal consistency, F-score and IoU of a surface against ``reference``.

    The surface is the mesh file ``mesh`` when given, else ``extract()`` (named ``label``).
    """
    from app.metrics import evaluate_meshes

    ref_path = resolve_input(reference)
    ref = load_mesh(ref_path)
    if mesh is not None:
        pred, source = load_mesh(resolve_input(mesh)), str(mesh)
    else:
        pred, source = extract(), label
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        metrics = evaluate_meshes(pred, ref, n=n_samples)
    return {"reference": str(ref_path), "mesh": source, **metrics}

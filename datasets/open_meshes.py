"""Procedural open surfaces: test and demo data for fields of surfaces with boundaries (CSP).

A signed distance needs an inside; a table cloth does not have one. :func:`draped_cloth` builds a
square cloth hanging over a round table — a flat top, a skirt that falls off the table's edge in
radial folds, and one free boundary loop (the hem) — as a parametric sheet, so it is exactly
reproducible and needs no download. ``assets/meshes/cloth.obj`` is this function's output
(``python -m datasets.open_meshes assets/meshes/cloth.obj``).

Example:
    >>> mesh = draped_cloth(resolution=16)
    >>> mesh.is_watertight, len(boundary_loops(mesh))
    (False, 1)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import trimesh

from renderer.open_meshing import boundary_loops

__all__ = ["draped_cloth", "boundary_loops"]


def draped_cloth(resolution: int = 96, folds: int = 7, table_radius: float = 0.45,
                 drop: float = 0.7, fold_depth: float = 0.08) -> trimesh.Trimesh:
    """A square cloth of side 2 draped over a round table of radius ``table_radius``.

    The sheet is parametrised by ``(u, v) ∈ [−1, 1]²`` on a ``resolution × resolution`` vertex
    grid. A point at radius ``r = ‖(u, v)‖`` stays flat (``z = 0``) over the table top; beyond
    the table's edge the cloth falls (``z`` down by ``drop·s²`` with ``s`` the distance past the
    edge, normalised) and pulls in towards the table as it falls (arc length is roughly kept);
    ``folds`` radial folds of amplitude ``fold_depth·s`` ripple the skirt. One boundary loop (the
    hem), no holes, no self-intersections for the defaults.

    Args:
        resolution: vertices per side (≥ 4).
        folds: number of radial folds of the skirt.
        table_radius: radius of the flat top, in units of the cloth's half side.
        drop: how far the corners fall below the top.
        fold_depth: amplitude of the folds at the corners.

    Raises:
        ValueError: ``resolution < 4`` or a non-positive size.
    """
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4, got {resolution}")
    if not (0.0 < table_radius < 1.0 and drop > 0.0 and fold_depth >= 0.0 and folds >= 0):
        raise ValueError("need 0 < table_radius < 1, drop > 0, fold_depth ≥ 0, folds ≥ 0")
    t = np.linspace(-1.0, 1.0, resolution)
    u, v = np.meshgrid(t, t, indexing="xy")
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    s = np.clip((r - table_radius) / (math.sqrt(2.0) - table_radius), 0.0, 1.0)  # 0 … 1 (corner)
    # Falling: the radius shrinks as the cloth hangs (a quarter-circle-like profile), z drops.
    radial = np.where(r > table_radius,
                      table_radius + (r - table_radius) * (1.0 - 0.45 * s), r)
    radial = radial + fold_depth * s * np.sin(folds * theta)
    z = -drop * s**2 + fold_depth * 0.5 * s * np.cos(folds * theta)
    scale = np.where(r > 1e-12, radial / np.maximum(r, 1e-12), 1.0)
    vertices = np.stack([u * scale, v * scale, z], -1).reshape(-1, 3)
    idx = np.arange(resolution * resolution).reshape(resolution, resolution)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], -1), np.stack([a, d, c], -1)])
    return trimesh.Trimesh(vertices, faces, process=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="write the procedural draped cloth as a mesh file")
    ap.add_argument("out", help="output mesh (.obj / .ply)")
    ap.add_argument("--resolution", type=int, default=96)
    args = ap.parse_args(argv)
    mesh = draped_cloth(args.resolution)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    mesh.export(args.out)
    print(f"{args.out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
          f"{len(boundary_loops(mesh))} boundary loop(s), area {mesh.area:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

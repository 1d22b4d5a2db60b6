"""Single-layer meshing of closest-surface-point fields on exact (analytic) CSPs: an open patch
keeps its one boundary, an open tube its two, a sphere comes out closed — each one layer (area of
the surface, not twice it) — and the double shell it is cut from is indeed double."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datasets.csp_samples import AnalyticPatch, AnalyticSphere, AnalyticTube
from renderer.meshing import extract_mesh
from renderer.open_meshing import boundary_loops, extract_open_mesh


@pytest.mark.parametrize("shape, area, loops", [
    (AnalyticPatch(0.5), 1.0, 1),
    (AnalyticTube(0.4, 0.5), 2 * math.pi * 0.4 * 1.0, 2),
    (AnalyticSphere(0.5), 4 * math.pi * 0.25, 0),
])
def test_one_layer_with_the_surface_boundaries(shape, area, loops):
    result = extract_open_mesh(shape.csp, resolution=64)
    mesh = result.mesh
    assert len(boundary_loops(mesh)) == loops
    assert mesh.is_watertight == (loops == 0)
    # One layer: the surface's area (the rim cut trims about ε off open boundaries).
    assert 0.93 * area < mesh.area < 1.02 * area, (mesh.area, area)
    # On the surface: every vertex is its own closest point.
    v = np.asarray(mesh.vertices)
    import torch

    err = np.linalg.norm(shape.csp(torch.as_tensor(v)).numpy() - v, axis=1)
    assert err.max() < 1e-5


def test_the_shell_it_starts_from_is_double():
    """Negative control: marching cubes of the unsigned distance alone gives two layers."""
    import torch

    patch = AnalyticPatch(0.5)
    shell = extract_mesh(lambda x: torch.linalg.vector_norm(x - patch.csp(x), dim=-1),
                         resolution=64, level=1.5 * 2.0 / 63).mesh
    assert shell.area > 1.9  # both sides of the unit patch (plus the rim)
    assert extract_open_mesh(patch.csp, resolution=64).mesh.area < 1.02


def test_empty_box_raises():
    far = AnalyticSphere(0.2)
    with pytest.raises(ValueError, match="nothing to mesh"):
        extract_open_mesh(lambda x: far.csp(x - 5.0) + 5.0, resolution=16)


def _strip_faces(n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """An n × 8 strip of quads split into triangles: face centroids and edge adjacency."""
    import trimesh

    xs, ys = np.meshgrid(np.arange(n + 1, dtype=float), np.arange(9, dtype=float))
    verts = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], 1)
    idx = np.arange(xs.size).reshape(9, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)])
    mesh = trimesh.Trimesh(verts, faces, process=False)
    return mesh.triangles_center, mesh.face_adjacency


def test_patch_holes_fills_holes_inside_one_side_but_not_the_rim_band():
    from renderer.open_meshing import _patch_holes

    centre, adj = _strip_faces()
    x, y = centre[:, 0], centre[:, 1]
    label = np.where(x < 12, 0, 1)
    band = (x > 10) & (x < 14)                      # between the two sides: a rim band
    hole = (np.abs(x - 5) < 1.5) & (np.abs(y - 4) < 1.5)  # inside side 0
    label[band | hole] = -1
    out, patched = _patch_holes(label, adj, share=0.8)
    assert patched >= 1                             # (the hole may be several regions)
    assert (out[hole] == 0).all()                   # the hole rejoins its side
    assert (out[band] == -1).all()                  # the band still separates the sides
    assert (out[~(band | hole)] == label[~(band | hole)]).all()
    # Negative control: a share above the band's one-sidedness patches the band too.
    out_all, _ = _patch_holes(label, adj, share=0.4)
    assert (out_all[band] >= 0).all()
    # A share above 1 turns the step off.
    assert (_patch_holes(label, adj, share=1.01)[0] == label).all()

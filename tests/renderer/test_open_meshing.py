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

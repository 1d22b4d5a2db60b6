"""The procedural draped cloth: open, one hem loop, a height field over its footprint, and the
shipped asset is exactly this generator's output."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from app.paths import resolve_input
from datasets.open_meshes import boundary_loops, draped_cloth


def test_cloth_is_open_with_one_hem_and_no_folds_over_itself():
    mesh = draped_cloth(resolution=48)
    assert not mesh.is_watertight
    loops = boundary_loops(mesh)
    assert len(loops) == 1 and len(loops[0]) == 4 * (48 - 1)  # the square's rim, once around
    # Injective over the xy-plane (a height field): every face keeps its orientation seen from +z,
    # so the sheet never folds over itself.
    assert (mesh.face_normals[:, 2] > 0).all()
    top = np.hypot(*mesh.vertices[:, :2].T) < 0.4
    assert np.allclose(mesh.vertices[top, 2], 0.0)  # flat over the table
    assert mesh.vertices[:, 2].min() < -0.5  # and the corners hang down


def test_boundary_loops_of_closed_and_tube_meshes():
    assert boundary_loops(trimesh.creation.icosphere(2)) == []
    tube = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=24)
    keep = np.abs(tube.face_normals[:, 2]) < 0.5  # drop the caps: an open tube
    tube = trimesh.Trimesh(tube.vertices, tube.faces[keep], process=False)
    assert len(boundary_loops(tube)) == 2


def test_shipped_cloth_asset_is_the_generator_output():
    mesh = trimesh.load(resolve_input("assets/meshes/cloth.obj"), process=False)
    ref = draped_cloth()
    assert mesh.faces.shape == ref.faces.shape
    assert np.allclose(mesh.vertices, ref.vertices, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="resolution"):
        draped_cloth(resolution=2)
    with pytest.raises(ValueError, match="table_radius"):
        draped_cloth(table_radius=1.5)

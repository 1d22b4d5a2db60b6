"""Mesh loading, validation, normalisation and watertightness: tiny files written on the spot."""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from datasets.errors import DataError, DataWarning
from datasets.meshes import (
    SUPPORTED_MESH_EXTENSIONS,
    Normalization,
    load_mesh,
    normalization_for,
    normalize_mesh,
    warn_if_open,
    watertight_problem,
)

REPO = Path(__file__).resolve().parents[2]
SPOT = REPO / "assets" / "meshes" / "spot.obj"
SHARED_TSHIRT = REPO.parent / "shared" / "data" / "meshes" / "open" / "tshirt_ponq.obj"

TRIANGLE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def open_sphere(n_removed: int) -> trimesh.Trimesh:
    """An icosphere minus ``n_removed`` pairwise non-adjacent faces (3 boundary edges each)."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    removed: list[int] = []
    used: set[int] = set()
    for f, face in enumerate(sphere.faces):
        if len(removed) == n_removed:
            break
        if used.isdisjoint(face.tolist()):  # no shared vertex, hence no shared edge
            removed.append(f)
            used.update(face.tolist())
    keep = np.setdiff1d(np.arange(len(sphere.faces)), removed)
    return trimesh.Trimesh(sphere.vertices, sphere.faces[keep], process=False)


# --- DataError ---------------------------------------------------------------------------------


def test_data_error_renders_one_line_naming_the_path():
    err = DataError(Path("a/b.obj"), "bad\nthing  here")
    assert str(err) == "a/b.obj: bad thing here"
    assert (err.path, err.problem) == ("a/b.obj", "bad thing here")
    assert issubclass(DataWarning, UserWarning)


def test_data_error_survives_pickling():
    err = pickle.loads(pickle.dumps(DataError("x.ply", "file not found")))
    assert isinstance(err, DataError) and str(err) == "x.ply: file not found"


# --- load_mesh: good input -----------------------------------------------------------------------


def test_spot_loads_welded_and_watertight():
    mesh = load_mesh(SPOT)
    # The OBJ splits vertices at UV seams (3225 rows); welding by position restores 2930.
    assert (len(mesh.vertices), len(mesh.faces)) == (2930, 5856)
    assert mesh.is_watertight and watertight_problem(mesh) is None


@pytest.mark.parametrize("ext", SUPPORTED_MESH_EXTENSIONS)
def test_every_supported_format_round_trips(tmp_path, ext):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    path = tmp_path / f"ball{ext}"
    sphere.export(path)
    mesh = load_mesh(path)
    # STL stores unshared triangles: equal counts show the position weld.
    assert (len(mesh.vertices), len(mesh.faces)) == (len(sphere.vertices), len(sphere.faces))
    assert np.allclose(mesh.bounds, sphere.bounds, atol=1e-6)
    assert watertight_problem(mesh) is None


def test_uppercase_extension_is_accepted(tmp_path):
    path = tmp_path / "TRI.OBJ"
    path.write_text(TRIANGLE_OBJ)
    assert len(load_mesh(path).faces) == 1


def test_scene_is_concatenated_with_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box())
    scene.add_geometry(
        trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([3, 0, 0])
    )
    path = tmp_path / "two_boxes.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 24
    assert np.allclose(mesh.bounds, [[-0.5, -0.5, -0.5], [3.5, 0.5, 0.5]])


def test_partly_degenerate_mesh_loads(tmp_path):
    path = tmp_path / "tri_and_sliver.obj"
    path.write_text(TRIANGLE_OBJ + "v 2 0 0\nf 1 2 4\n")  # second face is collinear
    assert len(load_mesh(path).faces) == 2


# --- load_mesh: bad input ------------------------------------------------------------------------


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


GARBAGE = b"\x00\x01\x02garbage\xff\xfe\x80 not a mesh \x13\x37" * 3

BAD_FILES = {
    # name: (file name, content, words the problem must contain)
    "empty_file": ("empty.obj", "", "empty"),
    "empty_ply": ("empty.ply", b"", "empty"),
    "no_faces_off": ("points.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
    "header_only_ply": (
        "nothing.ply",
        "ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\n"
        "property list uchar int vertex_indices\nend_header\n",
        "no vertices or faces",
    ),
    "nan_vertex": ("nan.obj", "v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "1 of 3 vertices"),
    "inf_vertices": ("inf.obj", "v inf 0 0\nv 1 -inf 0\nv 0 1 0\nf 1 2 3\n", "2 of 3 vertices"),
    "all_degenerate": (
        "flat.obj",
        "v 0 0 0\nv 1 0 0\nv 2 0 0\nv 3 0 0\nf 1 2 3\nf 2 3 4\n",
        "all 2 faces are degenerate",
    ),
    "bad_face_index": ("oob.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "could not parse"),
    "unsupported_ext": ("mesh.fbx", TRIANGLE_OBJ, "unsupported mesh extension '.fbx'"),
    "no_ext": ("mesh", TRIANGLE_OBJ, "unsupported mesh extension"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_raises_data_error_naming_it(tmp_path, case):
    name, content, words = BAD_FILES[case]
    path = write(tmp_path / name, content)
    with pytest.raises(DataError) as info:
        load_mesh(path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)
    assert words in info.value.problem


@pytest.mark.parametrize("ext", SUPPORTED_MESH_EXTENSIONS)
def test_garbage_bytes_do_not_parse(tmp_path, ext):
    path = write(tmp_path / f"garbage{ext}", GARBAGE)
    with pytest.raises(DataError, match="could not parse") as info:
        load_mesh(path)
    assert str(info.value).startswith(f"{path}: ")


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    with pytest.raises(DataError) as info:
        load_mesh(write(tmp_path / "m.xyz", "0 0 0\n"))
    for ext in SUPPORTED_MESH_EXTENSIONS:
        assert ext in info.value.problem


def test_missing_file(tmp_path):
    path = tmp_path / "nope.obj"
    with pytest.raises(DataError, match="file not found") as info:
        load_mesh(path)
    assert info.value.path == str(path)


def test_directory(tmp_path):
    path = tmp_path / "looks_like.obj"
    path.mkdir()
    with pytest.raises(DataError, match="is a directory") as info:
        load_mesh(path)
    assert info.value.path == str(path)


# --- Normalization -------------------------------------------------------------------------------


def test_normalization_for_box_centres_and_scales_longest_side_to_two():
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0)).apply_translation([1.0, -2.0, 3.0])
    norm = normalization_for(box)
    assert np.allclose(norm.center, [1.0, -2.0, 3.0]) and norm.scale == pytest.approx(0.5)
    unit, norm2 = normalize_mesh(box)
    assert norm2 == norm
    assert np.allclose(unit.bounds, [[-1.0, -0.5, -0.25], [1.0, 0.5, 0.25]])
    assert np.allclose(box.bounds[0], [-1.0, -3.0, 2.5])  # the input is not modified


def test_normalized_spot_fits_the_unit_box():
    unit, _ = normalize_mesh(load_mesh(SPOT))
    lo, hi = unit.bounds
    assert np.allclose(lo + hi, 0.0, atol=1e-9)
    assert (hi - lo).max() == pytest.approx(2.0)


@pytest.mark.parametrize("shape", [(7, 3), (2, 5, 3)])
def test_apply_invert_round_trip_torch_and_numpy(shape):
    norm = Normalization(center=[0.5, -1.0, 2.0], scale=3.0)
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = norm.apply(x)
    assert y.dtype == torch.float64 and y.shape == x.shape
    assert torch.allclose(y, (x - torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)) * 3.0)
    assert torch.allclose(norm.invert(y), x)
    xn = x.float().numpy()
    yn = norm.apply(xn)
    assert isinstance(yn, np.ndarray) and yn.dtype == np.float32
    assert np.allclose(yn, y.float().numpy(), atol=1e-5)
    assert np.allclose(norm.invert(yn), xn, atol=1e-5)


def test_apply_mesh_matches_apply_on_points_and_invert_mesh_undoes_it():
    mesh = trimesh.creation.box(extents=(3.0, 1.0, 2.0)).apply_translation([4.0, 5.0, 6.0])
    norm = normalization_for(mesh)
    moved = norm.apply_mesh(mesh)
    assert np.allclose(moved.vertices, norm.apply(np.asarray(mesh.vertices)))
    assert np.allclose(norm.invert_mesh(moved).vertices, mesh.vertices)
    assert np.allclose(mesh.bounds[0], [2.5, 4.5, 5.0])  # untouched


def test_normalization_dict_round_trip_through_json():
    norm = Normalization(center=[0.1, 0.2, 0.3], scale=1.7)
    assert Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm
    assert Normalization.from_dict({"center": [0, 1, 2], "scale": 2}).center == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(center=[0.0, 0.0, 0.0], scale=0.0),
        dict(center=[0.0, 0.0], scale=1.0),
        dict(center=[0.0, float("nan"), 0.0], scale=1.0),
    ],
)
def test_invalid_normalization_is_rejected(kwargs):
    with pytest.raises(ValueError):
        Normalization(**kwargs)
    with pytest.raises(ValueError):
        Normalization.from_dict({"scale": 1.0})


def test_normalization_for_a_point_is_rejected():
    with pytest.raises(ValueError, match="cannot normalise"):
        normalization_for(trimesh.Trimesh(np.zeros((3, 3)), [[0, 1, 2]], process=False))


# --- watertightness -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_removed", [1, 4])
def test_watertight_problem_counts_boundary_edges(n_removed):
    assert watertight_problem(trimesh.creation.icosphere(subdivisions=3)) is None
    mesh = open_sphere(n_removed)
    assert not mesh.is_watertight  # trimesh agrees it is open
    plural = "s" if 3 * n_removed != 1 else ""
    assert watertight_problem(mesh) == f"{3 * n_removed} boundary edge{plural}"


def test_watertight_problem_reports_non_manifold_edges():
    box = trimesh.creation.box()
    a, b = box.edges_unique[0]
    fin = trimesh.Trimesh(
        np.vstack([box.vertices, [[5.0, 5.0, 5.0]]]),
        np.vstack([box.faces, [[a, b, len(box.vertices)]]]),
        process=False,
    )
    assert watertight_problem(fin) == "2 boundary edges, 1 non-manifold edge"


def test_warn_if_open_warns_for_sdf_only():
    mesh = open_sphere(2)
    with pytest.warns(DataWarning) as caught:
        reason = warn_if_open(mesh, "garment.obj")
    assert reason == "6 boundary edges"
    message = str(caught[0].message)
    assert message.startswith("garment.obj: mesh is not watertight (6 boundary edges)")
    assert "sign of an SDF is ill-defined" in message and "`csp`" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_open(mesh, "garment.obj", task="csp") == "6 boundary edges"
        assert warn_if_open(trimesh.creation.icosphere(), "ball.obj") is None


@pytest.mark.skipif(not SHARED_TSHIRT.exists(), reason=f"shared test data absent: {SHARED_TSHIRT}")
def test_real_open_garment_is_flagged():
    mesh = load_mesh(SHARED_TSHIRT)
    with pytest.warns(DataWarning, match="tshirt_ponq.obj: mesh is not watertight"):
        assert "boundary edges" in warn_if_open(mesh, SHARED_TSHIRT)

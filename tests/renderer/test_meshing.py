"""Mesh extraction: analytic oracles, coarse-to-fine == dense, negative controls, chunking, export.

Oracles: a sphere's analytic radius and volume; the dense extraction on the same grid (the
coarse-to-fine mesh must be the same mesh wherever the surface is); the exact SDF of the shipped
``spot`` mesh (open3d); point-to-triangle Chamfer-L1 between meshes.
"""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from renderer import meshing
from renderer.meshing import MeshResult, export_mesh, extract_mesh

REPO = Path(__file__).resolve().parents[2]
SPOT = REPO / "assets" / "meshes" / "spot.obj"


# ----------------------------------------------------------------------------------------------
# Fields and helpers


def sphere_sdf(radius: float, center=(0.0, 0.0, 0.0)):
    c = torch.tensor(center)
    return lambda x: (x - c).norm(dim=-1) - radius


def box_sdf(x: torch.Tensor, center, half_extents) -> torch.Tensor:
    """Exact SDF of an axis-aligned box."""
    q = (x - torch.tensor(center)).abs() - torch.tensor(half_extents)
    outside = q.clamp(min=0.0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0.0)
    return outside + inside


def torus_sdf(x: torch.Tensor, center, major: float, minor: float) -> torch.Tensor:
    """Exact SDF of a torus around the z axis."""
    p = x - torch.tensor(center)
    ring = torch.stack([p[:, :2].norm(dim=-1) - major, p[:, 2]], dim=-1)
    return ring.norm(dim=-1) - minor


def composite_sdf(x: torch.Tensor) -> torch.Tensor:
    """Torus ∪ box ∪ sphere (min of exact SDFs: still 1-Lipschitz)."""
    torus = torus_sdf(x, (-0.1, -0.15, -0.35), 0.45, 0.13)
    box = box_sdf(x, (0.4, 0.35, 0.3), (0.25, 0.2, 0.3))
    ball = sphere_sdf(0.3, (-0.4, 0.3, 0.35))(x)
    return torch.minimum(torch.minimum(torus, box), ball)


def raycasting_scene(vertices: np.ndarray, faces: np.ndarray) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(faces, dtype=np.uint32)),
    )
    return scene


def chamfer_l1(a: trimesh.Trimesh, b: trimesh.Trimesh, samples: int = 50_000) -> float:
    """½(mean_{p∈A} d(p, B) + mean_{q∈B} d(q, A)); area-uniform samples, point-to-triangle d."""

    def one_way(src: trimesh.Trimesh, dst: trimesh.Trimesh, seed: int) -> float:
        points, _ = trimesh.sample.sample_surface(src, samples, seed=seed)
        scene = raycasting_scene(dst.vertices, dst.faces)
        return float(
            scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy().mean()
        )

    return 0.5 * (one_way(a, b, 0) + one_way(b, a, 1))


def same_vertices(a: trimesh.Trimesh, b: trimesh.Trimesh, atol: float = 1e-4) -> bool:
    """Same vertex set up to ``atol`` (≪ the grid step; the order differs between extractions).

    Not bit-exact: torch's kernels can round a field value differently by one ulp depending on the
    batch it is evaluated in, and on an edge the surface crosses almost tangentially (both end
    values near 0) that moves the interpolated vertex by more than an ulp.
    """
    if len(a.vertices) != len(b.vertices):
        return False
    ab, _ = cKDTree(b.vertices).query(a.vertices)
    ba, _ = cKDTree(a.vertices).query(b.vertices)
    return bool(max(ab.max(), ba.max()) <= atol)


def num_components(mesh: trimesh.Trimesh) -> int:
    return len(mesh.split(only_watertight=False))


def coarse_cell_centre(index: int, resolution: int, stride: int, lo: float = -1.0, hi: float = 1.0):
    """World coordinate of the centre of coarse cell ``index`` (cells of ``stride`` fine steps)."""
    h = (hi - lo) / (resolution - 1)
    return lo + (index + 0.5) * stride * h


@pytest.fixture(scope="module")
def spot_sdf():
    """Exact SDF of spot, normalised to longest side 2 and centred (open3d RaycastingScene)."""
    mesh = trimesh.load(SPOT, process=False, force="mesh")
    mesh.merge_vertices(merge_tex=True, merge_norm=True)  # the OBJ splits vertices along UV seams
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    vertices = (mesh.vertices - 0.5 * (lo + hi)) * (2.0 / (hi - lo).max())
    mesh = trimesh.Trimesh(vertices, mesh.faces, process=False)
    assert mesh.is_watertight
    scene = raycasting_scene(mesh.vertices, mesh.faces)

    def sdf_fn(x: torch.Tensor) -> torch.Tensor:
        d = scene.compute_signed_distance(o3d.core.Tensor(x.numpy()))
        return torch.from_numpy(d.numpy())

    return sdf_fn, mesh


# ----------------------------------------------------------------------------------------------
# 1. Analytic sphere


@pytest.mark.parametrize("method", ["coarse_to_fine", "dense"])
def test_sphere_radius_volume_watertight(method):
    r = 0.6
    result = extract_mesh(sphere_sdf(r), resolution=128, method=method)
    mesh = result.mesh
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radius - r).max() < 1e-3
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward winding for an SDF that is negative inside
    assert abs(mesh.volume / (4 / 3 * math.pi * r**3) - 1) < 0.01
    # Normals from the mesh point outward, along the radius.
    radial = mesh.vertices / radius[:, None]
    assert (np.sum(mesh.vertex_normals * radial, axis=1) > 0.99).all()
    assert result.dense_evaluations == 128**3 and result.resolution == 128
    assert result.method == method and result.seconds > 0
    if method == "dense":
        assert result.num_evaluations == 128**3
    else:
        assert result.num_evaluations < 0.25 * 128**3


def test_normal_fn_sets_vertex_normals():
    analytic_normal = lambda x: 3.0 * x  # the gradient direction of ‖x‖, deliberately unnormalised
    result = extract_mesh(sphere_sdf(0.5), resolution=48, normal_fn=analytic_normal)
    v = result.mesh.vertices
    np.testing.assert_allclose(
        result.mesh.vertex_normals, v / np.linalg.norm(v, axis=1, keepdims=True), atol=1e-6
    )


def test_normal_fn_may_use_autograd():
    """normal_fn runs with gradients enabled, even if the caller is inside torch.no_grad()."""
    sdf = sphere_sdf(0.5)

    def gradient(x):
        x = x.requires_grad_(True)
        (g,) = torch.autograd.grad(sdf(x).sum(), x)
        return g

    with torch.no_grad():
        result = extract_mesh(sdf, resolution=32, normal_fn=gradient)
    v = result.mesh.vertices
    cos = np.sum(result.mesh.vertex_normals * v / np.linalg.norm(v, axis=1, keepdims=True), axis=1)
    assert (cos > 1 - 1e-5).all()


def test_anisotropic_box_matches_dense():
    aabb = (-0.5, -0.4, -0.6, 0.6, 0.5, 0.4)
    sdf = sphere_sdf(0.3, (0.05, 0.02, -0.1))
    c2f = extract_mesh(sdf, resolution=72, aabb=aabb, coarse_resolution=10)
    dense = extract_mesh(sdf, resolution=72, aabb=aabb, method="dense")
    assert c2f.num_evaluations < dense.num_evaluations
    assert len(c2f.mesh.faces) == len(dense.mesh.faces)
    assert same_vertices(c2f.mesh, dense.mesh)
    assert c2f.mesh.is_watertight
    centre = np.array([0.05, 0.02, -0.1])
    assert np.abs(np.linalg.norm(c2f.mesh.vertices - centre, axis=1) - 0.3).max() < 2e-3


def test_surface_leaving_the_box_is_cut_like_dense():
    """A sphere poking out of the box's +x face: both meshes are open there and identical; surface
    following does not try to grow past the grid."""
    sdf = sphere_sdf(0.5, (0.75, 0.0, 0.0))
    c2f = extract_mesh(sdf, resolution=64, coarse_resolution=16)
    dense = extract_mesh(sdf, resolution=64, method="dense")
    assert not c2f.mesh.is_watertight
    assert len(c2f.mesh.faces) == len(dense.mesh.faces)
    assert same_vertices(c2f.mesh, dense.mesh)
    assert c2f.mesh.vertices[:, 0].max() <= 1.0 + 1e-9
    assert c2f.num_evaluations < dense.num_evaluations


# ----------------------------------------------------------------------------------------------
# 2. Acceptance: coarse-to-fine evaluates ≤ 25% of the dense grid and matches it


def test_acceptance_256_composite_matches_dense():
    # Large chunks: an analytic field costs little per point, so per-call overhead dominates.
    kwargs = {"resolution": 256, "chunk_size": 1 << 18}
    c2f = extract_mesh(composite_sdf, coarse_resolution=32, **kwargs)
    dense = extract_mesh(composite_sdf, method="dense", **kwargs)
    assert dense.num_evaluations == 256**3
    assert c2f.num_evaluations <= 0.25 * dense.num_evaluations
    assert chamfer_l1(c2f.mesh, dense.mesh) <= 1e-3
    # Stronger than the acceptance bound: the very same mesh (same cells, same values).
    assert len(c2f.mesh.faces) == len(dense.mesh.faces)
    assert same_vertices(c2f.mesh, dense.mesh)
    assert c2f.mesh.is_watertight and dense.mesh.is_watertight
    assert num_components(c2f.mesh) == num_components(dense.mesh) == 3


def test_spot_exact_sdf_matches_dense(spot_sdf):
    sdf_fn, spot = spot_sdf
    aabb = (-1.1, -1.1, -1.1, 1.1, 1.1, 1.1)  # spot touches ±1 along its longest side
    c2f = extract_mesh(sdf_fn, resolution=128, aabb=aabb, coarse_resolution=32)
    dense = extract_mesh(sdf_fn, resolution=128, aabb=aabb, method="dense")
    assert c2f.num_evaluations <= 0.25 * dense.num_evaluations
    assert chamfer_l1(c2f.mesh, dense.mesh) <= 1e-3
    assert len(c2f.mesh.faces) == len(dense.mesh.faces)
    # open3d's one-ray parity test flips the sign at a grid point that a ray reaches through an
    # edge (a speck of 8 triangles in both meshes at 128³); surface following keeps it closed.
    assert c2f.mesh.is_watertight
    # And both are close to spot itself (marching-cubes error at h = 2.2/127 ≈ 0.017).
    assert chamfer_l1(c2f.mesh, spot) <= 5e-4


# ----------------------------------------------------------------------------------------------
# 3. Thin features, the margin, and negative controls

RES, COARSE = 128, 32  # 4 fine steps per coarse cell: coarse spacing 8/127 ≈ 0.063
STRIDE = 4


def test_thin_features_of_a_true_sdf_are_kept():
    """A sphere of radius 0.02 and a plate 0.02 thick, both well inside one coarse cell, are found:
    for a 1-Lipschitz field the margin test keeps every cell the surface passes through, however
    small the feature."""
    c = coarse_cell_centre(20, RES, STRIDE)
    z = coarse_cell_centre(9, RES, STRIDE)
    tiny = sphere_sdf(0.02, (c, c, c))
    plate = lambda x: box_sdf(x, (-0.3, -0.3, z), (0.35, 0.35, 0.01))
    sdf = lambda x: torch.minimum(tiny(x), plate(x))
    c2f = extract_mesh(sdf, resolution=RES, coarse_resolution=COARSE)
    dense = extract_mesh(sdf, resolution=RES, method="dense")
    assert num_components(dense.mesh) == 2
    assert len(c2f.mesh.faces) == len(dense.mesh.faces)
    assert same_vertices(c2f.mesh, dense.mesh)
    assert c2f.mesh.is_watertight


def test_steep_field_loses_a_small_feature_unless_the_margin_covers_it():
    """Negative control. A small sphere whose field is 20× steeper than a distance (‖∇f‖ = 20, as a
    badly trained neural SDF might be) sits inside one coarse cell, far from the rest: its corner
    values (≈ 20 × 0.025) exceed margin · ρ (2 × 0.055), so no cell near it is refined and it is
    missing from the coarse-to-fine mesh — which is still watertight. A margin above the field's
    Lipschitz constant recovers the dense mesh."""
    c = coarse_cell_centre(21, RES, STRIDE)
    steep = lambda x: 20.0 * sphere_sdf(0.03, (c, c, c))(x)
    big = sphere_sdf(0.3, (-0.4, -0.4, -0.4))
    sdf = lambda x: torch.minimum(big(x), steep(x))
    dense = extract_mesh(sdf, resolution=RES, method="dense")
    lossy = extract_mesh(sdf, resolution=RES, coarse_resolution=COARSE, margin=2.0)
    safe = extract_mesh(sdf, resolution=RES, coarse_resolution=COARSE, margin=25.0)
    assert num_components(dense.mesh) == 2
    assert num_components(lossy.mesh) == 1 and lossy.mesh.is_watertight
    assert np.linalg.norm(lossy.mesh.vertices - c, axis=1).min() > 0.2
    assert len(safe.mesh.faces) == len(dense.mesh.faces)
    assert same_vertices(safe.mesh, dense.mesh)
    assert lossy.num_evaluations < safe.num_evaluations < dense.num_evaluations


def test_steep_feature_straddling_the_band_is_closed_not_holed():
    """A steep blob (‖∇f‖ = 100, radius 0.3 h around one fine grid point) on the outer edge of the
    refined band beside a box face: the kept cells cover half of the cells around the blob, so
    marching cubes on them alone leaves a hole. Surface following grows the cells across the open
    faces until the mesh closes, which gives the dense mesh again."""
    h = 2.0 / (RES - 1)
    slab = lambda x: box_sdf(x, (-0.4, 0.0, 0.0), (0.4, 0.5, 0.5))  # a face at x = 0
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)

    def band(sdf):  # white box: the cells the hierarchy marks, before surface following
        evaluator = meshing._ChunkedEvaluator(
            sdf, lo, (hi - lo) / (RES - 1), 1 << 16, "cpu", False, "coarse_to_fine"
        )
        grid = meshing._sample_grid(evaluator, RES, 2, 0.0, 2.0)
        return grid.cells, meshing._marching_cubes(
            grid.values, grid.cells, 0.0, (-1,) * 3 + (1,) * 3
        )

    cells, _ = band(slab)
    edge = int(np.flatnonzero(cells[:, RES // 2, RES // 2]).max()) + 1  # first unkept cell in x
    assert edge % 2 == 0  # a face between parent cells, so the blob's centre is no parent corner
    centre = torch.tensor([-1.0 + edge * h, -1.0 + 65 * h, -1.0 + 65 * h])
    sdf = lambda x: torch.minimum(slab(x), 100.0 * ((x - centre).norm(dim=-1) - 0.3 * h))

    _, (verts, faces) = band(sdf)
    assert not trimesh.Trimesh(verts, faces, process=False).is_watertight

    c2f = extract_mesh(sdf, resolution=RES, coarse_resolution=COARSE)
    dense = extract_mesh(sdf, resolution=RES, method="dense")
    assert num_components(dense.mesh) == 2
    assert c2f.mesh.is_watertight
    assert len(c2f.mesh.faces) == len(dense.mesh.faces)
    assert same_vertices(c2f.mesh, dense.mesh)


@pytest.mark.parametrize("method", ["coarse_to_fine", "dense"])
@pytest.mark.parametrize(
    ("sdf", "level"),
    [
        (sphere_sdf(3.0), 0.0),  # the whole box is inside
        (lambda x: x.norm(dim=-1) + 1.0, 0.0),  # everywhere positive
        (sphere_sdf(0.5), 5.0),  # a level the field never reaches in the box
    ],
)
def test_no_surface_raises(method, sdf, level):
    with pytest.raises(ValueError, match="no level set"):
        extract_mesh(sdf, resolution=32, method=method, coarse_resolution=8, level=level)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("method", ["coarse_to_fine", "dense"])
def test_non_finite_values_raise(method, bad):
    def sdf(x):
        d = x.norm(dim=-1) - 0.5
        return torch.where(x[:, 0] > 0.9, torch.full_like(d, bad), d)

    with pytest.raises(ValueError, match="non-finite"):
        extract_mesh(sdf, resolution=32, method=method, coarse_resolution=8)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "marching"},
        {"resolution": 1},
        {"aabb": (0, 0, 0, 1, 1)},
        {"aabb": (0, 0, 0, 1, -1, 1)},
        {"chunk_size": 0},
        {"coarse_resolution": 1},
        {"margin": -1.0},
        {"level": float("nan")},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        extract_mesh(sphere_sdf(0.5), **{"resolution": 16, **kwargs})


def test_bad_field_output_shape_raises():
    with pytest.raises(ValueError, match="sdf"):
        extract_mesh(lambda x: x, resolution=16)


# ----------------------------------------------------------------------------------------------
# 4. Chunking and progress


@pytest.mark.parametrize("method", ["coarse_to_fine", "dense"])
def test_no_call_exceeds_chunk_size(method):
    sizes: list[int] = []
    normal_sizes: list[int] = []
    base = sphere_sdf(0.5)

    def counting_sdf(x):
        assert not torch.is_grad_enabled()
        sizes.append(len(x))
        return base(x)

    def counting_normal(x):
        normal_sizes.append(len(x))
        return x

    result = extract_mesh(
        counting_sdf, resolution=48, method=method, coarse_resolution=12, chunk_size=1000,
        normal_fn=counting_normal,
    )  # fmt: skip
    assert max(sizes) <= 1000 and max(normal_sizes) <= 1000
    assert sum(sizes) == result.num_evaluations
    assert sum(normal_sizes) == len(result.mesh.vertices)
    if method == "dense":
        assert result.num_evaluations == 48**3


def test_progress_bar(capsys):
    extract_mesh(sphere_sdf(0.5), resolution=32, progress=True)
    assert "meshing" in capsys.readouterr().err


def test_result_and_module_surface():
    result = extract_mesh(sphere_sdf(0.5), resolution=32)
    assert isinstance(result, MeshResult)
    assert 0 < result.evaluation_fraction <= 1
    assert set(meshing.__all__) == {
        "MeshResult", "MeshMemoryError", "extract_mesh", "estimate_mesh_memory", "export_mesh",
    }


def test_docstring_examples_run():
    failures, tried = doctest.testmod(meshing, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0


# ----------------------------------------------------------------------------------------------
# 5. Export


@pytest.fixture(scope="module")
def small_mesh():
    return extract_mesh(sphere_sdf(0.5), resolution=24).mesh


def normals_in_file(path: Path) -> np.ndarray:
    """The vertex normals stored in a .ply/.obj, read with trimesh's format readers
    (``trimesh.load`` rebuilds the mesh and drops stored normals, recomputing them on demand)."""
    if path.suffix.lower() == ".ply":
        with open(path, "rb") as f:
            return trimesh.exchange.ply.load_ply(f)["vertex_normals"]
    with open(path) as f:
        (geometry,) = trimesh.exchange.obj.load_obj(f)["geometry"].values()
    return geometry["vertex_normals"]


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".PLY"])
def test_export_round_trip(tmp_path, small_mesh, suffix):
    mesh = small_mesh.copy()
    normals = np.tile([0.0, 0.0, 1.0], (len(mesh.vertices), 1))  # not what the faces would give
    mesh.vertex_normals = normals
    path = tmp_path / "nested" / "dir" / f"mesh{suffix}"
    out = export_mesh(mesh, str(path))
    assert out == path and path.is_file()
    loaded = trimesh.load(path, process=False, force="mesh")
    assert len(loaded.vertices) == len(mesh.vertices)
    assert len(loaded.faces) == len(mesh.faces)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    np.testing.assert_allclose(normals_in_file(path), normals, atol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_export_writes_mesh_normals_when_none_are_stored(tmp_path):
    mesh = trimesh.creation.icosphere()  # no normals computed or set yet
    path = export_mesh(mesh, tmp_path / "ball.obj")
    np.testing.assert_allclose(normals_in_file(path), mesh.vertex_normals, atol=1e-6)


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_export_vertex_colours(tmp_path, small_mesh, suffix):
    mesh = small_mesh.copy()
    colours = np.zeros((len(mesh.vertices), 4), dtype=np.uint8)
    colours[:, 0] = np.arange(len(mesh.vertices)) % 256
    colours[:, 3] = 255
    mesh.visual.vertex_colors = colours
    path = export_mesh(mesh, tmp_path / f"coloured{suffix}")
    loaded = trimesh.load(path, process=False, force="mesh")
    np.testing.assert_array_equal(loaded.visual.vertex_colors[:, :3], colours[:, :3])


def test_export_overwrites_atomically(tmp_path, small_mesh):
    path = tmp_path / "mesh.ply"
    path.write_text("old")
    export_mesh(small_mesh, path)
    assert len(trimesh.load(path, process=False).faces) == len(small_mesh.faces)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.ply"]


def test_export_bad_extension(tmp_path, small_mesh):
    path = tmp_path / "mesh.stl"
    with pytest.raises(ValueError, match=r"mesh\.stl.*\.ply, \.obj"):
        export_mesh(small_mesh, path)
    assert not path.exists()


def test_export_unwritable_directory(tmp_path, small_mesh):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    path = blocker / "sub" / "mesh.ply"  # the parent is a regular file: fails even as root
    with pytest.raises(OSError, match="a_file"):
        export_mesh(small_mesh, path)


# ----------------------------------------------------------------------------------------------
# Internals with small oracles


def test_upsample_is_trilinear_interpolation():
    from scipy.interpolate import RegularGridInterpolator

    a = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32)
    fine = meshing._upsample2(a)
    interp = RegularGridInterpolator([np.arange(n) for n in a.shape], a)
    points = np.stack(
        np.meshgrid(*[np.arange(2 * n - 1) / 2 for n in a.shape], indexing="ij"), axis=-1
    )
    np.testing.assert_allclose(fine, interp(points), atol=1e-6)


def test_skimage_mask_convention_is_known():
    """The probe finds which corner scikit-image reads a cube's mask at (1 in 0.26: the upper)."""
    assert meshing._skimage_mask_offset() in (0, 1)


# ----------------------------------------------------------------------------------------------
# 7. Marching cubes in slabs


def same_triangles(a: trimesh.Trimesh, b: trimesh.Trimesh, atol: float = 1e-5) -> bool:
    """Same oriented triangles, vertices matched within ``atol`` (co-located vertices — a vertex
    on a grid point, one per edge that meets there — count as one position)."""
    tree = cKDTree(a.vertices)

    def canonical(vertices: np.ndarray) -> np.ndarray | None:
        near = tree.query_ball_point(vertices, atol)
        if any(len(n) == 0 for n in near):
            return None
        return np.array([min(n) for n in near])

    ids_a, ids_b = canonical(a.vertices), canonical(b.vertices)
    if ids_b is None or len(a.faces) != len(b.faces):
        return False

    def rows(faces: np.ndarray) -> np.ndarray:
        first = np.argmin(faces, axis=1)[:, None]  # rotate to the smallest id: keeps orientation
        rotated = np.take_along_axis(faces, (first + np.arange(3)) % 3, axis=1)
        return rotated[np.lexsort(rotated.T[::-1])]

    return bool(np.array_equal(rows(ids_a[a.faces]), rows(ids_b[b.faces])))


@pytest.mark.parametrize(
    "name,sdf,method,resolution,in_slabs",
    [
        ("composite", composite_sdf, "coarse_to_fine", 128, True),
        ("composite", composite_sdf, "dense", 72, True),
        # Faces on grid planes (h = 1/32): whole rows of grid points lie exactly on the surface.
        # Across x = ±0.25 no seam may be cut (a vertex would sit on a grid point of it)...
        ("x-aligned box", lambda x: box_sdf(x, (0.0, 0.0, 0.0), (0.25, 0.3, 0.41)),
         "coarse_to_fine", 65, True),
        # ...and with a face across every x plane of the box there is no seam at all: one slab.
        ("y-aligned box", lambda x: box_sdf(x, (0.0, 0.0, 0.0), (0.3, 0.375, 0.41)),
         "coarse_to_fine", 65, False),
        ("steep", lambda x: 3.0 * composite_sdf(x), "coarse_to_fine", 100, True),
    ],
)
def test_slabs_give_the_single_volume_mesh(
    monkeypatch, name, sdf, method, resolution, in_slabs
):
    """Marching cubes slab by slab, welded, is the one-call mesh (same triangles, closed)."""
    sdf64 = sdf
    sdf = lambda x: sdf64(x.double()).float()  # no ulp noise between the two runs
    kwargs = {"resolution": resolution, "method": method, "coarse_resolution": 17}
    if name == "steep":
        kwargs["margin"] = 1.0  # surface following must grow the marked cells across seams
    whole = extract_mesh(sdf, **kwargs)
    calls = []
    real = meshing.measure.marching_cubes

    def counting(volume, *args, **kw):
        calls.append(volume.shape[0])
        return real(volume, *args, **kw)

    monkeypatch.setattr(meshing, "_MC_SLAB_POINTS", resolution * resolution // 2)
    monkeypatch.setattr(meshing.measure, "marching_cubes", counting)
    slabs = extract_mesh(sdf, **kwargs)
    if in_slabs:
        assert len(calls) > 4 and max(calls) < resolution // 4
    else:
        assert len(calls) == 1
    assert slabs.num_evaluations == whole.num_evaluations
    assert len(slabs.mesh.vertices) == len(whole.mesh.vertices)
    assert same_triangles(slabs.mesh, whole.mesh)
    assert slabs.mesh.is_watertight == whole.mesh.is_watertight
    if name != "steep":
        assert slabs.mesh.is_watertight


def test_seams_avoid_planes_with_vertices_on_grid_points():
    values = np.ones((6, 5, 5), dtype=np.float32)
    values[:, 2, 2] = 0.0  # on the level set at a grid point of every plane
    assert not meshing._clean_seam(values, 3, 0.0, 2.0**-12)
    values[:, 2, 2] = 0.25  # between grid points: fine
    values[:, 2, 3] = -0.25
    assert meshing._clean_seam(values, 3, 0.0, 2.0**-12)
    values[3, 2, 2] = 1e-6  # a vertex this close to the point would round onto it
    assert not meshing._clean_seam(values, 3, 0.0, 2.0**-12)
    assert meshing._slab_end(values, 0, 3, 0.0, 2.0**-12) == 2

"""ProcShapes-2D, single discs, 3-D primitives, their loaders and the shape metrics.

Closed-form values are computed by hand from the documented parameter layouts (not from the
module's helpers); the raster convention under test is pixel (row i, col j) = point
(x = c[j], y = c[i]), c = linspace(−(R−1)/R, (R−1)/R, R), i.e. y grows down the rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from datasets.errors import DataError
from datasets.procshapes import (
    DiscSet,
    ShapeSet2D,
    ShapeSet3D,
    grid_points,
    load_image_folder,
    load_mesh_folder,
    load_shape_set,
    make_discs,
    make_primitives_3d,
    make_procshapes_2d,
    pixel_centers,
    sample_points,
)
from datasets.shape_metrics import (
    boundary_points_2d,
    chamfer_matrix,
    fit_disc,
    iou,
    mmd_cov,
)

DISC, BOX, TRIANGLE = 0, 1, 2


def shapes_2d(*prims: tuple[int, list[float]]) -> ShapeSet2D:
    """One shape per primitive, each in slot 0 (params padded to 6)."""
    kind = torch.tensor([[k] for k, _ in prims])
    params = torch.tensor([[p + [0.0] * (6 - len(p))] for _, p in prims])
    return ShapeSet2D(kind, params)


def union_2d(*prims: tuple[int, list[float]]) -> ShapeSet2D:
    """One shape: the union of all primitives."""
    kind = torch.tensor([[k for k, _ in prims]])
    params = torch.tensor([[p + [0.0] * (6 - len(p)) for _, p in prims]])
    return ShapeSet2D(kind, params)


def sdf_at(shapes, i, pts) -> np.ndarray:
    return shapes.sdf([i], torch.tensor(pts, dtype=torch.float64))[0].numpy()


# ------------------------------------------------------------------------------------------------
# 2-D SDFs.


def test_primitive_sdfs_match_closed_form():
    s = shapes_2d(
        (DISC, [0.1, -0.2, 0.3]),
        (BOX, [0.0, 0.0, 0.3, 0.2, 0.0]),
        (BOX, [0.0, 0.0, 0.3, 0.2, math.pi / 2]),
        (BOX, [0.0, 0.0, 0.2, 0.2, math.pi / 4]),
        (TRIANGLE, [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
        (TRIANGLE, [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]),  # clockwise: same set
    )
    np.testing.assert_allclose(sdf_at(s, 0, [[0.1, -0.2], [0.6, -0.2], [0.1, 0.2]]),
                               [-0.3, 0.2, 0.1], atol=1e-6)
    np.testing.assert_allclose(
        sdf_at(s, 1, [[0.0, 0.0], [0.5, 0.0], [0.6, 0.6], [0.25, 0.1]]),
        [-0.2, 0.2, math.hypot(0.3, 0.4), -0.05], atol=1e-6)
    # Rotated by 90°: the long side now runs along y.
    np.testing.assert_allclose(sdf_at(s, 2, [[0.5, 0.0], [0.0, 0.5]]), [0.3, 0.2], atol=1e-6)
    # A square rotated by 45° has a corner at (0.2·√2, 0).
    np.testing.assert_allclose(sdf_at(s, 3, [[0.5, 0.0]]), [0.5 - 0.2 * math.sqrt(2)], atol=1e-6)
    tri_pts = [[0.25, 0.25], [-0.3, -0.4], [0.5, -0.2], [1.0, 1.0], [0.1, 0.5]]
    expected = [-0.25, 0.5, 0.2, 1 / math.sqrt(2), -0.1]
    np.testing.assert_allclose(sdf_at(s, 4, tri_pts), expected, atol=1e-6)
    np.testing.assert_allclose(sdf_at(s, 5, tri_pts), expected, atol=1e-6)


def test_union_is_min_of_parts():
    a, b = (DISC, [-0.2, 0.1, 0.3]), (TRIANGLE, [0.0, -0.5, 0.6, -0.2, 0.1, 0.4])
    both, parts = union_2d(a, b), shapes_2d(a, b)
    x = torch.rand(500, 2, dtype=torch.float64) * 2 - 1
    expected = parts.sdf(None, x).min(dim=0).values
    torch.testing.assert_close(both.sdf(None, x)[0], expected)


def test_sdf_gradient_has_unit_norm():
    shapes = make_procshapes_2d(12, seed=5)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(12, 400, 2, generator=gen, dtype=torch.float64) * 2 - 1
    h = 1e-6
    grad = torch.stack([
        (shapes.sdf(None, x + h * e) - shapes.sdf(None, x - h * e)) / (2 * h)
        for e in torch.eye(2, dtype=torch.float64)
    ], dim=-1)
    norm = grad.norm(dim=-1)
    # Away from the medial axis (a null set) |∇sdf| = 1; allow the few samples within h of it.
    assert ((norm - 1).abs() < 1e-4).double().mean() > 0.99
    assert norm.max() < 1 + 1e-4


def test_targets():
    s = shapes_2d((DISC, [0.0, 0.0, 0.5]))
    x = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.9, 0.0]])
    assert s.occupancy(None, x).tolist() == [[True, False, False]]
    np.testing.assert_allclose(s.smooth_occupancy(None, x)[0].numpy(),
                               [1 / (1 + math.exp(-50)), 0.5, 1 / (1 + math.exp(40))], atol=1e-6)
    np.testing.assert_allclose(s.clamped_sdf(None, x, clamp=0.1)[0].numpy(), [-0.1, 0, 0.1],
                               atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Rasters, conventions, supervision.


def test_raster_matches_sdf_at_pixel_centres():
    shapes = make_procshapes_2d(6, seed=2)
    res = 24
    c = (2 * np.arange(res) + 1) / res - 1
    np.testing.assert_allclose(pixel_centers(res).numpy(), c, atol=1e-7)
    raster = shapes.raster(res)
    assert raster.shape == (6, 1, res, res)
    for i in range(6):
        for row, col in [(0, 0), (3, 17), (12, 12), (23, 5), (9, 20)]:
            inside = sdf_at(shapes, i, [[c[col], c[row]]])[0] < 0
            assert raster[i, 0, row, col].item() == float(inside)
    # Densely: the raster is sdf < 0 at (x = c[j], y = c[i]).
    yy, xx = np.meshgrid(c, c, indexing="ij")
    pts = torch.tensor(np.stack([xx, yy], -1).reshape(-1, 2))
    expected = (shapes.sdf(None, pts) < 0).float().reshape(6, 1, res, res)
    assert torch.equal(raster, expected)


def test_raster_convention_x_right_y_down():
    s = shapes_2d((DISC, [0.5, 0.0, 0.2]), (DISC, [0.0, 0.5, 0.2]))
    r = s.raster(32)[:, 0]
    rows, cols = r[0].nonzero().T
    assert cols.min() >= 16 and r[0].sum() > 0  # x = +0.5: right half of the columns
    rows, cols = r[1].nonzero().T
    assert rows.min() >= 16 and r[1].sum() > 0  # y = +0.5: lower half of the rows
    # grid_sample (align_corners=False) reads the raster at the point's own pixel.
    shapes = make_procshapes_2d(4, seed=9)
    raster = shapes.raster(16)
    pts = grid_points(16)
    read = torch.nn.functional.grid_sample(raster, pts.expand(4, 1, -1, -1), mode="nearest",
                                           align_corners=False)[:, 0, 0]
    assert torch.equal(read, shapes.occupancy(None, pts).float())


def test_sample_points_layout_and_targets():
    shapes = make_procshapes_2d(5, seed=1)
    gen = torch.Generator().manual_seed(0)
    pts, tgt = sample_points(shapes, [0, 3], n_random=512, grid_res=32, generator=gen, fine=True)
    assert pts.shape == (2, 512 + 32 * 32 + 64 * 64, 2) and tgt.shape == (2, pts.shape[1])
    assert pts.abs().max() <= 1
    assert torch.equal(tgt, shapes.occupancy([0, 3], pts).float())
    grid = tgt[:, 512 : 512 + 1024].reshape(2, 1, 32, 32)
    assert torch.equal(grid, shapes.raster(32, [0, 3]))
    assert not torch.equal(pts[0, :512], pts[1, :512])  # random points differ per shape
    again = sample_points(shapes, [0, 3], generator=torch.Generator().manual_seed(0), fine=True)
    assert torch.equal(again[0], pts)
    _, smooth = sample_points(shapes, [1], target="smooth")
    assert ((smooth >= 0) & (smooth <= 1)).all() and ((smooth > 0.01) & (smooth < 0.99)).any()


def test_generators_reproducible_and_in_range():
    a, b = make_procshapes_2d(20, seed=3), make_procshapes_2d(20, seed=3)
    assert torch.equal(a.kind, b.kind) and torch.equal(a.params, b.params)
    assert not torch.equal(a.params, make_procshapes_2d(20, seed=4).params)
    counts = a.n_primitives()
    assert set(counts.tolist()) <= {1, 2}
    assert (a.raster(64)[:, 0, :, [0, -1]] == 0).all()  # nothing reaches the border
    assert (a.raster(64)[:, 0, [0, -1], :] == 0).all()
    only = make_procshapes_2d(10, seed=0, kinds=("triangle",), max_primitives=1)
    assert (only.kind == TRIANGLE).all()
    with pytest.raises(ValueError, match="kinds"):
        make_procshapes_2d(2, kinds=("hexagon",))
    d1, d2 = make_discs(50, seed=7), make_discs(50, seed=7)
    assert isinstance(d1, DiscSet) and torch.equal(d1.params, d2.params)
    assert (d1.radius >= 0.2).all() and (d1.radius <= 0.6).all()
    assert ((d1.center.abs() + d1.radius[:, None]) <= 0.8 + 1e-6).all()
    p3 = make_primitives_3d(10, seed=1)
    assert torch.equal(p3.params, make_primitives_3d(10, seed=1).params)


def test_save_load_roundtrip(tmp_path):
    for shapes in (make_procshapes_2d(5, seed=1), make_discs(4, seed=2),
                   make_primitives_3d(3, seed=3)):
        path = shapes.save(tmp_path / type(shapes).__name__)
        back = load_shape_set(path)
        assert type(back) is type(shapes) and back.meta == shapes.meta
        assert torch.equal(back.params, shapes.params) and torch.equal(back.kind, shapes.kind)
    with pytest.raises(DataError, match="missing"):
        load_shape_set(tmp_path / "missing")


# ------------------------------------------------------------------------------------------------
# 3-D primitives.


def single_3d(kind: int, center, dims, rot=None) -> ShapeSet3D:
    rot = np.eye(3) if rot is None else rot
    p = np.concatenate([center, np.asarray(rot).reshape(-1), dims + [0.0] * (3 - len(dims))])
    return ShapeSet3D(torch.tensor([[kind]]), torch.tensor(p, dtype=torch.float32)[None, None])


def test_3d_sdfs_match_closed_form():
    def check(shape, pts, expected):
        got = shape.sdf(None, torch.tensor(pts, dtype=torch.float64))[0].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-6)

    check(single_3d(0, [0.1, 0, 0], [0.4]), [[0.1, 0, 0], [0.1, 0.7, 0]], [-0.4, 0.3])
    check(single_3d(1, [0, 0, 0], [0.3, 0.2, 0.1]), [[0, 0, 0], [0.5, 0, 0], [0.5, 0.6, 0.1]],
          [-0.1, 0.2, math.hypot(0.2, 0.4)])
    check(single_3d(2, [0, 0, 0], [0.1, 0.3]), [[0, 0, 0], [0, 0, 0.6], [0.3, 0, 0.2]],
          [-0.1, 0.2, 0.2])
    check(single_3d(3, [0, 0, 0], [0.2, 0.3]), [[0, 0, 0], [0.5, 0, 0], [0.5, 0, 0.7]],
          [-0.2, 0.3, 0.5])
    check(single_3d(4, [0, 0, 0], [0.4, 0.1]), [[0.4, 0, 0], [0, 0, 0], [0, 0.4, 0.3]],
          [-0.1, 0.3, 0.2])
    # Rotation: local → world. A capsule along local z, rotated so that z maps to world x.
    rot = np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]], dtype=float)
    check(single_3d(2, [0, 0, 0], [0.1, 0.3], rot), [[0.6, 0, 0], [0, 0, 0.6]], [0.2, 0.5])


def test_3d_sdf_gradient_has_unit_norm_and_checks_input():
    shapes = make_primitives_3d(10, seed=6)
    x = (torch.rand(10, 300, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(shapes.sdf(None, x).sum(), x)
    assert ((grad.norm(dim=-1) - 1).abs() < 1e-3).double().mean() > 0.99
    with pytest.raises(ValueError, match="point sets"):
        shapes.sdf([0, 1], torch.zeros(3, 5, 3))


def test_point_cloud_on_surface_and_reproducible():
    shapes = make_primitives_3d(12, seed=4)
    pc = shapes.point_cloud(None, 2000, generator=torch.Generator().manual_seed(1))
    assert pc.shape == (12, 2000, 3)
    assert shapes.sdf(None, pc.double()).abs().max() < 1e-3
    again = shapes.point_cloud(None, 2000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(pc, again)
    noisy = shapes.point_cloud([0], 2000, noise=0.01, generator=torch.Generator().manual_seed(1))
    assert 0.004 < shapes.sdf([0], noisy).abs().mean() < 0.02
    # Area-uniform on a box: the share of points on the ±x faces is their share of the area.
    box = single_3d(1, [0, 0, 0], [0.5, 0.2, 0.1])
    pts = box.point_cloud(None, 20000, generator=torch.Generator().manual_seed(2))[0]
    on_x = ((pts[:, 0].abs() - 0.5).abs() < 1e-5).double().mean().item()
    p = (0.2 * 0.1) / (0.2 * 0.1 + 0.5 * 0.1 + 0.5 * 0.2)
    assert abs(on_x - p) < 4 * math.sqrt(p * (1 - p) / 20000)


def test_sphere_occupancy_fraction_matches_volume():
    sphere = single_3d(0, [0.1, -0.1, 0.0], [0.5])
    gen = torch.Generator().manual_seed(0)
    points, occ = sphere.sample_occupancy(None, 40000, generator=gen)
    assert points.shape == (1, 40000, 3) and occ.dtype == torch.float32
    uniform = occ[0, 20000:]
    p = (4 / 3 * math.pi * 0.5**3) / 8
    assert abs(uniform.mean().item() - p) < 3 * math.sqrt(p * (1 - p) / 20000)
    near = points[0, :20000]
    assert ((near - torch.tensor([0.1, -0.1, 0.0])).norm(dim=1) - 0.5).abs().median() < 0.03
    assert torch.equal(occ[0], (sphere.sdf(None, points)[0] < 0).float())


def test_voxels_convention_and_marching_cubes_watertight():
    s = single_3d(0, [0.5, 0.0, 0.0], [0.2])
    v = s.voxels(16)[0]
    k, i, j = v.nonzero().T
    assert v.sum() > 0 and j.min() >= 8 and i.min() == k.min() == 7 and i.max() == k.max() == 8
    for kind in ShapeSet3D.KINDS:
        shapes = make_primitives_3d(1, seed=11, kinds=(kind,), max_primitives=1)
        assert shapes.is_watertight(0, resolution=64), kind
    unions = make_primitives_3d(4, seed=2)
    assert all(unions.is_watertight(i, resolution=64) for i in range(4))


# ------------------------------------------------------------------------------------------------
# Metrics.


def centred(kind: int, sizes: np.ndarray, rng: np.random.Generator) -> ShapeSet2D:
    params = np.zeros((len(sizes), 1, 6))
    if kind == DISC:
        params[:, 0, 2] = sizes
    else:
        params[:, 0, 2], params[:, 0, 3] = sizes, sizes / 2
        params[:, 0, 4] = rng.uniform(0, math.pi, len(sizes))
    return ShapeSet2D(torch.full((len(sizes), 1), kind), torch.tensor(params).float())


def test_mmd_cov_sanity():
    rng = np.random.default_rng(0)
    ref = centred(DISC, rng.uniform(0.2, 0.5, 32), rng).boundary_points(None, 128, res=64)
    discs = centred(DISC, rng.uniform(0.2, 0.5, 32), rng).boundary_points(None, 128, res=64)
    boxes = centred(BOX, rng.uniform(0.2, 0.5, 32), rng).boundary_points(None, 128, res=64)
    same = mmd_cov(ref, ref)
    assert same["mmd"] == pytest.approx(0.0, abs=1e-6) and same["cov"] == 1.0
    d, b = mmd_cov(discs, ref), mmd_cov(boxes, ref)
    assert d["mmd"] < 0.5 * b["mmd"]
    collapsed = mmd_cov(discs[:1].expand(10, -1, -1), ref)
    assert collapsed["cov"] == 1 / 32
    # Chamfer by hand on two tiny sets.
    a = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    c = torch.tensor([[[0.0, 1.0], [0.0, 3.0]]])
    # a→c: 1, √2 → mean (1+√2)/2; c→a: 1, 3 → mean 2.
    assert chamfer_matrix(a, c)[0, 0].item() == pytest.approx((1 + math.sqrt(2)) / 2 + 2)


def test_boundary_points_lie_on_the_contour():
    s = shapes_2d((DISC, [0.5, 0.3, 0.25]))
    grid = s.raster(64)[0, 0]
    pts = boundary_points_2d(grid, n=200)
    assert pts.shape == (200, 2)
    r = (pts - torch.tensor([0.5, 0.3])).norm(dim=1)
    assert (r - 0.25).abs().max() < 2 / 64  # within a pixel of the true circle
    torch.testing.assert_close(pts.mean(0), torch.tensor([0.5, 0.3]), atol=0.01, rtol=0)
    exact = boundary_points_2d(lambda x: s.sdf([0], x)[0], n=200, res=64)
    assert ((exact - torch.tensor([0.5, 0.3])).norm(dim=1) - 0.25).abs().max() < 2e-3
    batch = boundary_points_2d(torch.stack([grid, grid]), n=50)
    assert batch.shape == (2, 50, 2)
    assert torch.equal(boundary_points_2d(torch.zeros(8, 8), n=5), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="no boundary"):
        boundary_points_2d(torch.zeros(8, 8), n=5, empty="raise")


def test_iou_and_fit_disc():
    a = torch.zeros(4, 4, dtype=torch.bool)
    b = a.clone()
    a[:2], b[1:3] = True, True
    assert iou(a, b) == pytest.approx(4 / 12)
    assert iou(a, a) == 1.0 and iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    torch.testing.assert_close(iou(torch.stack([a, a]), torch.stack([a, b]), per_item=True),
                               torch.tensor([1.0, 1 / 3]))
    s = shapes_2d((DISC, [0.2, -0.1, 0.4]), (BOX, [0.0, 0.0, 0.6, 0.1, 0.3]))
    masks = s.raster(64)[:, 0] > 0.5
    fit = fit_disc(masks)
    assert fit.iou[0] > 0.95 and fit.iou[1] < 0.6
    assert fit.radius[0].item() == pytest.approx(0.4, abs=0.01)
    torch.testing.assert_close(fit.center[0], torch.tensor([0.2, -0.1]), atol=0.01, rtol=0)
    assert fit_disc(torch.zeros(8, 8, dtype=torch.bool)).iou.item() == 0.0


# ------------------------------------------------------------------------------------------------
# Loaders.


def test_load_image_folder(tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for i in range(3):
        iio.imwrite(tmp_path / f"im{i}.png", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    iio.imwrite(tmp_path / "white.png", np.full((20, 20), 255, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    grey = load_image_folder(tmp_path, res=16, channels=1)
    rgb = load_image_folder(tmp_path, res=16, channels=3)
    assert grey.shape == (4, 1, 16, 16) and rgb.shape == (4, 3, 16, 16)
    assert grey.min() >= 0 and grey.max() <= 1
    torch.testing.assert_close(rgb[3], torch.ones(3, 16, 16))  # white.png sorts last

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        load_image_folder(empty, res=8)
    assert info.value.path == str(empty) and "no images" in info.value.problem
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "nowhere", res=8)
    bad = tmp_path / "zz_corrupt.png"
    bad.write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as info:
        load_image_folder(tmp_path, res=8)
    assert info.value.path == str(bad)


def test_load_mesh_folder(tmp_path):
    trimesh.creation.icosphere(subdivisions=4, radius=3.0).export(tmp_path / "a_ball.obj")
    trimesh.creation.box(extents=(1.0, 2.0, 4.0)).export(tmp_path / "b_box.ply")
    data = load_mesh_folder(tmp_path, n_points=500, n_queries=2000, seed=0)
    assert data.points.shape == (2, 500, 3) and data.queries.shape == (2, 2000, 3)
    assert data.occupancy.shape == (2, 2000) and Path(data.files[0]).name == "a_ball.obj"
    assert data.points.abs().max() <= 0.9 + 1e-5
    # The ball becomes a sphere of radius 0.9 about the origin.
    q, occ = data.queries[0], data.occupancy[0]
    r = q.norm(dim=1)
    clear = (r - 0.9).abs() > 0.01
    assert torch.equal(occ[clear], (r[clear] < 0.9).float())
    assert (data.points[0].norm(dim=1) - 0.9).abs().max() < 0.01
    again = load_mesh_folder(tmp_path, n_points=500, n_queries=2000, seed=0)
    assert torch.equal(again.queries, data.queries)

    box = trimesh.creation.box()
    open_box = trimesh.Trimesh(box.vertices, box.faces[1:])
    open_box.export(tmp_path / "c_open.obj")
    with pytest.raises(DataError, match="not watertight") as info:
        load_mesh_folder(tmp_path, n_points=10, n_queries=10)
    assert info.value.path.endswith("c_open.obj")
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(DataError, match="no mesh files"):
        load_mesh_folder(empty, n_points=10, n_queries=10)

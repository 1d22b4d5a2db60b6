"""Mesh distance queries and SDF samples against analytic oracles (box: exact; sphere: bounded).

Sphere oracle. An icosphere ``P`` has its vertices on the sphere of radius ``r`` and is convex,
so ``B(r·h) ⊆ P ⊆ B(r)`` with ``h = min_f n_f · v_f / r`` the smallest face-plane distance
(the inscribed radius). Signed distance is monotone under inclusion, hence for every point
``|p| − r ≤ sdf_P(p) ≤ |p| − r·h``: the mesh's SDF differs from the analytic ``|p| − r`` by at
most the faceting error ``r (1 − h)`` (≈ 1.2e-3·r at 4 subdivisions, 3e-4·r at 5), plus float32
rounding.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from datasets.meshes import load_mesh, normalize_mesh
from datasets.sdf_samples import MeshDistance, SampleKind, SDFSamples, sample_sdf, sample_surface

SPOT = Path(__file__).resolve().parents[2] / "assets" / "meshes" / "spot.obj"
F32 = 2e-6  # float32 rounding of open3d's distances on unit-sized meshes


def faceting_error(sphere: trimesh.Trimesh, radius: float) -> float:
    """``r (1 − h)``: the bound on |sdf_mesh − (|p| − r)| for an icosphere of radius ``r``."""
    plane_distance = np.einsum("ij,ij->i", sphere.face_normals, sphere.triangles[:, 0])
    return float(radius - plane_distance.min())


def box_sdf(p: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Exact SDF of the axis-aligned box ``[-half, half]``."""
    q = p.abs() - half
    return q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)


def uniform(n: int, lo: float, hi: float, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).uniform(lo, hi, (n, 3)).astype(np.float32))


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=4, radius=0.8)


@pytest.fixture(scope="module")
def sphere_distance(sphere):
    return MeshDistance(sphere)


# --- MeshDistance ---------------------------------------------------------------------------------


def test_box_distances_are_exact():
    half = torch.tensor([0.5, 0.25, 0.75])
    dist = MeshDistance(trimesh.creation.box(extents=(2 * half).tolist()))
    x = uniform(4000, -1.2, 1.2)
    expected = box_sdf(x, half)
    assert torch.allclose(dist.signed_distance(x), expected, atol=F32)
    assert torch.allclose(dist.unsigned_distance(x), expected.abs(), atol=F32)
    assert torch.equal(dist.occupancy(x), expected < 0)


def test_sphere_signed_distance_within_faceting_bound(sphere, sphere_distance):
    x = uniform(20_000, -1.2, 1.2)
    analytic = x.norm(dim=1) - 0.8
    bound = faceting_error(sphere, 0.8)
    assert bound < 1.5e-3
    sdf = sphere_distance.signed_distance(x)
    assert (sdf - analytic).abs().max() <= bound + F32
    # Tighter: the mesh lies inside the sphere, so its SDF is never below the analytic one.
    assert (sdf - analytic).min() >= -F32
    assert (sphere_distance.unsigned_distance(x) - analytic.abs()).abs().max() <= bound + F32


def test_signs_and_occupancy_of_clearly_inside_and_outside_points(sphere_distance):
    x = uniform(20_000, -1.2, 1.2, seed=1)
    r = x.norm(dim=1)
    inside, outside = r < 0.79, r > 0.81  # the faceting band is thinner than 1e-3
    sdf = sphere_distance.signed_distance(x)
    assert (sdf[inside] < 0).all() and (sdf[outside] > 0).all()
    occ = sphere_distance.occupancy(x)
    assert occ.dtype == torch.bool
    assert occ[inside].all() and not occ[outside].any()


def test_closest_points_lie_on_the_surface_with_face_normals(sphere, sphere_distance):
    x = uniform(5000, -1.2, 1.2, seed=2)
    x = x[(x.norm(dim=1) - 0.8).abs() > 0.05]  # away from the surface, directions are stable
    points, normals = sphere_distance.closest_points(x)
    assert points.shape == x.shape and normals.shape == x.shape
    assert torch.allclose((x - points).norm(dim=1), sphere_distance.unsigned_distance(x), atol=F32)
    assert (points.norm(dim=1) <= 0.8 + F32).all()
    assert (points.norm(dim=1) >= 0.8 - faceting_error(sphere, 0.8) - F32).all()
    assert torch.allclose(normals.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    radial = (x / x.norm(dim=1, keepdim=True) * normals).sum(dim=1)
    assert (radial > 0.99).all()  # outward, and ≈ radial on a fine icosphere


def test_cast_rays_against_box_and_sphere(sphere_distance):
    box = MeshDistance(trimesh.creation.box(extents=(1.0, 1.0, 1.0)))
    rays_o = torch.tensor([[0.1, 0.2, -5.0], [0.0, 0.0, 5.0], [3.0, 3.0, 3.0]])
    rays_d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    depth, hit, normals = box.cast_rays(rays_o, rays_d)
    assert torch.allclose(depth[:2], torch.tensor([4.5, 4.5]))
    assert hit.tolist() == [True, True, False] and depth[2] == float("inf")
    assert torch.allclose(normals, torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0, 0, 0]]))
    depth, hit, _ = sphere_distance.cast_rays(rays_o[:2], rays_d[:2])
    # the chord of a 0.8 sphere at distance ~0.22 from its centre; faceting moves it < 2e-3
    expected = 5.0 - (0.8**2 - 0.1**2 - 0.2**2) ** 0.5
    assert hit[0] and abs(float(depth[0]) - expected) < 2e-3


def test_chunking_does_not_change_results(sphere, sphere_distance):
    x = uniform(5000, -1.2, 1.2, seed=3)
    small = MeshDistance(sphere, chunk_size=999)
    assert torch.equal(small.signed_distance(x), sphere_distance.signed_distance(x))
    assert torch.equal(small.unsigned_distance(x), sphere_distance.unsigned_distance(x))
    assert torch.equal(small.occupancy(x), sphere_distance.occupancy(x))
    for a, b in zip(small.closest_points(x), sphere_distance.closest_points(x), strict=True):
        assert torch.equal(a, b)
    rays_d = torch.nn.functional.normalize(-x, dim=1)
    for a, b in zip(small.cast_rays(x, rays_d), sphere_distance.cast_rays(x, rays_d), strict=True):
        assert torch.equal(a, b)


def test_empty_and_float64_queries(sphere_distance):
    empty = torch.zeros(0, 3)
    assert sphere_distance.signed_distance(empty).shape == (0,)
    assert sphere_distance.occupancy(empty).shape == (0,)
    assert [t.shape for t in sphere_distance.closest_points(empty)] == [(0, 3), (0, 3)]
    assert [t.shape for t in sphere_distance.cast_rays(empty, empty)] == [(0,), (0,), (0, 3)]
    out = sphere_distance.signed_distance(torch.zeros(2, 3, dtype=torch.float64))
    assert out.dtype == torch.float32 and (out < 0).all()


def test_invalid_construction():
    with pytest.raises(ValueError, match="odd"):
        MeshDistance(trimesh.creation.box(), nsamples=2)
    with pytest.raises(ValueError, match="at least one face"):
        MeshDistance(trimesh.Trimesh())


# --- sample_surface -------------------------------------------------------------------------------


def test_sample_surface_is_reproducible_and_on_the_surface(sphere, sphere_distance):
    points, normals = sample_surface(sphere, 3000, seed=7)
    again, _ = sample_surface(sphere, 3000, seed=7)
    other, _ = sample_surface(sphere, 3000, seed=8)
    gen, _ = sample_surface(sphere, 3000, seed=np.random.default_rng(7))
    assert torch.equal(points, again) and torch.equal(points, gen)
    assert not torch.equal(points, other)
    assert points.dtype == normals.dtype == torch.float32
    assert (sphere_distance.unsigned_distance(points) < F32).all()
    assert torch.allclose(normals.norm(dim=1), torch.ones(3000), atol=1e-5)
    assert ((points / points.norm(dim=1, keepdim=True) * normals).sum(dim=1) > 0.99).all()


def test_sample_surface_is_area_uniform():
    # A 2×1×1 box: the two 1×1 end caps hold 2 of the 10 area units.
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    n = 20_000
    points, normals = sample_surface(box, n, seed=0)
    on_caps = float((normals[:, 0].abs() > 0.5).float().mean())
    sigma = (0.2 * 0.8 / n) ** 0.5
    assert abs(on_caps - 0.2) < 5 * sigma
    assert abs(on_caps - 1 / 3) > 20 * sigma  # negative control: uniform over faces is 1/3
    # Within a triangle the samples are uniform: their mean is the centroid.
    tri = trimesh.Trimesh([[0, 0, 0], [3, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    p, _ = sample_surface(tri, n, seed=1)
    assert torch.allclose(p.mean(dim=0), torch.tensor([1.0, 1 / 3, 0.0]), atol=0.03)


def test_sample_surface_never_picks_zero_area_faces():
    tri = trimesh.Trimesh(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]],
        [[0, 0, 3], [0, 1, 2], [1, 1, 3]],
        process=False,
    )
    points, normals = sample_surface(tri, 2000, seed=0)
    assert (points[:, 2] == 0).all() and (normals[:, 2].abs() == 1).all()


# --- sample_sdf -----------------------------------------------------------------------------------


def test_sample_sdf_kinds_dtypes_and_counts(sphere, sphere_distance):
    s = sample_sdf(sphere, n_surface=1000, n_near=2001, n_uniform=1500, distance=sphere_distance)
    assert isinstance(s, SDFSamples) and len(s) == 4501
    assert s.points.dtype == s.sdf.dtype == torch.float32 and s.kind.dtype == torch.uint8
    assert torch.bincount(s.kind.long()).tolist() == [1000, 1001, 1000, 1500]
    assert (s.kind.diff() >= 0).all()  # grouped by kind
    assert SampleKind.UNIFORM == 3
    assert (s.sdf[s.kind == SampleKind.SURFACE] == 0).all()


def test_sample_sdf_matches_analytic_sphere_sdf(sphere, sphere_distance):
    s = sample_sdf(sphere, n_surface=2000, n_near=6000, n_uniform=6000, seed=1)
    analytic = s.points.norm(dim=1) - 0.8
    err = (s.sdf - analytic).abs()
    assert err.max() <= faceting_error(sphere, 0.8) + F32
    # signs: every sample clearly off the surface has the analytic sign
    off = analytic.abs() > faceting_error(sphere, 0.8) + F32
    assert torch.equal(s.sdf[off] < 0, analytic[off] < 0)
    # and agree with the distance object's exact values
    assert torch.allclose(s.sdf, sphere_distance.signed_distance(s.points), atol=F32)
    assert (s.points.abs() <= 1.0).all()


@pytest.mark.parametrize("sigmas", [(0.01, 0.001), (0.05, 0.004)])
def test_near_surface_offsets_have_the_requested_sigma(sphere, sphere_distance, sigmas):
    # On a locally flat surface the SDF of s + σε is the normal component of σε, ~ N(0, σ²).
    n = 20_000
    s = sample_sdf(
        sphere, n_surface=0, n_near=2 * n, n_uniform=0, sigmas=sigmas, distance=sphere_distance
    )
    for kind, sigma in zip((SampleKind.NEAR_1, SampleKind.NEAR_2), sigmas, strict=True):
        sdf = s.sdf[s.kind == kind].double()
        assert len(sdf) == n
        assert abs(float(sdf.std()) / sigma - 1) < 0.05  # stderr of a std is σ/√(2n) ≈ 0.5%
        assert abs(float(sdf.mean())) < 5 * sigma / n**0.5 + 2 * sigma**2 / 0.8  # + curvature


def test_sample_sdf_is_reproducible(sphere, sphere_distance):
    kw = dict(n_surface=500, n_near=500, n_uniform=500, distance=sphere_distance)
    a, b = sample_sdf(sphere, seed=3, **kw), sample_sdf(sphere, seed=3, **kw)
    c = sample_sdf(sphere, seed=4, **kw)
    assert torch.equal(a.points, b.points) and torch.equal(a.sdf, b.sdf)
    assert not torch.equal(a.points, c.points)
    fresh = sample_sdf(sphere, seed=3, n_surface=500, n_near=500, n_uniform=500)
    assert torch.equal(a.sdf, fresh.sdf)  # a prebuilt MeshDistance changes nothing


def test_points_are_clamped_into_bounds_before_their_sdf(sphere):
    s = sample_sdf(sphere, n_surface=2000, n_near=2000, n_uniform=1000, bounds=(-0.5, 0.5))
    assert (s.points.abs() <= 0.5).all()
    analytic = s.points.norm(dim=1) - 0.8
    assert ((s.sdf - analytic).abs() <= faceting_error(sphere, 0.8) + F32).all()
    surface = s.kind == SampleKind.SURFACE
    assert (s.sdf[surface] < 0).any()  # clamped surface points got their true (inside) sdf


def test_uniform_samples_fill_the_box(sphere, sphere_distance):
    s = sample_sdf(
        sphere,
        n_surface=0,
        n_near=0,
        n_uniform=20_000,
        bounds=(-1.0, 1.0),
        distance=sphere_distance,
    )
    assert torch.allclose(s.points.mean(dim=0), torch.zeros(3), atol=0.03)
    inside = float((s.sdf < 0).float().mean())
    expected = 4 / 3 * np.pi * 0.8**3 / 8  # ball volume over box volume
    assert abs(inside - expected) < 5 * (expected * (1 - expected) / 20_000) ** 0.5


def test_spot_samples_signs_agree_with_occupancy():
    mesh, _ = normalize_mesh(load_mesh(SPOT))
    dist = MeshDistance(mesh)
    s = sample_sdf(mesh, n_surface=1000, n_near=4000, n_uniform=5000, seed=0, distance=dist)
    off = s.kind != SampleKind.SURFACE
    assert torch.equal(s.sdf[off] < 0, dist.occupancy(s.points[off]))
    assert (s.sdf[s.kind == SampleKind.NEAR_2].abs() < 0.01).all()  # 10σ₂


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_surface=-1, n_near=1, n_uniform=1), ">= 0"),
        (dict(n_surface=1, n_near=1, n_uniform=1, sigmas=(0.01, 0.0)), "sigmas"),
        (dict(n_surface=1, n_near=1, n_uniform=1, bounds=(1.0, -1.0)), "lo < hi"),
    ],
)
def test_sample_sdf_rejects_bad_arguments(sphere, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_sdf(sphere, **kwargs)

"""Procedural OLAT light stage: light directions, closed-form shading, shadows, superposition,
determinism and configuration errors."""

from __future__ import annotations

import math

import pytest
import torch

from datasets.errors import DataError
from datasets.olat import (
    SHAPES,
    OLATConfig,
    OLATDataset,
    fibonacci_cell_solid_angle,
    fibonacci_sphere,
    make_material,
    make_olat,
    make_shape,
)

SMALL = {"n_lights": 16, "n_views": 2, "size": 32}


@pytest.fixture(scope="module")
def diffuse_sphere() -> OLATDataset:
    return make_olat(OLATConfig(shape="sphere", specular=False, wrap=0.0, **SMALL))


@pytest.fixture(scope="module")
def torus() -> OLATDataset:
    return make_olat(OLATConfig(shape="torus", **SMALL))


def _n_dot_l(ds: OLATDataset) -> torch.Tensor:
    """``[V, H, W, L]`` cosines between the G-buffer normals and the lights."""
    return torch.einsum("vhwc,lc->vhwl", ds.normals, ds.lights)


def test_fibonacci_directions_unit_and_uniform():
    for n in (1, 16, 200):
        d = fibonacci_sphere(n)
        assert d.shape == (n, 3) and d.dtype == torch.float32
        assert torch.allclose(d.norm(dim=-1), torch.ones(n), atol=1e-6)
        assert torch.equal(d, fibonacci_sphere(n))
        assert n * fibonacci_cell_solid_angle(n) == pytest.approx(4 * math.pi)
    d = fibonacci_sphere(200).double()
    assert d.mean(0).norm() < 0.01
    cos = (d @ d.T).fill_diagonal_(-1.0).amax(1).clamp(max=1.0)
    # The nearest neighbour of every direction is at least ~0.8 of the mean cell's side.
    assert cos.acos().min() > 0.8 * math.sqrt(4 * math.pi / 200)
    # Both hemispheres get half of the lights.
    assert (d[:, 1] > 0).sum() == 100
    with pytest.raises(DataError, match="n must be an int"):
        fibonacci_sphere(0)


def test_light_behind_camera_is_lambert_closed_form(diffuse_sphere: OLATDataset):
    ds = diffuse_sphere
    for v, cam in enumerate(ds.cameras):
        light = cam.c2w[:3, 2]  # camera +z: from the target back towards the camera
        img = ds.render_light(v, light, [1.0, 1.0, 1.0])
        hit = ds.hit[v]
        ndl = ds.normals[v] @ light
        assert (ndl[hit] > 0.2).all()  # every visible point faces this light
        expect = ds.albedo[v] / math.pi * ndl.clamp_min(0.0)[..., None]
        assert torch.allclose(img[hit], expect[hit], rtol=1e-5, atol=1e-7)
        assert (img[~hit] == 0).all()
        # The normals of the sphere are its radial directions.
        p = ds.points[v][hit]
        assert torch.allclose(ds.normals[v][hit], p / p.norm(dim=-1, keepdim=True), atol=2e-3)


def test_sphere_visibility_is_the_terminator(diffuse_sphere: OLATDataset):
    ds = diffuse_sphere
    ndl = _n_dot_l(ds)
    hit = ds.hit[..., None].expand_as(ndl)
    # A shadow ray from x + ε n with −δ < n·l ≤ 0 grazes past a convex surface:
    # δ = √(1 − r²/(r+ε)²).
    r, eps = 0.7, ds.config.shadow_offset
    band = 1.2 * math.sqrt(1.0 - (r / (r + eps)) ** 2)
    outside_band = hit & ~((ndl > -band) & (ndl <= 0))
    agree = (ds.visibility[outside_band] == (ndl[outside_band] > 0)).float().mean()
    assert agree >= 0.99
    assert ds.visibility[hit & (ndl > 0)].all()  # no shadow on the lit side of a convex shape
    assert not ds.visibility[~ds.hit].any()


@pytest.mark.parametrize("shape", ["torus", "capsules"])
def test_self_shadowing(shape: str, torus: OLATDataset):
    ds = torus if shape == "torus" else make_olat(OLATConfig(shape=shape, **SMALL))
    ndl = _n_dot_l(ds)
    shadowed = ds.hit[..., None] & (ndl > 0.2) & ~ds.visibility
    assert shadowed.sum() > 20
    # In a shadow, a light facing the surface contributes nothing; lit, it does.
    v, i, j, light = shadowed.nonzero()[0].tolist()
    assert (ds.olat[v, light, i, j] == 0).all()
    lit = ds.hit[..., None] & (ndl > 0.2) & ds.visibility
    v, i, j, light = lit.nonzero()[0].tolist()
    assert (ds.olat[v, light, i, j] > 0).all()


def test_superposition_and_one_hot_environment(torus: OLATDataset):
    ds = torus
    l1, l2 = torch.tensor([0.3, 0.8, 0.5]), torch.tensor([-0.6, 0.2, 0.7])
    i1, i2 = torch.tensor([1.0, 0.5, 0.25]), torch.tensor([0.2, 2.0, 1.0])
    both = ds.render_light(1, torch.stack([l1, l2]), torch.stack([i1, i2]))
    apart = ds.render_light(1, l1, i1) + ds.render_light(1, l2, i2)
    assert torch.allclose(both, apart, rtol=1e-6, atol=1e-7)
    assert both.max() > 0
    # Unnormalised directions are normalised; intensity scales linearly.
    assert torch.allclose(ds.render_light(1, 3.0 * l1, 2.0 * i1), 2.0 * ds.render_light(1, l1, i1))
    # A one-hot weight picks one OLAT image; the basis is linear.
    j = 5
    w = torch.zeros(16, 3)
    w[j] = 1.0
    assert torch.equal(ds.env_ground_truth(w), ds.olat[:, j])
    w2 = torch.rand(16, 3, generator=torch.Generator().manual_seed(0))
    expect = sum(ds.olat[:, k] * w2[k] for k in range(16))
    assert torch.allclose(ds.env_ground_truth(w2), expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="weights must be"):
        ds.env_ground_truth(torch.zeros(3, 3))


def test_render_light_reproduces_the_olat_images(torus: OLATDataset):
    ds = torus
    for j in (0, 7, 15):
        img = ds.render_light(0, ds.lights[j], [1.0, 1.0, 1.0])
        assert torch.allclose(img, ds.olat[0, j], rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="view must be"):
        ds.render_light(2, ds.lights[0], [1.0, 1.0, 1.0])
    with pytest.raises(DataError, match="non-zero"):
        ds.render_light(0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    # One [3] intensity is shared by all the lights.
    two = ds.render_light(0, ds.lights[:2], [1.0, 1.0, 1.0])
    assert torch.allclose(two, ds.olat[0, 0] + ds.olat[0, 1], rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="intensity"):
        ds.render_light(0, ds.lights[:3], torch.ones(2, 3))


def test_layout_misses_and_ranges(torus: OLATDataset):
    ds = torus
    v, n_l, s = 2, 16, 32
    assert ds.olat.shape == (v, n_l, s, s, 3) and ds.olat.dtype == torch.float32
    assert ds.visibility.shape == (v, s, s, n_l) and ds.visibility.dtype == torch.bool
    assert ds.hit.shape == (v, s, s) and ds.points.shape == ds.normals.shape == (v, s, s, 3)
    assert ds.lights.shape == (n_l, 3) and len(ds.cameras) == v == len(ds)
    assert torch.isfinite(ds.olat).all() and (ds.olat >= 0).all()
    miss = ~ds.hit
    assert 0.05 < ds.hit.float().mean() < 0.6  # the shape is in view, with background around it
    assert (ds.olat.permute(0, 2, 3, 1, 4)[miss] == 0).all()
    assert (ds.albedo[miss] == 0).all() and (ds.normals[miss] == 0).all()
    alb = ds.albedo[ds.hit]
    assert alb.min() >= 0.05 and alb.max() <= 0.95 and alb.std() > 0.02
    ks, ex = ds.specular[ds.hit], ds.exponent[ds.hit]
    assert ks.min() >= 0.05 and ks.max() <= 0.5
    assert ex.min() >= 8.0 and ex.max() <= 64.0
    assert torch.allclose(ds.normals[ds.hit].norm(dim=-1), torch.ones(int(ds.hit.sum())))
    assert torch.allclose(ds.view_dirs.norm(dim=-1), torch.ones(v, s, s))
    # Splits: disjoint, covering, and spread deterministically (16 // 8 = 2 held-out lights).
    assert ds.test_lights.tolist() == [4, 12]
    assert sorted(ds.train_lights.tolist() + ds.test_lights.tolist()) == list(range(n_l))
    assert ds.test_views.tolist() == [] and ds.train_views.tolist() == [0, 1]


def test_materials_are_seeded_and_deterministic(torus: OLATDataset):
    again = make_olat(OLATConfig(shape="torus", **SMALL))
    for name in ("olat", "visibility", "hit", "points", "normals", "albedo", "lights"):
        assert torch.equal(getattr(torus, name), getattr(again, name)), name
    other = make_olat(OLATConfig(shape="torus", material_seed=3, **SMALL))
    assert torch.equal(other.hit, torus.hit) and torch.equal(other.visibility, torus.visibility)
    hit = torus.hit
    assert (other.albedo[hit] - torus.albedo[hit]).abs().mean() > 0.05
    # Wrap from the seed lies in [0, 0.5]; specular=False zeroes k_s; seeds change the fields.
    x = torch.rand(500, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for seed in range(4):
        m = make_material(seed, wrap=None)
        assert 0.0 <= m.wrap <= 0.5
        assert (make_material(seed, specular=False).specular_albedo(x) == 0).all()
    assert not torch.equal(make_material(0).exponent(x), make_material(1).exponent(x))


def test_wrap_and_specular_shading():
    base = make_olat(shape="sphere", n_lights=8, n_views=1, size=16, specular=False, wrap=0.0)
    spec = make_olat(shape="sphere", n_lights=8, n_views=1, size=16, specular=True, wrap=0.0)
    wrap = make_olat(shape="sphere", n_lights=8, n_views=1, size=16, specular=False, wrap=0.5)
    assert (spec.olat >= base.olat).all() and spec.olat.sum() > base.olat.sum()
    # Wrap lighting brightens the lit side near the terminator: (n·l + w)/(1 + w) ≥ n·l.
    lit = (base.olat > 0)
    assert (wrap.olat[lit] >= base.olat[lit] * (1 - 1e-6)).all()
    assert wrap.olat.sum() > base.olat.sum()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_fit_the_box_and_have_unit_normals(name: str):
    shape = make_shape(name)
    g = torch.linspace(-1.0, 1.0, 9)
    faces = torch.cartesian_prod(g, g, torch.tensor([-1.0, 1.0]))
    corners = torch.cat([faces, faces[:, [2, 0, 1]], faces[:, [1, 2, 0]]])
    assert (shape.distance(corners) > 0.05).all()  # nothing touches the box's faces
    assert shape.distance(torch.zeros(1, 3)).item() < 0 or name in ("torus", "capsules")
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(2)) - 0.5
    assert torch.allclose(shape.normals(x).norm(dim=-1), torch.ones(64), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": "teapot"}, "unknown shape 'teapot'; choose one of bumpy, capsules"),
        ({"n_lights": 0}, "n_lights: must be an int ≥ 1"),
        ({"size": 4}, "size: must be an int ≥ 8"),
        ({"n_views": 0}, "n_views"),
        ({"held_out_lights": 16, "n_lights": 16}, "held_out_lights"),
        ({"held_out_lights": (1, 1)}, "held_out_lights"),
        ({"held_out_views": 2, "n_views": 2}, "held_out_views"),
        ({"wrap": 0.7}, "wrap"),
        ({"camera_radius": 1.0}, "camera_radius"),
        ({"elevation_range": (40.0, 10.0)}, "elevation_range"),
    ],
)
def test_bad_config_raises_data_error(kwargs: dict, match: str):
    with pytest.raises(DataError, match=match):
        make_olat(OLATConfig(**kwargs))
    with pytest.raises(DataError, match="unknown field"):
        make_olat(colour="red")


def test_spot_from_the_shipped_mesh():
    """The mesh shape: open3d's exact distance, finite-difference normals, self-shadowing."""
    ds = make_olat(shape="spot", size=24, n_lights=8, n_views=1, held_out_lights=1,
                   held_out_views=0)
    hit = ds.hit[0]
    assert 0.05 < hit.float().mean() < 0.8
    n = ds.normals[0][hit]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(n)), atol=1e-4)
    # Normals face the camera on visible points.
    assert ((n * ds.view_dirs[0][hit]).sum(-1) < 0.05).float().mean() > 0.97
    lit_front = ds.visibility[0][hit] & ((n @ ds.lights.T) > 0.2)
    shadowed = ~ds.visibility[0][hit] & ((n @ ds.lights.T) > 0.2)
    assert lit_front.any() and shadowed.any()  # ears and legs cast shadows

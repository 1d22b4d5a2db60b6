"""Sphere tracing against closed forms (sphere: quadratic; torus: quartic roots), against open3d's
ray caster on a mesh, and checks of compaction, clipping, stopping rules and refinement.

Grazing tolerance. Rays passing within ``hit_threshold`` of a silhouette count as hits (they are
within the threshold of the surface), and rays that meet the surface at a grazing angle converge
slowly, so the oracles exclude:

* sphere: rays whose closest approach ``ρ`` to the centre is within ``5·10⁻³`` of the radius
  (``|ρ − r| < 5e-3``, i.e. the cosine to the normal is below ≈ 0.13 at ``r = 0.6``);
* torus: rays that meet the surface with ``|cos θ| < 0.15`` to its normal, or that pass within
  ``5·10⁻³`` of it before their hit (or anywhere, if they miss) — measured by dense sampling of
  the exact SDF every ``2.5·10⁻³`` along the ray; at most 1 % of all hits may exceed the depth
  tolerance anyway.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from renderer.cameras import Camera
from renderer.rays import intersect_aabb
from renderer.sphere_trace import TraceResult, finite_difference_normals, sphere_trace

MESH = Path(__file__).resolve().parents[2] / "assets" / "meshes" / "spot.obj"
CENTRE = torch.tensor([0.1, -0.05, 0.0])
RADIUS = 0.6
TORUS_R, TORUS_r = 0.6, 0.25


def sphere_sdf(x: torch.Tensor) -> torch.Tensor:
    return (x - CENTRE.to(x)).norm(dim=-1) - RADIUS


def torus_sdf(x: torch.Tensor) -> torch.Tensor:
    """Torus around the y axis (Hart 1996, appendix)."""
    q = torch.stack([torch.sqrt(x[:, 0] ** 2 + x[:, 2] ** 2) - TORUS_R, x[:, 1]], dim=-1)
    return q.norm(dim=-1) - TORUS_r


def sphere_oracle(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smallest root of ``|o + t d − c|² = r²`` (unit d), and each ray's closest approach ρ."""
    oc = o - CENTRE.double().numpy()
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - RADIUS**2)
    hit = disc >= 0
    depth = np.where(hit, -b - np.sqrt(np.maximum(disc, 0.0)), np.inf)
    rho = np.sqrt(np.maximum((oc * oc).sum(-1) - b * b, 0.0))
    return hit, depth, rho


def torus_oracle(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Smallest positive real root of the torus quartic, by ``numpy.roots`` and Newton polish.

    With ``|d| = 1``, ``m = o·d``, ``k = |o|² + R² − r²`` the torus ``(|p|² + R² − r²)² =
    4R²(p_x² + p_z²)`` along ``p = o + t d`` is ``t⁴ + 4m t³ + (4m² + 2k − 4R²a) t² +
    (4mk − 8R²b) t + k² − 4R²c = 0`` with ``a = d_x² + d_z²``, ``b = o_x d_x + o_z d_z``,
    ``c = o_x² + o_z²``.
    """
    big, small = TORUS_R, TORUS_r
    depth = np.full(o.shape[0], np.inf)
    for k in range(o.shape[0]):
        m, kk = o[k] @ d[k], o[k] @ o[k] + big**2 - small**2
        a = d[k, 0] ** 2 + d[k, 2] ** 2
        b = o[k, 0] * d[k, 0] + o[k, 2] * d[k, 2]
        c = o[k, 0] ** 2 + o[k, 2] ** 2
        coeffs = [1.0, 4 * m, 4 * m * m + 2 * kk - 4 * big**2 * a, 4 * m * kk - 8 * big**2 * b,
                  kk * kk - 4 * big**2 * c]
        roots = np.roots(coeffs)
        real = roots[(np.abs(roots.imag) < 1e-6) & (roots.real > 0)].real
        if real.size:
            t = real.min()
            for _ in range(3):
                t -= np.polyval(coeffs, t) / np.polyval(np.polyder(coeffs), t)
            depth[k] = t
    return depth


def grazing_rays(sdf, rays_o: torch.Tensor, rays_d: torch.Tensor, depth: np.ndarray,
                 t_range: tuple[float, float]) -> np.ndarray:
    """Rays hitting at ``|cos θ| < 0.15``, or passing within 5e-3 of the surface before their hit
    (``sdf`` exact, so the 1-Lipschitz bound makes 2.5e-3 sampling good to ±1.25e-3)."""
    o, d = rays_o.double(), rays_d.double()
    t_hit = torch.from_numpy(depth)
    ts = torch.arange(*t_range, 2.5e-3, dtype=torch.float64)
    clearance = torch.empty(o.shape[0], dtype=torch.float64)
    for s in range(0, o.shape[0], 256):
        x = o[s : s + 256, None] + ts[None, :, None] * d[s : s + 256, None]
        f = sdf(x.reshape(-1, 3)).reshape(x.shape[0], -1)
        before_hit = ts[None] < t_hit[s : s + 256, None] - 0.05
        clearance[s : s + 256] = torch.where(before_hit, f, torch.inf).amin(1)
    hit = torch.isfinite(t_hit)
    p = (o + torch.where(hit, t_hit, 0.0)[:, None] * d).requires_grad_(True)
    (grad,) = torch.autograd.grad(sdf(p).sum(), p)
    cos = (grad * d).sum(-1).abs()
    return ((hit & (cos < 0.15)) | (clearance < 5e-3)).numpy()


def test_sphere_depth_and_mask_match_the_quadratic():
    cam = Camera.orbit(30.0, 20.0, 3.0, width=96, height=96, fov_y_deg=40.0)
    rays_o, rays_d = cam.rays()
    out = sphere_trace(sphere_sdf, rays_o, rays_d)
    hit, depth, rho = sphere_oracle(rays_o.double().numpy(), rays_d.double().numpy())
    ours = out.hit.numpy()
    grazing = np.abs(rho - RADIUS) < 5e-3
    assert hit.sum() > 2000 and grazing.sum() < 0.05 * hit.sum()
    mismatch = ours != hit
    assert not (mismatch & ~(np.abs(rho - RADIUS) < 2 * 5e-4)).any()  # only within the threshold
    both = hit & ours & ~grazing
    err = np.abs(out.depth.double().numpy()[both] - depth[both])
    assert err.max() <= 1e-3, err.max()
    assert err.mean() <= 1e-4
    # Points lie on the sphere and the finite-difference normals are radial.
    p = out.points[out.hit]
    assert (sphere_sdf(p).abs() < 1e-3).all()
    torch.testing.assert_close(out.normals[out.hit], (p - CENTRE) / RADIUS, atol=5e-3, rtol=0)
    assert torch.isinf(out.depth[~out.hit]).all() and (out.normals[~out.hit] == 0).all()


def test_torus_depth_and_mask_match_the_quartic():
    cam = Camera.orbit(20.0, 35.0, 2.5, width=80, height=80, fov_y_deg=45.0)
    rays_o, rays_d = cam.rays()
    out = sphere_trace(torus_sdf, rays_o, rays_d)
    depth = torus_oracle(rays_o.double().numpy(), rays_d.double().numpy())
    hit, ours = np.isfinite(depth), out.hit.numpy()
    grazing = grazing_rays(torus_sdf, rays_o, rays_d, depth, (1.0, 4.5))
    assert hit.sum() > 1500 and grazing.sum() < 0.05 * hit.sum()
    assert not ((ours != hit) & ~grazing).any()
    both = hit & ours
    err = np.abs(out.depth.double().numpy()[both] - depth[both])
    assert err[~grazing[both]].max() <= 1e-3, err[~grazing[both]].max()
    assert err[~grazing[both]].mean() <= 1e-4
    assert (err > 1e-3).mean() <= 0.01


@pytest.fixture(scope="module")
def spot_distance():
    from datasets.meshes import load_mesh, normalize_mesh
    from datasets.sdf_samples import MeshDistance

    return MeshDistance(normalize_mesh(load_mesh(MESH))[0], nsamples=1)


def test_spot_mesh_matches_open3d_ray_casting(spot_distance):
    cam = Camera.orbit(35.0, 20.0, 3.2, width=96, height=96, fov_y_deg=40.0)
    rays_o, rays_d = cam.rays()
    out = sphere_trace(spot_distance.signed_distance, rays_o, rays_d,
                       aabb=(-1.05,) * 3 + (1.05,) * 3)
    depth_ref, hit_ref, normals_ref = spot_distance.cast_rays(rays_o, rays_d)
    gt_depth = depth_ref.numpy()
    gt_hit = hit_ref.numpy()
    ours = out.hit.numpy()
    iou = (ours & gt_hit).sum() / (ours | gt_hit).sum()
    both = ours & gt_hit
    mae = np.abs(out.depth.numpy()[both] - gt_depth[both]).mean()
    assert gt_hit.sum() > 2000
    assert iou >= 0.98, iou
    assert mae <= 0.01, mae
    # Normals agree with the triangles' (open3d's primitive normals face outwards).
    gt_n = normals_ref[torch.from_numpy(both)]
    cos = (out.normals[torch.from_numpy(both)] * gt_n).sum(-1)
    assert cos.median() > 0.99


class CountingField:
    """A sphere SDF that records how many points each call evaluates and where."""

    def __init__(self):
        self.calls: list[int] = []
        self.points: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        self.points.append(x.clone())
        return sphere_sdf(x)


def test_active_ray_compaction_and_box_clipping():
    cam = Camera.orbit(0.0, 0.0, 3.0, width=48, height=48, fov_y_deg=60.0)
    rays_o, rays_d = cam.rays()
    field = CountingField()
    max_steps = 64
    out = sphere_trace(field, rays_o, rays_d, max_steps=max_steps,
                       normal_fn=lambda x: x - CENTRE)  # no finite-difference calls
    _, _, in_box = intersect_aabb(rays_o, rays_d, (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0))
    assert 0 < in_box.sum() < in_box.numel()  # the 60° view sees past the box
    assert field.calls[0] == in_box.sum()  # the first step evaluates exactly the rays in the box
    assert all(b <= a for a, b in zip(field.calls, field.calls[1:], strict=False))
    assert field.calls[-1] < field.calls[0] / 10
    assert sum(field.calls) == out.steps.sum() < rays_o.shape[0] * max_steps
    assert (out.steps[~in_box] == 0).all() and not out.hit[~in_box].any()
    everything = torch.cat(field.points)
    assert (everything.abs() <= 1.0 + 1e-5).all()  # never evaluated outside the box


def test_chunking_and_dtype_do_not_change_the_result():
    cam = Camera.orbit(10.0, 10.0, 2.5, width=24, height=24)
    rays_o, rays_d = cam.rays()
    field = CountingField()
    a = sphere_trace(sphere_sdf, rays_o, rays_d)
    b = sphere_trace(field, rays_o, rays_d, chunk_size=50)
    assert max(field.calls) <= 50
    for name in ("hit", "depth", "points", "normals", "steps"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name))
    c = sphere_trace(sphere_sdf, rays_o.double(), rays_d.double())
    assert c.depth.dtype == torch.float64 and torch.equal(c.hit, a.hit)
    torch.testing.assert_close(c.depth[c.hit].float(), a.depth[a.hit], atol=1e-5, rtol=0)


def test_unsigned_field_hits_within_the_threshold():
    cam = Camera.orbit(30.0, 20.0, 3.0, width=48, height=48, fov_y_deg=40.0)
    rays_o, rays_d = cam.rays()
    out = sphere_trace(lambda x: sphere_sdf(x).abs(), rays_o, rays_d, unsigned=True)
    hit, depth, rho = sphere_oracle(rays_o.double().numpy(), rays_d.double().numpy())
    grazing = np.abs(rho - RADIUS) < 5e-3
    ours = out.hit.numpy()
    assert not ((ours != hit) & ~(np.abs(rho - RADIUS) < 1e-3)).any()
    both = hit & ours & ~grazing
    assert np.abs(out.depth.double().numpy()[both] - depth[both]).max() <= 2 * 5e-4
    # Finite-difference normals of |sdf|, taken off the kink, still point along ±radial.
    p = out.points[out.hit]
    cos = (out.normals[out.hit] * (p - CENTRE) / RADIUS).sum(-1).abs()
    assert cos.min() > 0.95


def test_negative_controls_never_report_hits():
    # A plane z = −0.9 that rays parallel to it never reach: all leave the box as misses.
    rays_o = torch.tensor([[-2.0, y, 0.0] for y in np.linspace(-0.9, 0.9, 7)])
    rays_d = torch.tensor([[1.0, 0.0, 0.0]]).expand(7, 3)
    out = sphere_trace(lambda x: x[:, 2] + 0.9, rays_o, rays_d)
    assert not out.hit.any() and torch.isinf(out.depth).all()
    assert (out.steps >= 1).all() and (out.steps <= 3).all()  # 0.9-sized steps cross the box
    # A step cap too small to get there: rays still marching at the cap are misses.
    o, d = torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    out = sphere_trace(sphere_sdf, o, d, max_steps=5, step_scale=0.01)
    assert not out.hit.any() and out.steps.item() == 5


def test_overestimating_field_is_refined_after_a_sign_change():
    cam = Camera.orbit(30.0, 20.0, 3.0, width=48, height=48, fov_y_deg=40.0)
    rays_o, rays_d = cam.rays()
    hit, depth, rho = sphere_oracle(rays_o.double().numpy(), rays_d.double().numpy())
    # Rays with a chord ≥ 0.6: a 1.5× over-estimate from ≤ 0.6 away cannot jump through them.
    interior = hit & (rho < 0.5)

    def overestimate(x):  # 1.5× the true distance: plain sphere tracing jumps into the sphere
        return 1.5 * sphere_sdf(x)

    field = CountingField()
    refined = sphere_trace(lambda x: 1.5 * field(x), rays_o, rays_d)
    crossings = (torch.cat([sphere_sdf(p) for p in field.points]) < -5e-4).sum()
    assert crossings > 100  # the refinement path really ran
    scaled = sphere_trace(overestimate, rays_o, rays_d, step_scale=1 / 1.5)
    no_refine = sphere_trace(overestimate, rays_o, rays_d, refine_steps=0)
    for out in (refined, scaled, no_refine):
        assert out.hit.numpy()[interior].all()  # sign changes count as hits
    for out in (refined, scaled):
        err = np.abs(out.depth.double().numpy()[interior] - depth[interior]).max()
        assert err <= 1e-3, err
    # Refinement evaluations are counted in steps.
    assert refined.steps.sum() > no_refine.steps.sum()


def test_surface_clipped_by_the_box_is_hit_on_entry():
    big = lambda x: x.norm(dim=-1) - 2.0  # contains the whole box
    o, d = torch.tensor([[0.3, 0.2, 4.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    out = sphere_trace(big, o, d)
    assert out.hit.item() and out.depth.item() == pytest.approx(3.0) and out.steps.item() == 1


def test_normal_fn_is_used_and_normalised():
    o, d = torch.tensor([[0.1, -0.05, 3.0]]), torch.tensor([[0.0, 0.0, -1.0]])
    out = sphere_trace(sphere_sdf, o, d, normal_fn=lambda x: torch.tensor([[0.0, 3.0, 4.0]]))
    torch.testing.assert_close(out.normals, torch.tensor([[0.0, 0.6, 0.8]]))

    def autograd_normal(x):  # works although tracing itself runs under no_grad
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(sphere_sdf(x).sum(), x)[0]

    out = sphere_trace(sphere_sdf, o, d, normal_fn=autograd_normal)
    torch.testing.assert_close(out.normals, torch.tensor([[0.0, 0.0, 1.0]]), atol=1e-5, rtol=0)


def test_finite_difference_normals_of_a_plane_and_a_sphere():
    x = torch.randn(10, 3, dtype=torch.float64)
    n = finite_difference_normals(lambda p: p @ torch.tensor([1.0, 2.0, 2.0]).double(), x)
    torch.testing.assert_close(n, torch.tensor([[1 / 3, 2 / 3, 2 / 3]]).double().expand(10, 3))
    n = finite_difference_normals(lambda p: p.norm(dim=-1) - 1.0, x, eps=1e-4)
    torch.testing.assert_close(n, x / x.norm(dim=-1, keepdim=True), atol=1e-6, rtol=0)


def test_result_type_and_invalid_arguments():
    o, d = torch.zeros(2, 3) + torch.tensor([0.0, 0.0, 3.0]), torch.tensor([[0.0, 0.0, -1.0]] * 2)
    assert isinstance(sphere_trace(sphere_sdf, o, d), TraceResult)
    empty = sphere_trace(sphere_sdf, torch.zeros(0, 3), torch.zeros(0, 3))
    assert empty.hit.shape == (0,) and empty.normals.shape == (0, 3)
    with pytest.raises(ValueError, match="step_scale"):
        sphere_trace(sphere_sdf, o, d, step_scale=0.0)
    with pytest.raises(ValueError, match="hit_threshold"):
        sphere_trace(sphere_sdf, o, d, hit_threshold=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        sphere_trace(sphere_sdf, o, d, max_steps=0)
    with pytest.raises(ValueError, match="aabb"):
        sphere_trace(sphere_sdf, o, d, aabb=(1.0, 1.0, 1.0, -1.0, -1.0, -1.0))
    with pytest.raises(ValueError, match="distance_fn"):
        sphere_trace(lambda x: x, o, d)

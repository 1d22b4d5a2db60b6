"""CSP fields: derived quantities against closed forms (spec check 1), the CSPField module, and
the trained checks 5–7 of ../shared/methods/csp.md (distance, normals, identity on the surface).

Oracles for check 1 do not reuse the closed-form CSP: the reference distance of each shape is
written directly (sphere ``|‖x‖ − R|``; patch ``√(dx² + dy² + z²)`` with ``dx = max(|x| − a, 0)``;
tube ``√((r − ρ)² + max(|z| − h, 0)²)``) and the reference direct normal is its autograd
gradient ``∇u``, which the direct normal must equal for an exact CSP. Points closer than 1e-3 to
the surface or to a medial axis (the sphere's centre, the tube's axis) are excluded, where ``∇u``
is undefined.
"""

import copy
import math

import numpy as np
import pytest
import torch

from datasets.csp_samples import AnalyticPatch, AnalyticSphere, AnalyticTube, sample_csp
from datasets.sdf_samples import SampleKind
from fields.csp import (
    CSPField,
    csp_jacobian,
    normal_direct,
    normal_jacobian,
    udf_fn,
    udf_from_csp,
)
from fields.encodings.frequency import PositionalEncoding
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from tests.fields.csp_fits import SHAPES, fit_csp

F64 = torch.float64
SPHERE = AnalyticSphere(0.7)
PATCH = AnalyticPatch(0.5)
TUBE = AnalyticTube(0.4, 0.6)


def sphere_distance(x):
    return (x.norm(dim=-1) - SPHERE.radius).abs()


def patch_distance(x):
    a = PATCH.half_size
    dxy = (x[:, :2].abs() - a).clamp_min(0.0)
    return torch.sqrt((dxy**2).sum(-1) + x[:, 2] ** 2)


def tube_distance(x):
    r = x[:, :2].norm(dim=-1)
    dz = (x[:, 2].abs() - TUBE.half_height).clamp_min(0.0)
    return torch.sqrt((r - TUBE.radius) ** 2 + dz**2)


CASES = {
    "sphere": (SPHERE, sphere_distance, lambda x: x.norm(dim=-1)),
    "patch": (PATCH, patch_distance, lambda x: torch.full_like(x[:, 0], math.inf)),
    "tube": (TUBE, tube_distance, lambda x: x[:, :2].norm(dim=-1)),
}


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle between unit vectors up to sign, in degrees (arccos: ~1e-6° resolution in float64)."""
    return torch.rad2deg(torch.arccos((a * b).sum(-1).abs().clamp(max=1.0)))


def up_to_sign(n: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``‖±n − ref‖`` with the sign that fits best (exact checks; no arccos rounding)."""
    return torch.minimum((n - ref).norm(dim=-1), (n + ref).norm(dim=-1))


# --- check 1: derived quantities on exact CSP -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_udf_and_direct_normal_match_closed_forms(name):
    shape, distance, medial = CASES[name]
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1.2, 1.2, (4000, 3)))
    keep = (distance(x) > 1e-3) & (medial(x) > 1e-3)
    x = x[keep].requires_grad_(True)
    u_ref = distance(x)
    (n_ref,) = torch.autograd.grad(u_ref.sum(), x)
    x = x.detach()
    csp = shape.csp(x)
    assert csp.dtype == F64 and keep.sum() > 3500
    torch.testing.assert_close(udf_from_csp(x, csp), u_ref.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(normal_direct(x, csp), n_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(shape.udf(x), u_ref.detach(), rtol=0, atol=1e-10)


def test_jacobian_normal_on_the_sphere_is_radial_and_rank_two():
    p, _ = SPHERE.sample_surface(2000, seed=1, dtype=F64)
    n, s = normal_jacobian(SPHERE.csp, p)
    n_ref = p / SPHERE.radius
    assert up_to_sign(n, n_ref).max() < 1e-8
    assert s[:, 2].max() < 1e-8  # rank 2: the tangent projector
    torch.testing.assert_close(s[:, :2], torch.ones(2000, 2, dtype=F64), rtol=0, atol=1e-10)


def test_jacobian_off_the_surface_scales_the_tangent_plane():
    """Outside a sphere ``J = R/‖x‖ (I − n nᵀ)``: singular values ``(R/‖x‖, R/‖x‖, 0)``."""
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(500, 3)))
    x = x / x.norm(dim=-1, keepdim=True) * torch.linspace(0.3, 1.5, 500, dtype=F64)[:, None]
    n, s = normal_jacobian(SPHERE.csp, x)
    expected = SPHERE.radius / x.norm(dim=-1)
    torch.testing.assert_close(s[:, 0], expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(s[:, 1], expected, rtol=0, atol=1e-10)
    assert s[:, 2].max() < 1e-10 and up_to_sign(n, x / x.norm(dim=-1, keepdim=True)).max() < 1e-8


@pytest.mark.parametrize("shape", [PATCH, TUBE], ids=["patch", "tube"])
def test_jacobian_normal_on_open_surfaces(shape):
    p, normals = shape.sample_surface(1000, seed=3, dtype=F64)
    n, s = normal_jacobian(shape.csp, p)
    assert up_to_sign(n, normals).max() < 1e-8 and s[:, 2].max() < 1e-8


def test_udf_fn_wraps_fields_and_callables():
    x = torch.tensor([[0.0, 0.0, 2.0], [0.3, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(udf_fn(SPHERE.csp)(x), torch.tensor([1.3, 0.4], dtype=F64))
    field = CSPField(hidden_dim=16, num_hidden_layers=1).double()
    assert udf_fn(field) == field.udf
    with pytest.raises(TypeError):  # the run-time type checker or udf_fn's own check
        udf_fn(3.0)


def test_bad_csp_callables_fail_clearly():
    x = torch.rand(4, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"map \[N, 3\] points to \[N, 3\]"):
        normal_jacobian(lambda p: p.norm(dim=-1), x)
    with pytest.raises(ValueError, match="does not depend differentiably"):
        normal_jacobian(lambda p: torch.zeros_like(p), x)
    with pytest.raises(ValueError, match="eps must be positive"):
        normal_direct(x, x, eps=0.0)


# --- CSPField -------------------------------------------------------------------------------------


def test_untrained_residual_field_is_the_identity_and_direct_field_is_not():
    x = torch.rand(50, 3) * 2 - 1
    torch.testing.assert_close(CSPField()(x), x)
    assert CSPField()(x).requires_grad
    assert not torch.allclose(CSPField(residual=False)(x), x)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_field_jacobian_matches_finite_differences(residual, activation):
    torch.manual_seed(0)
    field = CSPField(PositionalEncoding(3, 2), hidden_dim=32, num_hidden_layers=2,
                     activation=activation, residual=residual).double()
    with torch.no_grad():
        field.mlp.linears[-1].weight.normal_(0.0, 0.3)  # non-trivial also for residual=True
    x = torch.tensor([[0.31, -0.12, 0.2], [-0.5, 0.4, 0.05]], dtype=F64)
    c, jac = csp_jacobian(field.csp, x)
    h = 1e-6
    fd = torch.stack([(field.csp(x + h * e) - field.csp(x - h * e)) / (2 * h)
                      for e in torch.eye(3, dtype=F64)], dim=-1)
    torch.testing.assert_close(c, field.csp(x).detach())
    torch.testing.assert_close(jac, fd.detach(), rtol=1e-5, atol=1e-7)
    n, s = field.normal_jacobian(x)
    _, s_ref, vh = torch.linalg.svd(fd.detach())
    torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-7)
    assert angle_deg(n, vh[:, 2]).max() < 1e-3


def test_field_with_hash_grid_and_chunking():
    torch.manual_seed(0)
    enc = HashGridEncoding(3, HashGridConfig(num_levels=4, log2_hashmap_size=10), backend="torch")
    field = CSPField(enc, hidden_dim=32, num_hidden_layers=2, chunk_size=7)
    with torch.no_grad():
        field.mlp.linears[-1].weight.normal_(0.0, 0.1)
    x = torch.rand(30, 3) * 2 - 1
    torch.testing.assert_close(field.csp_chunked(x), field.csp(x).detach())
    n, s = field.normal_jacobian(x)
    assert n.shape == s.shape == (30, 3) and torch.allclose(n.norm(dim=-1), torch.ones(30))
    assert field.normal(x).shape == (30, 3) and field.udf(x).shape == (30,)
    assert all(p.grad is None for p in field.parameters())  # normals leave parameters alone


def test_field_rejects_bad_configuration():
    with pytest.raises(ValueError, match="activation must be 'relu' or 'softplus'"):
        CSPField(activation="tanh")
    with pytest.raises(ValueError, match="encoding must take 3-D points"):
        CSPField(PositionalEncoding(2, 2))
    with pytest.raises(ValueError, match="chunk_size"):
        CSPField(chunk_size=0)


# --- trained checks 5–7 ---------------------------------------------------------------------------


def held_out(name: str):
    """Fresh samples (another seed than the training pool), float64."""
    return sample_csp(SHAPES[name], n_surface=2000, n_near=4000, n_uniform=0, seed=123,
                      dtype=F64)


def trained(name: str) -> CSPField:
    field, seconds = fit_csp(name)
    print(f"\n[csp fit {name}: {seconds:.1f} s]", end="")
    return copy.deepcopy(field).double()  # the cached fit is shared with other test modules


@pytest.mark.parametrize("name", ["sphere", "patch"])
def test_trained_udf_error_near_the_surface(name):
    """Check 5: mean |u_pred − u| over held-out points of both near-surface bands < 5e-3."""
    field = trained(name)
    near = held_out(name).select(SampleKind.NEAR_1, SampleKind.NEAR_2)
    with torch.no_grad():
        mae = (field.udf(near.points) - udf_from_csp(near.points, near.csp)).abs().mean().item()
    print(f" UDF MAE {mae:.2e} (threshold 5e-3)", end="")
    assert mae < 5e-3


@pytest.mark.parametrize("name", ["sphere", "patch"])
def test_trained_normals(name):
    """Check 6: mean angle, up to sign, < 5° for the direct normal off the surface (surface
    points moved 0.01–0.05 along ±n) and the Jacobian-SVD normal on held-out surface points."""
    field = trained(name)
    surface = held_out(name).select(SampleKind.SURFACE)
    rng = np.random.default_rng(5)
    offset = rng.uniform(0.01, 0.05, (len(surface), 1)) * rng.choice([-1.0, 1.0], (len(surface), 1))
    x_off = surface.points + torch.from_numpy(offset) * surface.normals
    direct = angle_deg(field.normal(x_off), surface.normals).mean().item()
    n_jac, s = field.normal_jacobian(surface.points)
    jacobian = angle_deg(n_jac, surface.normals).mean().item()
    print(f" direct {direct:.2f}°, Jacobian {jacobian:.2f}° (threshold 5°, target 3°), "
          f"mean σ₃/σ₁ {(s[:, 2] / s[:, 0]).mean():.3f}", end="")
    assert direct < 5.0 and jacobian < 5.0


@pytest.mark.parametrize("name", ["sphere", "patch"])
def test_trained_identity_on_the_surface(name):
    """Check 7: mean ‖CSP(p) − p‖ on held-out surface samples < 5e-3."""
    field = trained(name)
    p = held_out(name).select(SampleKind.SURFACE).points
    with torch.no_grad():
        err = (field.csp(p) - p).norm(dim=-1).mean().item()
    print(f" identity error {err:.2e} (threshold 5e-3)", end="")
    assert err < 5e-3

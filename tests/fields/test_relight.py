"""Linear relighting field (fields/relight.py): the URHand spec's structural checks 1–5 in
float64 on random weights, each with the negative controls that must break it."""

from __future__ import annotations

import math

import pytest
import torch

from fields.relight import LinearRelightingField, aggregate, shading_basis

P, L = 64, 12
CONTROLS = ("light_bias", "light_relu", "leak", "clamp")


def _scene(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(P, 3, generator=g, dtype=torch.float64) * 2 - 1
    n = torch.nn.functional.normalize(torch.randn(P, 3, generator=g, dtype=torch.float64), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(P, 3, generator=g, dtype=torch.float64), dim=-1)
    v = torch.where(((n * v).sum(-1, keepdim=True) > 0), -v, v)  # looking at the front
    lights = torch.nn.functional.normalize(torch.randn(L, 3, generator=g, dtype=torch.float64),
                                           dim=-1)
    vis = (torch.rand(P, L, generator=g, dtype=torch.float64) > 0.3).double()
    return x, n, v, lights, vis


def _field(seed: int = 0, **flags) -> LinearRelightingField:
    torch.manual_seed(seed)
    f = LinearRelightingField(hidden_dim=32, num_hidden_layers=2, light_hidden=8, **flags)
    with torch.no_grad():  # random, not trained: make the light path's modulation sizeable
        for p in f.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return f.double()


def _intensities(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(L, 3, generator=g, dtype=torch.float64) * 2.0


@torch.no_grad()
def _superposition_error(f: LinearRelightingField) -> float:
    x, n, v, lights, vis = _scene()
    i1, i2 = _intensities(1), _intensities(2)
    a, b = 0.7, -1.3  # a negative weight too
    r = lambda i: f(x, n, v, lights, i, vis)  # noqa: E731
    lhs = r(a * i1 + b * i2)
    rhs = a * r(i1) + b * r(i2)
    scale = (a * r(i1)).norm() + (b * r(i2)).norm()
    return float((lhs - rhs).norm() / scale)


@torch.no_grad()
def _zero_and_homogeneity_error(f: LinearRelightingField) -> float:
    x, n, v, lights, vis = _scene()
    zero = f(x, n, v, lights, torch.zeros(L, 3, dtype=torch.float64), vis).abs().max()
    i = _intensities(3)
    s = torch.tensor([0.5, 2.0, -1.5], dtype=torch.float64)  # per channel, one negative
    lhs = f(x, n, v, lights, i * s, vis)
    rhs = s * f(x, n, v, lights, i, vis)
    return float(zero) + float((lhs - rhs).norm() / rhs.norm())


@torch.no_grad()
def _olat_decomposition_error(f: LinearRelightingField) -> float:
    """One pass with every light equals the weighted sum of unit single-light renders."""
    x, n, v, lights, vis = _scene()
    i = _intensities(4)
    together = f(x, n, v, lights, i, vis)
    apart = torch.zeros_like(together)
    for j in range(L):
        one = torch.zeros(L, 3, dtype=torch.float64)
        one[j] = 1.0
        apart = apart + i[j] * f(x, n, v, lights, one, vis)
    return float((together - apart).norm() / together.norm())


def _jacobian_change(f: LinearRelightingField) -> float:
    """‖J(I₁) − J(I₂)‖ / ‖J(I₁)‖ for the Jacobian of the output with respect to I."""
    x, n, v, lights, vis = _scene()

    def out(i: torch.Tensor) -> torch.Tensor:
        return f(x[:8], n[:8], v[:8], lights, i, vis[:8])

    j1 = torch.autograd.functional.jacobian(out, _intensities(5))
    j2 = torch.autograd.functional.jacobian(out, -3.0 * _intensities(6))
    return float((j1 - j2).norm() / j1.norm())


CHECKS = {
    "superposition": _superposition_error,
    "zero_and_homogeneity": _zero_and_homogeneity_error,
    "olat_decomposition": _olat_decomposition_error,
    "constant_jacobian": _jacobian_change,
}


@pytest.mark.parametrize("check", list(CHECKS))
def test_linear_in_the_lights(check):
    err = CHECKS[check](_field())
    assert err < 1e-10, (check, err)


@pytest.mark.parametrize("control", CONTROLS)
def test_each_negative_control_breaks_the_checks(control):
    """Every control breaks checks 1–3; ReLU, leak and clamp also change the Jacobian. A bias
    alone makes the map affine, whose Jacobian *is* constant: check 4 cannot see it — that is
    what the zero-light part of check 2 is for."""
    f = _field(**{control: True})
    for name, check in CHECKS.items():
        err = check(f)
        if control == "light_bias" and name == "constant_jacobian":
            assert err < 1e-10, err  # affine: constant Jacobian, as the maths says
            continue
        assert err > 1e-4, (control, name, err)


def test_the_physical_branch_alone_is_blinn_phong():
    """With the neural branch's gain zeroed the output is Blinn–Phong with the learned material:
    one light straight along the normal, viewed head-on: a/π + k_s (s + 8)/(8π)."""
    f = _field()
    with torch.no_grad():
        f.w1.zero_()
    n = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64)
    x = torch.zeros(1, 3, dtype=torch.float64)
    light = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    out = f(x, n, v, light, torch.ones(1, 3, dtype=torch.float64))
    w = f.weights(x, n, v)
    expect = w["albedo"] / math.pi + w["specular"] * (w["exponent"] + 8) / (8 * math.pi)
    assert torch.allclose(out, expect, atol=1e-12)
    # Shadowed: nothing.
    dark = f(x, n, v, light, torch.ones(1, 3, dtype=torch.float64),
             torch.zeros(1, 1, dtype=torch.float64))
    assert dark.abs().max() == 0


def test_basis_and_aggregation():
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    v = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    lights = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.6, 0.8], [0.0, 0.0, -1.0]])
    phi = shading_basis(n, v, lights)
    assert phi.shape == (2, 3, 4)
    assert torch.allclose(phi[0, :, 0], torch.tensor([1.0, 0.8, 0.0]))  # max(n·l, 0)
    assert phi[0, 2].abs().max() == 0  # behind the surface: no lobe either
    assert phi[0, 1, 3] < phi[0, 1, 1]  # sharper lobes fall off faster
    big = aggregate(phi, torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [5.0, 5.0, 5.0]]))
    assert torch.allclose(big[0, 0], phi[0, 0]) and torch.allclose(big[0, 1], 2 * phi[0, 1])
    with pytest.raises(ValueError, match="visibility"):
        shading_basis(n, v, lights, torch.ones(3, 2))


def test_one_pass_cost_does_not_grow_with_the_lights():
    """The environment-map property: g_θ (the network) runs once per point whatever the number
    of lights; only the parameter-free basis is per light."""
    f = _field()
    calls = []
    f.g.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x, n, v, _, _ = _scene()
    many = torch.nn.functional.normalize(torch.randn(512, 3, dtype=torch.float64), dim=-1)
    f(x, n, v, many, torch.rand(512, 3, dtype=torch.float64))
    assert calls == [P]

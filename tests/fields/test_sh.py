"""Real spherical harmonics: known values, addition theorem, orthonormality, SciPy oracle."""

import math

import pytest
import torch

from fields.encodings.sh import SphericalHarmonics


def _sphere_samples(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=gen, dtype=torch.float64),
                                         dim=-1)


def test_shapes_and_degrees():
    for degree in (1, 2, 3, 4):
        sh = SphericalHarmonics(degree)
        assert sh.out_dim == degree**2
        assert sh(_sphere_samples(5)).shape == (5, degree**2)
    with pytest.raises(ValueError):
        SphericalHarmonics(5)


def test_known_values_on_the_axes():
    sh = SphericalHarmonics(4)
    y = sh(torch.eye(3, dtype=torch.float64))
    c0, c1 = 0.5 / math.sqrt(math.pi), math.sqrt(3 / (4 * math.pi))
    c20, c30 = 0.25 * math.sqrt(5 / math.pi), 0.25 * math.sqrt(7 / math.pi)
    # +z: only the zonal (m = 0) functions are non-zero: Y_l0(+z) = √((2l+1)/4π).
    ez = torch.zeros(16, dtype=torch.float64)
    ez[[0, 2, 6, 12]] = torch.tensor([c0, c1, 2 * c20, 2 * c30], dtype=torch.float64)
    torch.testing.assert_close(y[2], ez, rtol=0, atol=1e-15)
    for l_ in range(4):
        assert y[2, l_ * l_ + l_] == pytest.approx(math.sqrt((2 * l_ + 1) / (4 * math.pi)))
    # +x: band 1 is −C1·x (Condon–Shortley phase); Y_20 = −c20; Y_22 = ¼√(15/π).
    assert y[0, 3] == pytest.approx(-c1) and y[0, 1] == 0 and y[0, 2] == 0
    assert y[0, 6] == pytest.approx(-c20)
    assert y[0, 8] == pytest.approx(0.25 * math.sqrt(15 / math.pi))


def test_addition_theorem():
    # Σ_m Y_lm(ω)² = (2l + 1)/(4π) for every unit ω, independent of sign conventions.
    y = SphericalHarmonics(4)(_sphere_samples(1000))
    for l_ in range(4):
        band = (y[:, l_ * l_:(l_ + 1) ** 2] ** 2).sum(-1)
        torch.testing.assert_close(band, torch.full_like(band, (2 * l_ + 1) / (4 * math.pi)))


def test_orthonormal_by_monte_carlo():
    # Normalisation: ∫ Y_i Y_j dω = δ_ij, i.e. E_uniform[Y_i Y_j] = δ_ij / (4π).
    y = SphericalHarmonics(4)(_sphere_samples(400_000, seed=1))
    gram = 4 * math.pi * (y.T @ y) / y.shape[0]
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), rtol=0, atol=2e-2)


def test_matches_scipy_real_harmonics():
    special = pytest.importorskip("scipy.special")
    import numpy as np

    d = _sphere_samples(50, seed=2)
    ours = SphericalHarmonics(4)(d).numpy()
    theta = np.arccos(np.clip(d[:, 2].numpy(), -1, 1))  # polar
    phi = np.arctan2(d[:, 1].numpy(), d[:, 0].numpy())  # azimuth
    sph = getattr(special, "sph_harm_y", None)
    for l_ in range(4):
        for m in range(-l_, l_ + 1):
            if sph is not None:
                ylm = sph(l_, abs(m), theta, phi)
            else:  # SciPy < 1.15: sph_harm(m, l, azimuth, polar)
                ylm = special.sph_harm(abs(m), l_, phi, theta)
            # Real basis from the complex one, keeping the Condon–Shortley phase of Y_l|m|
            # (graphics convention): √2·Im for m < 0, Re for m = 0, √2·Re for m > 0.
            if m < 0:
                ref = math.sqrt(2) * ylm.imag
            elif m == 0:
                ref = ylm.real
            else:
                ref = math.sqrt(2) * ylm.real
            np.testing.assert_allclose(ours[:, l_ * l_ + l_ + m], ref, atol=1e-12)

"""Frequency encodings against their closed forms."""

import math

import torch

from fields.encodings.frequency import PositionalEncoding, RandomFourierFeatures


def test_positional_encoding_closed_form():
    enc = PositionalEncoding(2, num_frequencies=3, include_input=True)
    x = torch.tensor([[0.25, -0.5]])
    y = enc(x)
    assert y.shape == (1, enc.out_dim) and enc.out_dim == 2 * (2 * 3 + 1)
    assert torch.equal(y[0, :2], x[0])
    # Layout: [x, sin(2^k π x) for k, cos(2^k π x) for k], each block over D.
    for k in range(3):
        for d in range(2):
            v = x[0, d].item() * math.pi * 2**k
            assert abs(y[0, 2 + k * 2 + d].item() - math.sin(v)) < 1e-6
            assert abs(y[0, 2 + 6 + k * 2 + d].item() - math.cos(v)) < 1e-6


def test_random_fourier_features_closed_form_and_seed():
    a = RandomFourierFeatures(3, num_features=8, scale=5.0, seed=1)
    b = RandomFourierFeatures(3, num_features=8, scale=5.0, seed=1)
    c = RandomFourierFeatures(3, num_features=8, scale=5.0, seed=2)
    assert torch.equal(a.B, b.B) and not torch.equal(a.B, c.B)
    x = torch.randn(4, 3)
    proj = 2 * math.pi * (x @ a.B.T)
    torch.testing.assert_close(a(x), torch.cat([proj.sin(), proj.cos()], -1))
    # sin² + cos² = 1 for every feature pair.
    y = a(x)
    torch.testing.assert_close(y[:, :8] ** 2 + y[:, 8:] ** 2, torch.ones(4, 8))


def test_random_fourier_scale_sets_bandwidth():
    enc = RandomFourierFeatures(2, num_features=4096, scale=7.0, seed=0)
    assert abs(enc.B.std().item() - 7.0) < 0.2  # B ~ N(0, σ²)


def test_positional_encoding_of_no_points():
    enc = PositionalEncoding(3, 4)
    assert enc(torch.zeros(0, 3)).shape == (0, enc.out_dim)

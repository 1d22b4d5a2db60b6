"""RadianceField (instant-ngp style) and trunc_exp."""

import pytest
import torch

from fields.encodings.frequency import PositionalEncoding
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.encodings.quantized import CoordinateQuantizer, QuantizedEncoding
from fields.encodings.sh import SphericalHarmonics
from fields.radiance import RadianceField, trunc_exp


def _field(**kw):
    torch.manual_seed(0)
    enc = HashGridEncoding(3, HashGridConfig(num_levels=4, log2_hashmap_size=10),
                           bounds=(-1.5, 1.5), backend="torch", init_scale=1e-1)
    return RadianceField(enc, hidden_dim=32, color_hidden=32, **kw)


def _inputs(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=gen) * 2 - 1
    d = torch.randn(n, 3, generator=gen)
    return x, d


def test_trunc_exp_forward_and_finite_gradient_for_large_inputs():
    x = torch.tensor([-3.0, 0.0, 2.0, 50.0, 100.0, 1e4], requires_grad=True)
    y = trunc_exp(x)
    torch.testing.assert_close(y[:3], torch.exp(x[:3]))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad[:3], torch.exp(x[:3].detach()))
    assert x.grad[3] == x.grad[4] == pytest.approx(torch.exp(torch.tensor(15.0)).item())
    # Below the clamp it is exactly exp, checked numerically in float64.
    xs = torch.linspace(-4, 4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(trunc_exp, (xs,))


@pytest.mark.parametrize("density_activation", ["trunc_exp", "softplus"])
def test_shapes_ranges_and_forward_consistency(density_activation):
    field = _field(density_activation=density_activation)
    x, d = _inputs()
    sigma, rgb = field(x, d)
    assert sigma.shape == (64,) and rgb.shape == (64, 3)
    assert (sigma >= 0).all() and ((rgb > 0) & (rgb < 1)).all()
    torch.testing.assert_close(field.density(x), sigma)
    torch.testing.assert_close(field.rgb(x, d), rgb)
    # Directions are normalised: scaling them does not change the colour.
    torch.testing.assert_close(field.rgb(x, 7.0 * d), rgb)


def test_default_direction_encoding_is_sh_degree_4():
    field = _field()
    assert isinstance(field.dir_encoding, SphericalHarmonics) and field.dir_encoding.out_dim == 16
    assert field.color_net.in_dim == 15 + 16
    with pytest.raises(ValueError, match="density_activation"):
        _field(density_activation="relu")


def test_gradient_flows_to_all_parameters():
    field = _field()
    x, d = _inputs()
    sigma, rgb = field(x, d)
    (sigma.mean() + rgb.mean()).backward()
    for name, p in field.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_density_chunked_equals_batched():
    field = _field(chunk_size=10)
    x, _ = _inputs(57)
    out = field.density_chunked(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, field.density(x).detach())


def test_with_quantized_positions():
    torch.manual_seed(0)
    q = CoordinateQuantizer(domain=(-1.5, 1.5), cell_size=0.05)
    field = RadianceField(QuantizedEncoding(PositionalEncoding(3, 4), q), hidden_dim=32)
    x, d = _inputs()
    torch.testing.assert_close(field.density(x), field.density(q(x)), rtol=0, atol=0)

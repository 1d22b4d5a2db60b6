"""NeuSField (SDF + colour, optional CQ-NIR quantisation) and LearnedVariance."""

import math

import pytest
import torch
import torch.nn.functional as F

from fields.encodings.frequency import PositionalEncoding
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.encodings.quantized import CoordinateQuantizer, QuantizedEncoding
from fields.neus import LearnedVariance, NeuSField


def _pe_field(quantized=False, dtype=torch.float32, perturb=0.0, seed=0):
    torch.manual_seed(seed)
    enc = PositionalEncoding(3, 6)
    if quantized:
        enc = QuantizedEncoding(enc, CoordinateQuantizer(domain=(-1.5, 1.5), cell_size=0.05))
    field = NeuSField(enc, hidden_dim=64).to(dtype)
    if perturb:  # make the (zero-initialised) encoding columns matter
        with torch.no_grad():
            first = field.sdf_net.linears[0].weight
            first[:, 3:] = perturb * torch.randn_like(first[:, 3:])
    return field


def _grid_field(quantizer=None):
    torch.manual_seed(0)
    enc = HashGridEncoding(3, HashGridConfig(num_levels=4, log2_hashmap_size=10),
                           bounds=(-1.5, 1.5), backend="torch", init_scale=1e-1)
    return NeuSField(enc, hidden_dim=32, quantizer=quantizer)


def _points(n=256, scale=1.0, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * scale).to(dtype)


def _shell(n=500, radius=0.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, 3, generator=gen), dim=-1) * radius


def test_geometric_init_is_a_sphere():
    field = _pe_field()
    assert field.sdf(torch.zeros(1, 3)) < 0
    assert (field.sdf(_shell(200, 2.0)) > 0).all()
    assert field.sdf(_shell()).abs().mean() < 0.12
    sdf, feats = field.sdf_and_features(_shell(7))
    assert sdf.shape == (7,) and feats.shape == (7, field.feature_dim)


def test_eikonal_norm_near_the_init_sphere():
    field = _pe_field()
    for x in (_shell(500, 0.4), _shell(500, 0.5), _shell(500, 0.7)):
        g = field.gradient(x)
        norm = g.norm(dim=-1)
        assert 0.7 < norm.mean() < 1.3 and norm.min() > 0.3
        assert (F.normalize(g, dim=-1) * F.normalize(x, dim=-1)).sum(-1).mean() > 0.9


def test_finite_differences_match_autograd_on_a_smooth_encoding():
    field = _pe_field(dtype=torch.float64, perturb=0.1)
    x = _points(64, 0.9, torch.float64)
    g = field.gradient(x)
    torch.testing.assert_close(field.gradient_fd(x, eps=1e-7), g, rtol=1e-5, atol=1e-6)
    # O(ε²) truncation error (Softplus β = 100 and 2⁵π frequencies make f''' large): the error
    # shrinks ~100× per 10× smaller step.
    err = [(field.gradient_fd(x, eps=e) - g).abs().max() for e in (1e-3, 1e-4)]
    assert err[1] < err[0] / 30
    # One-pass evaluation agrees with the separate calls.
    sdf, feats, g2 = field.sdf_features_and_gradient(x, create_graph=False)
    torch.testing.assert_close(g2, g)
    torch.testing.assert_close(sdf, field.sdf(x))
    torch.testing.assert_close(feats, field.sdf_and_features(x)[1])


def test_gradient_leaves_parameter_grads_alone_and_works_under_no_grad():
    field = _grid_field()
    x = _points(32)
    g = field.gradient(x)
    assert all(p.grad is None for p in field.parameters())
    with torch.no_grad():
        torch.testing.assert_close(field.gradient(x), g)


@pytest.mark.parametrize("which", ["autograd_pe", "fd_hashgrid"])
def test_eikonal_loss_trains_the_sdf_network(which):
    if which == "autograd_pe":
        field = _pe_field(perturb=0.1)
        g = field.gradient(_points(64), create_graph=True)
    else:
        field = _grid_field()
        g = field.gradient_fd(_points(64), eps=1e-2)
    ((g.norm(dim=-1) - 1) ** 2).mean().backward()
    first = field.sdf_net.linears[0].weight
    assert first.grad is not None and first.grad[:, 3:].abs().sum() > 0
    if which == "fd_hashgrid":
        assert field.encoding.params.grad is not None


def test_rgb_range_and_gradients():
    field = _grid_field()
    x = _points(48)
    dirs = F.normalize(torch.randn(48, 3), dim=-1)
    # Hash grids have first derivatives only: feed finite-difference normals (differentiable)
    # to the colour network rather than autograd gradients with create_graph.
    sdf, feats = field.sdf_and_features(x)
    rgb = field.rgb(x, field.gradient_fd(x, eps=1e-2), dirs, feats)
    assert rgb.shape == (48, 3) and ((rgb > 0) & (rgb < 1)).all()
    rgb.mean().backward()
    assert all(p.grad is not None for p in field.color_net.parameters())
    assert field.encoding.params.grad is not None  # through the features


def test_colour_loss_reaches_the_sdf_network_through_autograd_normals():
    # NeuS: gradients computed with create_graph feed the colour network (smooth encoding).
    field = _pe_field(perturb=0.1)
    x = _points(32)
    sdf, feats, grads = field.sdf_features_and_gradient(x, create_graph=True)
    field.rgb(x, grads, F.normalize(x, dim=-1), feats).mean().backward()
    assert field.sdf_net.linears[0].weight.grad.abs().sum() > 0


def test_sdf_chunked_equals_batched():
    field = _pe_field()
    field.chunk_size = 10
    x = _points(57)
    torch.testing.assert_close(field.sdf_chunked(x), field.sdf(x).detach())


def test_quantized_encoding_is_unwrapped_into_a_field_quantizer():
    plain = _pe_field(perturb=0.1, dtype=torch.float64)
    quant = _pe_field(quantized=True, perturb=0.1, dtype=torch.float64)
    quant.load_state_dict(plain.state_dict())
    assert quant.quantizer is not None and quant.encoding.__class__ is PositionalEncoding
    q = quant.quantizer
    x = _points(128, 1.2, torch.float64, seed=3)
    xq = q(x)
    # SDF input, features, gradient (leaf x_q), finite differences and colour input all use q(x).
    torch.testing.assert_close(quant.sdf(x), plain.sdf(xq), rtol=0, atol=0)
    g = quant.gradient(x)
    torch.testing.assert_close(g, plain.gradient(xq), rtol=0, atol=1e-12)
    assert (g - plain.gradient(x)).abs().max() > 1e-3  # the lattice point is used, not x
    torch.testing.assert_close(quant.gradient(x, create_graph=True), g, rtol=0, atol=1e-12)
    torch.testing.assert_close(quant.gradient_fd(x), plain.gradient_fd(xq), rtol=0, atol=1e-12)
    dirs = F.normalize(torch.randn(128, 3, dtype=torch.float64), dim=-1)
    _, feats = plain.sdf_and_features(xq)
    torch.testing.assert_close(quant.rgb(x, g, dirs, feats), plain.rgb(xq, g, dirs, feats))
    # Negative control: naive autograd through the quantiser collapses to zero, while the
    # field's gradient has the near-unit norm of the initial sphere.
    xg = x.clone().requires_grad_(True)
    (naive,) = torch.autograd.grad(quant.sdf(xg).sum(), xg, allow_unused=True)
    assert naive is None or not naive.any()
    assert g.norm(dim=-1).mean() > 0.5


def test_quantizer_argument_with_a_hash_grid():
    q = CoordinateQuantizer(domain=(-1.5, 1.5), cell_size=0.02)
    quant, plain = _grid_field(q), _grid_field()
    quant.load_state_dict(plain.state_dict())
    x = _points(64)
    torch.testing.assert_close(quant.gradient(x), plain.gradient(q(x)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="different quantizer"):
        NeuSField(QuantizedEncoding(PositionalEncoding(3, 2), q), quantizer=CoordinateQuantizer())


def test_learned_variance():
    var = LearnedVariance(0.3)
    s = var()
    assert s.shape == () and s.item() == pytest.approx(math.exp(3.0))
    torch.testing.assert_close(var.inv_s, s)
    s.backward()
    assert var.variance.grad.item() == pytest.approx(10 * math.exp(3.0), rel=1e-5)

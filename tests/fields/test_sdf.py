"""SDFField: geometric init, autograd normals, chunked inference."""

import torch

from fields.encodings.frequency import PositionalEncoding
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.sdf import SDFField


def _field():
    torch.manual_seed(0)
    enc = HashGridEncoding(3, HashGridConfig(num_levels=4, log2_hashmap_size=10), backend="torch")
    return SDFField(enc, hidden_dim=64, init_radius=0.5)


def test_untrained_field_is_a_sphere_and_normals_are_radial():
    field = _field()
    x = torch.nn.functional.normalize(torch.randn(500, 3), dim=1) * 0.5  # on the sphere
    assert field.sdf(x).abs().mean() < 0.12  # geometric init is a sphere up to ~10% (64 wide)
    n = field.normal(x * 1.2)
    cos = (n * torch.nn.functional.normalize(x, dim=1)).sum(1)
    assert cos.mean() > 0.9 and torch.allclose(n.norm(dim=1), torch.ones(500), atol=1e-5)


def test_gradient_matches_finite_differences():
    field = _field().double()
    x = torch.tensor([[0.31, -0.12, 0.2]], dtype=torch.float64)
    g = field.gradient(x)[0]
    h = 1e-6
    fd = torch.stack([(field.sdf(x + h * e) - field.sdf(x - h * e))[0] / (2 * h)
                      for e in torch.eye(3, dtype=torch.float64)])
    torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-7)


def test_normals_do_not_touch_parameter_grads():
    field = _field()
    field.normal(torch.rand(10, 3))
    assert all(p.grad is None for p in field.parameters())


def test_chunked_inference_equals_batched():
    field = SDFField(PositionalEncoding(3, 4), hidden_dim=32, chunk_size=7)
    x = torch.randn(50, 3)
    torch.testing.assert_close(field.sdf_chunked(x), field.sdf(x).detach())
    assert field.normal(x).shape == (50, 3)

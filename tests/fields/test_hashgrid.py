"""Hash grid: brute-force trilinear reference, gradcheck in float64, layout and backend seam."""

import math

import pytest
import torch

from fields import accel
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding, hashgrid_level_layout

PRIMES = (1, 2654435761, 805459861)


def brute_force(enc: HashGridEncoding, x: torch.Tensor) -> torch.Tensor:
    """Per point, per level, per corner, in plain Python integers (tiny-cuda-nn's formulas)."""
    cfg = enc.config
    D = x.shape[1]
    scales, res, offsets, _ = hashgrid_level_layout(cfg, D)
    table = enc.params.detach().double().view(-1, cfg.features_per_level)
    lo, hi = enc.bounds
    out = torch.zeros(x.shape[0], cfg.num_levels * cfg.features_per_level, dtype=torch.float64)
    for i, p in enumerate(x.double().tolist()):
        u = [min(max((v - lo) / (hi - lo), 0.0), 1.0) for v in p]
        for lvl in range(cfg.num_levels):
            rows = offsets[lvl + 1] - offsets[lvl]
            pos = [v * scales[lvl] + 0.5 for v in u]
            cell = [math.floor(v) for v in pos]
            frac = [v - c for v, c in zip(pos, cell)]
            acc = torch.zeros(cfg.features_per_level, dtype=torch.float64)
            for corner in range(1 << D):
                g = [cell[d] + ((corner >> d) & 1) for d in range(D)]
                w = 1.0
                for d in range(D):
                    w *= frac[d] if (corner >> d) & 1 else 1.0 - frac[d]
                if res[lvl] ** D <= rows:  # dense
                    index = sum(g[d] * res[lvl] ** d for d in range(D))
                else:
                    index = 0
                    for d in range(D):
                        index ^= (g[d] * PRIMES[d]) & 0xFFFFFFFF
                acc += w * table[offsets[lvl] + index % rows]
            out[i, lvl * cfg.features_per_level : (lvl + 1) * cfg.features_per_level] = acc
    return out


@pytest.mark.parametrize("dim", [2, 3])
def test_matches_brute_force_trilinear_reference(dim):
    torch.manual_seed(0)
    cfg = HashGridConfig(num_levels=6, features_per_level=2, log2_hashmap_size=8,
                         base_resolution=4, max_resolution=64)
    enc = HashGridEncoding(dim, cfg, backend="torch").double()
    with torch.no_grad():
        enc.params.uniform_(-1, 1)  # large values so any indexing slip shows
    x = torch.rand(64, dim, dtype=torch.float64) * 2.2 - 1.1  # includes clamped points
    _, _, _, hashed = hashgrid_level_layout(cfg, dim)
    assert any(hashed) and not all(hashed), "the test must cover dense and hashed levels"
    torch.testing.assert_close(enc(x), brute_force(enc, x), rtol=1e-10, atol=1e-10)


def test_chunking_does_not_change_the_result():
    torch.manual_seed(1)
    enc = HashGridEncoding(3, HashGridConfig(num_levels=4, log2_hashmap_size=10), backend="torch")
    with torch.no_grad():
        enc.params.uniform_(-1, 1)
    x = torch.rand(1000, 3) * 2 - 1
    full = enc(x)
    enc.chunk_size = 37
    torch.testing.assert_close(enc(x), full)


def test_gradcheck_float64_points_and_table():
    torch.manual_seed(2)
    cfg = HashGridConfig(num_levels=3, features_per_level=2, log2_hashmap_size=6,
                         base_resolution=3, max_resolution=12)
    enc = HashGridEncoding(3, cfg, backend="torch", chunk_size=5).double()
    with torch.no_grad():
        enc.params.uniform_(-1, 1)
    # Keep points away from cell boundaries, where the interpolant has kinks.
    x = (torch.rand(12, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    params = enc.grid.params

    def f(x_, p_):
        with torch.no_grad():
            params.copy_(p_.detach())
        return torch.func.functional_call(enc, {"grid.params": p_}, (x_,))

    assert torch.autograd.gradcheck(f, (x, params.detach().clone().requires_grad_()), eps=1e-6,
                                    atol=1e-6)


def test_gradient_matches_autograd_of_the_reference_formula():
    """∂enc/∂x from the hand-written backward equals a finite-difference of the forward."""
    torch.manual_seed(3)
    enc = HashGridEncoding(2, HashGridConfig(num_levels=2, log2_hashmap_size=6, base_resolution=5,
                                             max_resolution=9), backend="torch").double()
    with torch.no_grad():
        enc.params.uniform_(-1, 1)
    x = torch.tensor([[0.13, -0.41]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(enc(x).sum(), x)
    h = 1e-7
    fd = torch.stack([(enc(x + h * e) - enc(x - h * e)).sum() / (2 * h)
                      for e in torch.eye(2, dtype=torch.float64)])
    torch.testing.assert_close(grad[0], fd, rtol=1e-6, atol=1e-8)


def test_layout_matches_tcnn_conventions():
    cfg = HashGridConfig(num_levels=16, features_per_level=2, log2_hashmap_size=19,
                         base_resolution=16, per_level_scale=1.447269237440378)
    scales, res, offsets, hashed = hashgrid_level_layout(cfg, 3)
    assert res[0] == 16 and scales[0] == pytest.approx(15.0)
    assert all(o % 8 == 0 for o in offsets)
    assert all(h == (r**3 > 2**19) for h, r in zip(hashed, res))
    assert offsets[-1] - offsets[-2] == 2**19  # finest level is a full hash table
    enc = HashGridEncoding(3, cfg, backend="torch")
    assert enc.params.numel() == offsets[-1] * 2 and enc.out_dim == 32


def test_second_derivative_is_refused_clearly():
    enc = HashGridEncoding(3, HashGridConfig(num_levels=2, log2_hashmap_size=8), backend="torch")
    x = torch.rand(4, 3, requires_grad=True)
    (g,) = torch.autograd.grad(enc(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_backend_seam():
    assert accel.resolve_backend("torch") == "torch"
    assert accel.resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ValueError, match="unknown backend"):
        accel.resolve_backend("cuda-magic")
    if not accel.HAS_TCNN:
        with pytest.raises(RuntimeError, match="tinycudann"):
            HashGridEncoding(3, backend="tcnn")


@pytest.mark.skipif(
    not (accel.HAS_TCNN and torch.cuda.is_available()), reason="needs tinycudann + CUDA"
)
def test_tcnn_parity_with_torch_backend():
    cfg = HashGridConfig(num_levels=8, log2_hashmap_size=14, base_resolution=8, max_resolution=256)
    ref = HashGridEncoding(3, cfg, backend="torch").cuda()
    with torch.no_grad():
        ref.params.uniform_(-1, 1)
    fast = HashGridEncoding(3, cfg, backend="tcnn", device="cuda").cuda()
    fast.load_state_dict(ref.state_dict())
    x = torch.rand(4096, 3, device="cuda") * 2 - 1
    torch.testing.assert_close(fast(x), ref(x), rtol=2e-3, atol=2e-3)

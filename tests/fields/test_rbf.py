"""NeuRBF (Chen et al., ICCV 2023): kernels, normalisation, MSC, weighted K-Means, shapes, kNN,
budget, gradients, and a tiny overfit — the method spec's unit acceptance checks 1–8."""

import doctest
import math

import pytest
import torch

import fields.encodings.densegrid as densegrid_mod
import fields.encodings.rbf as rbf_mod
import fields.neurbf as neurbf_mod
from fields.encodings.densegrid import DenseGridEncoding
from fields.encodings.rbf import (
    AdaptiveRBFEncoding,
    clamp_sigma,
    ivq_a,
    knn_indices,
    msc_frequencies,
    nlin_s,
    normalise_responses,
    rbf_kernel_budget,
    rbf_params_per_kernel,
    shape_from_sigma,
    sobel_weights,
    weighted_kmeans,
)
from fields.neurbf import (
    NeuRBFField,
    decoder_num_parameters,
    ingp_reference_params,
    neurbf_kernel_budget,
)

try:
    from scipy.spatial import cKDTree
except ImportError:  # pragma: no cover
    cKDTree = None

f64 = torch.float64
rbf_from = AdaptiveRBFEncoding.from_kernels


def pixel_centres(H: int, W: int, dtype=torch.float32) -> torch.Tensor:
    """Pixel centres on [-1, 1]², row-major, as (x, y) = (column, row)."""
    ys = (torch.arange(H, dtype=dtype) + 0.5) / H * 2 - 1
    xs = (torch.arange(W, dtype=dtype) + 0.5) / W * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(-1, 2)


def random_spd(n: int, D: int, gen: torch.Generator, scale: float = 10.0) -> torch.Tensor:
    A = torch.randn(n, D, D, generator=gen, dtype=f64)
    return scale * (A @ A.transpose(-1, -2) + 0.5 * torch.eye(D, dtype=f64))


def test_docstring_examples():
    for mod in (rbf_mod, densegrid_mod, neurbf_mod):
        failures, tried = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failures == 0, mod.__name__


# 1. Kernels -----------------------------------------------------------------------------------


def test_ivq_a_hand_computed_and_one_at_centre():
    d = torch.tensor([0.3, -0.2], dtype=f64)
    K = torch.tensor([[4.0, 1.0], [1.0, 2.0]], dtype=f64)
    # dᵀKd = 4·0.09 + 2·1·(0.3·−0.2) + 2·0.04 = 0.32
    assert abs(ivq_a(d, K).item() - 1.0 / 1.32) < 1e-12
    gen = torch.Generator().manual_seed(0)
    Ks = random_spd(7, 3, gen)
    assert torch.equal(ivq_a(torch.zeros(7, 3, dtype=f64), Ks), torch.ones(7, dtype=f64))
    # In the encoding (no normalisation): the response at a centre is 1, elsewhere the formula.
    centres = torch.randn(20, 2, generator=gen, dtype=f64)
    enc = rbf_from(centres, random_spd(20, 2, gen), features=4, k=3,
                   normalise=False)
    phi = enc.responses(centres)
    assert torch.allclose(phi[:, 0], torch.ones(20, dtype=f64), atol=1e-12, rtol=0)
    x = torch.randn(5, 2, generator=gen, dtype=f64)
    idx = enc.neighbours(x)
    phi = enc.responses(x, idx)
    for b in range(5):
        for j in range(3):
            i = idx[b, j].item()
            dd = x[b] - centres[i]
            expect = 1.0 / (1.0 + float(dd @ enc.K[i] @ dd))
            assert abs(phi[b, j].item() - expect) < 1e-12


def test_nlin_s_tent_and_support():
    s = torch.tensor(2.0, dtype=f64)
    d = torch.tensor([0.1, -0.3], dtype=f64)
    assert abs(nlin_s(d, s).item() - (1 - 0.2) * (1 - 0.6)) < 1e-12
    assert nlin_s(torch.zeros(2, dtype=f64), s).item() == 1.0
    gen = torch.Generator().manual_seed(1)
    d = torch.rand(1000, 3, generator=gen, dtype=f64) * 4 - 2
    s = torch.full((1000,), 1.5, dtype=f64)
    phi = nlin_s(d, s)
    outside = (d.abs() >= 1 / 1.5).any(-1)
    assert outside.any() and (~outside).any()
    assert torch.all(phi[outside] == 0) and torch.all(phi[~outside] > 0)
    # Normalising responses that are all zero gives zeros, not NaN.
    enc = rbf_from(torch.zeros(2, 2), torch.full((2,), 10.0), features=4,
                   kernel="nlin_s", k=2)
    assert torch.equal(enc(torch.ones(3, 2)), torch.zeros(3, 4))


# 2. Normalisation ------------------------------------------------------------------------------


def test_normalised_weights_sum_to_one():
    gen = torch.Generator().manual_seed(2)
    enc = rbf_from(torch.rand(64, 2, generator=gen) * 2 - 1,
                   random_spd(64, 2, gen).float(), features=8, k=4)
    phi = enc.responses(torch.rand(500, 2, generator=gen) * 2 - 1)
    assert torch.allclose(phi.sum(-1), torch.ones(500), atol=1e-6, rtol=0)
    enc_s = rbf_from(torch.rand(64, 3, generator=gen) * 2 - 1,
                     torch.full((64,), 0.5), features=8, kernel="nlin_s", k=8)
    phi = enc_s.responses(torch.rand(500, 3, generator=gen) * 2 - 1)
    assert torch.allclose(phi.sum(-1), torch.ones(500), atol=1e-6, rtol=0)


def test_detached_denominator_passes_no_gradient():
    phi = torch.tensor([[0.2, 0.5, 0.3, 1.0]], dtype=f64, requires_grad=True)
    S = phi.detach().sum().item()
    out = normalise_responses(phi, detach_denominator=True)
    jac = torch.stack(
        [torch.autograd.grad(out[0, i], phi, retain_graph=True)[0][0] for i in range(4)]
    )
    # ∂φ̃_i/∂φ_j = δ_ij / (S + eps): nothing flows through the denominator.
    torch.testing.assert_close(jac, torch.eye(4, dtype=f64) / (S + 1e-8), rtol=0, atol=1e-12)
    # The graph only holds the numerator: the gradient of Σφ̃ (≡ 1) is 1/S, not 0.
    (g_det,) = torch.autograd.grad(normalise_responses(phi, True).sum(), phi)
    (g_full,) = torch.autograd.grad(normalise_responses(phi, False).sum(), phi)
    assert torch.allclose(g_det, torch.full_like(g_det, 1 / (S + 1e-8)), atol=1e-12)
    assert g_full.abs().max() < 1e-7  # the true derivative of a constant
    jac_full = torch.autograd.functional.jacobian(lambda p: normalise_responses(p, False), phi)
    assert (jac_full[0, :, 0] - torch.diag(torch.diagonal(jac_full[0, :, 0]))).abs().max() > 0.1

    # In the encoding: same forward, different ∂r/∂x.
    gen = torch.Generator().manual_seed(3)
    c = torch.rand(16, 2, generator=gen, dtype=f64) * 2 - 1
    K = random_spd(16, 2, gen)
    kw = dict(features=4, k=4, msc=(0.5, 4.0))
    a = rbf_from(c, K, detach_denominator=True, generator=gen, **kw)
    b = rbf_from(c, K, detach_denominator=False, **kw)
    b.load_state_dict(a.state_dict())
    x = (torch.rand(8, 2, generator=gen, dtype=f64) * 2 - 1).requires_grad_(True)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    (ga,) = torch.autograd.grad(ya.sum(), x)
    (gb,) = torch.autograd.grad(yb.sum(), x)
    assert (ga - gb).abs().max() > 1e-3 * gb.abs().max()


# 3. MSC frequencies ----------------------------------------------------------------------------


@pytest.mark.parametrize("low,high,n", [(2.0**-3, 2.0**12, 32), (10.0, 100.0, 7), (30, 300, 16)])
def test_msc_frequencies_log_spaced(low, high, n):
    m = msc_frequencies(low, high, n)
    assert m.dtype == f64 and m.shape == (n,)
    assert abs(m[0].item() - low) < 1e-12 and abs(m[-1].item() - high) < 1e-12
    ratio = m[1:] / m[:-1]
    assert torch.allclose(ratio, ratio.mean().expand(n - 1), rtol=1e-12, atol=0)
    assert abs(ratio.mean().item() - (high / low) ** (1 / (n - 1))) < 1e-12


# 4–6. Weighted K-Means and shapes --------------------------------------------------------------


def plain_kmeans(x: torch.Tensor, centres: torch.Tensor, iters: int) -> torch.Tensor:
    """Textbook Lloyd iterations (an empty cluster keeps its centre)."""
    c = centres.clone()
    for _ in range(iters):
        a = torch.cdist(x, c).argmin(1)
        for i in range(c.shape[0]):
            members = x[a == i]
            if len(members):
                c[i] = members.mean(0)
    return c


def test_weighted_kmeans_uniform_weights_equals_plain_kmeans():
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(600, 2, generator=gen, dtype=f64)
    init = x[torch.randperm(600, generator=gen)[:12]]
    expect = plain_kmeans(x, init, 10)
    for method in ("brute", "auto"):
        c, _ = weighted_kmeans(x, torch.full((600,), 3.0, dtype=f64), 12, init_centres=init,
                               knn_method=method)
        torch.testing.assert_close(c, expect, rtol=0, atol=1e-6)
    # Integer weights act like repeated points; zero-weight points are dropped.
    w = torch.randint(1, 4, (600,), generator=gen).to(f64)
    expect = plain_kmeans(x.repeat_interleave(w.long(), 0), init, 10)
    far = torch.full((50, 2), 100.0, dtype=f64)
    c, _ = weighted_kmeans(torch.cat([x, far]), torch.cat([w, torch.zeros(50, dtype=f64)]), 12,
                           init_centres=init)
    torch.testing.assert_close(c, expect, rtol=0, atol=1e-6)


def edge_image(H: int = 64, W: int = 64) -> torch.Tensor:
    """Flat regions with sharp edges: a disc, a rectangle and a diagonal half-plane."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32), indexing="ij")
    img = torch.zeros(H, W, 3)
    img[((xs - 20) ** 2 + (ys - 22) ** 2) < 100] = torch.tensor([1.0, 0.2, 0.1])
    img[(xs > 38) & (xs < 56) & (ys > 10) & (ys < 30)] = torch.tensor([0.1, 0.9, 0.3])
    img[(xs + ys) > 95] += torch.tensor([0.0, 0.3, 0.8])
    return img


def test_sobel_weights_closed_form():
    H = W = 8
    ramp = torch.stack([torch.arange(W, dtype=f64).expand(H, W) * 3.0,  # d/dx = 3
                        torch.arange(H, dtype=f64)[:, None].expand(H, W) * 4.0], -1)  # d/dy = 4
    w = sobel_weights(ramp)
    assert w.shape == (H, W)
    torch.testing.assert_close(w[1:-1, 1:-1], torch.full((H - 2, W - 2), 5.0, dtype=f64))
    assert torch.all(sobel_weights(torch.ones(5, 6, 2)) == 0)


def test_gradient_weighted_kmeans_puts_centres_on_edges():
    H = W = 64
    img = edge_image(H, W)
    weights = sobel_weights(img)
    pts = pixel_centres(H, W)
    gen = torch.Generator().manual_seed(5)
    c, sigma = weighted_kmeans(pts, weights.reshape(-1), 64, generator=gen, extent=2.0,
                               samples_per_axis=H)
    col = ((c[:, 0] + 1) / 2 * W - 0.5).round().long().clamp(0, W - 1)
    row = ((c[:, 1] + 1) / 2 * H - 0.5).round().long().clamp(0, H - 1)
    at_centres = weights[row, col].mean()
    assert at_centres >= 2.0 * weights.mean(), (at_centres.item(), weights.mean().item())
    # Negative control: uniform weights do not concentrate on edges.
    cu, _ = weighted_kmeans(pts, torch.ones(H * W), 64, generator=gen)
    col = ((cu[:, 0] + 1) / 2 * W - 0.5).round().long().clamp(0, W - 1)
    row = ((cu[:, 1] + 1) / 2 * H - 0.5).round().long().clamp(0, H - 1)
    assert weights[row, col].mean() < at_centres


def test_sigma_is_weighted_covariance_over_alpha():
    gen = torch.Generator().manual_seed(6)
    means = torch.tensor([[-5.0, -5.0], [5.0, -5.0], [0.0, 6.0]], dtype=f64)
    mixes = [torch.tensor([[1.0, 0.0], [0.8, 0.3]], dtype=f64),
             torch.tensor([[0.2, 0.0], [0.0, 1.5]], dtype=f64),
             torch.tensor([[0.7, -0.5], [0.1, 0.4]], dtype=f64)]
    blobs = [means[i] + torch.randn(200, 2, generator=gen, dtype=f64) @ mixes[i] for i in range(3)]
    x = torch.cat(blobs)
    w = torch.rand(600, generator=gen, dtype=f64) + 0.1
    init = torch.stack([b[0] for b in blobs])
    alpha = 0.3
    c, sigma = weighted_kmeans(x, w, 3, alpha=alpha, init_centres=init, clamp=False)
    for i in range(3):
        xi, wi = blobs[i], w[200 * i : 200 * (i + 1)]
        mean = (wi[:, None] * xi).sum(0) / wi.sum()
        diff = xi - mean
        cov = (wi[:, None, None] * diff[:, :, None] * diff[:, None, :]).sum(0) / wi.sum()
        torch.testing.assert_close(c[i], mean, rtol=0, atol=1e-8)
        torch.testing.assert_close(sigma[i], cov / alpha, rtol=0, atol=1e-8)
    # nlin kernels: 4 Σ.
    _, sigma_n = weighted_kmeans(x, w, 3, alpha=alpha, init_centres=init, clamp=False,
                                 kernel="nlin_s")
    torch.testing.assert_close(sigma_n, 4 * sigma, rtol=1e-12, atol=0)


def test_clamped_sigma_is_spd_and_bounded():
    # Degenerate clusters: collinear points, a single point, an empty cluster (duplicate init),
    # a huge cluster and a tiny one.
    line = torch.stack([torch.linspace(0, 0.5, 30), 2 * torch.linspace(0, 0.5, 30)], -1)
    single = torch.tensor([[-0.9, 0.9]])
    huge = torch.rand(200, 2, generator=torch.Generator().manual_seed(7)) * 2 - 1
    huge = huge * torch.tensor([1.0, 0.01]) + torch.tensor([0.0, -0.95])
    x = torch.cat([line, single, huge]).to(f64)
    init = torch.tensor([[0.2, 0.4], [-0.9, 0.9], [0.0, -0.95], [0.0, -0.95]], dtype=f64)
    ext, n = 2.0, 64
    raw_c, raw = weighted_kmeans(x, torch.ones(len(x), dtype=f64), 4, init_centres=init,
                                 clamp=False)
    assert torch.linalg.cholesky_ex(raw).info.ne(0).any()  # the unclamped ones are not SPD
    _, sigma = weighted_kmeans(x, torch.ones(len(x), dtype=f64), 4, init_centres=init,
                               extent=ext, samples_per_axis=n)
    assert torch.all(torch.linalg.cholesky_ex(sigma).info == 0)
    diag = sigma.diagonal(dim1=-2, dim2=-1)
    lo, hi = (ext / n / 2 / 100) ** 2, (ext / 10) ** 2
    assert torch.all(diag >= lo * (1 - 1e-12)) and torch.all(diag <= hi * (1 + 1e-12))
    corr = sigma[:, 0, 1] / (diag[:, 0] * diag[:, 1]).sqrt()
    assert torch.all(corr.abs() <= 0.999 + 1e-12)
    assert torch.all(torch.isfinite(shape_from_sigma(sigma)))
    # 3-D, random near-degenerate covariances stay SPD after clamping.
    gen = torch.Generator().manual_seed(8)
    v = torch.randn(500, 3, 1, generator=gen, dtype=f64)
    rank1 = v @ v.transpose(-1, -2) + 1e-14 * torch.randn(500, 3, 3, generator=gen, dtype=f64)
    s3 = clamp_sigma(rank1, extent=(2.0, 2.0, 2.0), samples_per_axis=128)
    assert torch.all(torch.linalg.cholesky_ex(s3).info == 0)


def test_shape_from_sigma():
    gen = torch.Generator().manual_seed(9)
    sigma = random_spd(10, 2, gen, scale=0.01).float()
    K = shape_from_sigma(sigma, "ivq_a")
    assert K.dtype == torch.float32
    eye = torch.eye(2, dtype=f64).expand(10, 2, 2)
    torch.testing.assert_close(K.double() @ sigma.double(), eye, rtol=0, atol=1e-4)
    s = shape_from_sigma(sigma.double(), "nlin_s")
    torch.testing.assert_close(s, 1 / sigma.double().diagonal(dim1=-2, dim2=-1).mean(-1).sqrt())


# 7. kNN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("D,k", [(2, 4), (3, 8), (2, 1)])
def test_knn_brute_matches_kdtree(D, k):
    gen = torch.Generator().manual_seed(10 + D + k)
    x = torch.rand(3000, D, generator=gen, dtype=f64)
    c = torch.rand(257, D, generator=gen, dtype=f64)
    brute = knn_indices(x, c, k, method="brute")
    assert brute.dtype == torch.int64 and brute.shape == (3000, k)
    torch.testing.assert_close(knn_indices(x, c, k, chunk=97, method="brute"), brute)
    # The oracle: a full sort of all distances.
    full = torch.cdist(x, c).argsort(1)[:, :k]
    dist = lambda idx: (x[:, None] - c[idx]).square().sum(-1)  # noqa: E731
    torch.testing.assert_close(dist(brute), dist(full), rtol=0, atol=1e-12)
    if cKDTree is None:
        pytest.skip("scipy not installed: KD-tree part skipped")
    tree = knn_indices(x, c, k, method="kdtree")
    torch.testing.assert_close(dist(tree), dist(brute), rtol=0, atol=1e-12)
    # Same neighbour sets except where the k-th and (k+1)-th distances tie.
    d_all = torch.cdist(x, c).sort(1).values
    untied = (d_all[:, k] - d_all[:, k - 1]) > 1e-12
    same = (brute.sort(1).values == tree.sort(1).values).all(1)
    assert torch.all(same[untied])
    assert untied.float().mean() > 0.99


def test_cached_neighbours_equal_fresh():
    gen = torch.Generator().manual_seed(11)
    enc = rbf_from(torch.rand(100, 2, generator=gen) * 2 - 1,
                   random_spd(100, 2, gen).float(), features=8, k=4,
                   generator=gen)
    pts = pixel_centres(32, 32)
    cache = enc.cache_neighbours(pts)
    assert enc.neighbour_cache is cache
    torch.testing.assert_close(cache, enc.neighbours(pts))
    torch.testing.assert_close(cache, knn_indices(pts, enc.centres, 4, method="brute"))
    sel = torch.randperm(len(pts), generator=gen)[:200]
    torch.testing.assert_close(enc(pts[sel], neighbours=cache[sel]), enc(pts[sel]))
    # The KD-tree is rebuilt when the centres change.
    with torch.no_grad():
        enc.centres.mul_(0.5)
    torch.testing.assert_close(enc.neighbours(pts), knn_indices(pts, enc.centres, 4))


# 8. Budget -------------------------------------------------------------------------------------


@pytest.mark.parametrize("D,F,kernel,per", [(2, 32, "ivq_a", 37), (3, 16, "nlin_s", 20),
                                            (3, 32, "ivq_a", 41)])
def test_auto_kernel_budget(D, F, kernel, per):
    assert rbf_params_per_kernel(D, F, kernel) == per
    reference = ingp_reference_params(D, 3, 12, 128)
    grid = DenseGridEncoding(D, (4, 8), 2)
    other = grid.table.numel() + decoder_num_parameters(grid.out_dim + F, 64, 3)
    n = rbf_kernel_budget(reference, other, D, F, kernel)
    assert n > 0 and n == neurbf_kernel_budget(reference, grid, D, F, 3, 64, kernel)
    gen = torch.Generator().manual_seed(12)
    shape = random_spd(n, D, gen).float() if kernel == "ivq_a" else torch.ones(n)
    rbf = rbf_from(torch.rand(n, D, generator=gen), shape, features=F,
                   kernel=kernel)
    field = NeuRBFField(grid, rbf, out_dim=3, hidden_dim=64)
    total = field.num_parameters()
    assert 0 <= reference - total < per
    learnt = sum(p.numel() for p in field.parameters())
    assert total - learnt == n * (per - F)  # frozen centres and shapes are counted


def test_ingp_reference_matches_hashgrid_module():
    from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
    from fields.networks import MLP

    cfg = HashGridConfig(num_levels=16, features_per_level=2, log2_hashmap_size=10,
                         max_resolution=128)
    enc = HashGridEncoding(2, cfg, backend="torch")
    mlp = MLP(enc.out_dim, 3, 64, 2)
    expect = enc.params.numel() + sum(p.numel() for p in mlp.parameters())
    assert ingp_reference_params(2, 3, 10, 128) == expect


# Gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["ivq_a", "nlin_s"])
def test_encoding_gradcheck(kernel):
    gen = torch.Generator().manual_seed(13)
    D = 2
    centres = torch.rand(6, D, generator=gen, dtype=f64) * 2 - 1
    shape = random_spd(6, D, gen, 1.0) if kernel == "ivq_a" else torch.full((6,), 0.3, dtype=f64)
    enc = rbf_from(centres, shape, features=4, kernel=kernel, k=3, msc=(0.5, 4.0),
                   detach_denominator=False, msc_bias=True, init_scale=0.5,
                   generator=gen)
    x = torch.rand(5, D, generator=gen, dtype=f64) * 1.6 - 0.8
    idx = enc.neighbours(x)

    def fn(xx, feats, bias):
        return torch.func.functional_call(
            enc, {"features": feats, "sine_bias": bias}, (xx,), {"neighbours": idx})

    inputs = (x.requires_grad_(True), enc.features.detach().clone().requires_grad_(True),
              enc.sine_bias.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)
    # With the detached denominator the feature gradient is still exact (the denominator does
    # not depend on the features), the x gradient deliberately is not.
    enc.detach_denominator = True
    assert torch.autograd.gradcheck(lambda f: fn(x.detach(), f, inputs[2].detach()),
                                    (inputs[1],), eps=1e-6, atol=1e-6)
    # No-MSC ablation: ψ = φ̃ broadcast over F.
    plain = rbf_from(centres, shape, features=4, kernel=kernel, k=3, msc=None,
                     detach_denominator=False, init_scale=0.5, generator=gen)
    phi = plain.responses(x.detach(), idx)
    expect = (phi[..., None] * plain.features[idx]).sum(1)
    torch.testing.assert_close(plain(x.detach(), idx), expect)
    assert torch.autograd.gradcheck(
        lambda xx: plain(xx, idx), (x.detach().clone().requires_grad_(True),), eps=1e-6,
        atol=1e-6)


def test_dense_grid_bilinear_and_gradcheck():
    gen = torch.Generator().manual_seed(14)
    enc = DenseGridEncoding(2, (3, 5), 2, init_scale=1.0, generator=gen).double()
    # At a vertex the feature is that vertex's entry; between vertices it is bilinear.
    x = torch.tensor([[-1.0, 0.0], [0.25, -0.75], [1.0, 1.0]], dtype=f64)
    t = enc.table.detach()
    r = 5
    v = lambda gx, gy: t[9 + gx + r * gy]  # noqa: E731 - level 1 starts after 3² rows
    # (0.25, -0.75) on level 1: u = (0.625, 0.125), p = (2.5, 0.5)
    bil = 0.25 * (v(2, 0) + v(3, 0) + v(2, 1) + v(3, 1))
    out = enc(x)
    torch.testing.assert_close(out[1, 2:], bil, rtol=0, atol=1e-12)
    torch.testing.assert_close(out[0, 2:], v(0, 2), rtol=0, atol=1e-12)
    torch.testing.assert_close(out[2, 2:], v(4, 4), rtol=0, atol=1e-12)
    enc3 = DenseGridEncoding(3, (3, 4), 2, init_scale=1.0, generator=gen).double()
    for e, D in ((enc, 2), (enc3, 3)):
        xx = (torch.rand(6, D, generator=gen, dtype=f64) * 1.8 - 0.9).requires_grad_(True)
        tab = e.table.detach().clone().requires_grad_(True)
        fn = lambda a, b, e=e: torch.func.functional_call(e, {"table": b}, (a,))  # noqa: E731
        assert torch.autograd.gradcheck(fn, (xx, tab), eps=1e-6, atol=1e-6)
    assert enc(torch.zeros(0, 2, dtype=f64)).shape == (0, 4)


# The field -------------------------------------------------------------------------------------


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(torch.mean((a - b) ** 2).item())


def test_neurbf_field_overfits_checkerboard():
    torch.manual_seed(0)
    H = W = 16
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    board = (((xs // 4) + (ys // 4)) % 2).float()
    img = torch.stack([board, 1 - board, 0.5 * board + 0.25], -1)  # [H, W, 3]
    target = img.reshape(-1, 3)
    pts = pixel_centres(H, W)
    gen = torch.Generator().manual_seed(15)
    rbf = AdaptiveRBFEncoding.from_signal(
        pts, sobel_weights(img).reshape(-1), 48, extent=2.0, samples_per_axis=H, generator=gen,
        features=16, k=4,
    )
    field = NeuRBFField(DenseGridEncoding(2, (4, 8), 2, generator=gen), rbf, out_dim=3)
    assert field(pts).shape == (H * W, 3)
    assert "feature_msc=[1, 1000]" in repr(field) and "kernel='ivq_a'" in repr(field)
    nbrs = rbf.cache_neighbours(pts)
    opt = torch.optim.Adam(field.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-15)
    before = psnr(field(pts, nbrs), target)
    for _ in range(300):
        loss = torch.mean((field(pts, nbrs) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = psnr(field(pts).clamp(0, 1), target)
    assert after > 30.0, (before, after)
    assert torch.equal(rbf.neighbour_cache, nbrs)  # centres stayed frozen: cache still valid
    assert not any(p is rbf.centres or p is rbf.K for p in field.parameters())


def test_neurbf_field_variants():
    gen = torch.Generator().manual_seed(16)
    rbf = rbf_from(torch.rand(20, 3, generator=gen) * 2 - 1, torch.full((20,), 2.0),
                   features=16, kernel="nlin_s", k=8, msc=(1.0, 8.0))
    x = torch.rand(7, 3, generator=gen) * 2 - 1
    only_rbf = NeuRBFField(None, rbf, out_dim=1, hidden_dim=32, feature_msc=False)
    assert only_rbf(x).shape == (7, 1) and only_rbf.feature_dim == 16
    only_grid = NeuRBFField(DenseGridEncoding(3, (4,), 3), None, out_dim=1, hidden_dim=32)
    assert only_grid(x).shape == (7, 1) and only_grid.in_dim == 3
    # feature MSC: f0 = h0 + sin(h0 ⊙ m0), m0 log-spaced over the hidden channels.
    field = NeuRBFField(None, rbf, out_dim=1, hidden_dim=32, feature_msc_range=(30.0, 300.0))
    dec = field.decoder
    torch.testing.assert_close(dec.m0, msc_frequencies(30.0, 300.0, 32).float())
    h0 = dec.lin0(field.features(x))
    expect = dec.lin2(torch.relu(dec.lin1(h0 + torch.sin(h0 * dec.m0))))
    torch.testing.assert_close(field(x), expect)
    with pytest.raises(ValueError):
        NeuRBFField(None, None)
    off = NeuRBFField(None, rbf, out_dim=1, hidden_dim=32, feature_msc=None)
    assert off.decoder.msc_range is None and not hasattr(off.decoder, "m0")
    custom = NeuRBFField(None, rbf, out_dim=1, hidden_dim=32, feature_msc=(10.0, 100.0))
    assert custom.decoder.msc_range == (10.0, 100.0)


# Building, placing and restoring ---------------------------------------------------------------


def test_placement_in_place_and_checkpoint_round_trip():
    H = W = 32
    img = edge_image(H, W)
    pts = pixel_centres(H, W)
    weights = sobel_weights(img).reshape(-1)
    a = AdaptiveRBFEncoding.from_signal(pts, weights, 40, extent=2.0, samples_per_axis=H,
                                        generator=torch.Generator().manual_seed(1), features=8)
    b = AdaptiveRBFEncoding(40, 2, features=8, generator=torch.Generator().manual_seed(1))
    b.cache_neighbours(pts)
    b.init_from_signal(pts, weights, generator=_replay_generator(40, 2, 8), extent=2.0,
                       samples_per_axis=H)
    assert b.neighbour_cache is None  # placing kernels drops the cache
    torch.testing.assert_close(b.centres, a.centres)
    torch.testing.assert_close(b.K, a.K)
    # A checkpoint restores into a freshly built encoding of the same size.
    c = AdaptiveRBFEncoding(40, 2, features=8)
    c.load_state_dict(a.state_dict())
    torch.testing.assert_close(c(pts), a(pts))
    assert set(a.state_dict()) == {"centres", "K", "features"}


def _replay_generator(n: int, D: int, F: int) -> torch.Generator:
    """The generator state ``from_signal`` reaches after its constructor's draws."""
    g = torch.Generator().manual_seed(1)
    torch.rand(n, D, generator=g, dtype=f64)
    torch.empty(n, F).uniform_(-1e-4, 1e-4, generator=g)
    return g


@pytest.mark.parametrize("kernel,N", [("ivq_a", 144), ("nlin_s", 140)])
def test_init_lattice(kernel, N):
    enc = AdaptiveRBFEncoding(N, 2, features=4, kernel=kernel).init_lattice(samples_per_axis=64)
    c = enc.centres.double()
    assert torch.unique(c, dim=0).shape[0] == N and c.abs().max() < 1
    axis = (torch.arange(12, dtype=f64) + 0.5) / 12 * 2 - 1  # 12×12 cell centres, x fastest
    if N == 144:
        torch.testing.assert_close(c[:12, 0], axis)
        torch.testing.assert_close(c[::12, 1], axis)
    else:  # 140 of the 144 lattice points, evenly strided
        assert all(bool((axis - v).abs().min() < 1e-7) for v in c.flatten())
    h2 = (2 / 12) ** 2
    if kernel == "ivq_a":  # Σ = h² I (below the (ext/10)² clamp)
        torch.testing.assert_close(enc.K, torch.eye(2).expand(N, 2, 2) / h2)
    else:  # Σ = 4h² I, clamped to (2/10)²; s = 1/sqrt(Σ)
        torch.testing.assert_close(enc.s, torch.full((N,), 1 / math.sqrt(min(4 * h2, 0.04))))
    assert torch.all(torch.isfinite(enc(pixel_centres(8, 8))))

"""Volume rendering: nerfacc 0.5.3 parity (batched and packed), hand-computed cases, closed forms,
NeuS α on a plane, inverse-CDF sampling, gradcheck of the packed path."""

import math

import pytest
import torch

from renderer.volume import (
    accumulate,
    composite,
    neus_alpha,
    render_rays,
    sample_pdf,
    sample_uniform,
    weights_from_alpha,
    weights_from_density,
)

nerfacc_volrend = pytest.importorskip("nerfacc.volrend")

R, S = 97, 41


def _random_samples(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    edges = (torch.rand(R, S + 1, generator=g, dtype=dtype) * 4.0).sort(dim=-1).values
    sigma = torch.rand(R, S, generator=g, dtype=dtype) * 5.0
    sigma[::5] *= 0.0  # some empty rays
    rgb = torch.rand(R, S, 3, generator=g, dtype=dtype)
    return edges[:, :-1], edges[:, 1:], sigma, rgb


def _pack(*xs, keep=None):
    """Flatten batched [R, S] tensors, keeping a ragged subset (``keep`` mask) of samples."""
    r, s = xs[0].shape[:2]
    ray_indices = torch.arange(r).repeat_interleave(s)
    if keep is None:
        return ray_indices, *[x.reshape(r * s, *x.shape[2:]) for x in xs]
    flat = keep.reshape(-1)
    return ray_indices[flat], *[x.reshape(r * s, *x.shape[2:])[flat] for x in xs]


def _ragged_mask(seed: int = 1):
    """A prefix of random length per ray (including empty rays): packing a prefix of each ray
    leaves the kept samples' weights equal to the batched ones."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, S + 1, (R,), generator=g)
    return torch.arange(S)[None, :] < lengths[:, None]


def _max_err(a, b):
    return (a - b).abs().max().item()


def test_batched_weights_match_nerfacc():
    t0, t1, sigma, _ = _random_samples()
    ref = nerfacc_volrend.render_weight_from_density(t0, t1, sigma)
    ours = weights_from_density(sigma, t0, t1)
    for a, b in zip(ours, ref):
        assert _max_err(a, b) <= 1e-6
    alpha = ref[2]
    ref_a = nerfacc_volrend.render_weight_from_alpha(alpha)  # (weights, transmittance)
    ours_a = weights_from_alpha(alpha)
    assert len(ref_a) == 2
    for a, b in zip(ours_a[:2], ref_a):
        assert _max_err(a, b) <= 1e-6


@pytest.mark.parametrize("ragged", [False, True])
def test_packed_weights_match_nerfacc_batched(ragged):
    t0, t1, sigma, _ = _random_samples()
    keep = _ragged_mask() if ragged else torch.ones(R, S, dtype=torch.bool)
    w_ref, T_ref, a_ref = nerfacc_volrend.render_weight_from_density(t0, t1, sigma)
    ray_indices, pt0, pt1, psigma = _pack(t0, t1, sigma, keep=keep)
    w, T, a = weights_from_density(psigma, pt0, pt1, ray_indices, R)
    assert _max_err(w, w_ref[keep]) <= 1e-6
    assert _max_err(T, T_ref[keep]) <= 1e-6
    assert _max_err(a, a_ref[keep]) <= 1e-6
    w2, T2, _ = weights_from_alpha(a_ref[keep], ray_indices, R)
    wa_ref, Ta_ref = nerfacc_volrend.render_weight_from_alpha(a_ref)
    assert _max_err(w2, wa_ref[keep]) <= 1e-6 and _max_err(T2, Ta_ref[keep]) <= 1e-6


@pytest.mark.parametrize("packed", [False, True])
def test_accumulated_rgb_depth_opacity_match_nerfacc(packed):
    t0, t1, sigma, rgb = _random_samples(3)
    w, _, _ = nerfacc_volrend.render_weight_from_density(t0, t1, sigma)
    t_mid = (t0 + t1) / 2
    ref_rgb = nerfacc_volrend.accumulate_along_rays(w, rgb)
    ref_depth = nerfacc_volrend.accumulate_along_rays(w, t_mid[..., None])[:, 0]
    ref_opacity = nerfacc_volrend.accumulate_along_rays(w, None)[:, 0]
    if packed:
        ray_indices, pw, prgb, pt = _pack(w, rgb, t_mid)
        out = composite(pw, prgb, pt, None, ray_indices, R)
    else:
        out = composite(w, rgb, t_mid)
    for a, b in zip(out, (ref_rgb, ref_depth, ref_opacity)):
        assert _max_err(a, b) <= 1e-5 * max(1.0, b.abs().max().item())
    assert _max_err(out[0], ref_rgb) <= 1e-6 and _max_err(out[2], ref_opacity) <= 1e-6


def test_one_ray_two_samples_by_hand():
    sigma = torch.tensor([[2.0, 1.0]])
    t0, t1 = torch.tensor([[0.0, 0.5]]), torch.tensor([[0.5, 1.5]])
    w, T, a = weights_from_density(sigma, t0, t1)
    a0, a1 = 1 - math.exp(-1.0), 1 - math.exp(-1.0)
    torch.testing.assert_close(a, torch.tensor([[a0, a1]]))
    torch.testing.assert_close(T, torch.tensor([[1.0, math.exp(-1.0)]]))
    torch.testing.assert_close(w, torch.tensor([[a0, math.exp(-1.0) * a1]]))
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    color, depth, opacity = composite(w, rgb, (t0 + t1) / 2, background=torch.tensor([0, 0, 1.0]))
    op = 1 - math.exp(-2.0)
    torch.testing.assert_close(opacity, torch.tensor([op]))
    torch.testing.assert_close(color, torch.tensor([[a0, math.exp(-1.0) * a1, 1 - op]]))
    torch.testing.assert_close(depth, torch.tensor([a0 * 0.25 + math.exp(-1.0) * a1 * 1.0]))


def test_packed_ray_without_samples_gets_background():
    ray_indices = torch.tensor([0, 0, 2])
    w = torch.tensor([0.5, 0.25, 1.0])
    rgb = torch.ones(3, 3)
    color, depth, opacity = composite(w, rgb, torch.ones(3), 0.5, ray_indices, 3)
    torch.testing.assert_close(opacity, torch.tensor([0.75, 0.0, 1.0]))
    torch.testing.assert_close(color[:, 0], torch.tensor([0.875, 0.5, 1.0]))


@pytest.mark.parametrize("n", [1, 7, 64])
def test_constant_density_opacity_is_exact_for_any_sample_count(n):
    sigma_value, length = 1.7, 2.5
    o, d = torch.zeros(3, 3), torch.tensor([[0.0, 0, 1]] * 3)
    t0, t1 = sample_uniform(o, d, 0.0, length, n, stratified=True,
                            generator=torch.Generator().manual_seed(n))
    w, _, _ = weights_from_density(torch.full_like(t0, sigma_value), t0, t1)
    torch.testing.assert_close(accumulate(w), torch.full((3,), 1 - math.exp(-sigma_value * length)))


def test_sample_uniform_tiles_the_segment():
    o, d = torch.zeros(5, 3), torch.tensor([[1.0, 0, 0]] * 5)
    near, far = torch.linspace(0.1, 0.5, 5), torch.linspace(2.0, 3.0, 5)
    for stratified in (False, True):
        t0, t1 = sample_uniform(o, d, near, far, 16, stratified)
        torch.testing.assert_close(t0[:, 0], near)
        torch.testing.assert_close(t1[:, -1], far)
        torch.testing.assert_close(t0[:, 1:], t1[:, :-1])
        assert (t1 >= t0).all()
    t0, t1 = sample_uniform(o, d, near, far, 16)
    torch.testing.assert_close(t1 - t0, ((far - near) / 16)[:, None].expand(-1, 16))


def test_render_rays_fog_and_batched_equals_packed():
    def field(x, d):
        rgb = torch.sigmoid(torch.stack([x[:, 0], x[:, 1] * 2, d[:, 2]], -1))
        return rgb, 3.0 * torch.exp(-(x**2).sum(-1))

    g = torch.Generator().manual_seed(0)
    o = torch.randn(20, 3, generator=g) * 0.3 - torch.tensor([0, 0, 2.0])
    d = torch.nn.functional.normalize(torch.randn(20, 3, generator=g) * 0.2
                                      + torch.tensor([0, 0, 1.0]), dim=-1)
    t0, t1 = sample_uniform(o, d, 0.5, 3.5, 32)
    batched = render_rays(field, o, d, t0, t1, background=1.0, chunk_size=100)
    ray_indices, pt0, pt1 = _pack(t0, t1)
    packed = render_rays(field, o, d, pt0, pt1, ray_indices, background=1.0)
    torch.testing.assert_close(batched.rgb, packed.rgb)
    torch.testing.assert_close(batched.depth, packed.depth)
    torch.testing.assert_close(batched.opacity, packed.opacity)


def test_packed_weights_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    ray_indices = torch.tensor([0, 0, 0, 2, 2, 3])
    sigma = (torch.rand(6, generator=g, dtype=torch.float64) * 2).requires_grad_()
    t0 = torch.tensor([0.0, 0.3, 0.7, 0.1, 0.4, 0.0], dtype=torch.float64)
    t1 = (t0 + torch.rand(6, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    alpha = torch.rand(6, generator=g, dtype=torch.float64).requires_grad_()

    def from_density(s, e):
        return weights_from_density(s, t0, e, ray_indices, 4)[:2]

    def from_alpha(a):
        return weights_from_alpha(a, ray_indices, 4)[:2]

    assert torch.autograd.gradcheck(from_density, (sigma, t1))
    assert torch.autograd.gradcheck(from_alpha, (alpha,))
    rgb = torch.rand(6, 3, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.rand(6, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda w_, c_: composite(w_, c_, t0, 0.3, ray_indices, 4), (w, rgb))


def test_alpha_one_stops_transmittance_with_finite_gradient():
    alpha = torch.tensor([0.3, 1.0, 0.6, 0.2], dtype=torch.float64, requires_grad=True)
    ray_indices = torch.zeros(4, dtype=torch.long)
    w, T, _ = weights_from_alpha(alpha, ray_indices, 1)
    torch.testing.assert_close(T.detach()[2:], torch.zeros(2, dtype=torch.float64))
    w.sum().backward()
    assert torch.isfinite(alpha.grad).all()


def _plane_crossing(inv_s, n=256, anneal=1.0):
    """A ray along −z from z = 1 through the plane z = 0.37 (SDF f = z − 0.37, normal +z)."""
    o = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64)
    t0, t1 = sample_uniform(o, d, 0.0, 2.0, n)
    t_mid = ((t0 + t1) / 2)[0]
    z = 1.0 - t_mid
    sdf = z - 0.37
    grads = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).expand(n, 3)
    alpha = neus_alpha(sdf, grads, d.expand(n, 3), (t1 - t0)[0], inv_s, anneal)
    w, _, _ = weights_from_alpha(alpha[None])
    return w[0], t_mid, (t1 - t0)[0, 0].item()


def test_neus_weights_concentrate_at_the_plane_crossing():
    w, t_mid, delta = _plane_crossing(inv_s=torch.tensor(2000.0, dtype=torch.float64))
    crossing = 1.0 - 0.37
    assert abs(t_mid[w.argmax()].item() - crossing) <= delta
    assert abs(w.sum().item() - 1.0) < 1e-3
    # Mass within ±2 intervals of the crossing.
    near = (t_mid - crossing).abs() <= 2 * delta
    assert w[near].sum().item() > 0.99
    # A small s spreads the weights (negative control).
    w_soft, _, _ = _plane_crossing(inv_s=5.0)
    assert w_soft[near].sum().item() < 0.5


def test_neus_alpha_back_face_is_transparent_at_full_anneal():
    sdf = torch.tensor([-0.01, 0.01])
    grads = torch.tensor([[0.0, 0.0, 1.0]] * 2)
    dirs = torch.tensor([[0.0, 0.0, 1.0]] * 2)  # leaving the surface: d·g > 0
    alpha = neus_alpha(sdf, grads, dirs, torch.tensor([0.05, 0.05]), 500.0, 1.0)
    assert alpha.max().item() < 2e-3  # only the ε of the formula remains
    front = neus_alpha(sdf, grads, -dirs, torch.tensor([0.05, 0.05]), 500.0, 1.0)
    assert front[0].item() > 0.99
    # Annealing (r < 1) makes grazing rays (d·g = 0) opaque early in training: c = −½, not 0.
    grazing = torch.tensor([[1.0, 0.0, 0.0]] * 2)
    late = neus_alpha(sdf, grads, grazing, torch.tensor([0.05, 0.05]), 500.0, 1.0)
    early = neus_alpha(sdf, grads, grazing, torch.tensor([0.05, 0.05]), 500.0, 0.0)
    assert late[0].item() < 2e-3 and early[0].item() > 0.9


def test_sample_pdf_quantiles_follow_the_weights():
    # Two bins of weight 1 : 3 over [0, 1] and [1, 2]: a quarter of the samples fall in the first.
    edges = torch.tensor([[0.0, 1.0, 2.0]] * 4)
    w = torch.tensor([[1.0, 3.0]] * 4)
    t = sample_pdf(edges, w, 400, deterministic=True, eps=0.0)
    assert (t <= 1.0).sum(-1).tolist() == [100] * 4
    assert (t[:, 1:] >= t[:, :-1]).all()
    # Random draws: χ² against the bin probabilities of a random pdf over 16 bins.
    g = torch.Generator().manual_seed(0)
    edges = torch.linspace(0, 3, 17)[None].expand(2, -1).contiguous()
    w = torch.rand(2, 16, generator=g) ** 4
    t = sample_pdf(edges, w, 20000, deterministic=False, generator=g, eps=0.0)
    counts = torch.stack([torch.histc(t[i], bins=16, min=0, max=3) for i in range(2)])
    expected = 20000 * w / w.sum(-1, keepdim=True)
    mask = expected > 5
    chi2 = (((counts - expected) ** 2 / expected.clamp_min(1e-9))[mask]).sum().item()
    assert chi2 < 2 * 16 * 2  # ~dof 30: far below a failing fit
    assert (counts[~mask] <= 10).all()


def test_sample_pdf_empty_ray_is_uniform():
    edges = torch.linspace(0, 1, 9)[None]
    t = sample_pdf(edges, torch.zeros(1, 8), 4)
    torch.testing.assert_close(t, torch.tensor([[0.125, 0.375, 0.625, 0.875]]))


def test_two_batch_ranks_are_rejected_for_packed_without_n_rays():
    with pytest.raises(ValueError, match="n_rays"):
        weights_from_density(torch.ones(3), torch.zeros(3), torch.ones(3),
                             torch.zeros(3, dtype=torch.long))


def test_weights_accept_two_batch_ranks():
    t0, t1, sigma, rgb = _random_samples(5)
    w, T, a = weights_from_density(sigma.reshape(R, 1, S), t0.reshape(R, 1, S),
                                   t1.reshape(R, 1, S))
    w2, T2, a2 = weights_from_density(sigma, t0, t1)
    torch.testing.assert_close(w[:, 0], w2)
    wa, Ta, _ = weights_from_alpha(a.reshape(1, R, S))
    torch.testing.assert_close(Ta[0], T2)
    torch.testing.assert_close(accumulate(w)[:, 0], accumulate(w2))


def test_packed_and_batched_agree_in_float64_on_long_rays():
    """Many packed rays with large optical depth: the float64 prefix sums keep T exact."""
    g = torch.Generator().manual_seed(7)
    r, s = 512, 300
    edges = torch.linspace(0, 30, s + 1).expand(r, -1)
    sigma = torch.rand(r, s, generator=g) * 50
    w, T, _ = weights_from_density(sigma, edges[:, :-1], edges[:, 1:])
    ray_indices, ps, p0, p1 = _pack(sigma, edges[:, :-1].contiguous(), edges[:, 1:].contiguous())
    pw, pT, _ = weights_from_density(ps, p0, p1, ray_indices, r)
    assert _max_err(pw, w.reshape(-1)) <= 1e-6 and _max_err(pT, T.reshape(-1)) <= 1e-6


def test_packed_transmittance_keeps_per_ray_precision_over_many_rays():
    """4096 rays whose optical depths add up to ~10⁴ along the packed array, one opaque ray
    (σδ ~ 10⁵) early on: a float32 prefix over all samples (or a reset by float32 ray totals)
    would be off by ~1e-3 in the exponent; the per-ray sums must stay at float32 rounding."""
    g = torch.Generator().manual_seed(11)
    r, s = 4096, 128
    edges = (torch.rand(r, s + 1, generator=g) * 4.0).sort(dim=-1).values
    t0, t1 = edges[:, :-1].contiguous(), edges[:, 1:].contiguous()
    sigma = torch.rand(r, s, generator=g) * 1.5
    sigma[3] = 1e5
    keep = torch.arange(s)[None, :] < torch.randint(0, s + 1, (r,), generator=g)[:, None]
    keep[3] = True
    ray_indices, ps, p0, p1 = _pack(sigma, t0, t1, keep=keep)
    w, T, _ = weights_from_density(ps, p0, p1, ray_indices, r)
    w64, T64, _ = weights_from_density(sigma.double(), t0.double(), t1.double())
    assert _max_err(T.double(), T64[keep]) <= 1e-6
    assert _max_err(w.double(), w64[keep]) <= 1e-6
    # Gradients through the packed path equal the batched ones (padding has zero density).
    ps.requires_grad_()
    p1.requires_grad_()
    coeff = torch.rand(ps.shape, generator=g)
    (weights_from_density(ps, p0, p1, ray_indices, r)[0] * coeff).sum().backward()
    bs, b1 = (sigma * keep).requires_grad_(), t1.clone().requires_grad_()
    bw = weights_from_density(bs, t0, b1)[0]
    (bw[keep] * coeff).sum().backward()
    assert _max_err(ps.grad, bs.grad[keep]) <= 1e-5 * max(1.0, bs.grad.abs().max().item())
    assert _max_err(p1.grad, b1.grad[keep]) <= 1e-5 * max(1.0, b1.grad.abs().max().item())


def test_packed_paths_with_empty_rays_at_both_ends_and_no_samples():
    ray_indices = torch.tensor([1, 1, 1, 3, 3])
    g = torch.Generator().manual_seed(2)
    sigma = (torch.rand(5, generator=g, dtype=torch.float64) * 2).requires_grad_()
    t0 = torch.tensor([0.0, 0.3, 0.7, 0.1, 0.4], dtype=torch.float64)
    t1 = (t0 + 0.25).requires_grad_()
    rgb = torch.rand(5, 3, generator=g, dtype=torch.float64).requires_grad_()

    def render(s, e, c):
        w, T, _ = weights_from_density(s, t0, e, ray_indices, 5)
        wa, Ta, _ = weights_from_alpha(1 - torch.exp(-s), ray_indices, 5)
        return (T, Ta, *composite(w, c, (t0 + e) / 2, 0.5, ray_indices, 5),
                accumulate(wa, c, ray_indices, 5))

    assert torch.autograd.gradcheck(render, (sigma, t1, rgb))
    T = render(sigma, t1, rgb)[0]
    torch.testing.assert_close(T[[0, 3]], torch.ones(2, dtype=torch.float64))
    empty = torch.zeros(0, dtype=torch.long)
    color, depth, opacity = composite(torch.zeros(0), torch.zeros(0, 3), torch.zeros(0), 1.0,
                                      empty, 4)
    torch.testing.assert_close(color, torch.ones(4, 3))
    torch.testing.assert_close(opacity, torch.zeros(4))
    assert weights_from_density(torch.zeros(0), torch.zeros(0), torch.zeros(0), empty, 4)[0].shape \
        == (0,)


def test_packed_composite_fallback_segment_sum_matches_csr(monkeypatch):
    """Off CPU (or in half precision) the packed sums are segment sums, not CSR products."""
    import renderer.volume as volume

    t0, t1, sigma, rgb = _random_samples(4)
    keep = _ragged_mask(5)
    ray_indices, p0, p1, ps, prgb = _pack(t0, t1, sigma, rgb, keep=keep)
    w, _, _ = weights_from_density(ps, p0, p1, ray_indices, R)
    csr = composite(w, prgb, (p0 + p1) / 2, 0.2, ray_indices, R)
    csr_acc = accumulate(w, prgb, ray_indices, R)
    monkeypatch.setattr(volume, "_use_csr", lambda *_: False)
    seg = composite(w, prgb, (p0 + p1) / 2, 0.2, ray_indices, R)
    for a, b in zip(csr, seg):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(accumulate(w, prgb, ray_indices, R), csr_acc, rtol=0, atol=1e-6)


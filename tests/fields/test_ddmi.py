"""DDMI building blocks (fields/ddmi/): the spec's unit checks 1–5 (texel-centre sampling,
tri-plane sampling vs a hand-written bilinear interpolation, schedules, point-query
independence with its noise-injection negative control, DDIM determinism) plus VAE shapes, the
KL, the spectral-norm estimate, mixed prediction at init, EMA and a tiny diffusion overfit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fields.ddmi import (
    EMA,
    DecodedField,
    DiagonalGaussian,
    GaussianDiffusion,
    HierarchicalPEDecoder,
    ImageVAE,
    LatentUNet,
    MixedPrediction,
    MLPDenoiser,
    PlaneFeaturePE,
    TriplaneMLP,
    TriplaneVAE,
)
from fields.ddmi.diffusion import ddmi_betas, kl_weight, spectral_weight
from fields.ddmi.planes import grid_coords, pixel_centres, sample_plane
from fields.ddmi.vae import spectral_regulariser


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one intra-op thread is fastest and avoids oversubscription on a
    shared CPU (conftest asks for two); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _bilinear_reference(plane: np.ndarray, u: float, v: float) -> np.ndarray:
    """grid_sample(align_corners=False, padding_mode="border") from its definition, one point:
    ``u`` indexes the width, ``v`` the height; unnormalised coordinates are clamped to the
    texel-centre range before interpolating."""
    c, h, w = plane.shape
    ix = min(max(((u + 1) * w - 1) / 2, 0.0), w - 1.0)
    iy = min(max(((v + 1) * h - 1) / 2, 0.0), h - 1.0)
    x0, y0 = int(math.floor(ix)), int(math.floor(iy))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    fx, fy = ix - x0, iy - y0
    out = np.zeros(c)
    for yy, wy in ((y0, 1 - fy), (y1, fy)):
        for xx, wx in ((x0, 1 - fx), (x1, fx)):
            out += wy * wx * plane[:, yy, xx]
    return out


# 1. texel-centre sampling -------------------------------------------------------------------

@pytest.mark.parametrize("h,w,dtype", [(8, 8, torch.float32), (16, 32, torch.float32),
                                       (32, 32, torch.float32), (5, 11, torch.float64),
                                       (37, 53, torch.float64)])
def test_sampling_at_pixel_centres_returns_the_plane(h, w, dtype):
    # power-of-two sizes are exact in float32 (dyadic centres); others need float64 coordinates
    plane = torch.randn(2, 3, h, w, generator=_gen(0), dtype=dtype)
    xy = grid_coords(h, w, dtype).expand(2, -1, -1)
    got = sample_plane(plane, xy)  # [B, h·w, C], row-major
    assert torch.allclose(got.transpose(1, 2).reshape(2, 3, h, w), plane, atol=1e-6, rtol=0)


def test_pixel_centres_and_grid_convention():
    r = 7
    assert torch.allclose(pixel_centres(r), torch.linspace(-(r - 1) / r, (r - 1) / r, r),
                          atol=1e-7)
    g = grid_coords(3, 4)
    assert g.shape == (12, 2)
    i, j = 2, 1  # row 2, column 1
    assert torch.equal(g[i * 4 + j], torch.stack([pixel_centres(4)[j], pixel_centres(3)[i]]))


# 2. tri-plane sampling vs hand-written bilinear -----------------------------------------------

def test_plane_sampling_matches_handwritten_bilinear():
    plane = torch.randn(1, 4, 6, 9, generator=_gen(1), dtype=torch.float64)
    pts = torch.rand(1, 200, 2, generator=_gen(2), dtype=torch.float64) * 2.6 - 1.3  # incl. border
    got = sample_plane(plane, pts)[0].numpy()
    ref = np.stack([_bilinear_reference(plane[0].numpy(), float(u), float(v))
                    for u, v in pts[0].tolist()])
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)


def test_triplane_sum_and_concat():
    tri = torch.randn(1, 3, 5, 7, 6, generator=_gen(3), dtype=torch.float64)
    x = torch.rand(1, 64, 3, generator=_gen(4), dtype=torch.float64) * 2.4 - 1.2
    axes = [(0, 1), (1, 2), (0, 2)]  # xy, yz, xz
    ref = np.stack([
        np.stack([_bilinear_reference(tri[0, k].numpy(), float(p[a]), float(p[b]))
                  for p in x[0].tolist()])
        for k, (a, b) in enumerate(axes)])  # [3, N, C]
    cat = PlaneFeaturePE(3, "concat").level(tri, x)[0].numpy()
    summed = PlaneFeaturePE(3, "sum").level(tri, x)[0].numpy()
    assert cat.shape == (64, 15) and summed.shape == (64, 5)
    np.testing.assert_allclose(cat, np.concatenate(list(ref), axis=-1), atol=1e-6, rtol=0)
    np.testing.assert_allclose(summed, ref.sum(axis=0), atol=1e-6, rtol=0)
    assert PlaneFeaturePE(3, "concat").out_channels(5) == 15


# 3. schedules -------------------------------------------------------------------------------

def test_schedules():
    b = ddmi_betas(1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert abs(float(b[0]) - 0.0015) < 1e-9 and abs(float(b[-1]) - 0.0195) < 1e-9
    total = 10_000
    assert kl_weight(0, total, 0.5) == 0.0  # before 0.01 % of the steps
    assert kl_weight(1, total, 0.5) == pytest.approx(1e-4, abs=1e-12)
    assert kl_weight(9000, total, 0.5) == pytest.approx(0.5, abs=1e-12)
    assert kl_weight(total, total, 0.5) == pytest.approx(0.5, abs=1e-12)
    mid = kl_weight(4500, total, 0.5)
    assert 1e-4 < mid < 0.5 and mid == pytest.approx(1e-4 + (0.5 - 1e-4) * 4499 / 8999)
    assert spectral_weight(0.5) == pytest.approx(0.707, abs=1e-2)
    assert spectral_weight(0.01) == pytest.approx(4.81, abs=1e-2)
    assert spectral_weight(0.0) == pytest.approx(5.0) and spectral_weight(1.0) == pytest.approx(0.1)


# 4. point-query independence ------------------------------------------------------------------

def _unzero(m: torch.nn.Module) -> None:
    """Give the zero-initialised layers (ResFC's second layers) a default init, so that every
    layer takes part; magnitudes stay those of a freshly initialised network."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear) and not mod.weight.any():
                torch.nn.init.kaiming_uniform_(mod.weight, a=math.sqrt(5))


def _alone_vs_batch(decoder, planes, dim: int, scale) -> float:
    x = torch.rand(1, 1000, dim, generator=_gen(5)) * 2.2 - 1.1
    with torch.no_grad():
        batch = decoder(x, planes, scale)[0]
        alone = torch.stack([decoder(x[:, i:i + 1], planes, scale)[0, 0]
                             for i in (0, 17, 499, 999)])
    return float((batch[[0, 17, 499, 999]] - alone).abs().max())


def test_point_queries_are_independent_2d_with_scale_conditioning():
    torch.manual_seed(0)
    dec = HierarchicalPEDecoder((16, 16, 16), 64, 1, scale_conditioning=True).eval()
    _unzero(dec)
    planes = [torch.randn(1, 16, r, r, generator=_gen(r)) for r in (8, 16, 32)]
    assert _alone_vs_batch(dec, planes, 2, 0.5) <= 1e-6
    with torch.no_grad():  # the scale input matters
        x = torch.rand(1, 50, 2, generator=_gen(7))
        assert not torch.allclose(dec(x, planes, 1.0), dec(x, planes, 0.5))


def test_point_queries_are_independent_triplane():
    torch.manual_seed(0)
    for mix in ("sum", "concat"):
        mlp = TriplaneMLP((16, 16, 16), 64, mix=mix).eval()
        _unzero(mlp)
        planes = [torch.randn(1, 3, 16, r, r, generator=_gen(r)) for r in (8, 16, 32)]
        assert _alone_vs_batch(mlp, planes, 3, None) <= 1e-6


def test_noise_injection_breaks_point_query_independence():
    torch.manual_seed(0)
    dec = HierarchicalPEDecoder((16, 16, 16), 64, 1, scale_conditioning=True,
                                noise_injection=True).eval()
    _unzero(dec)
    planes = [torch.randn(1, 16, r, r, generator=_gen(r)) for r in (8, 16, 32)]
    assert _alone_vs_batch(dec, planes, 2, 0.5) > 1e-4


def test_decoded_field_renders_any_grid():
    torch.manual_seed(0)
    vae, dec = ImageVAE(), HierarchicalPEDecoder(scale_conditioning=True)
    z = torch.randn(1, 4, 8, 8, generator=_gen(9))
    field = DecodedField.from_latent(vae, dec, z, scale=1.0)
    img = field.render(37, 53, chunk=500)
    assert img.shape == (1, 37, 53)
    with torch.no_grad():
        direct = field(grid_coords(37, 53))
    assert torch.allclose(img.reshape(-1), direct[:, 0], atol=1e-6)


# 5. DDIM determinism --------------------------------------------------------------------------

def test_ddim_eta0_is_deterministic():
    torch.manual_seed(0)
    diff = GaussianDiffusion(ddmi_betas(1000))
    unet = LatentUNet(4, base_channels=32, channel_mult=(1, 2))
    with torch.no_grad():  # the zero-initialised output conv would hide the network
        unet.conv_out.weight.normal_(0, 0.05)
    model = MixedPrediction(unet, 4, diff.alphas_cumprod, init_logit=0.0)
    noise = torch.randn(2, 4, 8, 8, generator=_gen(10))
    a = diff.ddim_sample(model, steps=10, noise=noise)
    b = diff.ddim_sample(model, steps=10, noise=noise.clone())
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()
    c = diff.ddim_sample(model, steps=10, noise=torch.randn(2, 4, 8, 8, generator=_gen(11)))
    assert not torch.allclose(a, c)


# VAEs ----------------------------------------------------------------------------------------

def test_image_vae_tiny_shapes():
    torch.manual_seed(0)
    vae = ImageVAE()  # the spec's tiny config
    q = vae.encode(torch.rand(3, 1, 32, 32))
    assert q.mean.shape == (3, 4, 8, 8)
    planes = vae.decode(q.sample(_gen(12)))
    assert [tuple(p.shape) for p in planes] == [(3, 16, 8, 8), (3, 16, 16, 16), (3, 16, 32, 32)]
    rgb = ImageVAE(3, channels=(16, 32, 32, 32), blocks_per_level=1)
    planes, q = rgb(torch.rand(2, 3, 32, 32))
    assert q.mean.shape == (2, 4, 4, 4) and [p.shape[-1] for p in planes] == [4, 8, 16, 32]
    with pytest.raises(ValueError):
        vae.encode(torch.rand(1, 1, 30, 30))


def test_triplane_vae_shapes_and_permutation_invariance():
    torch.manual_seed(0)
    vae = TriplaneVAE()
    pts = torch.rand(2, 600, 3, generator=_gen(13)) * 2 - 1
    q = vae.encode(pts)
    assert q.mean.shape == (2, 3, 4, 8, 8)
    planes = vae.decode(q.mode())
    assert [tuple(p.shape) for p in planes] == [(2, 3, 16, r, r) for r in (8, 16, 32)]
    perm = torch.randperm(600, generator=_gen(14))
    assert torch.allclose(vae.encode(pts[:, perm]).mean, q.mean, atol=1e-5)
    logits = TriplaneMLP()(pts[:, :100], planes)
    assert logits.shape == (2, 100, 1)


def test_pointnet_pools_into_the_right_cells():
    vae = TriplaneVAE(resolution=8, channels=(8, 8))
    pt = torch.tensor([[[0.9, -0.9, 0.1]]])  # cells: x → col 7, y → 0, z → 4
    planes = vae.pointnet(pt)[0]  # [3, C, 8, 8]
    nz = [torch.nonzero(planes[k].abs().sum(0)).tolist() for k in range(3)]
    assert nz == [[[0, 7]], [[4, 0]], [[4, 7]]]  # (row, col): xy=(y,x), yz=(z,y), xz=(z,x)


def test_kl():
    zero = DiagonalGaussian(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3))
    assert torch.equal(zero.kl(), torch.zeros(2))
    mean, logvar = torch.randn(2, 4, 3, 3, generator=_gen(15)), torch.randn(2, 4, 3, 3)
    q = DiagonalGaussian(mean, logvar)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, torch.exp(0.5 * logvar)),
        torch.distributions.Normal(0.0, 1.0)).reshape(2, -1)
    assert (q.kl() > 0).all()
    assert torch.allclose(q.kl(), ref.sum(1), atol=1e-5)
    assert torch.allclose(q.kl("mean"), ref.mean(1), atol=1e-6)
    assert DiagonalGaussian(torch.zeros(1), torch.full((1,), 100.0)).logvar.item() == 20.0
    assert DiagonalGaussian(torch.zeros(1), torch.full((1,), -100.0)).logvar.item() == -30.0


def test_spectral_regulariser():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 16, 3)
    norm = torch.nn.GroupNorm(4, 16)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(-2.5, 1.0, 16))
    net = torch.nn.Sequential(conv, torch.nn.SiLU(), norm)
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(16, -1), 2)
    est = spectral_regulariser(net, n_iter=300, generator=_gen(16))
    assert abs(est.item() - 2.5 - float(sigma)) < 1e-3 * float(sigma) + 1e-6
    est.backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    again = spectral_regulariser(net)  # persisted vectors: 4 more iterations stay converged
    assert abs(again.item() - 2.5 - float(sigma)) < 1e-3 * float(sigma) + 1e-6


# diffusion -----------------------------------------------------------------------------------

def test_mixed_prediction_starts_at_the_gaussian_prediction():
    diff = GaussianDiffusion(ddmi_betas())
    net = MLPDenoiser(16, hidden=32)
    model = MixedPrediction(net, 1, diff.alphas_cumprod)
    assert torch.sigmoid(model.logit).item() == pytest.approx(0.0025, abs=1e-4)
    x = torch.randn(5, 1, 4, 4, generator=_gen(17))
    t = torch.tensor([0, 10, 500, 900, 999])
    with torch.no_grad():
        got, eps = model(x, t), net(x, t)
    ab = diff.alphas_cumprod[t].float().reshape(-1, 1, 1, 1)
    w = torch.sigmoid(torch.tensor(-6.0))
    assert torch.allclose(got, (1 - w) * (1 - ab).sqrt() * x + w * eps, atol=1e-6)
    assert (got - (1 - ab).sqrt() * x).abs().max() < 0.01 * (1 + eps.abs().max())


def test_q_sample_and_ema():
    diff = GaussianDiffusion(ddmi_betas())
    x0, n = torch.ones(2, 3), torch.zeros(2, 3)
    t = torch.tensor([0, 999])
    ab = diff.alphas_cumprod[t].float()
    assert torch.allclose(diff.q_sample(x0, t, n)[:, 0], ab.sqrt())
    lin = torch.nn.Linear(2, 2)
    ema = EMA(lin, decay=0.5)
    start = lin.weight.detach().clone()
    with torch.no_grad():
        lin.weight.add_(1.0)
    ema.update()
    avg = ema.averaged()
    assert torch.allclose(avg.weight, start + 0.5)
    assert torch.allclose(lin.weight, start + 1.0)  # the live module is untouched


def test_diffusion_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    diff = GaussianDiffusion(ddmi_betas())
    g = _gen(18)
    base = torch.linspace(-1.5, 1.5, 16).reshape(1, 1, 4, 4)
    x0 = base + 0.05 * torch.randn(128, 1, 4, 4, generator=g)  # narrow, far from N(0, I)
    model = MixedPrediction(MLPDenoiser(16, hidden=64, n_blocks=2), 1, diff.alphas_cumprod)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(200):
        loss = diff.loss(model, x0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert model.logit.item() > -6.0  # learns to trust the network more than the Gaussian prior

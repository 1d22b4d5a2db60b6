"""NAISR's additive deformation SDF (fields/naisr.py): the spec's structural checks 1–5 on the
spec's small 2-D model (template SIREN 2 → 64 × 3 → 1, g_i SIREN 2 + 1 + 16 → 64 × 3 → 2,
3 covariates, D = 16), in eval mode (no reference jitter)."""

from __future__ import annotations

import pytest
import torch

from fields.naisr import AdditiveDeformationSDF, LatentTable, naisr_losses


def _model(joint: bool = False, seed: int = 0) -> AdditiveDeformationSDF:
    torch.manual_seed(seed)
    return AdditiveDeformationSDF(2, 3, latent_dim=16, template_hidden=64, template_layers=3,
                                  deform_hidden=64, deform_layers=3, joint=joint).eval()


def _inputs(b: int = 200, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(b, 2, generator=g) * 2 - 1
    c = torch.rand(b, 3, generator=g) * 2 - 1
    z = torch.randn(b, 16, generator=g) * 0.25
    return p, c, z


def test_zero_covariates_give_the_template_exactly():
    m = _model()
    p, _, z = _inputs()
    c = torch.zeros(len(p), 3)
    d = m.displacements(p, c, z)
    assert d.abs().max() == 0  # the reference evaluation is the same evaluation
    assert torch.equal(m.sdf(p, c, z), m.template_sdf(p))


def test_displacements_add_up():
    m = _model()
    p, c, z = _inputs()
    d = m.displacements(p, c, z)
    assert d.shape == (3, len(p), 2)
    assert torch.equal(m.sdf(p, c, z), m.template_sdf(p + d.sum(0)))


@pytest.mark.parametrize("j", [0, 1, 2])
def test_locality_one_covariate_moves_one_displacement(j):
    m = _model()
    p, c, z = _inputs()
    c2 = c.clone()
    c2[:, j] += 0.37
    d1, d2 = m.displacements(p, c, z), m.displacements(p, c2, z)
    for i in range(3):
        if i == j:
            assert (d1[i] - d2[i]).abs().max() > 1e-3
        else:
            assert torch.equal(d1[i], d2[i])  # bitwise


def test_zero_cross_derivatives():
    m = _model()
    p, c, z = _inputs(16)
    for i in range(3):
        for j in range(3):
            cj = c.clone().requires_grad_(True)
            d = m.displacements(p, cj, z)[i]
            (grad,) = torch.autograd.grad(d.sum(), cj, allow_unused=True)
            g = torch.zeros_like(c) if grad is None else grad
            if i != j:
                assert g[:, j].abs().max() == 0, (i, j)
            else:
                assert g[:, j].abs().max() > 1e-4, (i, j)


def test_negative_control_a_joint_network_is_entangled():
    """One network over all covariates: changing c_1 moves the (single) displacement and the
    derivative with respect to every covariate is non-zero — the tests above would see it."""
    m = _model(joint=True)
    p, c, z = _inputs()
    c2 = c.clone()
    c2[:, 1] += 0.37
    d1, d2 = m.displacements(p, c, z), m.displacements(p, c2, z)
    assert d1.shape[0] == 1 and (d1 - d2).abs().max() > 1e-3
    cj = c.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(m.displacements(p, cj, z).sum(), cj)
    assert (grad.abs().amax(0) > 1e-4).all()  # every covariate reaches the one output


def test_reference_jitter_only_in_training():
    m = _model()
    p, _, z = _inputs()
    c = torch.zeros(len(p), 3)
    m.train()
    assert m.displacements(p, c, z).abs().max() > 0  # N(0, 1e-3) reference in training
    m.eval()
    assert m.displacements(p, c, z).abs().max() == 0


def test_population_prediction_and_codes():
    m = _model()
    p, c, _ = _inputs()
    assert torch.equal(m.population_sdf(p, c), m.sdf(p, c, torch.zeros(16)))
    table = LatentTable(5, 16)
    z = table(torch.tensor([0, 3]))
    assert z.shape == (2, 16) and (z.norm(dim=-1) <= 1.0 + 1e-6).all()
    assert m.inverse_residual(p, c, z[:1]).shape == (len(p),)


def test_losses_have_every_term_and_backpropagate():
    m = _model()
    m.train()
    p, c, z = _inputs(64)
    normals = torch.nn.functional.normalize(torch.randn(64, 2), dim=-1)
    terms = naisr_losses(m, p, normals, p * 0.5, torch.rand(64) - 0.5, c, c, z, z)
    for k in ("surf", "normal", "off", "eik", "surf_pop", "inv", "total"):
        assert k in terms and torch.isfinite(terms[k])
    terms["total"].backward()
    assert all(q.grad is not None for q in m.template.parameters())
    with pytest.raises(ValueError, match="covariates"):
        m.sdf(p, torch.zeros(64, 2), z)


def test_small_deformation_term_is_the_mean_squared_displacement():
    """Off by default (as in the released code); with a weight it is Σ_i mean ‖d_i‖² on the
    surface points of the population prediction (z = 0: the covariates alone), and the total
    grows by exactly weight × term."""
    m = _model()
    p, c, z = _inputs(64)
    normals = torch.nn.functional.normalize(torch.randn(64, 2), dim=-1)
    args = (m, p, normals, p * 0.5, torch.rand(64) - 0.5, c, c, z, z)
    base = naisr_losses(*args)
    assert "small" not in base
    terms = naisr_losses(*args, weights={"small": 7.0})
    expected = m.displacements(p, c, None).pow(2).sum(-1).mean(1).sum()
    assert not torch.allclose(expected, m.displacements(p, c, z).pow(2).sum(-1).mean(1).sum())
    assert torch.allclose(terms["small"], expected, rtol=1e-5)
    assert torch.allclose(terms["total"], base["total"] + 7.0 * expected, rtol=1e-6)
    assert not torch.allclose(terms["total"], base["total"], rtol=1e-6)

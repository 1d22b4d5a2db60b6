"""MLP, SIREN and geometric initialisation."""

import pytest
import torch

from fields.networks import MLP, Siren, geometric_init_


def test_mlp_shapes_and_layers():
    mlp = MLP(5, 2, hidden_dim=16, num_hidden_layers=3)
    assert len(mlp.linears) == 4
    assert mlp(torch.randn(7, 5)).shape == (7, 2)
    with pytest.raises(ValueError, match="activation"):
        MLP(3, 1, activation="swishy")


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_geometric_init_is_a_sphere_sdf(activation):
    torch.manual_seed(0)
    mlp = geometric_init_(MLP(3, 1, 128, 2, activation=activation), radius=0.5)
    x = torch.randn(4000, 3) * 0.8
    r = x.norm(dim=1)
    y = mlp(x)[:, 0].detach()
    # Radially f ≈ a·‖x‖ + b with a ≈ 1, b ≈ −radius (SAL: exact in the infinite-width limit).
    a, b = torch.linalg.lstsq(torch.stack([r, torch.ones_like(r)], 1), y[:, None]).solution[:, 0]
    assert 0.75 < a < 1.25 and abs(b + 0.5) < 0.05, (a, b)
    assert torch.corrcoef(torch.stack([y, r]))[0, 1] > 0.9
    # Signs: negative at the centre, positive far away.
    assert (mlp(torch.zeros(1, 3)) < 0).all()
    far = torch.nn.functional.normalize(torch.randn(200, 3), dim=1) * 3.0
    assert (mlp(far)[:, 0] > 0).all()
    # Negative control: default init is not a sphere SDF.
    plain = MLP(3, 1, 128, 2, activation=activation)
    assert torch.corrcoef(torch.stack([plain(x)[:, 0].detach(), r]))[0, 1] < 0.9


def test_geometric_init_ignores_feature_columns():
    torch.manual_seed(0)
    mlp = geometric_init_(MLP(3 + 8, 1, 64, 2), radius=0.3, num_coord_inputs=3)
    x = torch.randn(100, 3)
    a = mlp(torch.cat([x, torch.zeros(100, 8)], -1))
    b = mlp(torch.cat([x, torch.randn(100, 8) * 5], -1))
    torch.testing.assert_close(a, b)  # features start with zero weight


def test_siren_init_keeps_activations_bounded():
    torch.manual_seed(0)
    net = Siren(2, 1, hidden_dim=256, num_hidden_layers=4)
    h = torch.rand(2000, 2) * 2 - 1
    for i, lin in enumerate(net.layers[:-1]):
        h = torch.sin((net.omega0_first if i == 0 else net.omega0) * lin(h))
        # Sitzmann et al.: sin activations stay arcsine-distributed, std ≈ 1/√2.
        assert 0.5 < h.std().item() < 0.85, (i, h.std().item())

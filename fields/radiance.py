"""Radiance fields for volume rendering: density and view-dependent colour (instant-ngp style).

Müller et al., "Instant Neural Graphics Primitives with a Multiresolution Hash Encoding",
SIGGRAPH 2022: a position encoding (hash grid) feeds a tiny density MLP whose first output is the
log-density and whose other outputs are geometry features; a colour MLP maps
``[geometry features, SH(d)]`` to RGB.

Vocabulary: ``x`` sample points ``[N, 3]``; ``d`` view directions ``[N, 3]`` (normalised here);
``sigma`` densities ``[N]`` (≥ 0); ``rgb`` colours ``[N, 3]`` in ``(0, 1)``; ``geo`` geometry
features ``[N, G]``.

    h       = MLP_σ(enc(x)) = [s, geo]
    sigma   = trunc_exp(s)        (or softplus(s))
    rgb     = sigmoid(MLP_c([geo, SH(d)]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fields.encodings.sh import SphericalHarmonics
from fields.networks import MLP

__all__ = ["RadianceField", "trunc_exp"]

_TRUNC_EXP_MAX = 15.0
"""Backward clamp of :func:`trunc_exp`: exp(15) ≈ 3.3e6 bounds the density gradient."""


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` forward; ``exp(min(x, 15))`` as the derivative, so that a large log-density
    cannot produce an infinite or exploding gradient (instant-ngp's density activation)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad_out * torch.exp(x.clamp(max=_TRUNC_EXP_MAX))


def trunc_exp(x: Tensor) -> Tensor:
    """``exp(x)`` with the backward pass evaluated at ``min(x, 15)`` (finite for any ``x``).

    The forward value is the true exponential (``inf`` beyond ~88 in float32); only the gradient
    is truncated.

    Example:
        >>> x = torch.tensor([0.0, 100.0], requires_grad=True)
        >>> trunc_exp(x).sum().backward()
        >>> bool(torch.isfinite(x.grad).all())
        True
    """
    return _TruncExp.apply(x)


class RadianceField(nn.Module):
    """Density + view-dependent colour on top of a position encoding (instant-ngp's NeRF).

    Args:
        encoding: position encoding with ``in_dim = 3``, ``out_dim`` and ``forward(x)`` (a hash
            grid whose ``bounds`` cover the scene; wrap it in
            :class:`fields.encodings.quantized.QuantizedEncoding` to quantise inputs).
        hidden_dim: width of the density MLP.
        geo_feat_dim: G, geometry features passed to the colour MLP.
        num_layers: hidden layers of the density MLP (instant-ngp: 1).
        color_hidden: width of the colour MLP.
        color_layers: hidden layers of the colour MLP (instant-ngp: 2).
        dir_encoding: direction encoding (``out_dim``, ``forward(d)``); default
            :class:`SphericalHarmonics` of degree 4 (16 coefficients).
        density_activation: ``"trunc_exp"`` (instant-ngp) or ``"softplus"``.
        backend: MLP backend, ``"torch"``, ``"tcnn"`` or ``"auto"``.
        chunk_size: points per chunk in :meth:`density_chunked`.
        appearance: optional encoding whose features ``a(x)`` join the colour MLP's input
            (``[geo, a(x), SH(d)]``) but not the density's — where NeuRBF puts its RBF features
            for radiance fields (``--encoding rbf`` on the nerf task).

    Example:
        >>> from fields.encodings.frequency import PositionalEncoding
        >>> field = RadianceField(PositionalEncoding(3, 4), hidden_dim=32)
        >>> sigma, rgb = field(torch.zeros(5, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(5, 3))
        >>> sigma.shape, rgb.shape
        (torch.Size([5]), torch.Size([5, 3]))
    """

    def __init__(
        self,
        encoding: nn.Module,
        hidden_dim: int = 64,
        geo_feat_dim: int = 15,
        num_layers: int = 1,
        color_hidden: int = 64,
        color_layers: int = 2,
        dir_encoding: nn.Module | None = None,
        density_activation: str = "trunc_exp",
        backend: str = "torch",
        chunk_size: int = 1 << 14,
        appearance: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if density_activation not in ("trunc_exp", "softplus"):
            raise ValueError(
                f"density_activation must be 'trunc_exp' or 'softplus', got {density_activation!r}"
            )
        self.encoding = encoding
        self.dir_encoding = SphericalHarmonics(4) if dir_encoding is None else dir_encoding
        self.geo_feat_dim = geo_feat_dim
        self.density_activation = density_activation
        self.chunk_size = chunk_size
        self.density_net = MLP(
            encoding.out_dim, 1 + geo_feat_dim, hidden_dim, num_layers, backend=backend
        )
        self.appearance = appearance
        app_dim = appearance.out_dim if appearance is not None else 0
        self.color_net = MLP(
            geo_feat_dim + app_dim + self.dir_encoding.out_dim, 3, color_hidden, color_layers,
            output_activation="sigmoid", backend=backend,
        )

    def _activate(self, s: Tensor) -> Tensor:
        return trunc_exp(s) if self.density_activation == "trunc_exp" else F.softplus(s)

    def density_and_features(
        self, x: Float[Tensor, "N 3"]
    ) -> tuple[Float[Tensor, " N"], Float[Tensor, "N G"]]:
        """``(sigma, geo)``: density ``≥ 0`` and the geometry features for the colour MLP."""
        h = self.density_net(self.encoding(x))
        return self._activate(h[:, 0]), h[:, 1:]

    def density(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """Volume density ``sigma ≥ 0`` at ``x``."""
        return self.density_and_features(x)[0]

    def color(
        self, geo: Float[Tensor, "N G"], d: Float[Tensor, "N 3"]
    ) -> Float[Tensor, "N 3"]:
        """RGB from geometry features and view directions (directions are normalised here)."""
        return self.color_net(torch.cat([geo, self.dir_encoding(F.normalize(d, dim=-1))], dim=-1))

    def _colour_features(self, x: Tensor, geo: Tensor) -> Tensor:
        return geo if self.appearance is None else torch.cat([geo, self.appearance(x)], dim=-1)

    def rgb(self, x: Float[Tensor, "N 3"], d: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """RGB in ``(0, 1)`` seen at ``x`` from direction ``d``."""
        return self.color(self._colour_features(x, self.density_and_features(x)[1]), d)

    def forward(
        self, x: Float[Tensor, "N 3"], d: Float[Tensor, "N 3"]
    ) -> tuple[Float[Tensor, " N"], Float[Tensor, "N 3"]]:
        """``(sigma, rgb)`` with one pass through the encoding and density MLP."""
        sigma, geo = self.density_and_features(x)
        return sigma, self.color(self._colour_features(x, geo), d)

    @torch.no_grad()
    def density_chunked(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """``density(x)`` without gradients, in cache-sized chunks (occupancy-grid updates)."""
        if x.shape[0] <= self.chunk_size:
            return self.density(x)
        return torch.cat([self.density(c) for c in x.split(self.chunk_size)])

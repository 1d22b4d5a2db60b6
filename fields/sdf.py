"""Neural signed distance fields.

Vocabulary: ``x`` query points ``[N, 3]``; ``sdf`` ``[N]`` (negative inside); normals ``[N, 3]``.

``SDFField`` is ``f(x) = MLP([x, enc(x)])`` — an encoding (hash grid, frequencies, …) feeding a
small MLP, with the MLP geometrically initialised (Atzmon & Lipman, SAL, CVPR 2020) so the
untrained field is the SDF of a sphere. ``normal(x) = ∇f / ‖∇f‖`` by automatic differentiation.
This is the instant-ngp SDF recipe (Müller et al., SIGGRAPH 2022) on our own modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fields.networks import MLP, geometric_init_

__all__ = ["SDFField", "SDFQueries"]


class SDFQueries:
    """What every SDF field offers on top of its differentiable ``sdf(x) -> [N]``: chunked
    inference, autograd gradients and unit normals (mixed into :class:`SDFField` and
    :class:`fields.neurbf.NeuRBFSDFField`; needs ``self.chunk_size``)."""

    chunk_size: int

    @torch.no_grad()
    def sdf_chunked(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """``sdf(x)`` without gradients, in cache-sized chunks (fast inference on CPU)."""
        if x.shape[0] <= self.chunk_size:
            return self.sdf(x)
        return torch.cat([self.sdf(c) for c in x.split(self.chunk_size)])

    def gradient(self, x: Float[Tensor, "N 3"], create_graph: bool = False) -> Float[Tensor, "N 3"]:
        """``∇sdf(x)`` by autograd (also inside ``torch.no_grad()`` callers)."""
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            if create_graph:
                y = self.sdf(xg)
            else:
                # Only ∂f/∂x is wanted: run with detached parameters so no backward pass
                # spends time on parameter gradients (e.g. the hash table's scatter-add).
                frozen = {k: v.detach() for k, v in self.named_parameters()}
                y = torch.func.functional_call(self, frozen, (xg,), strict=False)
                y = y.reshape(-1)
            (g,) = torch.autograd.grad(y.sum(), xg, create_graph=create_graph)
        return g

    def normal(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """Unit outward normal ``∇f / ‖∇f‖``, evaluated in chunks without keeping the graph."""
        if x.shape[0] <= self.chunk_size:
            return F.normalize(self.gradient(x), dim=-1)
        return torch.cat([F.normalize(self.gradient(c), dim=-1) for c in x.split(self.chunk_size)])


class SDFField(SDFQueries, nn.Module):
    """``sdf(x) = MLP([x, encoding(x)])`` with geometric initialisation.

    Args:
        encoding: any module with ``in_dim``, ``out_dim`` and ``forward(x) -> [N, out_dim]``.
        hidden_dim: MLP width.
        num_hidden_layers: MLP depth.
        activation: ``"relu"`` (fast) or ``"softplus"`` (smooth second derivatives).
        geometric_init: start as the SDF of a sphere of radius ``init_radius``.
        include_coords: feed ``x`` itself next to the encoding (needed by geometric init).
        chunk_size: points per chunk in :meth:`sdf_chunked` (inference without gradients).

    Example:
        >>> from fields.encodings.frequency import PositionalEncoding
        >>> field = SDFField(PositionalEncoding(3, 4), hidden_dim=32, init_radius=0.5)
        >>> field.sdf(torch.zeros(2, 3)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        encoding: nn.Module,
        hidden_dim: int = 64,
        num_hidden_layers: int = 2,
        activation: str = "relu",
        geometric_init: bool = True,
        init_radius: float = 0.5,
        include_coords: bool = True,
        chunk_size: int = 1 << 14,
    ) -> None:
        super().__init__()
        self.encoding = encoding
        self.include_coords = include_coords
        self.chunk_size = chunk_size
        in_dim = encoding.out_dim + (3 if include_coords else 0)
        self.mlp = MLP(in_dim, 1, hidden_dim, num_hidden_layers, activation=activation)
        if geometric_init:
            if not include_coords:
                raise ValueError("geometric_init needs include_coords=True")
            geometric_init_(self.mlp, radius=init_radius, num_coord_inputs=3)

    def features(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
        h = self.encoding(x)
        return torch.cat([x, h], dim=-1) if self.include_coords else h

    def sdf(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """Signed distance at ``x`` (differentiable)."""
        return self.mlp(self.features(x))[:, 0]

    def forward(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        return self.sdf(x)


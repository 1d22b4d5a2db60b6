"""NeuS fields: an SDF network with a feature output, a colour network, and the learned variance.

Wang et al., "NeuS: Learning Neural Implicit Surfaces by Volume Rendering for Multi-view
Reconstruction", NeurIPS 2021. Optional coordinate quantisation from Jiang et al., "Coordinate
Quantized Neural Implicit Representations for Multi-view Reconstruction" (CQ-NIR), ICCV 2023.

Vocabulary: ``x`` sample points ``[N, 3]``; ``sdf`` ``[N]`` (negative inside); ``features``
``[N, F]``; ``gradients`` ``∇sdf`` ``[N, 3]`` (NeuS feeds them, unnormalised, to the colour network
as "normals"); ``dirs`` view directions ``[N, 3]``; ``rgb`` ``[N, 3]`` in ``(0, 1)``.

    [sdf, features] = MLP_sdf([x, enc(x)])              (geometric init: sdf ≈ ‖x‖ − r)
    rgb             = sigmoid(MLP_c([x, n, γ(d), features]))   (NeuS "idr" mode)
    inv_s           = exp(10·v)                                 (LearnedVariance)

With a quantiser ``q`` (CQ-NIR), ``x_q = q(x)`` replaces ``x`` in the SDF input, the colour
network's point input and the gradient, which is taken at ``x_q`` as the autograd leaf (the
network is differentiated, not the quantiser). Ray depths and intervals are the renderer's and
stay continuous.

Second derivatives: the torch hash grid has first derivatives only, so an eikonal loss through
``gradient(x, create_graph=True)`` is only correct for smooth encodings (positional, identity).
For hash grids use :meth:`NeuSField.gradient_fd` — central finite differences, which are
differentiable in the parameters (the numerical gradients of Neuralangelo, Li et al., CVPR 2023).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fields.encodings.frequency import PositionalEncoding
from fields.encodings.quantized import CoordinateQuantizer, QuantizedEncoding
from fields.networks import MLP, geometric_init_

__all__ = ["LearnedVariance", "NeuSField"]


class NeuSField(nn.Module):
    """NeuS SDF + colour networks on a position encoding, optionally coordinate-quantised.

    Args:
        encoding: position encoding (``in_dim = 3``, ``out_dim``, ``forward``). A
            :class:`QuantizedEncoding` is unwrapped: its quantiser becomes the field's
            ``quantizer`` (applied once at the field's entry) and its inner encoding is evaluated
            at ``x_q`` — so autograd normals see the whole network, not only the raw-``x``
            channel.
        hidden_dim: width of the SDF MLP (NeuS: 256).
        num_hidden_layers: hidden layers of the SDF MLP (NeuS: 8 with a skip; none here).
        feature_dim: F, features passed from the SDF MLP to the colour MLP (NeuS: 256).
        color_hidden: width of the colour MLP.
        color_layers: hidden layers of the colour MLP (NeuS: 4 × 256).
        geometric_init: start as the SDF of a sphere of radius ``init_radius`` (SAL init; the
            encoding's columns of the first layer start at zero, as in NeuS).
        init_radius: that radius (NeuS: 0.5 in its normalised space).
        activation: SDF MLP activation; ``"softplus"`` (β = 100, NeuS) keeps second derivatives.
        dir_encoding: view-direction encoding; default NeuS's positional encoding with 4
            octaves (27 channels).
        quantizer: CQ-NIR quantiser of the network inputs, or ``None``.
        chunk_size: points per chunk in :meth:`sdf_chunked`.

    Example:
        >>> from fields.encodings.frequency import PositionalEncoding
        >>> field = NeuSField(PositionalEncoding(3, 6), hidden_dim=32)
        >>> field.sdf(torch.zeros(2, 3)).shape
        torch.Size([2])
    """

    def __init__(
        self,
        encoding: nn.Module,
        hidden_dim: int = 64,
        num_hidden_layers: int = 2,
        feature_dim: int = 15,
        color_hidden: int = 64,
        color_layers: int = 2,
        geometric_init: bool = True,
        init_radius: float = 0.5,
        activation: str = "softplus",
        dir_encoding: nn.Module | None = None,
        quantizer: CoordinateQuantizer | None = None,
        chunk_size: int = 1 << 14,
    ) -> None:
        super().__init__()
        if isinstance(encoding, QuantizedEncoding):
            if quantizer is not None and quantizer is not encoding.quantizer:
                raise ValueError("encoding is a QuantizedEncoding with a different quantizer")
            quantizer, encoding = encoding.quantizer, encoding.encoding
        self.encoding = encoding
        self.quantizer = quantizer
        self.feature_dim = feature_dim
        self.chunk_size = chunk_size
        self.sdf_net = MLP(
            3 + encoding.out_dim, 1 + feature_dim, hidden_dim, num_hidden_layers,
            activation=activation,
        )
        if geometric_init:
            geometric_init_(self.sdf_net, radius=init_radius, num_coord_inputs=3)
        self.dir_encoding = PositionalEncoding(3, 4) if dir_encoding is None else dir_encoding
        self.color_net = MLP(
            3 + 3 + self.dir_encoding.out_dim + feature_dim, 3, color_hidden, color_layers,
            activation="relu", output_activation="sigmoid",
        )

    def quantize(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """The network input for ``x``: ``q(x)`` (detached) with a quantiser, else ``x``."""
        return x if self.quantizer is None else self.quantizer(x)

    def _network(self, xq: Float[Tensor, "N 3"]) -> tuple[Tensor, Tensor]:
        # The SDF MLP at already-quantised points (no quantisation here).
        h = self.sdf_net(torch.cat([xq, self.encoding(xq)], dim=-1))
        return h[:, 0], h[:, 1:]

    def sdf_and_features(
        self, x: Float[Tensor, "N 3"]
    ) -> tuple[Float[Tensor, " N"], Float[Tensor, "N F"]]:
        """``(sdf, features)`` at ``q(x)`` (differentiable in the parameters)."""
        return self._network(self.quantize(x))

    def sdf(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """Signed distance at ``q(x)``."""
        return self.sdf_and_features(x)[0]

    def forward(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        return self.sdf(x)

    @torch.no_grad()
    def sdf_chunked(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """``sdf(x)`` without gradients, in cache-sized chunks (meshing, sphere tracing)."""
        if x.shape[0] <= self.chunk_size:
            return self.sdf(x)
        return torch.cat([self.sdf(c) for c in x.split(self.chunk_size)])

    def sdf_features_and_gradient(
        self, x: Float[Tensor, "N 3"], create_graph: bool = True
    ) -> tuple[Float[Tensor, " N"], Float[Tensor, "N F"], Float[Tensor, "N 3"]]:
        """``(sdf, features, ∇sdf)`` from one forward pass, the gradient taken at the leaf
        ``q(x)``. With ``create_graph`` the gradient is differentiable in the parameters (eikonal
        loss, or NeuS's colour network fed with these gradients as normals); that needs second
        derivatives, so with the torch hash grid pass ``create_graph=False`` and use
        :meth:`gradient_fd` for anything that must be differentiated."""
        with torch.enable_grad():
            xq = self.quantize(x).detach().requires_grad_(True)
            sdf, features = self._network(xq)
            (g,) = torch.autograd.grad(sdf.sum(), xq, create_graph=create_graph)
        return sdf, features, g

    def gradient(
        self, x: Float[Tensor, "N 3"], create_graph: bool = False
    ) -> Float[Tensor, "N 3"]:
        """``∇sdf`` at ``q(x)`` by autograd (``q(x)`` is the leaf; works under ``no_grad``)."""
        if create_graph:
            return self.sdf_features_and_gradient(x, create_graph=True)[2]
        with torch.enable_grad():
            xq = self.quantize(x).detach().requires_grad_(True)
            # Only ∂f/∂x is wanted: detached parameters spare the parameter backward (e.g. the
            # hash table's scatter-add). The network is called at the leaf, not re-quantised.
            frozen = {f"field.{k}": v.detach() for k, v in self.named_parameters()}
            y = torch.func.functional_call(_NetworkAt(self), frozen, (xq,), strict=False)
            (g,) = torch.autograd.grad(y.sum(), xq)
        return g

    def gradient_fd(
        self, x: Float[Tensor, "N 3"], eps: float = 1e-3
    ) -> Float[Tensor, "N 3"]:
        """Central differences ``(f(x_q + ε e_i) − f(x_q − ε e_i)) / 2ε`` around ``x_q = q(x)``.

        The six offset points are *not* re-quantised (that would return zero for ``ε < Δ``): this
        differentiates the network at the lattice point, as CQ-NIR prescribes. The result is
        differentiable in the parameters, so it serves as the eikonal term for hash grids
        (Neuralangelo's numerical gradients, Li et al., CVPR 2023); pick ``ε`` near the finest
        grid cell. Error is ``O(ε²)`` for smooth fields.
        """
        xq = self.quantize(x)
        offsets = eps * torch.eye(3, dtype=xq.dtype, device=xq.device)
        pts = torch.cat([xq[:, None, :] + offsets, xq[:, None, :] - offsets], dim=1)  # [N, 6, 3]
        sdf, _ = self._network(pts.reshape(-1, 3))
        sdf = sdf.reshape(-1, 6)
        return (sdf[:, :3] - sdf[:, 3:]) / (2.0 * eps)

    def rgb(
        self,
        x: Float[Tensor, "N 3"],
        normals: Float[Tensor, "N 3"],
        dirs: Float[Tensor, "N 3"],
        features: Float[Tensor, "N F"],
    ) -> Float[Tensor, "N 3"]:
        """Colour in ``(0, 1)`` from ``[q(x), normals, γ(dirs), features]`` (NeuS "idr" mode;
        NeuS passes the raw gradients as ``normals``)."""
        h = torch.cat([self.quantize(x), normals, self.dir_encoding(dirs), features], dim=-1)
        return self.color_net(h)


class _NetworkAt(nn.Module):
    """``field``'s SDF at already-quantised points, as a module for ``functional_call``."""

    def __init__(self, field: NeuSField) -> None:
        super().__init__()
        self.field = field

    def forward(self, xq: Tensor) -> Tensor:
        return self.field._network(xq)[0]


class LearnedVariance(nn.Module):
    """NeuS's learned inverse standard deviation ``s = exp(10·v)`` of the logistic CDF
    ``Φ_s(z) = sigmoid(s·z)``; ``v`` starts at ``init`` (NeuS: 0.3, so ``s ≈ 20``).

    ``forward()`` returns ``s`` clipped to ``[1e-6, 1e6]`` as NeuS's renderer does.

    Example:
        >>> round(LearnedVariance(0.3)().item(), 4)
        20.0855
    """

    def __init__(self, init: float = 0.3) -> None:
        super().__init__()
        self.variance = nn.Parameter(torch.tensor(float(init)))

    def forward(self) -> Float[Tensor, ""]:
        return torch.exp(10.0 * self.variance).clamp(1e-6, 1e6)

    @property
    def inv_s(self) -> Tensor:
        """``s = exp(10·v)`` (same as calling the module)."""
        return self()

    def item(self) -> float:
        """``s`` as a Python float (no gradient)."""
        return float(self().detach())

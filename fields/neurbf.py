"""NeuRBF fields (Chen et al., "NeuRBF: A Neural Fields Representation with Adaptive Radial Basis
Functions", ICCV 2023, arXiv 2309.15426).

Vocabulary: ``x`` query points ``[B, D]``; the field returns raw (linear) outputs ``[B, out]``.

``f(x) = g_m(g_b(x))`` with the hybrid feature ``g_b(x) = concat[grid(x), r(x)] + b`` — a
conventional grid feature next to the adaptive-RBF feature ``r(x)``
(:class:`fields.encodings.rbf.AdaptiveRBFEncoding`) and a learnt bias ``b`` (init ``U(±1e-4)``).
The decoder ``g_m`` (image/SDF variant) widens its first hidden layer by residual feature MSC:

    h0 = W0 g_b + b0,   f0 = h0 + sin(h0 ⊙ m0),   h1 = ReLU(W1 f0 + b1),   out = W2 h1 + b2

with ``m0`` log-spaced over the hidden channels (default ``[1, 1000]``, the DIV2K setting).
Outputs are raw: clip only for metrics (images to [0, 1], SDFs to ±√12).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from fields.encodings.hashgrid import HashGridConfig, hashgrid_level_layout
from fields.encodings.rbf import AdaptiveRBFEncoding, msc_frequencies, rbf_kernel_budget
from fields.sdf import SDFQueries

__all__ = [
    "NeuRBFSDFField",
    "MSCDecoder", "NeuRBFField", "decoder_num_parameters", "ingp_reference_params",
    "neurbf_kernel_budget",
]


def decoder_num_parameters(in_features: int, hidden_dim: int, out_dim: int) -> int:
    """Parameters of NeuRBF's decoder and its feature bias ``b`` (everything but the encodings):
    ``b [in]`` + Linear(in→hidden) + Linear(hidden→hidden) + Linear(hidden→out).

    Example:
        >>> decoder_num_parameters(36, 64, 3)
        6759
    """
    return (in_features + (in_features + 1) * hidden_dim + (hidden_dim + 1) * hidden_dim
            + (hidden_dim + 1) * out_dim)


def neurbf_kernel_budget(
    reference_params: int,
    grid: nn.Module | None,
    in_dim: int,
    features: int,
    out_dim: int,
    hidden_dim: int = 64,
    kernel: str = "ivq_a",
) -> int:
    """How many kernels a :class:`NeuRBFField` with this ``grid`` (its parameters counted) and
    decoder can have within ``reference_params`` (NeuRBF's ``n_kernel = 'auto'``), via
    :func:`fields.encodings.rbf.rbf_kernel_budget`.

    Example:
        >>> neurbf_kernel_budget(20_000, None, 2, 32, 3)
        364
    """
    grid_out = int(grid.out_dim) if grid is not None else 0
    grid_params = sum(p.numel() for p in grid.parameters()) if grid is not None else 0
    other = grid_params + decoder_num_parameters(grid_out + features, hidden_dim, out_dim)
    return rbf_kernel_budget(reference_params, other, in_dim, features, kernel)


def ingp_reference_params(
    in_dim: int,
    out_dim: int,
    log2_hashmap_size: int,
    max_resolution: int,
    num_levels: int = 16,
    features_per_level: int = 2,
    base_resolution: int = 16,
    hidden_dim: int = 64,
    num_hidden_layers: int = 2,
) -> int:
    """NeuRBF's reference budget: an Instant-NGP hash grid (16 levels × 2 features at the given
    log2 T, tiny-cuda-nn level layout) plus its ``hidden_dim``-wide ReLU MLP, counted as this
    library's torch :class:`fields.networks.MLP` (weights and biases).

    Example:
        >>> ingp_reference_params(2, 3, 10, 64, num_levels=2)
        7235
    """
    cfg = HashGridConfig(
        num_levels=num_levels, features_per_level=features_per_level,
        log2_hashmap_size=log2_hashmap_size, base_resolution=base_resolution,
        max_resolution=max_resolution,
    )
    _, _, offsets, _ = hashgrid_level_layout(cfg, in_dim)
    dims = [num_levels * features_per_level] + [hidden_dim] * num_hidden_layers + [out_dim]
    mlp = sum((dims[i] + 1) * dims[i + 1] for i in range(len(dims) - 1))
    return offsets[-1] * features_per_level + mlp


class MSCDecoder(nn.Module):
    """NeuRBF's decoder ``g_m`` for images and SDFs: ``h0 = W0 g + b0``, residual feature MSC
    ``f0 = h0 + sin(h0 ⊙ m0)`` (no ReLU), ``h1 = ReLU(W1 f0 + b1)``, ``out = W2 h1 + b2`` (raw).

    Args:
        in_dim: width of the feature ``g``.
        out_dim: output channels.
        hidden_dim: width (NeuRBF: 64).
        msc_range: ``(low, high)`` of ``m0``, log-spaced over the hidden channels; ``None`` turns
            the feature MSC off (``f0 = h0``, the ablation).

    Example:
        >>> MSCDecoder(8, 3, 16)(torch.zeros(4, 8)).shape
        torch.Size([4, 3])
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int = 64,
        msc_range: tuple[float, float] | None = (1.0, 1000.0),
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.hidden_dim = in_dim, out_dim, hidden_dim
        self.msc_range = None if msc_range is None else (float(msc_range[0]), float(msc_range[1]))
        if self.msc_range is not None:
            self.register_buffer(
                "m0", msc_frequencies(*self.msc_range, hidden_dim, dtype=torch.float32),
                persistent=False,
            )
        self.lin0 = nn.Linear(in_dim, hidden_dim)
        self.lin1 = nn.Linear(hidden_dim, hidden_dim)
        self.lin2 = nn.Linear(hidden_dim, out_dim)

    def extra_repr(self) -> str:
        msc = "off" if self.msc_range is None else f"[{self.msc_range[0]:g}, {self.msc_range[1]:g}]"
        return f"feature_msc={msc}"

    def forward(self, g: Float[Tensor, "B C"]) -> Float[Tensor, "B O"]:
        h0 = self.lin0(g)
        f0 = h0 if self.msc_range is None else h0 + torch.sin(h0 * self.m0.to(h0.dtype))
        return self.lin2(torch.relu(self.lin1(f0)))


class NeuRBFField(nn.Module):
    """``f(x) = g_m(concat[grid(x), r(x)] + b)`` — NeuRBF's hybrid field with an MSC decoder.

    Args:
        grid: any encoding with ``out_dim`` and ``forward(x) -> [B, out_dim]`` (e.g.
            :class:`fields.encodings.hashgrid.HashGridEncoding` or
            :class:`fields.encodings.densegrid.DenseGridEncoding`), or ``None`` (RBF only).
        rbf: the adaptive RBF encoding, or ``None`` (grid only: the "no adaptive RBF" ablation).
        out_dim: output channels (3 for RGB, 1 for an SDF).
        hidden_dim: decoder width (NeuRBF: 64).
        feature_msc: the decoder's residual feature MSC ``f0 = h0 + sin(h0 ⊙ m0)``: ``True`` uses
            ``feature_msc_range``, a ``(low, high)`` pair sets the range, ``False``/``None``
            gives ``f0 = h0`` (ablation).
        feature_msc_range: default ``(low, high)`` of ``m0`` (the DIV2K image setting).
        bias_init: ``b`` starts uniform in ``[-bias_init, bias_init]``.
        generator: random generator for ``b``.

    Submodules: ``grid``, ``rbf``, ``decoder`` (:class:`MSCDecoder`); parameter ``bias``.

    Example:
        >>> from fields.encodings.densegrid import DenseGridEncoding
        >>> from fields.encodings.rbf import AdaptiveRBFEncoding
        >>> rbf = AdaptiveRBFEncoding(32, 2, features=8)
        >>> field = NeuRBFField(DenseGridEncoding(2, (4, 8)), rbf, out_dim=3, hidden_dim=16)
        >>> field(torch.rand(6, 2) * 2 - 1).shape
        torch.Size([6, 3])
    """

    def __init__(
        self,
        grid: nn.Module | None,
        rbf: AdaptiveRBFEncoding | None,
        out_dim: int = 3,
        hidden_dim: int = 64,
        feature_msc: bool | tuple[float, float] | None = True,
        feature_msc_range: tuple[float, float] = (1.0, 1000.0),
        bias_init: float = 1e-4,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if grid is None and rbf is None:
            raise ValueError("NeuRBFField needs a grid, an RBF encoding or both")
        self.grid, self.rbf = grid, rbf
        self.in_dim = rbf.in_dim if rbf is not None else int(grid.in_dim)
        self.out_dim, self.hidden_dim = out_dim, hidden_dim
        self.feature_dim = (grid.out_dim if grid is not None else 0) + (
            rbf.out_dim if rbf is not None else 0
        )
        self.bias = nn.Parameter(
            torch.empty(self.feature_dim).uniform_(-bias_init, bias_init, generator=generator)
        )
        if feature_msc is True:
            msc_range = feature_msc_range
        elif feature_msc is False or feature_msc is None:
            msc_range = None
        else:
            msc_range = feature_msc
        self.decoder = MSCDecoder(self.feature_dim, out_dim, hidden_dim, msc_range)

    def num_parameters(self) -> int:
        """All learnt parameters plus the RBFs' frozen centres and shapes (NeuRBF's counting
        rule: see :meth:`AdaptiveRBFEncoding.num_parameters`)."""
        rbf_params = {id(p) for p in self.rbf.parameters()} if self.rbf is not None else set()
        n = sum(p.numel() for p in self.parameters() if id(p) not in rbf_params)
        return n + (self.rbf.num_parameters() if self.rbf is not None else 0)

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, features={self.feature_dim}, hidden={self.hidden_dim}, "
                f"out_dim={self.out_dim}, "
                f"num_parameters={self.num_parameters()} (frozen RBF centres/shapes included)")

    def features(
        self, x: Float[Tensor, "B D"], neighbours: Int[Tensor, "B k"] | None = None
    ) -> Float[Tensor, "B C"]:
        """``g_b(x) = concat[grid(x), r(x)] + b``; ``neighbours`` are cached RBF indices."""
        parts = []
        if self.grid is not None:
            parts.append(self.grid(x))
        if self.rbf is not None:
            parts.append(self.rbf(x, neighbours))
        h = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        return h + self.bias.to(h.dtype)

    def forward(
        self, x: Float[Tensor, "B D"], neighbours: Int[Tensor, "B k"] | None = None
    ) -> Float[Tensor, "B O"]:
        return self.decoder(self.features(x, neighbours))


class NeuRBFSDFField(SDFQueries, NeuRBFField):
    """A NeuRBF signed distance field: :class:`NeuRBFField` with one output, plus the SDF
    queries (``sdf``, ``sdf_chunked``, ``gradient``, ``normal``) the renderer and meshing use.

    Normals come from autograd; build the RBF encoding with ``detach_denominator=False`` so that
    the normalised kernel weights are differentiated fully (the detached normaliser drops the
    ``−φ_i ∇S / S²`` term, spec "Pitfalls").

    Example:
        >>> from fields.encodings.rbf import AdaptiveRBFEncoding
        >>> rbf = AdaptiveRBFEncoding(64, 3, features=8, kernel="nlin_s", k=8, msc=(1.0, 8.0),
        ...                           detach_denominator=False)
        >>> field = NeuRBFSDFField(None, rbf, hidden_dim=16)
        >>> field.sdf(torch.rand(5, 3) * 2 - 1).shape, field.normal(torch.zeros(2, 3)).shape
        (torch.Size([5]), torch.Size([2, 3]))
    """

    def __init__(self, grid: nn.Module | None, rbf: AdaptiveRBFEncoding | None,
                 hidden_dim: int = 64, chunk_size: int = 1 << 14, **kwargs) -> None:
        super().__init__(grid, rbf, out_dim=1, hidden_dim=hidden_dim, **kwargs)
        self.chunk_size = chunk_size

    def sdf(self, x: Float[Tensor, "N 3"], neighbours: Int[Tensor, "N k"] | None = None
            ) -> Float[Tensor, " N"]:
        """Signed distance at ``x`` (differentiable); ``neighbours``: cached RBF indices."""
        return self.decoder(self.features(x, neighbours))[:, 0]

    def forward(self, x: Float[Tensor, "N 3"], neighbours: Int[Tensor, "N k"] | None = None
                ) -> Float[Tensor, " N"]:
        return self.sdf(x, neighbours)

"""Coordinate quantisation for neural implicit surfaces (CQ-NIR).

Jiang, Hua, Han, "Coordinate Quantized Neural Implicit Representations for Multi-view
Reconstruction", ICCV 2023 (arXiv 2308.11025). Before a point reaches the network it is snapped
to the centre of its cell in a very fine virtual lattice; the network stays continuous and no grid
memory is allocated. Samples from different iterations and from intersecting rays of different
views then share discrete inputs.

Vocabulary: ``x`` world points ``[*batch, D]`` (after any scene normalisation, e.g. NeuS's
``scale_mat``); ``x_q`` their quantised copies, same shape; the domain is ``[x_min, x_max]`` on
every axis and ``Δ`` is the world cell size.

Per axis, with ``u = (x − x_min)/(x_max − x_min)`` and ``h = Δ/(x_max − x_min)``::

    k   = clamp(⌊u / h⌋, 0, K − 1)          (K cells cover the domain)
    x_q = x_min + (k + ½)·h·(x_max − x_min) = x_min + (k + ½)·Δ

The official NeuS setting (default here) is ``R = 25,600`` lattice points over ``[−2.5, 2.5]``,
i.e. ``Δ = 5/25,599 ≈ 1.95e-4`` and ``K = R − 1`` cells.

Gradients: ``⌊·⌋`` has zero derivative almost everywhere and CQ-NIR uses no straight-through
estimator (camera poses are fixed, so nothing needs to reach ``x``). The quantiser therefore
returns a *detached* tensor. For normals and the eikonal term, quantise first, make ``x_q`` the
autograd leaf and differentiate the network there (:meth:`QuantizedField.gradient`); autograd of
``f(q(x))`` with respect to ``x`` is zero — the silent-collapse bug this module is built to avoid.

Where it plugs in: only network inputs are quantised (SDF input, colour-network point input,
gradient). Ray-sample depths, interval lengths and up-sampling use continuous positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

__all__ = ["CoordinateQuantizer", "QuantizedEncoding", "QuantizedField", "quantizer_for"]

OFFICIAL_NEUS_RESOLUTION = 25_600
"""R of the official CQ-NIR NeuS configs (``MachinePerceptionLab/CQ-NIR``) over ``[−2.5, 2.5]``."""


class CoordinateQuantizer(nn.Module):
    """Snap points to the centres of a virtual lattice of cell size ``Δ`` (CQ-NIR).

    Give at most one of ``cell_size`` (Δ, preferred — record it in experiment logs) and
    ``resolution`` (R lattice points per axis, ``Δ = (x_max − x_min)/(R − 1)`` as in the official
    code). With neither, the official NeuS setting ``R = 25,600`` over the domain is used
    (``Δ ≈ 1.95e-4`` over ``[−2.5, 2.5]``).

    Precision: the cell index is computed in float64 whatever the input dtype (float32 spacing
    near 2.5 is ~1.2e-3 of an official cell, enough to put points in the neighbouring cell), and
    the cell centre is cast back to the input dtype. The cost is one elementwise pass.

    Points outside the domain are clamped to the nearest boundary cell (the official code does not
    clamp; there the domain must cover the foreground, the unit sphere after NeuS scaling). Inside
    the domain ``‖x − x_q‖_∞ ≤ Δ/2``; ``x = x_max`` maps to the last cell's centre.

    The output is detached: no gradient reaches ``x`` (see the module docstring).

    Args:
        domain: ``(x_min, x_max)``, the same on every axis.
        cell_size: Δ in world units.
        resolution: R, lattice points per axis (alternative to ``cell_size``).

    Example:
        >>> q = CoordinateQuantizer(domain=(-1.0, 1.0), cell_size=0.5)
        >>> q(torch.tensor([[0.1, -0.9, 1.0]]))
        tensor([[ 0.2500, -0.7500,  0.7500]])
    """

    def __init__(
        self,
        domain: tuple[float, float] = (-2.5, 2.5),
        cell_size: float | None = None,
        resolution: int | None = None,
    ) -> None:
        super().__init__()
        lo, hi = float(domain[0]), float(domain[1])
        if not hi > lo:
            raise ValueError(f"domain must have x_min < x_max, got {domain}")
        if cell_size is not None and resolution is not None:
            raise ValueError("give cell_size or resolution, not both")
        extent = hi - lo
        if cell_size is None:
            r = OFFICIAL_NEUS_RESOLUTION if resolution is None else int(resolution)
            if r < 2:
                raise ValueError(f"resolution must be at least 2, got {resolution}")
            cell_size = extent / (r - 1)
            num_cells = r - 1
        else:
            cell_size = float(cell_size)
            if not cell_size > 0:
                raise ValueError(f"cell_size must be positive, got {cell_size}")
            # A cell size that divides the extent up to rounding must not add a sliver cell.
            num_cells = max(1, math.ceil(extent / cell_size - 1e-9))
        self.domain = (lo, hi)
        self.cell_size = float(cell_size)
        self.num_cells = int(num_cells)

    @property
    def resolution(self) -> float:
        """R = (x_max − x_min)/Δ + 1 (an integer when built from ``resolution``)."""
        return (self.domain[1] - self.domain[0]) / self.cell_size + 1.0

    def extra_repr(self) -> str:
        return f"domain={self.domain}, cell_size={self.cell_size:.6g}, num_cells={self.num_cells}"

    def _compute_dtype(self, x: Tensor) -> torch.dtype:
        # MPS has no float64; there float32 is adequate up to R ≈ 10^6 (see module docstring).
        return torch.float32 if x.device.type == "mps" else torch.float64

    def indices(self, x: Float[Tensor, "*batch D"]) -> Int[Tensor, "*batch D"]:
        """Integer cell index ``k ∈ [0, K − 1]`` per axis (useful to count shared inputs)."""
        xd = x.detach().to(self._compute_dtype(x))
        k = torch.floor((xd - self.domain[0]) / self.cell_size)
        return k.clamp_(0, self.num_cells - 1).to(torch.int64)

    def forward(self, x: Float[Tensor, "*batch D"]) -> Float[Tensor, "*batch D"]:
        """``x_q = x_min + (k + ½)·Δ``, detached, in ``x``'s dtype."""
        xd = x.detach().to(self._compute_dtype(x))
        k = torch.floor((xd - self.domain[0]) / self.cell_size).clamp_(0, self.num_cells - 1)
        return (self.domain[0] + (k + 0.5) * self.cell_size).to(x.dtype)


class QuantizedField(nn.Module):
    """``field(q(x))`` for any field (a module or a plain callable ``[N, D] → [N]`` or ``[N, K]``).

    :meth:`gradient` differentiates the wrapped field at the lattice point, with ``q(x)`` as a
    fresh autograd leaf: ``∇f(q(x))``, not ``∇_x f(q(x)) = 0``. Gradients still flow to the wrapped
    network's parameters through :meth:`forward` (and through :meth:`gradient` with
    ``create_graph=True``, for an eikonal loss).

    Example:
        >>> sphere = lambda p: p.norm(dim=-1) - 0.5
        >>> f = QuantizedField(sphere, CoordinateQuantizer((-1.0, 1.0), cell_size=0.1))
        >>> f.gradient(torch.tensor([[0.52, 0.01, 0.0]])).norm(dim=-1)
        tensor([1.])
    """

    def __init__(self, field: Callable[[Tensor], Tensor], quantizer: CoordinateQuantizer) -> None:
        super().__init__()
        self.field = field  # registered as a submodule when it is one
        self.quantizer = quantizer

    def forward(self, x: Float[Tensor, "N D"]) -> Tensor:
        return self.field(self.quantizer(x))

    def gradient(self, x: Float[Tensor, "N D"], create_graph: bool = False) -> Float[Tensor, "N D"]:
        """``∇f`` at ``q(x)`` by autograd, with ``q(x)`` as the leaf (summed over outputs)."""
        with torch.enable_grad():
            xq = self.quantizer(x).requires_grad_(True)
            (g,) = torch.autograd.grad(self.field(xq).sum(), xq, create_graph=create_graph)
        return g


class QuantizedEncoding(nn.Module):
    """``encoding(q(x))``: any encoding (``in_dim``, ``out_dim``, ``forward``) behind a quantiser.

    Caveat: its output has zero gradient with respect to ``x`` (the quantiser is detached). In a
    field that also feeds raw ``x`` to its MLP, autograd normals would then only see the raw-``x``
    channel. Fields that take a ``QuantizedEncoding`` must therefore quantise at their entry and
    evaluate the inner encoding at the leaf ``x_q`` — :class:`fields.neus.NeuSField` unwraps it so.

    Example:
        >>> from fields.encodings.frequency import PositionalEncoding
        >>> enc = QuantizedEncoding(PositionalEncoding(3, 2), CoordinateQuantizer())
        >>> enc(torch.rand(4, 3)).shape
        torch.Size([4, 15])
    """

    def __init__(self, encoding: nn.Module, quantizer: CoordinateQuantizer) -> None:
        super().__init__()
        self.encoding = encoding
        self.quantizer = quantizer
        self.in_dim = encoding.in_dim
        self.out_dim = encoding.out_dim

    def forward(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N C"]:
        return self.encoding(self.quantizer(x))


def quantizer_for(
    resolution: int, domain: float, aabb: tuple[float, ...] | list[float]
) -> CoordinateQuantizer:
    """A quantiser of ``resolution`` lattice points per axis over ``[−domain, domain]``, checked
    to cover the scene box ``aabb`` (CQ-NIR's domain must hold every foreground sample).

    Example:
        >>> quantizer_for(25_600, 2.5, (-1, -1, -1, 1, 1, 1)).cell_size  # the official Δ
        0.00019532012969256611
    """
    if resolution < 2:
        raise ValueError(f"quantize must be 0 (off) or at least 2 lattice points, got {resolution}")
    extent = max(abs(float(v)) for v in aabb)
    if domain < extent:
        raise ValueError(f"the quantize domain ±{domain} must cover the scene box {tuple(aabb)}")
    return CoordinateQuantizer((-domain, domain), resolution=resolution)

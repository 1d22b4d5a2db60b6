"""Dense multi-resolution grid encoding (bilinear in 2-D, trilinear in 3-D).

Vocabulary: ``x`` are world points ``[N, D]`` inside ``bounds``; the output is ``[N, L·F]``,
level-major (level 0's F features first).

Level ``l`` stores ``r_l^D`` vertices of F features each; vertex ``g ∈ {0 … r_l − 1}^D`` sits at
``u = g / (r_l − 1)`` of the unit box, so the corner vertices lie on the bounds. A point at
``p = u·(r_l − 1)`` blends the ``2^D`` vertices of its cell with multilinear weights:

    enc_l(u) = Σ_c  w_c(u) · θ_l[⌊p⌋ + c]

This is what a multiresolution hash grid (Müller et al., SIGGRAPH 2022) reduces to when no level
collides; NeuRBF (Chen et al., ICCV 2023) pairs such a 2-level grid with its RBFs for images.
All levels live in one table ``[Σ_l r_l^D, F]`` and are gathered and blended by a single
``embedding_bag`` call (a fused gather + weighted sum whose backward scatters into the table and
differentiates the weights, hence ``x``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["DenseGridEncoding"]


class DenseGridEncoding(nn.Module):
    """Dense multi-resolution grid of learnt features with multilinear interpolation.

    Args:
        in_dim: D (2 or 3; any D ≥ 1 works, with ``2^D`` corners per cell).
        resolutions: vertices per axis for each level (each ≥ 2).
        features_per_level: F.
        bounds: ``(lo, hi)`` of the box mapped to the unit cube; points outside are clamped.
        init_scale: entries start uniform in ``[-init_scale, init_scale]``.
        generator: random generator for the initialisation.

    Example:
        >>> enc = DenseGridEncoding(2, resolutions=(4, 8), features_per_level=2)
        >>> enc(torch.rand(5, 2) * 2 - 1).shape, enc.table.shape
        (torch.Size([5, 4]), torch.Size([80, 2]))
    """

    def __init__(
        self,
        in_dim: int = 2,
        resolutions: tuple[int, ...] = (16, 64),
        features_per_level: int = 2,
        bounds: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 1e-4,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if any(r < 2 for r in resolutions) or not resolutions:
            raise ValueError(f"every resolution must be ≥ 2, got {resolutions}")
        self.in_dim = in_dim
        self.resolutions = tuple(int(r) for r in resolutions)
        self.features_per_level = features_per_level
        self.out_dim = len(self.resolutions) * features_per_level
        self.bounds = (float(bounds[0]), float(bounds[1]))
        sizes = [r**in_dim for r in self.resolutions]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self.table = nn.Parameter(
            torch.empty(sum(sizes), features_per_level).uniform_(
                -init_scale, init_scale, generator=generator
            )
        )
        res = torch.tensor(self.resolutions, dtype=torch.int64)
        strides = res[:, None] ** torch.arange(in_dim)[None, :]  # [L, D], axis 0 fastest
        bits = (torch.arange(1 << in_dim)[:, None] >> torch.arange(in_dim)[None, :]) & 1  # [C, D]
        self.register_buffer("_res", res, persistent=False)
        self.register_buffer("_strides", strides, persistent=False)
        self.register_buffer("_offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.register_buffer("_corner_offsets", bits @ strides.T, persistent=False)  # [C, L]
        self.register_buffer("_bits", bits, persistent=False)

    def extra_repr(self) -> str:
        return (f"in_dim={self.in_dim}, resolutions={self.resolutions}, "
                f"F={self.features_per_level}, bounds={self.bounds}")

    def normalize(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        lo, hi = self.bounds
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    def forward(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N C"]:
        table = self.table
        u = self.normalize(x).to(table.dtype)
        n, L = u.shape[0], len(self.resolutions)
        if n == 0:
            return x.new_zeros(0, self.out_dim)
        top = (self._res - 1).to(u.dtype)  # [L]
        pos = u[:, None, :] * top[None, :, None]  # [n, L, D]
        cell = torch.minimum(pos.detach().floor(), (top - 1)[None, :, None])
        frac = pos - cell  # in [0, 1]; the last cell takes the upper boundary
        base = (cell.to(torch.int64) * self._strides[None]).sum(-1) + self._offsets  # [n, L]
        idx = base[:, :, None] + self._corner_offsets.T[None]  # [n, L, C]
        bits = self._bits.to(u.dtype)  # [C, D]
        f = frac[:, :, None, :]  # [n, L, 1, D]
        w = (bits * f + (1.0 - bits) * (1.0 - f)).prod(-1)  # [n, L, C]
        C = idx.shape[-1]
        out = F.embedding_bag(
            idx.reshape(n * L, C), table, per_sample_weights=w.reshape(n * L, C), mode="sum"
        )
        return out.view(n, L * self.features_per_level).to(x.dtype)

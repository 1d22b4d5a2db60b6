"""Plane-feature positional embeddings γ(x; Ξ) for DDMI (Park et al., "DDMI: Domain-Agnostic
Latent Diffusion Models for Synthesizing High-Quality Implicit Neural Representations", ICLR 2024,
arXiv 2401.12517).

A decoded latent is a set of feature planes ``Ξ_k``; the embedding of a continuous coordinate is
the bilinear sample of each plane at that coordinate (``grid_sample``, ``align_corners=False``,
border padding, so queries outside ``[−1, 1]`` take edge values).

Conventions (shared by every DDMI module):

- A plane is ``[B, C, H, W]``; grid coordinate ``u`` (the first of a pair) runs along the width
  (columns) and ``v`` along the height (rows), both in ``[−1, 1]``, with ``v = −1`` the top row.
- Pixel centres of an ``R``-texel axis are ``linspace(−(R−1)/R, (R−1)/R, R)``; with
  ``align_corners=False`` they land exactly on texel centres, so sampling a plane at its own pixel
  centres returns it. In float32 that is exact when the size is a power of two (the centres
  are dyadic); otherwise the coordinates' rounding (about ``W · 2⁻²⁴`` of a texel) limits it,
  and float64 coordinates and planes make it exact to ~1e-15.
- Tri-planes are ``[B, 3, C, H, W]`` in the order ``xy, yz, xz``: a 3-D point ``(x, y, z)`` is
  projected to ``(u, v) = (x, y)``, ``(y, z)`` and ``(x, z)`` respectively. Their features are
  summed (occupancy) or concatenated in that order (NeRF, video).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["pixel_centres", "grid_coords", "sample_plane", "PlaneFeaturePE", "TRIPLANE_AXES"]

#: The coordinate pair each tri-plane sees, in plane order ``xy, yz, xz``.
TRIPLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (0, 2))


def pixel_centres(r: int, dtype: torch.dtype = torch.float32) -> Float[Tensor, " r"]:
    """The ``r`` pixel-centre coordinates of an axis in ``[−1, 1]``:
    ``linspace(−(r−1)/r, (r−1)/r, r)``, computed as ``(2i + 1)/r − 1`` in float64 and rounded
    to ``dtype``."""
    if r < 1:
        raise ValueError(f"need r ≥ 1, got {r}")
    i = torch.arange(r, dtype=torch.float64)
    return ((2 * i + 1) / r - 1).to(dtype)


def grid_coords(h: int, w: int, dtype: torch.dtype = torch.float32) -> Float[Tensor, "hw 2"]:
    """Pixel-centre coordinates ``(x, y)`` of an ``h × w`` image, ``[h·w, 2]``, row-major: row
    ``i * w + j`` is pixel ``(row i, column j)`` with ``x = pixel_centres(w)[j]`` (across) and
    ``y = pixel_centres(h)[i]`` (down the rows, ``y = −1`` at the top). Any ``h, w`` (37 × 53)."""
    ys, xs = torch.meshgrid(pixel_centres(h, dtype), pixel_centres(w, dtype), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def sample_plane(plane: Float[Tensor, "B C H W"],
                 xy: Float[Tensor, "B N 2"]) -> Float[Tensor, "B N C"]:
    """Bilinear sample of ``plane`` at the coordinates ``xy`` (``align_corners=False``, border
    padding). Each output row depends only on its own query point."""
    out = F.grid_sample(plane, xy.to(plane.dtype).unsqueeze(2), mode="bilinear",
                        padding_mode="border", align_corners=False)  # [B, C, N, 1]
    return out.squeeze(-1).transpose(1, 2)


class PlaneFeaturePE(nn.Module):
    """γ(x; Ξ): bilinear plane features at continuous coordinates, one entry per level.

    Args:
        dim: 2 (one ``[B, C, H, W]`` plane per level, ``x`` is ``(u, v)``) or 3 (a tri-plane
            ``[B, 3, C, H, W]`` per level, ``x`` is ``(x, y, z)``).
        mix: how the three tri-plane features combine: ``"sum"`` (``C`` channels) or
            ``"concat"`` (``3C`` channels, order ``xy, yz, xz``). Ignored for ``dim=2``.

    Example:
        >>> pe = PlaneFeaturePE(2)
        >>> [f.shape for f in pe([torch.zeros(1, 16, 8, 8)], torch.zeros(1, 5, 2))]
        [torch.Size([1, 5, 16])]
    """

    def __init__(self, dim: int = 2, mix: str = "sum") -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"need dim 2 or 3, got {dim}")
        if mix not in ("sum", "concat"):
            raise ValueError(f"mix must be 'sum' or 'concat', got {mix!r}")
        self.dim, self.mix = dim, mix

    def out_channels(self, plane_channels: int) -> int:
        """Width of the embedding of a level whose planes have ``plane_channels`` channels."""
        return 3 * plane_channels if (self.dim == 3 and self.mix == "concat") else plane_channels

    def level(self, plane: Tensor, x: Float[Tensor, "B N d"]) -> Float[Tensor, "B N F"]:
        """The embedding of one level: ``plane`` is ``[B, C, H, W]`` (2-D) or
        ``[B, 3, C, H, W]`` (tri-plane)."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"expected {self.dim}-D coordinates, got {x.shape[-1]}-D")
        if self.dim == 2:
            if plane.dim() != 4:
                raise ValueError(f"2-D planes are [B, C, H, W], got {list(plane.shape)}")
            return sample_plane(plane, x)
        if plane.dim() != 5 or plane.shape[1] != 3:
            raise ValueError(f"tri-planes are [B, 3, C, H, W], got {list(plane.shape)}")
        b, _, c, h, w = plane.shape
        uv = torch.stack([x[..., list(ax)] for ax in TRIPLANE_AXES], dim=1)  # [B, 3, N, 2]
        feats = sample_plane(plane.reshape(b * 3, c, h, w), uv.reshape(b * 3, -1, 2))
        feats = feats.reshape(b, 3, -1, c)  # [B, 3, N, C]
        if self.mix == "sum":
            return feats.sum(dim=1)
        return feats.permute(0, 2, 1, 3).reshape(b, -1, 3 * c)

    def forward(self, planes: Sequence[Tensor],
                x: Float[Tensor, "B N d"]) -> list[Tensor]:
        """``[γ(x; Ξ_k) for each level k]``, each ``[B, N, F_k]``, in the order of ``planes``."""
        return [self.level(p, x) for p in planes]

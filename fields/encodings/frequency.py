"""Frequency encodings: NeRF positional encoding and random Fourier features.

Vocabulary: ``x`` are query points ``[N, D]``; every encoding returns ``[N, out_dim]``.

- Positional encoding (Mildenhall et al., "NeRF", ECCV 2020):
  ``γ(x) = [x, sin(2^0 π x), cos(2^0 π x), …, sin(2^{K-1} π x), cos(2^{K-1} π x)]``.
- Random Fourier features (Tancik et al., "Fourier Features Let Networks Learn High Frequency
  Functions in Low Dimensional Domains", NeurIPS 2020): ``γ(x) = [sin(2π Bx), cos(2π Bx)]`` with
  ``B ~ N(0, σ²)`` of shape ``[M, D]``, fixed at construction (a buffer, saved in checkpoints).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["PositionalEncoding", "RandomFourierFeatures"]


class PositionalEncoding(nn.Module):
    """NeRF positional encoding with ``num_frequencies`` octaves.

    Args:
        in_dim: D, the dimension of ``x``.
        num_frequencies: K, the number of octaves ``2^0 … 2^{K-1}``.
        include_input: also return ``x`` itself (first ``D`` channels).

    Example:
        >>> enc = PositionalEncoding(3, num_frequencies=4)
        >>> enc(torch.zeros(5, 3)).shape
        torch.Size([5, 27])
    """

    def __init__(self, in_dim: int, num_frequencies: int = 6, include_input: bool = True) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_frequencies = num_frequencies
        self.include_input = include_input
        self.out_dim = in_dim * (2 * num_frequencies + int(include_input))
        self.register_buffer(
            "freqs", math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32),
            persistent=False,
        )

    def forward(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N C"]:
        xb = x[:, None, :] * self.freqs.to(x.dtype)[None, :, None]  # [N, K, D]
        feats = torch.cat([torch.sin(xb), torch.cos(xb)], dim=1)
        feats = feats.reshape(x.shape[0], 2 * self.num_frequencies * x.shape[1])  # N may be 0
        return torch.cat([x, feats], dim=-1) if self.include_input else feats


class RandomFourierFeatures(nn.Module):
    """Gaussian random Fourier features ``[sin(2πBx), cos(2πBx)]`` with ``B ~ N(0, σ²)``.

    Args:
        in_dim: D.
        num_features: M rows of ``B``; ``out_dim = 2M`` (+ D with ``include_input``).
        scale: σ, the standard deviation of ``B`` (the bandwidth knob FreSh tunes).
        seed: seed for ``B`` so that a configuration is reproducible.

    Example:
        >>> enc = RandomFourierFeatures(2, num_features=16, scale=10.0)
        >>> enc(torch.rand(4, 2)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self, in_dim: int, num_features: int = 128, scale: float = 10.0,
        include_input: bool = False, seed: int = 0,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.in_dim = in_dim
        self.scale = scale
        self.include_input = include_input
        self.out_dim = 2 * num_features + (in_dim if include_input else 0)
        self.register_buffer("B", torch.randn(num_features, in_dim, generator=gen) * scale)

    def forward(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N C"]:
        proj = (2.0 * math.pi) * (x @ self.B.to(x.dtype).T)
        feats = torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
        return torch.cat([x, feats], dim=-1) if self.include_input else feats

"""Latent denoisers for DDMI's second stage (Park et al., "DDMI: Domain-Agnostic Latent
Diffusion Models for Synthesizing High-Quality Implicit Neural Representations", ICLR 2024,
arXiv 2401.12517), at CPU scale.

- :class:`LatentUNet`: an ADM/LDM-style conv UNet on latents ``[B, C, H, W]`` (tri-plane latents
  are flattened channel-wise, ``C = 3 · z_ch``): residual blocks (GroupNorm + SiLU, additive
  time-embedding injection), stride-2 downsampling, nearest upsampling, skip connections, and
  optional self-attention at the lowest resolution (in the middle block). The output conv is
  zero-initialised, as in ADM.
- :class:`MLPDenoiser`: a residual MLP with time embedding for tiny latents (the single-disc
  variant's ``1 × 4 × 4``), flattened internally.

Both are called as ``net(x_t, t)`` with ``t`` the integer timestep ``[B]`` and return ``ε_θ`` of
the shape of ``x_t``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["SinusoidalTimeEmbedding", "LatentUNet", "MLPDenoiser"]


class SinusoidalTimeEmbedding(nn.Module):
    """``t ↦ [cos(t ω_k), sin(t ω_k)]`` with ``ω_k = max_period^(−k / (dim/2))`` (even ``dim``)."""

    def __init__(self, dim: int, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Float[Tensor, "B D"]:
        ang = t.reshape(-1).to(self.freqs)[:, None] * self.freqs
        return torch.cat([torch.cos(ang), torch.sin(ang)], dim=-1)


def _gn(ch: int) -> nn.GroupNorm:
    for g in (32, 16, 8, 4, 2):
        if ch % g == 0 and ch // g >= 2:
            return nn.GroupNorm(g, ch)
    return nn.GroupNorm(1, ch)


class _TimeResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _gn(c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.temb = nn.Linear(t_dim, c_out)
        self.norm2, self.conv2 = _gn(c_out), nn.Conv2d(c_out, c_out, 3, 1, 1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _SelfAttention(nn.Module):
    def __init__(self, ch: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, ch // head_dim)
        self.norm = _gn(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        att = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(c // self.heads), dim=-1)
        out = (v @ att.transpose(-1, -2)).reshape(b, c, h, w)  # [B, heads, d, hw]
        return x + self.proj(out)


class LatentUNet(nn.Module):
    """Conv UNet ``ε_θ(x_t, t)`` on ``[B, C, H, W]`` latents.

    Args:
        in_channels: latent channels (``3 · z_ch`` for flattened tri-planes).
        base_channels: width of the first level (64).
        channel_mult: width multipliers per level; level ``i`` runs at ``H / 2^i``
            (``(1, 2)``: 8² and 4² for an 8² latent). ``H, W`` must be divisible by
            ``2^(len − 1)``.
        blocks_per_level: residual blocks per level on the way down (one more on the way up).
        attention: self-attention in the middle block (the lowest resolution).
        head_dim: channels per attention head.
    """

    def __init__(self, in_channels: int, base_channels: int = 64,
                 channel_mult: Sequence[int] = (1, 2), blocks_per_level: int = 1,
                 attention: bool = True, head_dim: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.n_levels = len(channel_mult)
        t_dim = 4 * base_channels
        self.time = nn.Sequential(SinusoidalTimeEmbedding(base_channels),
                                  nn.Linear(base_channels, t_dim), nn.SiLU(),
                                  nn.Linear(t_dim, t_dim))
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, 1, 1)
        chans = [base_channels * m for m in channel_mult]
        skips = [base_channels]
        self.down = nn.ModuleList()
        ch = base_channels
        for i, c in enumerate(chans):
            for _ in range(blocks_per_level):
                self.down.append(_TimeResBlock(ch, c, t_dim))
                ch = c
                skips.append(ch)
            if i + 1 < len(chans):
                self.down.append(nn.Conv2d(ch, ch, 3, 2, 1))
                skips.append(ch)
        self.mid1 = _TimeResBlock(ch, ch, t_dim)
        self.mid_attn = _SelfAttention(ch, head_dim) if attention else nn.Identity()
        self.mid2 = _TimeResBlock(ch, ch, t_dim)
        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            for _ in range(blocks_per_level + 1):
                self.up.append(_TimeResBlock(ch + skips.pop(), c, t_dim))
                ch = c
            if i > 0:
                self.up.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                self.up.append(nn.Conv2d(ch, ch, 3, 1, 1))
        self.norm_out = _gn(ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, 1, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Float[Tensor, "B C H W"], t: Tensor) -> Float[Tensor, "B C H W"]:
        f = 2 ** (self.n_levels - 1)
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"latent size {list(x.shape[-2:])} must be divisible by {f}")
        temb = self.time(t)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, _TimeResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for layer in self.up:
            if isinstance(layer, _TimeResBlock):
                h = layer(torch.cat([h, hs.pop()], dim=1), temb)
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MLPDenoiser(nn.Module):
    """Residual MLP ``ε_θ(x_t, t)`` on small latents ``[B, …]`` (flattened to ``dim``).

    Each block: ``h ← h + W₂ SiLU(W₁ SiLU(LN(h)) + A t_emb)``.
    """

    def __init__(self, dim: int, hidden: int = 256, n_blocks: int = 3, time_dim: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.time = nn.Sequential(SinusoidalTimeEmbedding(time_dim),
                                  nn.Linear(time_dim, hidden), nn.SiLU())
        self.inp = nn.Linear(dim, hidden)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(n_blocks))
        self.fc1 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_blocks))
        self.temb = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_blocks))
        self.fc2 = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: Float[Tensor, "*shape"], t: Tensor) -> Float[Tensor, "*shape"]:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim} latent values per sample, got {flat.shape[1]}")
        temb = self.time(t)
        h = self.inp(flat)
        for norm, fc1, te, fc2 in zip(self.norms, self.fc1, self.temb, self.fc2):
            h = h + fc2(F.silu(fc1(F.silu(norm(h))) + te(temb)))
        return self.out(h).reshape(x.shape)

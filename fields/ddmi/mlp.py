"""DDMI's shared MLP π, which turns plane-feature positional embeddings into the signal (Park et
al., "DDMI: Domain-Agnostic Latent Diffusion Models for Synthesizing High-Quality Implicit Neural
Representations", ICLR 2024, arXiv 2401.12517), and the conditional-field protocol.

- :class:`HierarchicalPEDecoder` (images): coarse-to-fine conditioning,
  ``h1 = block(γ_c)``, ``h2 = block([h1, γ_m])``, ``h3 = block([h2, γ_f])``, ``out = Linear(h3)``.
- :class:`TriplaneMLP` (occupancy, the paper's MLP3D): ``e = Linear(x) + ResFC(γ_c)``, then one
  ResFC per finer level on ``[·, γ_k]``, a final ResFC and a linear logit.
- :class:`DecodedField`: a decoded sample (planes + scale) bound to a decoder, so that
  ``field(x) → value`` is an ordinary field; ``render(h, w)`` evaluates it at pixel centres.

Every decoder is a *conditional field*: ``decoder(x, planes, scale) → value`` where each output
row depends only on its own query point and its own sample's planes — never on the other points
of the batch. The official StyleGAN noise injection breaks that and is off by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fields.ddmi.planes import PlaneFeaturePE, grid_coords

__all__ = ["ConditionalField", "ResFC", "HierarchicalPEDecoder", "TriplaneMLP", "DecodedField"]


class ConditionalField(Protocol):
    """``field(x [B, N, d], planes, scale) → [B, N, out]``, point-wise in ``x``."""

    def __call__(self, x: Tensor, planes: Sequence[Tensor],
                 scale: Tensor | float | None = None) -> Tensor: ...


def _scale_tensor(scale: Tensor | float | None, b: int, like: Tensor) -> Tensor:
    s = torch.as_tensor(1.0 if scale is None else scale, dtype=like.dtype, device=like.device)
    if s.dim() == 0:
        s = s.expand(b)
    s = s.reshape(-1)
    if s.shape[0] == 1:
        s = s.expand(b)
    if s.shape[0] != b:
        raise ValueError(f"scale must be a scalar or one per sample ({b}), got {list(s.shape)}")
    return s


class _ScaleStyle(nn.Module):
    """Sinusoidal embedding of the scale scalar ``s = base_res / R`` → MLP → per-block FiLM
    parameters ``(γ, β)`` (the style of the official StyleGAN-2 blocks)."""

    def __init__(self, n_blocks: int, width: int, n_freqs: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.n_blocks, self.width = n_blocks, width
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(n_freqs, dtype=torch.float32),
                             persistent=False)
        self.net = nn.Sequential(nn.Linear(2 * n_freqs, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * n_blocks * width))

    def forward(self, s: Float[Tensor, " B"]) -> Float[Tensor, "B K 2 W"]:
        ang = s[:, None] * self.freqs
        emb = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)
        return self.net(emb).reshape(-1, self.n_blocks, 2, self.width)


class HierarchicalPEDecoder(nn.Module):
    """π for 2-D signals: coarse-to-fine concatenation of plane features, SiLU blocks.

    Block ``k`` maps ``[h_{k−1}, γ_k(x)]`` (``γ_0`` alone for the first) through
    ``layers_per_block`` linear layers of width ``hidden``, each followed by SiLU; a final linear
    layer gives ``out_dim`` values.

    Scale conditioning (``scale_conditioning=True``): the scale ``s = base_res / R`` of the
    rendered grid (1 at the training resolution) is embedded sinusoidally, mapped by a small MLP
    to per-block ``(γ, β)``, and every pre-activation becomes ``(1 + γ) · a + β`` (FiLM). This is
    the CPU-scale stand-in for the official StyleGAN-2 modulated 1×1 convolutions, whose style is
    the same MLP on the same embedding; ``s`` is one scalar per *sample*, so point queries stay
    independent.

    Noise injection (``noise_injection=True``) is the negative control only: it adds
    ``w · n`` with ``n ~ N(0, 1)`` drawn per query point (shared across channels, as StyleGAN's
    per-pixel noise) and a learnable ``w`` initialised at ``noise_init`` (non-zero, so it acts
    from the start). The official code has it (with ``w = 0`` at init); it is omitted by default
    because it makes a point's value stochastic and dependent on the batch it is queried in.

    Args:
        pe_channels: plane channels per level, coarse → fine.
        hidden: block width.
        out_dim: signal channels (1 for shapes, 3 for RGB).
        dim: 2 for image planes, 3 for tri-planes (with ``mix``).
        mix: tri-plane mixing, ``"sum"`` or ``"concat"``.
        layers_per_block: linear layers per block (1 in the tiny spec).
        scale_conditioning: FiLM on the scale scalar (above).
        noise_injection: the negative control (above).
        noise_init: initial noise weight.
    """

    def __init__(self, pe_channels: Sequence[int] = (16, 16, 16), hidden: int = 64,
                 out_dim: int = 1, *, dim: int = 2, mix: str = "sum", layers_per_block: int = 1,
                 scale_conditioning: bool = False, noise_injection: bool = False,
                 noise_init: float = 0.1) -> None:
        super().__init__()
        if len(pe_channels) < 1 or layers_per_block < 1:
            raise ValueError("need at least one level and one layer per block")
        self.pe = PlaneFeaturePE(dim, mix)
        self.n_levels, self.hidden, self.out_dim = len(pe_channels), hidden, out_dim
        self.layers_per_block = layers_per_block
        widths = [self.pe.out_channels(c) for c in pe_channels]
        layers = []
        for k, w in enumerate(widths):
            d_in = w + (hidden if k > 0 else 0)
            for j in range(layers_per_block):
                layers.append(nn.Linear(d_in if j == 0 else hidden, hidden))
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(hidden, out_dim)
        self.style = _ScaleStyle(len(layers), hidden) if scale_conditioning else None
        self.noise_weight = (nn.Parameter(torch.full((len(layers),), float(noise_init)))
                             if noise_injection else None)
        self.act = nn.SiLU()

    @property
    def scale_conditioning(self) -> bool:
        return self.style is not None

    def forward(self, x: Float[Tensor, "B N d"], planes: Sequence[Tensor],
                scale: Tensor | float | None = None) -> Float[Tensor, "B N out"]:
        """π(γ(x; Ξ), s): ``planes`` coarse → fine, ``scale`` a scalar or ``[B]`` (default 1)."""
        if len(planes) != self.n_levels:
            raise ValueError(f"expected {self.n_levels} plane levels, got {len(planes)}")
        feats = self.pe(planes, x)
        style = None
        if self.style is not None:
            style = self.style(_scale_tensor(scale, x.shape[0], feats[0]))  # [B, L, 2, W]
        h: Tensor | None = None
        i = 0
        for f in feats:
            h = f if h is None else torch.cat([h, f], dim=-1)
            for _ in range(self.layers_per_block):
                h = self.layers[i](h)
                if style is not None:
                    h = (1 + style[:, None, i, 0]) * h + style[:, None, i, 1]
                if self.noise_weight is not None:
                    noise = torch.randn(*h.shape[:-1], 1, dtype=h.dtype, device=h.device)
                    h = h + self.noise_weight[i] * noise
                h = self.act(h)
                i += 1
        assert h is not None
        return self.out(h)


class ResFC(nn.Module):
    """Pre-activation residual block ``x ↦ S(x) + W₂ ReLU(W₁ ReLU(x))`` with ``W₂`` initialised
    to zero (``S`` is a bias-free linear shortcut when ``in ≠ out``, else the identity)."""

    def __init__(self, d_in: int, d_out: int | None = None, d_hidden: int | None = None) -> None:
        super().__init__()
        d_out = d_in if d_out is None else d_out
        d_hidden = min(d_in, d_out) if d_hidden is None else d_hidden
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)
        nn.init.zeros_(self.fc2.weight)
        self.shortcut = nn.Linear(d_in, d_out, bias=False) if d_in != d_out else nn.Identity()

    def forward(self, x: Float[Tensor, "*b i"]) -> Float[Tensor, "*b o"]:
        dx = self.fc2(torch.relu(self.fc1(torch.relu(x))))
        return self.shortcut(x) + dx


class TriplaneMLP(nn.Module):
    """The occupancy MLP (MLP3D) on tri-plane features, returning a Bernoulli logit.

    ``e = Linear(3 → W)(x) + ResFC(C₀ → W)(γ_0)``; for each finer level ``k``,
    ``e = ResFC(W + C_k → W)([e, γ_k])``; then ``ResFC(W)`` and ``Linear(W → out_dim)``. ``C_k``
    is the plane width, tripled when ``mix="concat"``.

    Args:
        pe_channels: tri-plane channels per level, coarse → fine.
        hidden: ``W`` (256 in the paper).
        out_dim: 1 (occupancy logit).
        mix: ``"sum"`` (paper, occupancy) or ``"concat"``.
    """

    def __init__(self, pe_channels: Sequence[int] = (16, 16, 16), hidden: int = 64,
                 out_dim: int = 1, *, mix: str = "sum") -> None:
        super().__init__()
        if len(pe_channels) < 1:
            raise ValueError("need at least one level")
        self.pe = PlaneFeaturePE(3, mix)
        self.n_levels, self.out_dim = len(pe_channels), out_dim
        widths = [self.pe.out_channels(c) for c in pe_channels]
        self.fc_x = nn.Linear(3, hidden)
        self.first = ResFC(widths[0], hidden)
        self.levels = nn.ModuleList(ResFC(hidden + w, hidden) for w in widths[1:])
        self.last = ResFC(hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: Float[Tensor, "B N 3"], planes: Sequence[Tensor],
                scale: Tensor | float | None = None) -> Float[Tensor, "B N out"]:
        """Logits at ``x``; ``planes`` are ``[B, 3, C, H, W]`` coarse → fine. ``scale`` is
        accepted for the conditional-field protocol and ignored."""
        if len(planes) != self.n_levels:
            raise ValueError(f"expected {self.n_levels} plane levels, got {len(planes)}")
        feats = self.pe(planes, x)
        e = self.fc_x(x.to(feats[0].dtype)) + self.first(feats[0])
        for block, f in zip(self.levels, feats[1:]):
            e = block(torch.cat([e, f], dim=-1))
        return self.out(self.last(e))


class DecodedField(nn.Module):
    """One decoded sample bound to a decoder: ``field(x [N, d]) → [N, out]``.

    ``planes`` are the decoder output for a single sample (batch dimension 1); ``scale`` is the
    scale input of π (``base_res / R``; use :meth:`render`'s ``base_res`` to set it per grid).
    Queries are evaluated in chunks and each value depends only on its own point.
    """

    def __init__(self, decoder: nn.Module, planes: Sequence[Tensor],
                 scale: float | None = None) -> None:
        super().__init__()
        if any(p.shape[0] != 1 for p in planes):
            raise ValueError("DecodedField holds one sample: planes need batch dimension 1")
        self.decoder = decoder
        self.planes = [p.detach() for p in planes]
        self.scale = scale
        self.dim = decoder.pe.dim

    @classmethod
    def from_latent(cls, vae: nn.Module, decoder: nn.Module, z: Tensor,
                    scale: float | None = None) -> DecodedField:
        """Decode one latent (batch 1) with ``vae.decode`` and bind it to ``decoder``."""
        with torch.no_grad():
            planes = vae.decode(z)
        return cls(decoder, planes, scale)

    def forward(self, x: Float[Tensor, "N d"], chunk: int = 65536,
                scale: float | None = None) -> Float[Tensor, "N out"]:
        s = self.scale if scale is None else scale
        outs = [self.decoder(x[i:i + chunk].unsqueeze(0), self.planes, s)[0]
                for i in range(0, x.shape[0], chunk)]
        return torch.cat(outs, dim=0)

    def render(self, h: int, w: int, *, base_res: int | None = None,
               chunk: int = 65536) -> Float[Tensor, "out h w"]:
        """The 2-D field at the pixel centres of an ``h × w`` grid (any size), ``[out, h, w]``.
        With ``base_res`` the scale input is ``base_res / max(h, w)``, else the bound scale."""
        if self.dim != 2:
            raise ValueError("render() is for 2-D fields")
        xy = grid_coords(h, w).to(self.planes[0])
        scale = None if base_res is None else base_res / max(h, w)
        with torch.no_grad():
            v = self(xy, chunk=chunk, scale=scale)
        return v.T.reshape(-1, h, w)

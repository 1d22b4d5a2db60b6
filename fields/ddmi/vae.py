"""The D2C-VAE of DDMI (Park et al., "DDMI: Domain-Agnostic Latent Diffusion Models for
Synthesizing High-Quality Implicit Neural Representations", ICLR 2024, arXiv 2401.12517):
discrete data → diagonal Gaussian latent → multi-scale feature planes Ξ (coarse → fine) that
the shared MLP π queries at continuous coordinates.

- :class:`ImageVAE`: a conv encoder on a raster (``in_channels`` 1 for shapes, 3 for RGB);
  ``len(channels) − 1`` stride-2 downsamplings; the decoder mirrors it and emits one plane per
  decoder resolution through 1×1 heads. The default is the spec's tiny model: 32² input →
  ``z ∈ R^{4×8×8}`` → Ξ at 8², 16², 32² with 16 channels.
- :class:`TriplaneVAE`: a point cloud → a ConvONet-style local-pool PointNet → three planes
  (``xy, yz, xz``) → a shared-weight conv encoder per plane with cross-plane mixing (the three
  planes channel-concatenated, convolved, split back, residually) at every level → a tri-plane
  latent ``[B, 3, z, r', r']`` → mirrored decoder with tri-plane PE heads ``[B, 3, C, ·, ·]``.
- :func:`spectral_regulariser`: Σ spectral norms of the Conv2d layers (power iteration, state
  kept on the module) + Σ ``max |γ|`` of the normalisation layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fields.ddmi.mlp import ResFC
from fields.ddmi.planes import TRIPLANE_AXES

__all__ = ["DiagonalGaussian", "ImageVAE", "TriplaneVAE", "LocalPoolPointNet",
           "spectral_regulariser"]


class DiagonalGaussian:
    """A diagonal Gaussian posterior ``N(mean, exp(logvar))`` (logvar clamped to [−30, 20]).

    Dimension 0 is the batch; every other dimension is a latent dimension.
    """

    def __init__(self, mean: Tensor, logvar: Tensor) -> None:
        if mean.shape != logvar.shape:
            raise ValueError(f"mean {list(mean.shape)} and logvar {list(logvar.shape)} differ")
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    @classmethod
    def from_moments(cls, moments: Tensor, dim: int = 1) -> DiagonalGaussian:
        """Split ``moments`` in two along ``dim``: ``(mean, logvar)``."""
        mean, logvar = moments.chunk(2, dim=dim)
        return cls(mean, logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """``mean + std · ε`` (reparameterised)."""
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype,
                          device=self.mean.device)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        return self.mean

    def kl(self, reduction: str = "sum") -> Float[Tensor, " B"]:
        """KL(q ‖ N(0, I)) per sample: summed over the latent dimensions (``"sum"``, the paper's
        loss) or averaged over them (``"mean"``, the tiny spec's per-dimension β)."""
        kl = 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar)
        kl = kl.reshape(kl.shape[0], -1)
        if reduction == "sum":
            return kl.sum(dim=1)
        if reduction == "mean":
            return kl.mean(dim=1)
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def _groups(ch: int) -> int:
    """GroupNorm groups: the largest of 32, 16, … 1 dividing ``ch`` with ≥ 2 channels each."""
    for g in (32, 16, 8, 4, 2):
        if ch % g == 0 and ch // g >= 2:
            return g
    return 1


class _ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, twice, plus a (1×1 when widths differ) shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Float[Tensor, "B Ci H W"]) -> Float[Tensor, "B Co H W"]:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _CrossPlaneMix(nn.Module):
    """Residual cross-plane mixing of ``[B·n, C, H, W]``: view as ``[B, n·C, H, W]`` → SiLU →
    3×3 conv → split back and add."""

    def __init__(self, ch: int, n_planes: int) -> None:
        super().__init__()
        self.n = n_planes
        self.conv = nn.Conv2d(n_planes * ch, n_planes * ch, 3, 1, 1)

    def forward(self, x: Float[Tensor, "BN C H W"]) -> Float[Tensor, "BN C H W"]:
        bn, c, h, w = x.shape
        mixed = self.conv(F.silu(x.reshape(bn // self.n, self.n * c, h, w)))
        return x + mixed.reshape(bn, c, h, w)


def _level(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    """A level's body: ``blocks`` residual blocks (or a plain conv + SiLU when 0)."""
    if blocks == 0:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.SiLU())
    return nn.Sequential(*[_ResBlock(c_in if i == 0 else c_out, c_out) for i in range(blocks)])


class _PlaneEncoder(nn.Module):
    """Conv encoder on ``[B·n, C, H, W]`` (``n`` planes sharing weights, mixed when ``n > 1``).

    ``conv_in → channels[0]`` at full resolution; then for each further entry a stride-2 conv to
    ``channels[i]`` followed by the level body; finally a conv to ``2 · z_ch`` moments.
    """

    def __init__(self, in_ch: int, channels: Sequence[int], z_ch: int, blocks: int,
                 n_planes: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, channels[0], 3, 1, 1)
        self.body0 = _level(channels[0], channels[0], blocks)
        self.downs = nn.ModuleList(nn.Conv2d(channels[i - 1], channels[i], 3, 2, 1)
                                   for i in range(1, len(channels)))
        self.bodies = nn.ModuleList(_level(channels[i], channels[i], blocks)
                                    for i in range(1, len(channels)))
        self.mixes = nn.ModuleList(_CrossPlaneMix(c, n_planes) for c in channels) \
            if n_planes > 1 else None
        self.norm_out = nn.GroupNorm(_groups(channels[-1]), channels[-1]) if blocks else None
        self.conv_out = nn.Conv2d(channels[-1], 2 * z_ch, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body0(F.silu(self.conv_in(x)))
        if self.mixes is not None:
            h = self.mixes[0](h)
        for i, (down, body) in enumerate(zip(self.downs, self.bodies)):
            h = body(F.silu(down(h)))
            if self.mixes is not None:
                h = self.mixes[i + 1](h)
        if self.norm_out is not None:
            h = F.silu(self.norm_out(h))
        return self.conv_out(h)


class _PlaneDecoder(nn.Module):
    """Mirror of :class:`_PlaneEncoder`: ``z → channels[-1]`` at the latent resolution, then
    nearest ×2 upsampling + conv per level; a 1×1 head emits ``pe_ch`` channels at every
    resolution (coarse → fine)."""

    def __init__(self, z_ch: int, channels: Sequence[int], pe_ch: int, blocks: int,
                 n_planes: int) -> None:
        super().__init__()
        rev = list(channels)[::-1]
        self.conv_in = nn.Conv2d(z_ch, rev[0], 3, 1, 1)
        self.body0 = _level(rev[0], rev[0], blocks)
        self.ups = nn.ModuleList(nn.Conv2d(rev[i - 1], rev[i], 3, 1, 1) for i in range(1, len(rev)))
        self.bodies = nn.ModuleList(_level(rev[i], rev[i], blocks) for i in range(1, len(rev)))
        self.mixes = nn.ModuleList(_CrossPlaneMix(c, n_planes) for c in rev) \
            if n_planes > 1 else None
        self.heads = nn.ModuleList(nn.Conv2d(c, pe_ch, 1) for c in rev)

    def forward(self, z: Tensor) -> list[Tensor]:
        h = self.body0(F.silu(self.conv_in(z)))
        if self.mixes is not None:
            h = self.mixes[0](h)
        out = [self.heads[0](h)]
        for i, (up, body) in enumerate(zip(self.ups, self.bodies)):
            h = body(F.silu(up(F.interpolate(h, scale_factor=2.0, mode="nearest"))))
            if self.mixes is not None:
                h = self.mixes[i + 1](h)
            out.append(self.heads[i + 1](h))
        return out


class ImageVAE(nn.Module):
    """D2C-VAE for rasters: ``[B, in_ch, R, R] → q(z) , z ∈ R^{z_ch × R/2^L × R/2^L}`` →
    ``len(channels)`` planes ``[B, pe_ch, R/2^L · 2^k, ·]`` (coarse → fine), ``L = len − 1``.

    Args:
        in_channels: 1 (shapes) or 3 (RGB).
        channels: encoder widths per resolution, full → coarsest (``(32, 64, 64)``: 32², 16², 8²
            for a 32² input). The input size must be divisible by ``2^(len − 1)``.
        z_ch: latent channels.
        pe_channels: channels of every PE plane.
        blocks_per_level: GroupNorm + SiLU residual blocks per level (0: one conv + SiLU).
    """

    def __init__(self, in_channels: int = 1, channels: Sequence[int] = (32, 64, 64),
                 z_ch: int = 4, pe_channels: int = 16, blocks_per_level: int = 0) -> None:
        super().__init__()
        if len(channels) < 1:
            raise ValueError("need at least one encoder level")
        self.in_channels, self.z_ch, self.pe_channels = in_channels, z_ch, pe_channels
        self.n_down = len(channels) - 1
        self.encoder = _PlaneEncoder(in_channels, channels, z_ch, blocks_per_level, 1)
        self.decoder = _PlaneDecoder(z_ch, channels, pe_channels, blocks_per_level, 1)

    @property
    def plane_channels(self) -> tuple[int, ...]:
        return (self.pe_channels,) * (self.n_down + 1)

    def encode(self, x: Float[Tensor, "B C H W"]) -> DiagonalGaussian:
        f = 2 ** self.n_down
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"input size {list(x.shape[-2:])} must be divisible by {f}")
        return DiagonalGaussian.from_moments(self.encoder(x), dim=1)

    def decode(self, z: Float[Tensor, "B Z h w"]) -> list[Tensor]:
        """PE planes ``[B, pe_ch, h·2^k, w·2^k]`` for ``k = 0 … L`` (coarse → fine)."""
        return self.decoder(z)

    def forward(self, x: Float[Tensor, "B C H W"], sample: bool = True,
                generator: torch.Generator | None = None
                ) -> tuple[list[Tensor], DiagonalGaussian]:
        """``(planes, posterior)`` with ``z`` sampled (or the mean when ``sample=False``)."""
        q = self.encode(x)
        return self.decode(q.sample(generator) if sample else q.mode()), q


def _plane_cells(points: Float[Tensor, "B P 3"], r: int) -> Tensor:
    """Flat cell indices ``[B, 3, P]`` of the points in the three ``r × r`` planes (row = the
    second coordinate of the pair, column = the first, matching ``grid_sample``)."""
    idx = ((points + 1.0) * 0.5 * r).floor().long().clamp(0, r - 1)
    return torch.stack([idx[..., v] * r + idx[..., u] for u, v in TRIPLANE_AXES], dim=1)


def _scatter_mean(feats: Tensor, cells: Tensor, n_cells: int) -> Tensor:
    """Mean of ``feats [B, P, F]`` per cell (``cells [B, P]`` in ``[0, n_cells)``) →
    ``[B, n_cells, F]`` (empty cells are 0)."""
    b, p, f = feats.shape
    flat = (cells + n_cells * torch.arange(b, device=cells.device)[:, None]).reshape(-1)
    sums = feats.new_zeros(b * n_cells, f).index_add_(0, flat, feats.reshape(-1, f))
    counts = feats.new_zeros(b * n_cells).index_add_(0, flat, feats.new_ones(b * p))
    return (sums / counts.clamp(min=1.0)[:, None]).reshape(b, n_cells, f)


class LocalPoolPointNet(nn.Module):
    """ConvONet-style local-pool PointNet: points → three ``r × r`` feature planes.

    ``fc_pos (3 → 2H)``; then ``n_blocks`` ResFC blocks ``2H → H``; between blocks the point
    features are scatter-mean pooled into the cells of each plane, gathered back to the points,
    summed over the three planes and concatenated to the point features (→ ``2H``); finally
    ``Linear(H → C)`` and a scatter-mean into the planes, ``[B, 3, C, r, r]``.
    """

    def __init__(self, c_out: int = 32, hidden: int = 32, resolution: int = 32,
                 n_blocks: int = 3) -> None:
        super().__init__()
        self.r, self.c_out = resolution, c_out
        self.fc_pos = nn.Linear(3, 2 * hidden)
        self.blocks = nn.ModuleList(ResFC(2 * hidden, hidden) for _ in range(n_blocks))
        self.fc_c = nn.Linear(hidden, c_out)

    def _pool_gather(self, feats: Tensor, cells: Tensor) -> Tensor:
        n = self.r * self.r
        pooled = 0
        for k in range(3):
            means = _scatter_mean(feats, cells[:, k], n)  # [B, n, F]
            pooled = pooled + torch.gather(
                means, 1, cells[:, k, :, None].expand(-1, -1, feats.shape[-1]))
        return pooled

    def forward(self, points: Float[Tensor, "B P 3"]) -> Float[Tensor, "B 3 C r r"]:
        cells = _plane_cells(points, self.r)
        h = self.blocks[0](self.fc_pos(points))
        for block in self.blocks[1:]:
            h = block(torch.cat([h, self._pool_gather(h, cells)], dim=-1))
        c = self.fc_c(h)
        planes = torch.stack([_scatter_mean(c, cells[:, k], self.r * self.r)
                              for k in range(3)], dim=1)  # [B, 3, r², C]
        b = points.shape[0]
        return planes.transpose(2, 3).reshape(b, 3, self.c_out, self.r, self.r)


class TriplaneVAE(nn.Module):
    """D2C-VAE for point clouds ``[B, P, 3]`` in ``[−1, 1]³`` with a tri-plane latent.

    Args:
        point_channels: channels of the PointNet planes.
        point_hidden: PointNet width.
        resolution: PointNet plane resolution ``r`` (32).
        channels: per-plane encoder widths, ``r`` → ``r / 2^(len − 1)`` (``(32, 64, 64)``:
            32², 16², 8²).
        z_ch: latent channels per plane (latent ``[B, 3, z_ch, r', r']``).
        pe_channels: channels of every PE tri-plane.
        blocks_per_level: residual blocks per level (0: one conv + SiLU).
    """

    def __init__(self, point_channels: int = 32, point_hidden: int = 32, resolution: int = 32,
                 channels: Sequence[int] = (32, 64, 64), z_ch: int = 4, pe_channels: int = 16,
                 blocks_per_level: int = 0) -> None:
        super().__init__()
        if resolution % 2 ** (len(channels) - 1):
            raise ValueError(f"resolution {resolution} not divisible by 2^{len(channels) - 1}")
        self.z_ch, self.pe_channels, self.n_down = z_ch, pe_channels, len(channels) - 1
        self.pointnet = LocalPoolPointNet(point_channels, point_hidden, resolution)
        self.encoder = _PlaneEncoder(point_channels, channels, z_ch, blocks_per_level, 3)
        self.decoder = _PlaneDecoder(z_ch, channels, pe_channels, blocks_per_level, 3)

    @property
    def plane_channels(self) -> tuple[int, ...]:
        return (self.pe_channels,) * (self.n_down + 1)

    def encode(self, points: Float[Tensor, "B P 3"]) -> DiagonalGaussian:
        planes = self.pointnet(points)
        b, _, c, r, _ = planes.shape
        moments = self.encoder(planes.reshape(b * 3, c, r, r))
        return DiagonalGaussian.from_moments(moments.reshape(b, 3, *moments.shape[1:]), dim=2)

    def decode(self, z: Float[Tensor, "B 3 Z h w"]) -> list[Tensor]:
        """PE tri-planes ``[B, 3, pe_ch, h·2^k, w·2^k]`` for ``k = 0 … L`` (coarse → fine)."""
        b = z.shape[0]
        outs = self.decoder(z.reshape(b * 3, *z.shape[2:]))
        return [o.reshape(b, 3, *o.shape[1:]) for o in outs]

    def forward(self, points: Float[Tensor, "B P 3"], sample: bool = True,
                generator: torch.Generator | None = None
                ) -> tuple[list[Tensor], DiagonalGaussian]:
        q = self.encode(points)
        return self.decode(q.sample(generator) if sample else q.mode()), q


_SPECTRAL_STATE = "_ddmi_spectral_uv"
_NORMS = (nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def spectral_regulariser(module: nn.Module, n_iter: int | None = None,
                         generator: torch.Generator | None = None) -> Tensor:
    """Σ over Conv2d layers of their spectral norm ``σ(W.reshape(out, −1))`` + Σ over
    GroupNorm/BatchNorm layers of ``max |γ|``, differentiable in the weights.

    σ is estimated by power iteration whose vectors persist on ``module`` (a plain dict
    attribute, not in the state dict): ``n_iter`` defaults to 40 at first use and 4 afterwards.
    """
    state: dict[str, tuple[Tensor, Tensor]] = module.__dict__.setdefault(_SPECTRAL_STATE, {})
    total: Tensor | None = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            w = m.weight.reshape(m.weight.shape[0], -1)
            first = name not in state
            iters = n_iter if n_iter is not None else (40 if first else 4)
            with torch.no_grad():
                if first:
                    u = torch.randn(w.shape[0], generator=generator, dtype=w.dtype)
                    u = F.normalize(u.to(w.device), dim=0)
                    v = F.normalize(w.T @ u, dim=0)
                else:
                    u, v = (a.to(w) for a in state[name])
                for _ in range(iters):
                    v = F.normalize(w.T @ u, dim=0)
                    u = F.normalize(w @ v, dim=0)
                state[name] = (u.clone(), v.clone())
            term = torch.dot(u, w @ v)
        elif isinstance(m, _NORMS) and m.weight is not None:
            term = m.weight.abs().max()
        else:
            continue
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total

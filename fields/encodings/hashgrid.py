"""Multiresolution hash-grid encoding (Müller et al., "Instant Neural Graphics Primitives with a
Multiresolution Hash Encoding", SIGGRAPH 2022).

Vocabulary: ``x`` are world points ``[N, D]`` inside ``bounds``; the output is ``[N, L·F]``,
level-major (level 0's F features first).

For level ``l`` with scale ``s_l = N_min · b^l − 1`` (``b`` the per-level scale) and grid
resolution ``r_l = ⌈s_l⌉ + 1``, a point ``u ∈ [0, 1]^D`` lands at ``p = u·s_l + ½``; its cell is
``⌊p⌋`` and its trilinear weights come from ``p − ⌊p⌋``. The ``2^D`` corner features are looked up
in the level's table of ``T_l`` rows and blended:

    enc_l(u) = Σ_c  w_c(u) · θ_l[ index_l(⌊p⌋ + c) ]

``index_l`` is dense row-major (``Σ_d g_d · r_l^d``) when ``r_l^D ≤ T`` and otherwise the spatial
hash ``(⊕_d g_d · π_d) mod T`` with ``π = (1, 2654435761, 805459861, …)`` in uint32 arithmetic.
Level sizes are ``min(r_l^D, T)`` rounded up to a multiple of 8, and the table is one flat
parameter ``params`` of ``Σ_l T_l · F`` numbers — the same layout, indexing and alignment as
tiny-cuda-nn's ``HashGrid``, so weights move between the torch and tcnn backends unchanged.

The torch backend computes all ``2^D`` corner rows for all levels at once and blends them with one
``embedding_bag(mode="sum", per_sample_weights=w)`` call — a fused gather-and-weighted-sum whose
backward is a scatter-add into the table and a gather for ``∂/∂w`` — in cache-sized chunks of
points. That avoids materialising the ``[N, L, 2^D, F]`` corner features that a naive
implementation builds (and backpropagates through).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from fields import accel

__all__ = ["HashGridConfig", "HashGridEncoding", "hashgrid_level_layout"]

_PRIMES = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class HashGridConfig:
    """Hyper-parameters of a hash grid (names follow the paper / tiny-cuda-nn)."""

    num_levels: int = 16
    """L, the number of resolution levels."""
    features_per_level: int = 2
    """F, features stored per table row."""
    log2_hashmap_size: int = 19
    """log2 of T, the maximum number of rows per level."""
    base_resolution: int = 16
    """N_min, the coarsest level's resolution."""
    per_level_scale: float | None = None
    """b; if None it is derived from ``max_resolution``."""
    max_resolution: int = 2048
    """N_max, the finest resolution (used when ``per_level_scale`` is None)."""

    def scale_factor(self) -> float:
        if self.per_level_scale is not None:
            return float(self.per_level_scale)
        if self.num_levels == 1:
            return 1.0
        return math.exp(
            (math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.num_levels - 1)
        )


def hashgrid_level_layout(
    cfg: HashGridConfig, in_dim: int
) -> tuple[list[float], list[int], list[int], list[bool]]:
    """Per-level ``(scales, resolutions, row offsets, hashed?)`` exactly as tiny-cuda-nn lays them.

    The offsets list has ``L + 1`` entries; the last is the total number of rows.
    """
    log2_b = math.log2(cfg.scale_factor())
    max_rows = 1 << cfg.log2_hashmap_size
    scales, resolutions, offsets, hashed = [], [], [0], []
    for level in range(cfg.num_levels):
        # tcnn computes the scale in float32: exp2f(level * log2_per_level_scale) * base - 1.
        exponent = torch.tensor(level * log2_b, dtype=torch.float32)
        two = torch.tensor(2.0, dtype=torch.float32)
        scale = float(two**exponent * cfg.base_resolution - 1.0)
        res = int(math.ceil(scale)) + 1
        dense_rows = res**in_dim
        rows = min(dense_rows, max_rows)
        rows = (rows + 7) // 8 * 8
        scales.append(scale)
        resolutions.append(res)
        offsets.append(offsets[-1] + rows)
        hashed.append(rows < dense_rows)
    return scales, resolutions, offsets, hashed


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding of points in an axis-aligned box.

    Args:
        in_dim: D (2 or 3; up to 7 supported by the hash).
        config: the grid's hyper-parameters.
        bounds: ``(lo, hi)`` of the box mapped to the unit cube; points outside are clamped.
        backend: ``"auto"`` (tcnn when importable and on CUDA), ``"torch"`` or ``"tcnn"`` (a clear
            error if tinycudann is missing).
        chunk_size: points per chunk on the torch path (cache-sized chunks run faster on CPU).
        init_scale: table entries start uniform in ``[-init_scale, init_scale]`` (tcnn: 1e-4).

    Example:
        >>> enc = HashGridEncoding(3, HashGridConfig(num_levels=4, log2_hashmap_size=10))
        >>> enc(torch.rand(8, 3) * 2 - 1).shape
        torch.Size([8, 8])
    """

    def __init__(
        self,
        in_dim: int = 3,
        config: HashGridConfig | None = None,
        bounds: tuple[float, float] = (-1.0, 1.0),
        backend: str = "auto",
        device: str | torch.device | None = None,
        chunk_size: int = 1 << 13,
        init_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        if not 1 <= in_dim <= len(_PRIMES):
            raise ValueError(f"in_dim must be in 1..{len(_PRIMES)}, got {in_dim}")
        self.config = cfg = config or HashGridConfig()
        self.in_dim = in_dim
        self.out_dim = cfg.num_levels * cfg.features_per_level
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.chunk_size = int(chunk_size)
        self.backend = accel.resolve_backend(backend, str(device) if device is not None else None)

        scales, resolutions, offsets, hashed = hashgrid_level_layout(cfg, in_dim)
        self.resolutions = resolutions
        self.n_rows = offsets[-1]
        n_params = self.n_rows * cfg.features_per_level
        if self.backend == "tcnn":
            tcnn = accel.require_tcnn()
            self.grid = tcnn.Encoding(
                n_input_dims=in_dim,
                encoding_config={
                    "otype": "HashGrid",
                    "n_levels": cfg.num_levels,
                    "n_features_per_level": cfg.features_per_level,
                    "log2_hashmap_size": cfg.log2_hashmap_size,
                    "base_resolution": cfg.base_resolution,
                    "per_level_scale": cfg.scale_factor(),
                },
            )
            if self.grid.params.numel() != n_params:  # pragma: no cover - depends on tcnn version
                raise RuntimeError(
                    f"tinycudann HashGrid has {self.grid.params.numel()} parameters, expected "
                    f"{n_params}; this tcnn version lays out its table differently"
                )
        else:
            self.grid = _TorchTable(n_params, init_scale)

        L = cfg.num_levels
        self.register_buffer("_scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "_offsets", torch.tensor(offsets[:-1], dtype=torch.int64), persistent=False
        )
        self.register_buffer(
            "_rows", torch.tensor(
                [offsets[i + 1] - offsets[i] for i in range(L)], dtype=torch.int64
            ), persistent=False,
        )
        # Per level and dimension, the multiplier of the grid coordinate: the dense stride
        # r^d, or the hash prime. Dense levels sum the terms, hashed levels xor them.
        mult = torch.empty(L, in_dim, dtype=torch.int64)
        for lvl in range(L):
            for d in range(in_dim):
                mult[lvl, d] = _PRIMES[d] if hashed[lvl] else resolutions[lvl] ** d
        self.register_buffer("_mult", mult, persistent=False)
        # Dense levels: offset of corner c from the base corner, Σ_d ((c >> d) & 1)·r^d.
        dense_corners = torch.tensor(
            [[sum(((c >> d) & 1) * resolutions[lvl] ** d for d in range(in_dim))
              for c in range(1 << in_dim)] for lvl in range(L)], dtype=torch.int64)
        self.register_buffer("_dense_corners", dense_corners[: sum(not h for h in hashed)],
                             persistent=False)
        self.num_dense_levels = int(sum(1 for h in hashed if not h))
        if any(hashed[: self.num_dense_levels]):  # pragma: no cover - resolutions grow with l
            raise AssertionError("dense levels must come first")

    @property
    def params(self) -> Tensor:
        """The flat table ``[Σ_l T_l · F]`` (same layout as tiny-cuda-nn)."""
        return self.grid.params

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"in_dim={self.in_dim}, L={c.num_levels}, F={c.features_per_level}, "
            f"T=2^{c.log2_hashmap_size}, N_min={c.base_resolution}, b={c.scale_factor():.4f}, "
            f"backend={self.backend!r}"
        )

    def normalize(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N D"]:
        lo, hi = self.bounds
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)

    def forward(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N C"]:
        u = self.normalize(x)
        if self.backend == "tcnn":
            return self.grid(u.contiguous()).to(x.dtype)
        params = self.grid.params
        if params.dtype != u.dtype:
            u = u.to(params.dtype)
        return _HashGridFunction.apply(u.contiguous(), params, self).to(x.dtype)

    def _indices_weights(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For unit-cube points ``u [n, D]``: table rows ``idx [L, n, 2^D]`` (level offsets
        included), corner weights ``w [L, n, 2^D]`` and cell fractions ``frac [D, L, n]``.

        Level-major layout: every integer and float op runs over contiguous ``[L, n]`` planes
        (long vectorised loops), corners are assembled with one ``stack``, and each level's rows
        are a contiguous slice (so the backward scatter can split by level without copies).
        """
        n, D = u.shape
        L = self.config.num_levels
        pos = torch.addcmul(
            u.new_tensor(0.5), u.T.contiguous()[:, None, :], self._scales.to(u.dtype)[None, :, None]
        )  # [D, L, n]
        cell = torch.floor(pos)
        frac = pos - cell
        g = cell.to(torch.int64)
        idx = torch.empty(L, n, 1 << D, dtype=torch.int64, device=u.device)
        nd = self.num_dense_levels
        if nd > 0:
            # Dense levels: row-major index of the base corner plus a per-level corner offset,
            # wrapped by the level size as tcnn does (only reachable on the upper boundary).
            base = g[0, :nd] * self._mult[:nd, 0, None]
            for d in range(1, D):
                base = base + g[d, :nd] * self._mult[:nd, d, None]
            dense = base[:, :, None] + self._dense_corners[:, None, :]
            rows = self._rows[:nd, None, None]
            # idx < 2·rows always (r + r² + r³ with r³ ≤ rows), so one conditional subtraction
            # is the remainder, without an integer division.
            torch.sub(dense, rows * (dense >= rows), out=idx[:nd])
        if nd < L:
            # Hashed levels: xor over d of uint32 products (g_d + o_d)·π_d; T is a power of two.
            planes = []
            for d in range(D):
                gd = g[d, nd:]
                prime = int(self._mult[nd, d])
                planes.append(((gd * prime) & _U32, ((gd + 1) * prime) & _U32))
            corners = _corner_planes(planes, torch.bitwise_xor)
            torch.bitwise_and(torch.stack(corners, dim=-1), self._rows[nd] - 1, out=idx[nd:])
        idx += self._offsets[:, None, None]
        w = torch.stack(_corner_planes([(1.0 - f, f) for f in frac], torch.mul), dim=-1)
        return idx, w, frac


class _HashGridFunction(torch.autograd.Function):
    """Chunked forward (fused gather + weighted sum) and a hand-written backward.

    Backward recomputes indices and weights per chunk instead of storing them, scatters
    ``w · ∂L/∂out`` into one dense table gradient (no per-chunk buffers, no sort), and forms
    ``∂L/∂u`` analytically: ``∂w_c/∂f_d`` is the corner product with dimension ``d``'s pair
    ``(1 − f_d, f_d)`` replaced by ``(−1, 1)``, and ``∂f_d/∂u_d = s_l``.
    First derivatives only: use finite differences for second-order terms (eikonal losses).
    """

    @staticmethod
    def forward(ctx, u: Tensor, params: Tensor, enc: HashGridEncoding) -> Tensor:
        Fdim = enc.config.features_per_level
        L = enc.config.num_levels
        table = params.view(-1, Fdim)
        out = u.new_empty(u.shape[0], L, Fdim)
        for start in range(0, u.shape[0], enc.chunk_size):
            uc = u[start : start + enc.chunk_size]
            idx, w, _ = enc._indices_weights(uc)
            n = uc.shape[0]
            feats = F.embedding_bag(
                idx.view(L * n, -1), table, per_sample_weights=w.view(L * n, -1), mode="sum"
            )
            out[start : start + n] = feats.view(L, n, Fdim).transpose(0, 1)
        ctx.enc = enc
        ctx.save_for_backward(u, params)
        return out.view(u.shape[0], L * Fdim)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        u, params = ctx.saved_tensors
        enc: HashGridEncoding = ctx.enc
        Fdim = enc.config.features_per_level
        L = enc.config.num_levels
        D = u.shape[1]
        table = params.view(-1, Fdim)
        need_u, need_params = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_table = torch.zeros_like(table) if need_params else None
        grad_u = torch.empty_like(u) if need_u else None
        grad_out = grad_out.reshape(-1, L, Fdim)
        scales = enc._scales.to(u.dtype)
        sign = u.new_tensor([-1.0, 1.0])
        for start in range(0, u.shape[0], enc.chunk_size):
            uc = u[start : start + enc.chunk_size]
            n = uc.shape[0]
            idx, w, frac = enc._indices_weights(uc)
            g = grad_out[start : start + n].transpose(0, 1).contiguous()[:, :, None, :]  # [L,n,1,F]
            if need_params:
                _scatter_add_rows(grad_table, idx, w[..., None] * g)
            if need_u:
                corner = F.embedding(idx, table)  # [L, n, K, F]
                dl_dw = (corner * g).sum(-1)  # [L, n, K]
                pairs = [(1.0 - f, f) for f in frac]
                for d in range(D):
                    # ∂w_c/∂f_d: the corner product with dimension d's pair replaced by (−1, 1).
                    dpairs = pairs[:d] + [(sign[0], sign[1])] + pairs[d + 1 :]
                    dw = torch.stack(_corner_planes(dpairs, torch.mul), dim=-1)  # [L, n, K]
                    dl_dfrac = (dl_dw * dw).sum(-1)  # [L, n]
                    grad_u[start : start + n, d] = (dl_dfrac * scales[:, None]).sum(0)
        grad_params = grad_table.view(-1) if need_params else None
        return grad_u, grad_params, None


_POOL: ThreadPoolExecutor | None = None


def _scatter_add_rows(grad_table: Tensor, idx: Tensor, vals: Tensor) -> None:
    """``grad_table[idx] += vals`` for level-major ``idx [L, n, K]`` and ``vals [L, n, K, F]``.

    ``index_add_`` runs on one core on the CPU. Levels own disjoint row ranges of the table, so
    the two halves of the levels (contiguous slices) are scattered concurrently from two
    threads without races (torch releases the GIL), and feature pairs are added as one complex
    number per row, which halves the number of indexed updates.
    """
    global _POOL
    Fdim = vals.shape[-1]
    dtype = {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(vals.dtype)
    if dtype is not None and Fdim % 2 == 0:
        target = grad_table.view(dtype)
        vals = vals.view(dtype)
    else:
        target = grad_table
    L = idx.shape[0]
    width = vals.shape[-1]
    if grad_table.device.type != "cpu" or torch.get_num_threads() < 2 or L < 2:
        target.index_add_(0, idx.view(-1), vals.view(-1, width))
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="hashgrid-scatter")
    h = L // 2
    jobs = [_POOL.submit(target.index_add_, 0, idx[lv].view(-1), vals[lv].view(-1, width))
            for lv in (slice(0, h), slice(h, L))]
    for j in jobs:
        j.result()


def _corner_planes(pairs: list[tuple[Tensor, Tensor]], op) -> list[Tensor]:
    """Corner ``c`` = op over d of ``pairs[d][(c >> d) & 1]`` (dimension 0 varies fastest)."""
    out = list(pairs[0])
    for d in range(1, len(pairs)):
        out = [op(pairs[d][bit], prev) for bit in (0, 1) for prev in out]
    return out


class _TorchTable(nn.Module):
    """Holds the flat table parameter for the torch backend (named like tcnn's ``params``)."""

    def __init__(self, n_params: int, init_scale: float) -> None:
        super().__init__()
        self.params = nn.Parameter(torch.empty(n_params).uniform_(-init_scale, init_scale))

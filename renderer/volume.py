"""Volume rendering: NeRF quadrature, NeuS SDF→α, compositing and sampling along rays.

Vocabulary (ARCHITECTURE.md):

* ``rays_o``, ``rays_d`` — ray origins and unit directions ``[R, 3]``; ``x(t) = rays_o + t·rays_d``.
* ``t_starts``, ``t_ends`` — sample intervals along the rays, either *batched* ``[R, S]`` (S
  intervals on every ray) or *packed* ``[M]`` with ``ray_indices`` ``[M]`` (int64, sorted by
  ray, so each ray's samples are contiguous) and ``n_rays`` = R.
* ``sigma`` — density per interval (same shape as ``t_starts``); ``alpha`` — opacity per interval;
  ``rgb`` — colour per interval ``[..., 3]``; ``t_mid = (t_starts + t_ends) / 2``.
* ``weights``, ``transmittance`` — the quadrature weights ``w_i`` and ``T_i`` below.

The NeRF quadrature (Max 1995; Mildenhall et al., "NeRF", ECCV 2020) of

    C(r) = ∫ T(t) σ(t) c(t) dt,   T(t) = exp(−∫₀ᵗ σ(s) ds)

over piecewise-constant density on intervals of length ``δ_i = t_ends_i − t_starts_i`` is

    α_i = 1 − exp(−σ_i δ_i),   T_i = Π_{j<i} (1 − α_j) = exp(−Σ_{j<i} σ_j δ_j),   w_i = T_i α_i,
    Ĉ(r) = Σ_i w_i c_i,   opacity = Σ_i w_i = 1 − T_{S+1},   depth = Σ_i w_i t_mid_i.

``T_i`` is computed from an exclusive cumulative sum of ``σδ`` (never a product of many factors
below one). For packed samples the per-ray exclusive sum is a global cumulative sum minus its
value at each ray's first sample, accumulated in float64 so that the subtraction of two large
prefix sums loses nothing (a float32 prefix over ~10⁶ samples would not); its backward is the same
sum over the reversed samples. Packed per-ray sums (compositing) are one sparse CSR × dense product
on CPU (rows = rays, the weights as values), a segment sum elsewhere; ray segment bounds come from
a binary search of the sorted ``ray_indices``. The functions match nerfacc 0.5.3's
``render_weight_from_density``, ``render_weight_from_alpha`` and ``accumulate_along_rays`` (Li et
al., "NerfAcc", ICCV 2023) to float rounding and run anywhere torch runs (nerfacc's packed kernels
are CUDA-only).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "VolumeRender",
    "weights_from_density",
    "weights_from_alpha",
    "accumulate",
    "composite",
    "neus_alpha",
    "render_rays",
    "sample_uniform",
    "sample_pdf",
]

Background = float | Float[Tensor, " 3"] | Float[Tensor, "R 3"] | None
RgbSigmaFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _check_packed(ray_indices: Tensor | None, n_rays: int | None, x: Tensor) -> None:
    if ray_indices is None:
        return
    if n_rays is None:
        raise ValueError("packed samples need n_rays together with ray_indices")
    if x.dim() != 1 or ray_indices.shape != x.shape:
        raise ValueError(f"packed samples must be flat [M] with ray_indices [M]; got "
                         f"{list(x.shape)} and {list(ray_indices.shape)}")


def _ray_offsets(ray_indices: Int[Tensor, " M"], n_rays: int) -> Int[Tensor, " R1"]:
    """``[n_rays + 1]`` segment bounds: ray ``r`` owns packed samples ``[off_r, off_{r+1})``.

    ``ray_indices`` must be sorted; a binary search per ray (``R log M``) is cheaper than a
    ``bincount`` over the ``M`` samples.
    """
    bounds = torch.arange(n_rays + 1, device=ray_indices.device, dtype=ray_indices.dtype)
    return torch.searchsorted(ray_indices, bounds)


def _segment_exclusive_sum(
    x: Float[Tensor, " M"], offsets: Int[Tensor, " R1"], ray_indices: Int[Tensor, " M"]
) -> Tensor:
    """``Σ_{j<i} x_j`` within each ray of packed samples (no autograd), per-ray accurate.

    The global exclusive prefix sum in float64 minus its value at each ray's first sample: a
    float32 prefix over a million samples would lose the per-ray digits, the float64 one keeps
    ~1e-16 of the global sum, far below float32 resolution of the per-ray sums, which are rounded
    once to ``x``'s dtype.
    """
    n = x.shape[0]
    prefix = x.new_empty(n, dtype=torch.float64)  # shifted by one: prefix_i = Σ_{j<i} x_j
    prefix[0] = 0.0
    prefix[1:] = x[:-1]
    prefix.cumsum_(0)
    first = offsets[:-1].clamp_max(n - 1)  # empty rays: any valid index, never read
    return prefix.sub_(prefix.index_select(0, first).index_select(0, ray_indices)).to(x.dtype)


class _PackedExclusiveSum(torch.autograd.Function):
    """Per-ray exclusive sum of packed samples. Its gradient ``∂/∂x_j = Σ_{i>j} g_i`` is the same
    sum over the reversed samples (rays in reverse order), so backward reuses forward."""

    @staticmethod
    def forward(ctx, x: Tensor, offsets: Tensor, ray_indices: Tensor,  # type: ignore[override]
                n_rays: int) -> Tensor:
        ctx.save_for_backward(offsets, ray_indices)
        ctx.n_rays = n_rays
        return _segment_exclusive_sum(x, offsets, ray_indices)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        offsets, ray_indices = ctx.saved_tensors
        rev_offsets = (grad.shape[0] - offsets).flip(0)
        rev_indices = (ctx.n_rays - 1) - ray_indices.flip(0)
        rev = _PackedExclusiveSum.apply(grad.flip(0), rev_offsets, rev_indices, ctx.n_rays)
        return rev.flip(0), None, None, None


def _exclusive_sum(
    x: Tensor, ray_indices: Tensor | None, n_rays: int | None
) -> Tensor:
    """``Σ_{j<i} x_j`` along each ray: the last dimension (batched) or each packed segment."""
    if ray_indices is None:
        # Inclusive minus self: one cumsum, no concatenation. The rounding of the subtraction is
        # one ulp of the running sum, i.e. ≤ 1e-7 relative on exp(−sum).
        return x.cumsum(-1) - x
    assert n_rays is not None
    if x.shape[0] == 0:
        return x.clone()
    offsets = _ray_offsets(ray_indices, n_rays)
    return _PackedExclusiveSum.apply(x, offsets, ray_indices, n_rays)


def weights_from_density(
    sigma: Float[Tensor, "*batch"],
    t_starts: Float[Tensor, "*batch"],
    t_ends: Float[Tensor, "*batch"],
    ray_indices: Int[Tensor, " M"] | None = None,
    n_rays: int | None = None,
) -> tuple[Float[Tensor, "*batch"], Float[Tensor, "*batch"], Float[Tensor, "*batch"]]:
    """NeRF quadrature weights from densities (Mildenhall et al. 2020, eq. 3).

        α_i = 1 − exp(−σ_i δ_i),   T_i = exp(−Σ_{j<i} σ_j δ_j),   w_i = T_i α_i,
        δ_i = t_ends_i − t_starts_i.

    Batched ``[R, S]`` inputs (rays on the first dimension, samples on the last) or packed ``[M]``
    inputs with ``ray_indices`` (sorted) and ``n_rays``. Differentiable in ``sigma`` and ``t``.

    Returns:
        ``(weights, transmittance, alpha)``, each shaped like ``sigma``.

    Example:
        >>> sigma = torch.tensor([[1.0, 1.0]])
        >>> w, T, a = weights_from_density(sigma, torch.tensor([[0.0, 1.0]]),
        ...                                torch.tensor([[1.0, 2.0]]))
        >>> [round(v, 4) for v in w[0].tolist()], [round(v, 4) for v in T[0].tolist()]
        ([0.6321, 0.2325], [1.0, 0.3679])
    """
    _check_packed(ray_indices, n_rays, sigma)
    # −σδ directly (a − b = −(b − a) exactly): no negation passes over the samples.
    neg_sigma_delta = sigma * (t_starts - t_ends)
    alpha = -torch.expm1(neg_sigma_delta)
    transmittance = torch.exp(_exclusive_sum(neg_sigma_delta, ray_indices, n_rays))
    return transmittance * alpha, transmittance, alpha


def weights_from_alpha(
    alpha: Float[Tensor, "*batch"],
    ray_indices: Int[Tensor, " M"] | None = None,
    n_rays: int | None = None,
) -> tuple[Float[Tensor, "*batch"], Float[Tensor, "*batch"], Float[Tensor, "*batch"]]:
    """Quadrature weights from opacities: ``T_i = Π_{j<i} (1 − α_j)``, ``w_i = T_i α_i``.

    Used with NeuS (:func:`neus_alpha`), where α comes from the SDF rather than a density. The
    product is an exclusive ``cumprod`` (exact for ``α = 1``, where ``T`` drops to 0 and the
    gradient stays finite). Packed samples are scattered into a ``[R, S_max]`` buffer padded with
    ``α = 0`` for the product and gathered back.

    Returns:
        ``(weights, transmittance, alpha)``, each shaped like ``alpha``.

    Example:
        >>> w, T, a = weights_from_alpha(torch.tensor([[0.5, 0.5, 1.0]]))
        >>> w.tolist(), T.tolist()
        ([[0.5, 0.25, 0.25]], [[1.0, 0.5, 0.25]])
    """
    _check_packed(ray_indices, n_rays, alpha)
    if ray_indices is None:
        keep = 1.0 - alpha
        shifted = torch.cat([torch.ones_like(keep[..., :1]), keep[..., :-1]], dim=-1)
        transmittance = torch.cumprod(shifted, dim=-1)
        return transmittance * alpha, transmittance, alpha
    assert n_rays is not None
    m = alpha.shape[0]
    if m == 0:
        return alpha.clone(), torch.ones_like(alpha), alpha
    offsets = _ray_offsets(ray_indices, n_rays)
    counts = offsets[1:] - offsets[:-1]
    width = int(counts.max()) + 1
    # Flat position of sample i in a [R, width] buffer: row r, column i − off_r.
    rows = torch.arange(n_rays, device=alpha.device) * width - offsets[:-1]
    flat = rows.index_select(0, ray_indices).add_(torch.arange(m, device=alpha.device))
    # Column 0 holds T = 1; sample k of a ray sits in column k + 1 as its factor (1 − α): written
    # through the view that starts one element later, so that one index array serves both ways.
    padded = alpha.new_ones(n_rays * width)
    padded[1:].index_copy_(0, flat, 1.0 - alpha)
    transmittance = torch.cumprod(padded.view(n_rays, width), dim=-1).view(-1).index_select(0, flat)
    return transmittance * alpha, transmittance, alpha


@functools.cache
def _silence_csr_beta_warning() -> None:
    """torch warns once per process that sparse CSR support is "in beta" (CSR @ dense on CPU is
    what is used here, and is tested): trigger that one warning here, silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1),
                                size=(1, 1), check_invariants=False)


def _csr_rows(weights: Tensor, offsets: Tensor) -> Tensor:
    """The ``[R, M]`` sparse matrix whose row ``r`` holds ray ``r``'s weights, in CSR form: the
    row pointers are ``offsets``, the columns ``0 … M−1``, the values the weights (not copied)."""
    _silence_csr_beta_warning()
    m = weights.shape[0]
    # int32 indices where they fit: the CPU (MKL) product converts int64 ones on every call.
    index_dtype = torch.int32 if m < 2**31 else torch.int64
    cols = torch.arange(m, device=weights.device, dtype=index_dtype)
    return torch.sparse_csr_tensor(offsets.to(index_dtype), cols, weights.detach(),
                                   size=(offsets.shape[0] - 1, m), check_invariants=False)


class _PackedWeightedSum(torch.autograd.Function):
    """``Σ_{i ∈ ray r} w_i v_i`` ``[R, C]`` as one sparse-dense product ``W @ V``, ``W`` the CSR
    matrix of the weights (:func:`_csr_rows`): one pass, no ``[M, C]`` product temporary.
    Backward, with ``G_i`` the output gradient of sample i's ray: ``∂w_i = G_i · v_i``,
    ``∂v_i = w_i G_i``."""

    @staticmethod
    def forward(ctx, weights: Tensor, values: Tensor, csr: Tensor,  # type: ignore[override]
                ray_indices: Tensor) -> Tensor:
        ctx.save_for_backward(weights, values, ray_indices)
        return torch.mm(csr, values)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        weights, values, ray_indices = ctx.saved_tensors
        # [C, M]: gathering columns of the transposed gradient is ~5× faster than gathering the
        # short rows of [R, C].
        per_sample = grad.t().contiguous().index_select(1, ray_indices)
        grad_w = (per_sample * values.t()).sum(0) if ctx.needs_input_grad[0] else None
        grad_v = (per_sample * weights).t() if ctx.needs_input_grad[1] else None
        return grad_w, grad_v, None, None


def _use_csr(weights: Tensor, values: Tensor) -> bool:
    """CSR @ dense where it is measured (CPU, float32/64); elsewhere a segment sum."""
    return (weights.device.type == "cpu" and weights.dtype == values.dtype
            and weights.dtype in (torch.float32, torch.float64))


def _segment_sum(
    weights: Tensor, values: Tensor | None, ray_indices: Tensor, offsets: Tensor
) -> Tensor:
    """Packed per-ray ``Σ w_i`` ``[R]`` or ``Σ w_i v_i`` ``[R, C]`` (``offsets`` from
    :func:`_ray_offsets`; rays without samples get 0)."""
    if values is None:
        return torch.segment_reduce(weights, "sum", offsets=offsets)
    if _use_csr(weights, values):
        return _PackedWeightedSum.apply(weights, values.contiguous(),
                                        _csr_rows(weights, offsets), ray_indices)
    return torch.segment_reduce(weights[:, None] * values, "sum", offsets=offsets)


def accumulate(
    weights: Float[Tensor, "*batch"],
    values: Float[Tensor, "*batch C"] | None = None,
    ray_indices: Int[Tensor, " M"] | None = None,
    n_rays: int | None = None,
) -> Float[Tensor, "R ..."]:
    """Per-ray sums ``Σ_i w_i v_i`` (opacity ``Σ_i w_i`` when ``values`` is None).

    Batched weights ``[R, S]`` sum over ``S``; packed weights ``[M]`` (``ray_indices`` sorted)
    are summed per ray segment into ``n_rays`` rows (rays without samples get 0). For depth
    pass ``t_mid[..., None]``.

    Returns:
        ``[R]`` when ``values`` is None, else ``[R, C]``.

    Example:
        >>> w = torch.tensor([[0.5, 0.25]])
        >>> accumulate(w).tolist(), accumulate(w, torch.tensor([[[1.0], [2.0]]])).tolist()
        ([0.75], [[1.0]])
    """
    _check_packed(ray_indices, n_rays, weights)
    if ray_indices is None:
        if values is None:
            return weights.sum(dim=-1)
        # [R, 1, S] @ [R, S, C]: one batched matmul, no [R, S, C] temporary.
        return torch.matmul(weights.unsqueeze(-2), values).squeeze(-2)
    assert n_rays is not None
    return _segment_sum(weights, values, ray_indices, _ray_offsets(ray_indices, n_rays))


def composite(
    weights: Float[Tensor, "*batch"],
    rgb: Float[Tensor, "*batch 3"],
    t_mid: Float[Tensor, "*batch"],
    background: Background = None,
    ray_indices: Int[Tensor, " M"] | None = None,
    n_rays: int | None = None,
) -> tuple[Float[Tensor, "R 3"], Float[Tensor, " R"], Float[Tensor, " R"]]:
    """Colour, depth and opacity of each ray, over a background.

        opacity = Σ w_i,   rgb = Σ w_i c_i + (1 − opacity) · background,   depth = Σ w_i t_mid_i.

    ``depth`` is the *accumulated* (not normalised) expected depth, as nerfacc returns it; divide
    by ``opacity`` for the depth of the visible surface. ``background`` is None (black), a float,
    an ``[3]`` colour or per-ray colours ``[R, 3]``.

    Returns:
        ``(rgb [R, 3], depth [R], opacity [R])``.
    """
    if ray_indices is None:
        opacity = accumulate(weights)
        color = accumulate(weights, rgb)
        depth = accumulate(weights, t_mid[..., None])[:, 0]
    else:
        _check_packed(ray_indices, n_rays, weights)
        assert n_rays is not None
        offsets = _ray_offsets(ray_indices, n_rays)
        # Depth and opacity in one pass: Σ w [t, 1] (column copies: cheaper than a stack).
        t_one = t_mid.new_empty(t_mid.shape[0], 2)
        t_one[:, 0] = t_mid
        t_one[:, 1] = 1.0
        if _use_csr(weights, rgb) and _use_csr(weights, t_one):
            csr = _csr_rows(weights, offsets)  # shared by both products
            color = _PackedWeightedSum.apply(weights, rgb.contiguous(), csr, ray_indices)
            sums = _PackedWeightedSum.apply(weights, t_one, csr, ray_indices)
        else:
            color = _segment_sum(weights, rgb, ray_indices, offsets)
            sums = _segment_sum(weights, t_one, ray_indices, offsets)
        depth, opacity = sums[:, 0], sums[:, 1]
    if background is not None:
        bg = torch.as_tensor(background, dtype=color.dtype, device=color.device)
        color = color + (1.0 - opacity)[:, None] * bg
    return color, depth, opacity


def neus_alpha(
    sdf: Float[Tensor, " N"],
    gradients: Float[Tensor, "N 3"],
    dirs: Float[Tensor, "N 3"],
    deltas: Float[Tensor, " N"],
    inv_s: float | Float[Tensor, ""] | Float[Tensor, " N"],
    cos_anneal_ratio: float = 1.0,
) -> Float[Tensor, " N"]:
    """Discrete opacity of NeuS (Wang et al., "NeuS", NeurIPS 2021, eq. 13).

    With ``Φ_s(x) = sigmoid(s x)`` (the CDF of the logistic density of inverse spread ``s``),
    SDF ``f`` and gradient ``g`` at the interval midpoint, direction ``d`` and length ``δ``:

        c = −[ReLU(−(d·g)/2 + 1/2)(1 − r) + ReLU(−d·g) r]     (annealed cosine, r ∈ [0, 1])
        f_prev = f − c δ/2,   f_next = f + c δ/2
        α = clip((Φ_s(f_prev) − Φ_s(f_next) + ε) / (Φ_s(f_prev) + ε), 0, 1),   ε = 1e-5.

    At ``r = 1`` the cosine is the true ``d·g`` on front faces (clamped to 0 on back faces), so α
    is the exact opacity of a plane; ``r < 1`` early in training keeps α non-zero everywhere.
    Feed α to :func:`weights_from_alpha`. The learned ``s`` is a parameter of the model
    (``fields.neus.LearnedVariance``, ``s = exp(10·v)``); this function only takes its value.

    Example:
        >>> a = neus_alpha(torch.tensor([0.0]), torch.tensor([[0.0, 0.0, 1.0]]),
        ...                torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([0.2]), 1000.0)
        >>> round(a.item(), 4)
        1.0
    """
    cos = (dirs * gradients).sum(dim=-1)
    r = cos_anneal_ratio
    iter_cos = -(torch.relu(-cos * 0.5 + 0.5) * (1.0 - r) + torch.relu(-cos) * r)
    half = iter_cos * deltas * 0.5
    prev_cdf = torch.sigmoid((sdf - half) * inv_s)
    next_cdf = torch.sigmoid((sdf + half) * inv_s)
    eps = 1e-5
    return ((prev_cdf - next_cdf + eps) / (prev_cdf + eps)).clip(0.0, 1.0)


@dataclass
class VolumeRender:
    """What :func:`render_rays` returns.

    Attributes:
        rgb: composited colour over the background ``[R, 3]``.
        depth: accumulated depth ``Σ w t_mid`` ``[R]``.
        opacity: ``Σ w`` ``[R]``.
        weights: per-sample weights, shaped like ``t_starts``.
    """

    rgb: Float[Tensor, "R 3"]
    depth: Float[Tensor, " R"]
    opacity: Float[Tensor, " R"]
    weights: Float[Tensor, "*batch"]


def render_rays(
    rgb_sigma_fn: RgbSigmaFn,
    rays_o: Float[Tensor, "R 3"],
    rays_d: Float[Tensor, "R 3"],
    t_starts: Float[Tensor, "*batch"],
    t_ends: Float[Tensor, "*batch"],
    ray_indices: Int[Tensor, " M"] | None = None,
    background: Background = None,
    chunk_size: int = 1 << 14,
) -> VolumeRender:
    """Evaluate a radiance field at the interval midpoints and composite (NeRF quadrature).

    ``rgb_sigma_fn(x [N, 3], d [N, 3]) -> (rgb [N, 3], sigma [N])`` is called on the points
    ``x = rays_o + t_mid · rays_d`` with their ray directions, in chunks of ``chunk_size``.
    Samples are batched ``[R, S]`` or packed ``[M]`` with ``ray_indices``.

    Example:
        >>> fog = lambda x, d: (torch.ones_like(x), torch.full_like(x[:, 0], 2.0))
        >>> o, d = torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]])
        >>> t0, t1 = sample_uniform(o, d, 0.0, 1.0, 8)
        >>> out = render_rays(fog, o, d, t0, t1, background=0.0)
        >>> round(out.opacity.item(), 4)  # 1 − exp(−2)
        0.8647
    """
    n_rays = rays_o.shape[0]
    t_mid = (t_starts + t_ends) * 0.5
    if ray_indices is None:
        if t_starts.dim() != 2 or t_starts.shape[0] != n_rays:
            raise ValueError(f"batched samples must be [R, S] with R={n_rays}; got "
                             f"{list(t_starts.shape)}")
        dirs = rays_d[:, None, :].expand(-1, t_mid.shape[1], -1).reshape(-1, 3)
        x = (rays_o[:, None, :] + t_mid[..., None] * rays_d[:, None, :]).reshape(-1, 3)
    else:
        dirs = rays_d[ray_indices]
        x = rays_o[ray_indices] + t_mid[:, None] * dirs
    rgbs, sigmas = [], []
    for xc, dc in zip(x.split(chunk_size), dirs.split(chunk_size)):
        c, s = rgb_sigma_fn(xc, dc)
        rgbs.append(c.reshape(-1, 3))
        sigmas.append(s.reshape(-1))
    if rgbs:
        rgb, sigma = torch.cat(rgbs), torch.cat(sigmas)
    else:
        rgb, sigma = x.new_zeros(0, 3), x.new_zeros(0)
    rgb = rgb.reshape(*t_mid.shape, 3).to(t_mid.dtype)
    sigma = sigma.reshape(t_mid.shape).to(t_mid.dtype)
    weights, _, _ = weights_from_density(sigma, t_starts, t_ends, ray_indices, n_rays)
    color, depth, opacity = composite(weights, rgb, t_mid, background, ray_indices, n_rays)
    return VolumeRender(rgb=color, depth=depth, opacity=opacity, weights=weights)


def sample_uniform(
    rays_o: Float[Tensor, "R 3"],
    rays_d: Float[Tensor, "R 3"],
    near: float | Float[Tensor, " R"],
    far: float | Float[Tensor, " R"],
    n: int,
    stratified: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, "R S"], Float[Tensor, "R S"]]:
    """``n`` contiguous intervals tiling ``[near, far]`` on every ray (batched).

    Deterministic: the edges are ``e_k = near + (far − near)·k/n``. Stratified (NeRF's jittered
    sampling): each interior edge moves uniformly within ``±½`` bin, ``e_k = near + (far −
    near)·(k − ½ + u_k)/n``, ``u_k ~ U[0, 1)`` per ray; the edges stay sorted, still tile
    ``[near, far]`` and the midpoints cover the segment continuously over draws.

    Returns:
        ``(t_starts, t_ends)``, each ``[R, n]``.
    """
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    r = rays_o.shape[0]
    kw = {"device": rays_o.device, "dtype": rays_o.dtype}
    near_t = torch.as_tensor(near, **kw).expand(r)[:, None]
    far_t = torch.as_tensor(far, **kw).expand(r)[:, None]
    u = torch.arange(n + 1, **kw).expand(r, n + 1)
    if stratified and n > 1:
        jitter = torch.rand(r, n - 1, generator=generator, device=rays_o.device,
                            dtype=rays_o.dtype) - 0.5
        u = torch.cat([u[:, :1], u[:, 1:-1] + jitter, u[:, -1:]], dim=1)
    edges = near_t + (far_t - near_t) * (u / n)
    return edges[:, :-1].contiguous(), edges[:, 1:].contiguous()


def sample_pdf(
    t_edges: Float[Tensor, "R B1"],
    weights: Float[Tensor, "R B"],
    n: int,
    deterministic: bool = True,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
) -> Float[Tensor, "R n"]:
    """Hierarchical (importance) sampling by inverse transform of a piecewise-constant pdf.

    Bin ``i`` = ``[t_edges_i, t_edges_{i+1}]`` gets probability ``p_i ∝ w_i + ε/B`` (ε keeps
    empty rays uniform); with ``F`` the cumulative distribution at the edges, each ``u`` maps to
    ``t = t_edges_i + (u − F_i)/(F_{i+1} − F_i) · (t_edges_{i+1} − t_edges_i)`` in the bin with
    ``F_i ≤ u < F_{i+1}`` (Mildenhall et al. 2020, §5.2; NeuS up-sampling). ``u`` is
    ``(k + ½)/n`` (deterministic, the quantiles) or sorted ``U[0, 1)`` draws. No gradient flows.

    Returns:
        sorted sample positions ``t`` ``[R, n]`` (points, not intervals).

    Example:
        >>> edges = torch.tensor([[0.0, 1.0, 2.0]])
        >>> sample_pdf(edges, torch.tensor([[0.0, 1.0]]), 2, eps=0.0).tolist()
        [[1.25, 1.75]]
    """
    if t_edges.shape[-1] != weights.shape[-1] + 1:
        raise ValueError(f"t_edges must have one more column than weights; got "
                         f"{list(t_edges.shape)} and {list(weights.shape)}")
    with torch.no_grad():
        w = weights.detach().clamp_min(0.0) + eps / weights.shape[-1]
        pdf = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-30)
        cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(dim=-1)], dim=-1)
        cdf[:, -1] = 1.0
        r = weights.shape[0]
        if deterministic:
            u = (torch.arange(n, device=weights.device, dtype=weights.dtype) + 0.5) / n
            u = u.expand(r, n).contiguous()
        else:
            u = torch.rand(r, n, generator=generator, device=weights.device,
                           dtype=weights.dtype).sort(dim=-1).values
        idx = torch.searchsorted(cdf, u, right=True).clamp(1, weights.shape[-1])
        lo, hi = idx - 1, idx
        cdf_lo, cdf_hi = cdf.gather(1, lo), cdf.gather(1, hi)
        t_lo, t_hi = t_edges.detach().gather(1, lo), t_edges.detach().gather(1, hi)
        frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp_min(1e-30)).clamp(0.0, 1.0)
        return t_lo + frac * (t_hi - t_lo)


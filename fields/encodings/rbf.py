"""Adaptive radial basis functions (Chen et al., "NeuRBF: A Neural Fields Representation with
Adaptive Radial Basis Functions", ICCV 2023, arXiv 2309.15426).

Vocabulary: ``x`` are query points ``[B, D]``; there are ``N`` kernels with centres ``c [N, D]``,
a shape each (``K [N, D, D]`` or ``s [N]``) and features ``w [N, F]``; ``U(x)`` are the ``k``
nearest centres of ``x`` (Euclidean), as long indices ``[B, k]``.

Kernels (``d = x − c_i``):

- ``ivq_a``, anisotropic inverse quadratic (paper Eq. 3): ``φ_i = 1 / (1 + dᵀ K_i d)`` with
  ``K_i = Σ_i⁻¹`` a full symmetric positive definite ``D×D`` matrix.
- ``nlin_s``, isotropic tent: ``φ_i = Π_j max(0, 1 − s_i·|d_j|)`` with one scalar ``s_i``.

Normalisation (Eq. 4, as released): ``φ̃_i = φ_i / (stopgrad(Σ_{k∈U(x)} φ_k) + 1e-8)``.
Multi-frequency sinusoidal composition (MSC, Eqs. 5–6): ``ψ_i = sin(φ̃_i · m)`` with fixed
``m_j = 2^{linspace(log2 m_l, log2 m_h, F)}``, and the feature ``r(x) = Σ_{i∈U(x)} ψ_i ⊙ w_i``.

Centres and shapes come from gradient-weighted K-Means (paper §3.3, supplementary B) and stay
frozen; only the features (and optionally a sine bias) are learnt.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

__all__ = [
    "AdaptiveRBFEncoding", "clamp_sigma", "ivq_a", "knn_indices", "msc_frequencies", "nlin_s",
    "normalise_responses", "rbf_kernel_budget", "rbf_params_per_kernel", "shape_from_sigma",
    "sobel_weights", "weighted_kmeans",
]

KERNELS = ("ivq_a", "nlin_s")
_MAX_CHUNK_ELEMENTS = 1 << 24  # query rows × centres per brute-force chunk (64 MB in float32)


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose from {KERNELS}")


def _shape_numel(in_dim: int, kernel: str) -> int:
    """Shape numbers per kernel: the ``D(D+1)/2`` unique entries of a symmetric K, or one s."""
    _check_kernel(kernel)
    return in_dim * (in_dim + 1) // 2 if kernel.endswith("_a") else 1


# --------------------------------------------------------------------------------------------
# Kernels, normalisation and MSC frequencies
# --------------------------------------------------------------------------------------------


def msc_frequencies(
    low: float, high: float, n: int, dtype: torch.dtype = torch.float64
) -> Float[Tensor, " n"]:
    """The MSC frequencies ``m_j = 2^{linspace(log2 low, log2 high, n)}`` (NeuRBF Eq. 5).

    The first and last entries are set to ``low`` and ``high`` exactly; ``n = 1`` gives
    ``[low]`` (as ``linspace`` would).

    Example:
        >>> msc_frequencies(1.0, 8.0, 4).tolist()
        [1.0, 2.0, 4.0, 8.0]
    """
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    if not (low > 0 and high > 0):
        raise ValueError(f"frequencies must be positive, got ({low}, {high})")
    m = 2.0 ** torch.linspace(math.log2(low), math.log2(high), n, dtype=torch.float64)
    m[0] = low
    if n > 1:
        m[-1] = high
    return m.to(dtype)


def ivq_a(d: Float[Tensor, "*B D"], K: Float[Tensor, "*B D D"]) -> Float[Tensor, "*B"]:
    """Anisotropic inverse quadratic ``φ = 1 / (1 + dᵀ K d)`` for offsets ``d = x − c``.

    Example:
        >>> ivq_a(torch.zeros(3, 2), torch.eye(2).expand(3, 2, 2)).tolist()
        [1.0, 1.0, 1.0]
    """
    q = torch.einsum("...i,...ij,...j->...", d, K, d)
    return 1.0 / (1.0 + q)


def nlin_s(d: Float[Tensor, "*B D"], s: Float[Tensor, "*B"]) -> Float[Tensor, "*B"]:
    """Isotropic tent ``φ = Π_j max(0, 1 − s·|d_j|)``; zero outside the box ``|d_j| < 1/s``.

    Example:
        >>> nlin_s(torch.tensor([[0.25, 0.0], [2.0, 0.0]]), torch.tensor([2.0, 2.0])).tolist()
        [0.5, 0.0]
    """
    return (1.0 - s[..., None] * d.abs()).clamp_min(0.0).prod(-1)


def normalise_responses(
    phi: Float[Tensor, "*B k"], detach_denominator: bool = True, eps: float = 1e-8
) -> Float[Tensor, "*B k"]:
    """``φ̃_i = φ_i / (Σ_k φ_k + eps)`` over the neighbourhood (last axis), NeuRBF Eq. 4.

    With ``detach_denominator`` (the released code) the sum is a constant for autograd, so
    ``∂φ̃_i/∂φ_j = δ_ij / (Σφ + eps)``: gradients skip the ``−φ_i ∇Σφ / (Σφ)²`` term. Use
    ``False`` when the true derivative is needed (SDF normals by autograd, gradcheck).

    Example:
        >>> normalise_responses(torch.tensor([[1.0, 3.0]])).tolist()
        [[0.25, 0.75]]
    """
    denom = phi.sum(-1, keepdim=True)
    if detach_denominator:
        denom = denom.detach()
    return phi / (denom + eps)


# --------------------------------------------------------------------------------------------
# Nearest centres
# --------------------------------------------------------------------------------------------


def _scipy_kdtree():
    try:
        from scipy.spatial import cKDTree
    except ImportError:  # pragma: no cover - scipy is a dependency, but keep the path optional
        return None
    return cKDTree


def knn_indices(
    x: Float[Tensor, "M D"],
    centres: Float[Tensor, "N D"],
    k: int,
    chunk: int | None = None,
    method: str = "brute",
    tree: object | None = None,
) -> Int[Tensor, "M k"]:
    """Indices of the ``k`` nearest ``centres`` of every row of ``x``, nearest first.

    Args:
        x: query points.
        centres: candidate centres (``k ≤ N``).
        k: neighbours per query.
        chunk: query rows per brute-force chunk; default ``min(2^16, 2^24 // N)``, so one chunk's
            distance matrix never exceeds 2^24 entries.
        method: ``"brute"`` (exact squared distances + ``topk``, any device), ``"kdtree"``
            (scipy's ``cKDTree``, CPU) or ``"auto"`` (the KD-tree on CPU when scipy imports).
        tree: a prebuilt ``cKDTree`` over ``centres`` to reuse (KD-tree path only).

    Ties (equidistant centres) may be broken differently by the two methods.

    Example:
        >>> c = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
        >>> knn_indices(torch.tensor([[0.9, 0.1]]), c, 2).tolist()
        [[1, 0]]
    """
    M, N = x.shape[0], centres.shape[0]
    if not 1 <= k <= N:
        raise ValueError(f"k must be in 1..{N} (the number of centres), got {k}")
    if method not in ("brute", "kdtree", "auto"):
        raise ValueError(f"unknown kNN method {method!r}; choose brute, kdtree or auto")
    x = x.detach()
    centres = centres.detach()
    if M == 0:
        return torch.zeros(0, k, dtype=torch.int64, device=x.device)
    kdtree = _scipy_kdtree() if method != "brute" else None
    if method == "kdtree" and kdtree is None:
        raise ImportError("method='kdtree' needs scipy")
    if kdtree is not None and (method == "kdtree" or x.device.type == "cpu"):
        if tree is None:
            tree = kdtree(centres.cpu().double().numpy())
        _, idx = tree.query(x.cpu().double().numpy(), k=k)
        return torch.as_tensor(idx, dtype=torch.int64).reshape(M, k).to(x.device)
    if x.dtype != centres.dtype:
        x = x.to(centres.dtype)
    rows = chunk or max(1, min(1 << 16, _MAX_CHUNK_ELEMENTS // N))
    out = torch.empty(M, k, dtype=torch.int64, device=x.device)
    for start in range(0, M, rows):
        xs = x[start : start + rows]
        # Exact squared differences per axis (no ‖x‖² − 2x·c + ‖c‖² cancellation), [rows, N].
        dist = (xs[:, :1] - centres[None, :, 0]).square()
        for j in range(1, x.shape[1]):
            dist += (xs[:, j : j + 1] - centres[None, :, j]).square()
        if k == 1:
            out[start : start + rows, 0] = dist.argmin(dim=1)
        else:
            out[start : start + rows] = dist.topk(k, dim=1, largest=False, sorted=True).indices
    return out


# --------------------------------------------------------------------------------------------
# Initialisation: Sobel weights and weighted K-Means
# --------------------------------------------------------------------------------------------


def sobel_weights(image: Float[Tensor, "H W C"]) -> Float[Tensor, "H W"]:
    """NeuRBF's image point weights: ``sqrt(Σ_c (G_x² + G_y²))`` of normalised Sobel gradients.

    The Sobel kernels are divided by 8, so a ramp rising by 1 per pixel has gradient 1; image
    borders are replicated.

    Example:
        >>> ramp = torch.arange(4.0).expand(4, 4)[..., None]  # rises by 1 per column
        >>> sobel_weights(ramp)[1:3, 1:3].tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """
    H, W, C = image.shape
    img = F.pad(image.permute(2, 0, 1)[:, None], (1, 1, 1, 1), mode="replicate")  # [C,1,H+2,W+2]
    gx = image.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    kernels = torch.stack([gx, gx.T])[:, None]  # [2, 1, 3, 3]: d/dcolumn, d/drow
    grads = F.conv2d(img, kernels)  # [C, 2, H, W]
    return grads.square().sum(dim=(0, 1)).sqrt()


def _assign_and_accumulate(
    x: Tensor, w: Tensor, centres: Tensor, chunk: int, knn_method: str, tree: object | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Hard assignment to the nearest centre, plus per-cluster ``Σ w`` and ``Σ w·x`` (float64)."""
    n, D = centres.shape
    assign = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    wsum = torch.zeros(n, dtype=torch.float64, device=x.device)
    xsum = torch.zeros(n, D, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        xs, ws = x[start : start + chunk], w[start : start + chunk]
        a = knn_indices(xs, centres, 1, method=knn_method, tree=tree)[:, 0]
        assign[start : start + chunk] = a
        wsum.index_add_(0, a, ws)
        xsum.index_add_(0, a, ws[:, None] * xs.to(torch.float64))
    return assign, wsum, xsum


def clamp_sigma(
    sigma: Float[Tensor, "n D D"],
    extent: float | tuple[float, ...] | Tensor | None = None,
    samples_per_axis: int | tuple[int, ...] | Tensor | None = None,
    max_correlation: float = 0.999,
    min_variance: float = 1e-10,
) -> Float[Tensor, "n D D"]:
    """Clamp kernel covariances as NeuRBF does before inverting them (supplementary B).

    - Diagonal: at most ``(ext/10)²`` when ``extent`` is given, at least ``(ext/N/2/100)²``
      when ``samples_per_axis`` (``N``) is given too, and always at least ``min_variance``
      (our floor, the empty-cluster value, so single-point clusters stay invertible).
    - Off-diagonal: ``|Σ_ab| ≤ max_correlation · sqrt(Σ_aa Σ_bb)``.
    - Safeguard (not in the paper): any matrix still not positive definite in float64 (possible
      only for D ≥ 3) keeps its clamped diagonal and drops its off-diagonal terms.

    Computed in float64, returned in ``sigma``'s dtype.

    Example:
        >>> s = clamp_sigma(torch.tensor([[[1.0, 2.0], [2.0, 1.0]]]), extent=2.0)
        >>> [round(v, 5) for v in s.flatten().tolist()]
        [0.04, 0.03996, 0.03996, 0.04]
    """
    n, D, _ = sigma.shape
    s = sigma.to(torch.float64)
    diag = s.diagonal(dim1=-2, dim2=-1)
    lo = torch.full((D,), float(min_variance), dtype=torch.float64, device=s.device)
    hi = torch.full((D,), math.inf, dtype=torch.float64, device=s.device)
    if extent is not None:
        ext = torch.as_tensor(extent, dtype=torch.float64, device=s.device).expand(D)
        hi = (ext / 10.0).square()
        if samples_per_axis is not None:
            per = torch.as_tensor(samples_per_axis, dtype=torch.float64, device=s.device).expand(D)
            lo = torch.maximum(lo, (ext / per / 2.0 / 100.0).square())
    diag = torch.minimum(torch.maximum(diag, lo), hi)
    bound = max_correlation * (diag[:, :, None] * diag[:, None, :]).sqrt()
    off = s - torch.diag_embed(s.diagonal(dim1=-2, dim2=-1))
    off = torch.minimum(torch.maximum(off, -bound), bound)
    out = off + torch.diag_embed(diag)
    bad = torch.linalg.cholesky_ex(out).info != 0
    if bool(bad.any()):
        out[bad] = torch.diag_embed(diag[bad])
    return out.to(sigma.dtype)


def weighted_kmeans(
    points: Float[Tensor, "P D"],
    weights: Float[Tensor, " P"],
    n_centres: int,
    iters: int = 10,
    alpha: float = 0.5,
    generator: torch.Generator | None = None,
    kernel: str = "ivq_a",
    extent: float | tuple[float, ...] | Tensor | None = None,
    samples_per_axis: int | tuple[int, ...] | Tensor | None = None,
    init_centres: Float[Tensor, "n D"] | None = None,
    clamp: bool = True,
    chunk_size: int = 1 << 16,
    knn_method: str = "auto",
) -> tuple[Float[Tensor, "n D"], Float[Tensor, "n D D"]]:
    """Gradient-weighted K-Means placing RBF centres and shapes (NeuRBF §3.3, supp. B).

    1. Weights are divided by their mean; points of weight 0 are dropped.
    2. Initial centres: ``n_centres`` points drawn with replacement, ``p ∝ w`` (or
       ``init_centres`` when given).
    3. ``iters`` Lloyd iterations: hard-assign every point to its nearest centre, then
       ``c_i = Σ_j a_ij w_j x_j / Σ_j a_ij w_j``; an empty cluster keeps its previous centre.
    4. ``Σ_i = [Σ_j a_ij w_j (x_j − c_i)(x_j − c_i)ᵀ / Σ_j a_ij w_j] / α`` from the last
       iteration's assignment (whose weighted means the final centres are; with ``iters = 0``,
       one assignment to the initial centres). Empty clusters get ``diag(1e-10)``; ``nlin``
       kernels multiply Σ by 4 (φ = ½ at distance √Σ); with ``clamp`` the result goes through
       :func:`clamp_sigma` (``extent`` / ``samples_per_axis`` give the diagonal bounds).

    Points are processed in chunks of ``chunk_size``; sums are accumulated in float64. Returns
    ``(centres [n, D], sigma [n, D, D])`` in ``points``' dtype.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> pts = torch.cat([torch.randn(50, 2) * 0.1 - 1, torch.randn(50, 2) * 0.1 + 1])
        >>> c, s = weighted_kmeans(pts, torch.ones(100), 2, generator=g)
        >>> sorted(round(v) for v in c[:, 0].tolist()), s.shape
        ([-1, 1], torch.Size([2, 2, 2]))
    """
    _check_kernel(kernel)
    if n_centres < 1:
        raise ValueError(f"n_centres must be ≥ 1, got {n_centres}")
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    w = weights.detach().to(torch.float64)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("weights must be finite and non-negative")
    mean = w.mean()
    if not mean > 0:
        raise ValueError("all weights are zero")
    w = w / mean
    keep = w > 0
    x = points.detach()[keep]
    w = w[keep]
    D = x.shape[1]
    if init_centres is None:
        cdf = torch.cumsum(w, 0)
        u = torch.rand(n_centres, generator=generator, dtype=torch.float64, device=x.device)
        pick = torch.searchsorted(cdf, u * cdf[-1], right=True).clamp_max(x.shape[0] - 1)
        centres = x[pick].clone()
    else:
        centres = init_centres.detach().to(x.dtype).clone()
        if centres.shape[0] != n_centres:
            raise ValueError(f"init_centres has {centres.shape[0]} rows, expected {n_centres}")

    tree_cls = _scipy_kdtree() if knn_method != "brute" else None
    use_tree = tree_cls is not None and (knn_method == "kdtree" or x.device.type == "cpu")

    def assign_step(c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        tree = tree_cls(c.cpu().double().numpy()) if use_tree else None
        method = "kdtree" if use_tree else "brute"
        return _assign_and_accumulate(x, w, c, chunk_size, method, tree)

    assign, wsum = None, None
    for _ in range(iters):
        assign, wsum, xsum = assign_step(centres)
        filled = wsum > 0
        new = xsum[filled] / wsum[filled, None]
        centres = centres.clone()
        centres[filled] = new.to(centres.dtype)
    if assign is None:
        assign, wsum, _ = assign_step(centres)

    c64 = centres.to(torch.float64)
    cov = torch.zeros(n_centres, D, D, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk_size):
        a = assign[start : start + chunk_size]
        diff = x[start : start + chunk_size].to(torch.float64) - c64[a]
        ws = w[start : start + chunk_size]
        cov.index_add_(0, a, ws[:, None, None] * diff[:, :, None] * diff[:, None, :])
    filled = wsum > 0
    sigma = torch.empty_like(cov)
    sigma[filled] = cov[filled] / wsum[filled, None, None] / alpha
    sigma[~filled] = 1e-10 * torch.eye(D, dtype=torch.float64, device=x.device)
    if kernel.startswith("nlin"):
        sigma = sigma * 4.0
    if clamp:
        sigma = clamp_sigma(sigma, extent, samples_per_axis)
    return centres.to(points.dtype), sigma.to(points.dtype)


def shape_from_sigma(
    sigma: Float[Tensor, "n D D"], kernel: str = "ivq_a"
) -> Float[Tensor, "n D D"] | Float[Tensor, " n"]:
    """The stored kernel shape for covariances ``Σ``.

    - ``ivq_a``: ``K = Σ⁻¹``, inverted in float64 and symmetrised, then cast to Σ's dtype.
    - ``nlin_s``: one scalar per kernel, ``s = 1 / sqrt(mean_j Σ_jj)`` — the inverse RMS radius.
      Of the two natural scalars this gives the wider support (by Jensen it never exceeds
      ``mean_j 1/sqrt(Σ_jj)``), so fewer points fall outside all ``k`` tents.

    Example:
        >>> shape_from_sigma(torch.eye(2)[None] * 4.0).tolist()
        [[[0.25, 0.0], [0.0, 0.25]]]
        >>> shape_from_sigma(torch.eye(2)[None] * 4.0, "nlin_s").tolist()
        [0.5]
    """
    _check_kernel(kernel)
    s64 = sigma.to(torch.float64)
    if kernel == "ivq_a":
        K = torch.linalg.inv(s64)
        return (0.5 * (K + K.transpose(-1, -2))).to(sigma.dtype)
    return s64.diagonal(dim1=-2, dim2=-1).mean(-1).rsqrt().to(sigma.dtype)


# --------------------------------------------------------------------------------------------
# Parameter budget
# --------------------------------------------------------------------------------------------


def rbf_params_per_kernel(in_dim: int, feature_dim: int, kernel: str) -> int:
    """Parameters per kernel, frozen ones included: ``F + D + n_shape`` with ``n_shape`` the
    ``D(D+1)/2`` unique entries of a symmetric K (``_a`` kernels) or 1 (``_s`` kernels).

    Example:
        >>> rbf_params_per_kernel(2, 32, "ivq_a"), rbf_params_per_kernel(3, 16, "nlin_s")
        (37, 20)
    """
    return feature_dim + in_dim + _shape_numel(in_dim, kernel)


def rbf_kernel_budget(
    reference_params: int, other_params: int, in_dim: int, feature_dim: int, kernel: str
) -> int:
    """NeuRBF's ``n_kernel = 'auto'``: ``(reference − other) // (F + D + n_shape)``.

    ``reference_params`` is the budget (e.g. an Instant-NGP's grid + MLP), ``other_params`` the
    NeuRBF model without its kernels (grid, decoder, bias). Never negative.

    Example:
        >>> rbf_kernel_budget(10_000, 2_600, 2, 32, "ivq_a")
        200
    """
    per = rbf_params_per_kernel(in_dim, feature_dim, kernel)
    return max(0, (int(reference_params) - int(other_params)) // per)


# --------------------------------------------------------------------------------------------
# The encoding
# --------------------------------------------------------------------------------------------


class AdaptiveRBFEncoding(nn.Module):
    """NeuRBF's adaptive RBF feature ``r(x) = Σ_{i∈U(x)} sin(φ̃_i(x)·m) ⊙ w_i`` (Chen et al.,
    ICCV 2023, Eqs. 3–6).

    Centres (``centres [N, D]``) and shapes (``K [N, D, D]`` for ``ivq_a``, ``s [N]`` for
    ``nlin_s``) are frozen buffers; the features ``features [N, F]`` (init ``U(±init_scale)``)
    are learnt. :meth:`num_parameters` counts the frozen centres and shapes too (``D(D+1)/2``
    numbers for a symmetric K), as NeuRBF's parameter budgets do.

    Construction gives ``N`` placeholder kernels (uniform random centres in ``bounds`` with an
    isotropic shape of the mean kernel spacing), so a model can be built — and a checkpoint
    loaded — before the data is seen. Place the kernels with :meth:`init_from_signal`
    (gradient-weighted K-Means, the method), :meth:`init_lattice` (a regular lattice, the
    non-adaptive ablation) or :meth:`set_kernels`; or build directly with :meth:`from_signal` /
    :meth:`from_kernels`.

    Args:
        num_kernels: N.
        in_dim: D.
        features: F, channels per kernel (= ``out_dim``).
        kernel: ``"ivq_a"`` or ``"nlin_s"``.
        k: neighbours per query (clipped to N).
        msc: ``(m_l, m_h)`` for the MSC frequencies, or ``None`` for the no-MSC ablation
            (``ψ = φ̃`` broadcast over F: m = 1 and no sine).
        normalise: use ``φ̃ = φ / (Σ_{U(x)} φ + 1e-8)`` (NeuRBF: on for images and SDFs).
        detach_denominator: treat that sum as a constant for autograd (the released code).
        msc_bias: the paper's form ``sin(φ̃·m + b)`` with a learnt ``b [F]`` (init
            ``U(±init_scale)``); the released code (default) has no bias inside the sine.
        bounds: ``(lo, hi)`` of the domain box (placeholder centres and the lattice).
        init_scale: half-width of the uniform feature initialisation.
        knn_method: ``"auto"``, ``"brute"`` or ``"kdtree"`` (see :func:`knn_indices`).
        dtype: dtype of centres, shapes and features.
        generator: random generator for the initialisation.

    The kNN is a piecewise-constant function of ``x``; gradients flow through ``φ`` only.
    Indices from :meth:`cache_neighbours` stay valid while the centres are frozen.

    Example:
        >>> enc = AdaptiveRBFEncoding(16, 2, features=8)
        >>> enc(torch.zeros(5, 2)).shape, enc.num_parameters()  # 16·(8 + 2 + 3)
        (torch.Size([5, 8]), 208)
    """

    def __init__(
        self,
        num_kernels: int,
        in_dim: int,
        features: int = 32,
        kernel: str = "ivq_a",
        k: int = 4,
        msc: tuple[float, float] | None = (2.0**-3, 2.0**12),
        normalise: bool = True,
        detach_denominator: bool = True,
        msc_bias: bool = False,
        bounds: tuple[float, float] = (-1.0, 1.0),
        init_scale: float = 1e-4,
        knn_method: str = "auto",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        _check_kernel(kernel)
        if num_kernels < 1 or in_dim < 1:
            raise ValueError(f"need num_kernels ≥ 1 and in_dim ≥ 1, got {num_kernels}, {in_dim}")
        N, D = num_kernels, in_dim
        self.in_dim, self.num_kernels, self.out_dim = D, N, features
        self.kernel, self.k = kernel, min(k, N)
        self.msc = None if msc is None else (float(msc[0]), float(msc[1]))
        self.normalise, self.detach_denominator = normalise, detach_denominator
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.knn_method = knn_method
        lo, hi = self.bounds
        centres = torch.rand(N, D, generator=generator, dtype=torch.float64) * (hi - lo) + lo
        spacing = (hi - lo) / N ** (1.0 / D)
        sigma = torch.eye(D, dtype=torch.float64).expand(N, D, D) * spacing**2
        sigma = sigma * 4.0 if kernel.startswith("nlin") else sigma
        self.register_buffer("centres", centres.to(dtype))
        self.register_buffer("K" if kernel == "ivq_a" else "s", shape_from_sigma(sigma, kernel)
                             .to(dtype).contiguous())
        if self.msc is not None:
            m = msc_frequencies(self.msc[0], self.msc[1], features)
            self.register_buffer("m", m.to(dtype), persistent=False)
        self.features = nn.Parameter(
            torch.empty(N, features, dtype=dtype).uniform_(-init_scale, init_scale,
                                                          generator=generator)
        )
        self.sine_bias = None
        if msc_bias:
            self.sine_bias = nn.Parameter(
                torch.empty(features, dtype=dtype).uniform_(-init_scale, init_scale,
                                                            generator=generator)
            )
        self.register_buffer("neighbour_cache", None, persistent=False)
        self._tree: object | None = None
        self._tree_key: tuple | None = None

    # -- placing the kernels -------------------------------------------------------------------

    @torch.no_grad()
    def set_kernels(
        self, centres: Float[Tensor, "N D"], shape: Float[Tensor, "N D D"] | Float[Tensor, " N"]
    ) -> AdaptiveRBFEncoding:
        """Replace the frozen centres and shapes (``K = Σ⁻¹`` or ``s``, see
        :func:`shape_from_sigma`) in place; drops the neighbour cache. Returns ``self``."""
        N, D = self.num_kernels, self.in_dim
        want = (N, D, D) if self.kernel == "ivq_a" else (N,)
        if tuple(centres.shape) != (N, D) or tuple(shape.shape) != want:
            raise ValueError(
                f"{self.kernel} with N={N}, D={D} needs centres {(N, D)} and shape {want}, got "
                f"{tuple(centres.shape)} and {tuple(shape.shape)}"
            )
        self.centres.copy_(centres)
        self.shape_params.copy_(shape)
        self.neighbour_cache = None
        self._tree = self._tree_key = None
        return self

    def init_from_signal(
        self,
        points: Float[Tensor, "P D"],
        weights: Float[Tensor, " P"],
        alpha: float = 0.5,
        iters: int = 10,
        generator: torch.Generator | None = None,
        extent: float | tuple[float, ...] | Tensor | None = None,
        samples_per_axis: int | tuple[int, ...] | Tensor | None = None,
    ) -> AdaptiveRBFEncoding:
        """Place the kernels by :func:`weighted_kmeans` on ``(points, weights)`` (e.g. pixel
        centres and :func:`sobel_weights`), in place; the features are kept. Returns ``self``."""
        centres, sigma = weighted_kmeans(
            points, weights, self.num_kernels, iters=iters, alpha=alpha, generator=generator,
            kernel=self.kernel, extent=extent, samples_per_axis=samples_per_axis,
        )
        return self.set_kernels(centres, shape_from_sigma(sigma, self.kernel))

    def init_lattice(
        self,
        extent: float | tuple[float, ...] | Tensor | None = None,
        samples_per_axis: int | tuple[int, ...] | Tensor | None = None,
    ) -> AdaptiveRBFEncoding:
        """Non-adaptive kernels (the ablation): centres on a regular lattice over ``bounds``.

        The lattice has ``n = ⌈N^{1/D}⌉`` cell centres per axis (spacing ``h = (hi − lo)/n``); when
        ``n^D > N``, ``N`` of them are taken at evenly spaced row-major positions. Every kernel
        gets ``Σ = h² I`` (×4 for ``nlin`` kernels), clamped like K-Means shapes with ``extent``
        (default: the bounds' width) and ``samples_per_axis``. Returns ``self``."""
        N, D = self.num_kernels, self.in_dim
        lo, hi = self.bounds
        n = math.ceil(N ** (1.0 / D) - 1e-9)
        h = (hi - lo) / n
        axis = lo + (torch.arange(n, dtype=torch.float64) + 0.5) * h
        grid = torch.stack(torch.meshgrid(*[axis] * D, indexing="ij")[::-1], -1).reshape(-1, D)
        pick = torch.linspace(0, grid.shape[0] - 1, N, dtype=torch.float64).round().long()
        sigma = torch.eye(D, dtype=torch.float64).expand(N, D, D) * h**2
        sigma = sigma * 4.0 if self.kernel.startswith("nlin") else sigma
        sigma = clamp_sigma(sigma, hi - lo if extent is None else extent, samples_per_axis)
        return self.set_kernels(grid[pick], shape_from_sigma(sigma, self.kernel))

    @classmethod
    def from_kernels(
        cls,
        centres: Float[Tensor, "N D"],
        shape: Float[Tensor, "N D D"] | Float[Tensor, " N"],
        **kwargs,
    ) -> AdaptiveRBFEncoding:
        """An encoding with the given centres and shapes (``kwargs`` go to the constructor; the
        dtype defaults to the centres')."""
        kwargs.setdefault("dtype", centres.dtype)
        enc = cls(centres.shape[0], centres.shape[1], **kwargs)
        return enc.set_kernels(centres, shape).to(centres.device)

    @classmethod
    def from_signal(
        cls,
        points: Float[Tensor, "P D"],
        weights: Float[Tensor, " P"],
        n_kernels: int,
        alpha: float = 0.5,
        iters: int = 10,
        extent: float | tuple[float, ...] | Tensor | None = None,
        samples_per_axis: int | tuple[int, ...] | Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> AdaptiveRBFEncoding:
        """An encoding of ``n_kernels`` kernels placed by :meth:`init_from_signal` (``kwargs``,
        e.g. ``kernel`` and ``features``, go to the constructor)."""
        kwargs.setdefault("dtype", points.dtype)
        enc = cls(n_kernels, points.shape[1], generator=generator, **kwargs)
        enc.init_from_signal(points, weights, alpha=alpha, iters=iters, generator=generator,
                             extent=extent, samples_per_axis=samples_per_axis)
        return enc.to(points.device)

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def shape_params(self) -> Tensor:
        """The frozen kernel shapes: ``K [N, D, D]`` or ``s [N]``."""
        return self.K if self.kernel == "ivq_a" else self.s

    def num_parameters(self) -> int:
        """Learnt features (and sine bias) plus the frozen centres and shapes (``N·D(D+1)/2``
        for symmetric K, ``N`` for s)."""
        n = self.features.numel() + self.centres.numel()
        n += self.num_kernels * _shape_numel(self.in_dim, self.kernel)
        return n + (self.sine_bias.numel() if self.sine_bias is not None else 0)

    def extra_repr(self) -> str:
        msc = "off" if self.msc is None else f"[{self.msc[0]:g}, {self.msc[1]:g}]"
        return (
            f"N={self.num_kernels}, D={self.in_dim}, F={self.out_dim}, kernel={self.kernel!r}, "
            f"k={self.k}, msc={msc}, normalise={self.normalise}, "
            f"detach_denominator={self.detach_denominator}, sine_bias={self.sine_bias is not None}"
        )

    # -- neighbours ----------------------------------------------------------------------------

    def _kdtree(self) -> object | None:
        """A cached ``cKDTree`` over the centres (rebuilt if they were moved or modified)."""
        cls = _scipy_kdtree()
        if cls is None or self.knn_method == "brute" or (
            self.knn_method == "auto" and self.centres.device.type != "cpu"
        ):
            return None
        key = (self.centres.data_ptr(), self.centres._version, self.centres.device)
        if self._tree is None or self._tree_key != key:
            self._tree = cls(self.centres.detach().cpu().double().numpy())
            self._tree_key = key
        return self._tree

    def neighbours(self, x: Float[Tensor, "B D"]) -> Int[Tensor, "B k"]:
        """``U(x)``: indices of the ``k`` nearest centres ``[B, k]``."""
        tree = self._kdtree()
        method = "kdtree" if tree is not None else "brute"
        return knn_indices(x, self.centres, self.k, method=method, tree=tree)

    def cache_neighbours(self, points: Float[Tensor, "P D"]) -> Int[Tensor, "P k"]:
        """Compute and keep ``U(points)`` for a fixed training set (``self.neighbour_cache``);
        pass ``neighbour_cache[batch]`` to :meth:`forward` instead of recomputing."""
        self.neighbour_cache = self.neighbours(points)
        return self.neighbour_cache

    # -- evaluation ----------------------------------------------------------------------------

    def responses(
        self, x: Float[Tensor, "B D"], neighbours: Int[Tensor, "B k"] | None = None
    ) -> Float[Tensor, "B k"]:
        """Kernel responses over ``U(x)``, normalised when ``normalise`` is on."""
        idx = self.neighbours(x) if neighbours is None else neighbours
        d = x[:, None, :] - self.centres.to(x.dtype)[idx]  # [B, k, D]
        if self.kernel == "ivq_a":
            phi = ivq_a(d, self.K.to(x.dtype)[idx])
        else:
            phi = nlin_s(d, self.s.to(x.dtype)[idx])
        if self.normalise:
            phi = normalise_responses(phi, self.detach_denominator)
        return phi

    def forward(
        self, x: Float[Tensor, "B D"], neighbours: Int[Tensor, "B k"] | None = None
    ) -> Float[Tensor, "B F"]:
        idx = self.neighbours(x) if neighbours is None else neighbours
        phi = self.responses(x, idx)  # [B, k]
        w = F.embedding(idx, self.features)  # [B, k, F]
        if self.msc is None:
            return (phi[..., None] * w).sum(1)
        arg = phi[..., None] * self.m.to(phi.dtype)  # [B, k, F]
        if self.sine_bias is not None:
            arg = arg + self.sine_bias
        return (torch.sin(arg) * w).sum(1)

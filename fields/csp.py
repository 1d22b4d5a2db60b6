"""Closest-surface-point (CSP) fields for open and closed surfaces.

Vocabulary: ``x`` query points ``[N, 3]``; ``csp`` ``[N, 3]`` their closest surface points;
``udf`` ``[N]`` the unsigned distance; normals ``[N, 3]``.

CSP-Net (Venkatesh et al., "Deep Implicit Surface Point Prediction Networks", ICCV 2021,
arXiv 2106.05779) represents a surface ``S`` by a network that maps any point to its closest
point on ``S``. Nothing assumes an inside, so open sheets (garments, scans with holes) are as
easy as closed shapes. Everything else derives from ``CSP``:

* unsigned distance ``u(x) = ‖x − CSP(x)‖`` (:func:`udf_from_csp`);
* the off-surface ("direct") normal ``n(x) = (x − CSP(x)) / u(x)`` (:func:`normal_direct`),
  unsigned: it points from the surface towards ``x`` and equals ``∇u`` for an exact CSP; it is
  ``0/0`` on the surface, so take it a little off the surface;
* the on-surface ("Jacobian") normal (:func:`normal_jacobian`): for an exact CSP of a smooth
  surface, ``J = ∂CSP/∂x`` at a surface point is the orthogonal projector onto the tangent plane,
  rank 2, and the normal spans its null space. With ``J = U S Vᵀ`` the normal is ``±v₃``, the
  right singular vector of the smallest singular value (equivalently ``v₁ × v₂``). Unlike ``∇u``
  it stays defined exactly on the surface: ``CSP`` is smooth across a smooth surface even though
  ``u`` has a kink there. Its sign is arbitrary; orient it (e.g. towards the camera) before use.

:class:`CSPField` is ``CSP(x) = x − MLP([x, enc(x)])`` (``residual=True``, the default) or
``CSP(x) = MLP([x, enc(x)])`` (``residual=False``, the paper's parametrisation). Both output the
closest point; the residual form predicts the displacement ``x − CSP(x) = u·n`` internally and
starts as the identity (exact on the surface). In 2 k-step fits of a sphere (4 × 128, Softplus,
``[−1, 1]³``) the two forms are close: residual UDF error 0.92e-3, identity error 1.4e-3,
Jacobian normal 2.3°; direct 1.03e-3, 1.8e-3, 1.8°. The paper's single-shape MLP is
``3 → 120 → 512 → … → 128 → 3`` (ReLU, Xavier-uniform, bias 0.01), trained with
``mean ‖CSP(x) − CSP_gt(x)‖²``; this module offers any width/depth, an optional encoding (hash
grid, frequencies — as :class:`fields.sdf.SDFField`) and ReLU or Softplus. A ReLU MLP has a
piecewise-constant Jacobian, so its Jacobian normals are faceted; Softplus gives a smooth ``J``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fields.networks import MLP

__all__ = [
    "CSPField", "udf_from_csp", "normal_direct", "normal_jacobian", "csp_jacobian", "udf_fn",
]

CSPFn = Callable[[Tensor], Tensor]
"""A closest-point callable: ``[N, 3] -> [N, 3]``, point-wise (no coupling across the batch)."""


def udf_from_csp(x: Float[Tensor, "N 3"], csp: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
    """Unsigned distance ``u = ‖x − csp‖``.

    Example:
        >>> udf_from_csp(torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
        tensor([1.])
    """
    return torch.linalg.vector_norm(x - csp, dim=-1)


def normal_direct(
    x: Float[Tensor, "N 3"], csp: Float[Tensor, "N 3"], eps: float = 1e-12
) -> Float[Tensor, "N 3"]:
    """Off-surface normal ``(x − csp) / max(‖x − csp‖, eps)``, pointing from the surface to ``x``.

    Unsigned (it flips when ``x`` crosses the surface) and undefined on the surface: there the
    result is the zero vector (``‖x − csp‖ < eps``) or noise. Evaluate it a step off the surface.

    Example:
        >>> normal_direct(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]]))
        tensor([[0., 0., 1.]])
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    d = x - csp
    return d / torch.linalg.vector_norm(d, dim=-1, keepdim=True).clamp_min(eps)


def csp_jacobian(
    csp_fn: CSPFn, x: Float[Tensor, "N 3"], create_graph: bool = False
) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3 3"]]:
    """``CSP(x)`` and its Jacobian ``J[i, k, l] = ∂CSP_k(x_i)/∂x_l`` by three vector–Jacobian
    products (one backward pass per output coordinate; ``csp_fn`` must be point-wise)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        c = csp_fn(xg)
        if c.shape != x.shape:
            raise ValueError(f"csp_fn must map [N, 3] points to [N, 3] closest points; for "
                             f"N={x.shape[0]} it returned shape {list(c.shape)}")
        if not c.requires_grad:
            raise ValueError("csp_fn's output does not depend differentiably on x (no autograd "
                             "graph); the Jacobian normal needs a differentiable csp_fn")
        rows = [
            torch.autograd.grad(c[:, k].sum(), xg, retain_graph=create_graph or k < 2,
                                create_graph=create_graph)[0]
            for k in range(3)
        ]
    jac = torch.stack(rows, dim=1).to(x.dtype)
    return (c if create_graph else c.detach()).to(x.dtype), jac


def normal_jacobian(
    csp_fn: CSPFn, x: Float[Tensor, "N 3"], create_graph: bool = False
) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
    """On-surface normal from the singular vectors of the Jacobian of ``csp_fn`` at ``x``.

    ``J = ∂CSP/∂x`` (three vector–Jacobian products), ``J = U S Vᵀ`` by ``torch.linalg.svd`` in
    ``x``'s dtype (use float64 for tight checks); the normal is ``v₃``, the right singular vector
    of the smallest singular value. For an exact CSP on a smooth surface ``J`` is the tangent
    projector: ``S = (1, 1, 0)`` on the surface and ``v₃ = ±n``. Off the surface, at distance
    ``u`` along ``n`` on the convex side of a sphere of radius ``R``, ``J = R/(R+u) (I − n nᵀ)``,
    still with null vector ``n``.

    Args:
        csp_fn: ``[N, 3] -> [N, 3]``, differentiable and point-wise (a :class:`CSPField`, an
            analytic CSP, …).
        x: where to take the normal.
        create_graph: keep the graph (for losses on normals); otherwise results are detached.

    Returns:
        ``(normals, singular_values)``: unit normals with an arbitrary sign, and ``S`` in
        descending order (``S[:, 2]`` ≈ 0 means rank 2, the mark of a surface-like CSP).

    Example:
        >>> sphere = lambda x: x / x.norm(dim=-1, keepdim=True)
        >>> n, s = normal_jacobian(sphere, torch.tensor([[0.0, 0.6, 0.8]], dtype=torch.float64))
        >>> n.abs().round(decimals=6).tolist(), s.round(decimals=6).tolist()
        ([[0.0, 0.6, 0.8]], [[1.0, 1.0, 0.0]])
    """
    _, jac = csp_jacobian(csp_fn, x, create_graph=create_graph)
    _, s, vh = torch.linalg.svd(jac)
    return vh[:, 2, :], s


def udf_fn(field: nn.Module | CSPFn) -> Callable[[Tensor], Tensor]:
    """The unsigned distance ``x ↦ ‖x − CSP(x)‖`` of a :class:`CSPField` or any CSP callable,
    ready for :func:`renderer.sphere_trace.sphere_trace` with ``unsigned=True``.

    Example:
        >>> u = udf_fn(lambda x: x / x.norm(dim=-1, keepdim=True))
        >>> u(torch.tensor([[0.0, 3.0, 0.0]]))
        tensor([2.])
    """
    if isinstance(field, CSPField):
        return field.udf
    if not callable(field):
        raise TypeError(f"udf_fn needs a CSPField or a callable [N, 3] -> [N, 3], got "
                        f"{type(field).__name__}")
    return lambda x: udf_from_csp(x, field(x).to(x.dtype))


class CSPField(nn.Module):
    """``CSP(x) = x − MLP([x, enc(x)])`` (residual) or ``MLP([x, enc(x)])``: closest surface points.

    Args:
        encoding: ``None`` (the MLP sees raw ``x``) or any module with ``in_dim``, ``out_dim``
            and ``forward(x) -> [N, out_dim]`` (``PositionalEncoding``, ``HashGridEncoding``, …).
        hidden_dim: MLP width (128 in the acceptance tests; the paper's MLP is wider).
        num_hidden_layers: MLP depth.
        activation: ``"relu"`` (the paper's) or ``"softplus"`` (β = 100, smooth Jacobian).
        residual: predict the displacement ``x − CSP(x)`` and return ``x − displacement``;
            ``False`` outputs the closest point directly, as the paper's network.
        include_coords: feed ``x`` itself next to the encoding (ignored, always on, without one).
        chunk_size: points per chunk in :meth:`csp_chunked` and the normal methods.

    Initialisation: Xavier-uniform weights and biases 0.01, as the paper's code; with
    ``residual=True`` the last layer starts at zero so the untrained field is the identity.

    Example:
        >>> field = CSPField(hidden_dim=32, num_hidden_layers=2)
        >>> x = torch.rand(5, 3)
        >>> field.csp(x).shape, field.udf(x).shape, bool(torch.allclose(field.csp(x), x))
        (torch.Size([5, 3]), torch.Size([5]), True)
    """

    def __init__(
        self,
        encoding: nn.Module | None = None,
        hidden_dim: int = 128,
        num_hidden_layers: int = 4,
        activation: str = "relu",
        residual: bool = True,
        include_coords: bool = True,
        chunk_size: int = 1 << 14,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "softplus"):
            raise ValueError(f"CSPField activation must be 'relu' or 'softplus', got "
                             f"{activation!r}")
        if encoding is not None and getattr(encoding, "in_dim", 3) != 3:
            raise ValueError(f"the encoding must take 3-D points, its in_dim is {encoding.in_dim}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
        self.encoding = encoding
        self.include_coords = include_coords or encoding is None
        self.residual = residual
        self.chunk_size = chunk_size
        in_dim = (3 if self.include_coords else 0) + (0 if encoding is None else encoding.out_dim)
        self.mlp = MLP(in_dim, 3, hidden_dim, num_hidden_layers, activation=activation)
        with torch.no_grad():
            linears = self.mlp.linears
            for lin in linears:
                nn.init.xavier_uniform_(lin.weight)
                nn.init.constant_(lin.bias, 0.01)
            if residual:
                nn.init.zeros_(linears[-1].weight)
                nn.init.zeros_(linears[-1].bias)

    def features(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
        """The MLP's input: ``x``, ``enc(x)`` or both."""
        if self.encoding is None:
            return x
        h = self.encoding(x).to(x.dtype)
        return torch.cat([x, h], dim=-1) if self.include_coords else h

    def csp(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """Closest surface points of ``x`` (differentiable)."""
        out = self.mlp(self.features(x))
        return x - out if self.residual else out

    def forward(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        return self.csp(x)

    def udf(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """Unsigned distance ``‖x − CSP(x)‖`` (differentiable)."""
        return udf_from_csp(x, self.csp(x))

    @torch.no_grad()
    def csp_chunked(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """``csp(x)`` without gradients, in chunks of ``chunk_size`` points."""
        if x.shape[0] <= self.chunk_size:
            return self.csp(x)
        return torch.cat([self.csp(c) for c in x.split(self.chunk_size)])

    def normal(self, x: Float[Tensor, "N 3"], eps: float = 1e-12) -> Float[Tensor, "N 3"]:
        """Direct (off-surface) normal ``(x − CSP(x)) / u`` (see :func:`normal_direct`)."""
        return normal_direct(x, self.csp_chunked(x), eps)

    def _frozen_csp(self, x: Tensor) -> Tensor:
        # Only ∂CSP/∂x is wanted: detached parameters keep the backward passes off the weights.
        frozen = {k: v.detach() for k, v in self.named_parameters()}
        return torch.func.functional_call(self, frozen, (x,), strict=False)

    def normal_jacobian(
        self, x: Float[Tensor, "N 3"]
    ) -> tuple[Float[Tensor, "N 3"], Float[Tensor, "N 3"]]:
        """On-surface normal and singular values of ``∂CSP/∂x`` (see :func:`normal_jacobian`),
        in chunks, without touching the parameters' gradients."""
        parts = [normal_jacobian(self._frozen_csp, c) for c in x.split(self.chunk_size)]
        if not parts:
            return x.new_zeros(0, 3), x.new_zeros(0, 3)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

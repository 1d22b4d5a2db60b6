"""NAISR: a shape atlas with additive, per-covariate deformations of one template SDF.

NAISR (Jiao et al., "NAISR: A 3D Neural Additive Model for Interpretable Shape
Representation", ICLR 2024, arXiv 2303.09234) models a population of shapes whose variation is
partly explained by per-shape covariates ``c = (c_1 … c_N)`` (scaled to ``[−1, 1]``; 0 is the
template). One template SDF ``T`` and one deformation network ``g_i`` per covariate:

    d_i(p) = g_i(p, [c_i, z]) − g_i(p, [0, z])          (a displacement per covariate)
    s(p; c, z) = T(p + Σ_i d_i(p))                       (the shape's SDF)

``z`` is a per-shape latent code (DeepSDF-style auto-decoder) that absorbs what the covariates do
not explain; ``z = 0`` gives the population (covariate-only) prediction. By construction:
``c = 0`` ⇒ every ``d_i ≡ 0`` ⇒ ``s = T`` for any ``z``; ``∂d_i/∂c_j = 0`` for ``i ≠ j``; and
``c_j`` reaches the output only through ``g_j`` — each covariate's effect can be inspected and
swept alone.

Networks follow the released code's shapes, scaled by configuration: the template is a SIREN
with a tanh output whose first layer uses the hidden-layer init (``first_init="hidden"``); each
``g_i`` is a SIREN on ``concat(p, c_i, z)`` with a skip that re-concatenates ``p`` half way.
In training the reference value 0 is jittered with ``N(0, σ²)`` (``reference_jitter``), exactly 0
in eval mode. ``joint=True`` is the entangled negative control: one network sees every covariate.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fields.networks import Siren

__all__ = ["DisplacementNet", "AdditiveDeformationSDF", "LatentTable", "naisr_losses"]


class DisplacementNet(nn.Module):
    """``g(p, [c, z]) → R^d``: a SIREN on ``concat(p, c, z)`` with a skip that re-concatenates
    ``p`` after the first half of the sine layers; the last layer is linear."""

    def __init__(self, dim: int, n_cond: int, latent_dim: int, hidden_dim: int = 64,
                 num_hidden_layers: int = 3, omega0: float = 30.0) -> None:
        super().__init__()
        self.dim = dim
        half = max(1, num_hidden_layers // 2)
        self.head = Siren(dim + n_cond + latent_dim, hidden_dim - dim, hidden_dim=hidden_dim,
                          num_hidden_layers=half, omega0=omega0)
        self.tail = Siren(hidden_dim, dim, hidden_dim=hidden_dim,
                          num_hidden_layers=max(1, num_hidden_layers - half), omega0=omega0,
                          first_init="hidden")
        self.omega0 = omega0

    def forward(self, p: Tensor, cond: Tensor, z: Tensor) -> Tensor:
        h = torch.sin(self.omega0 * self.head(torch.cat([p, cond, z], dim=-1)))
        return self.tail(torch.cat([h, p], dim=-1))


class AdditiveDeformationSDF(nn.Module):
    """Template SDF + one additive displacement per covariate (module docstring).

    Args:
        dim: 2 or 3.
        n_covariates: ``N``.
        latent_dim: ``D`` of the shape codes.
        template_hidden, template_layers: the template SIREN.
        deform_hidden, deform_layers: each ``g_i``.
        omega0: SIREN ω₀ (30 in the released code).
        reference_jitter: σ of the training-only noise on the reference value 0.
        joint: the negative control — one network over all covariates jointly,
            ``d = g(p, [c, z]) − g(p, [0, z])`` (entangled).
    """

    def __init__(self, dim: int, n_covariates: int, latent_dim: int = 16, *,
                 template_hidden: int = 64, template_layers: int = 3, deform_hidden: int = 64,
                 deform_layers: int = 3, omega0: float = 30.0, reference_jitter: float = 1e-3,
                 joint: bool = False) -> None:
        super().__init__()
        if dim not in (2, 3) or n_covariates < 1 or latent_dim < 0:
            raise ValueError(f"need dim 2 or 3, n_covariates ≥ 1, latent_dim ≥ 0; got {dim}, "
                             f"{n_covariates}, {latent_dim}")
        self.dim, self.n_cov, self.latent_dim = dim, n_covariates, latent_dim
        self.reference_jitter, self.joint = reference_jitter, joint
        self.template = Siren(dim, 1, hidden_dim=template_hidden,
                              num_hidden_layers=template_layers, omega0=omega0,
                              first_init="hidden")
        n_nets = 1 if joint else n_covariates
        cond = n_covariates if joint else 1
        self.deformers = nn.ModuleList(
            DisplacementNet(dim, cond, latent_dim, deform_hidden, deform_layers, omega0)
            for _ in range(n_nets))

    def _broadcast(self, p: Tensor, c: Tensor, z: Tensor | None) -> tuple[Tensor, Tensor]:
        b = p.shape[0]
        c = c.to(p).expand(b, -1) if c.dim() == 1 or c.shape[0] == 1 else c.to(p)
        if c.shape != (b, self.n_cov):
            raise ValueError(f"covariates must be [{self.n_cov}] or [B, {self.n_cov}], got "
                             f"{list(c.shape)}")
        if z is None:
            z = p.new_zeros(b, self.latent_dim)
        z = z.to(p).expand(b, -1) if z.dim() == 1 or z.shape[0] == 1 else z.to(p)
        return c, z

    def _reference(self, like: Tensor) -> Tensor:
        if self.training and self.reference_jitter > 0:
            return self.reference_jitter * torch.randn_like(like)
        return torch.zeros_like(like)

    def displacements(self, p: Float[Tensor, "B d"], c: Tensor,
                      z: Tensor | None = None) -> Float[Tensor, "N B d"]:
        """``d_i(p)`` for every covariate (``[1, B, d]`` for the joint control)."""
        c, z = self._broadcast(p, c, z)
        if self.joint:
            return self._difference(self.deformers[0], p, c, z).unsqueeze(0)
        return torch.stack([self._difference(g, p, c[:, i:i + 1], z)
                            for i, g in enumerate(self.deformers)])

    def displacement(self, i: int, p: Tensor, c: Tensor, z: Tensor | None = None) -> Tensor:
        """``d_i(p)`` alone (one network evaluation pair)."""
        c, z = self._broadcast(p, c, z)
        return self._difference(self.deformers[i], p, c[:, i:i + 1], z)

    def _difference(self, g: DisplacementNet, p: Tensor, ci: Tensor, z: Tensor) -> Tensor:
        """``g(p, [c_i, z]) − g(p, [ref, z])`` in one batched evaluation (the two halves are the
        same rows when ``c_i`` is the reference)."""
        out = g(torch.cat([p, p]), torch.cat([ci, self._reference(ci)]), torch.cat([z, z]))
        return out[:len(p)] - out[len(p):]

    def sdf(self, p: Float[Tensor, "B d"], c: Tensor, z: Tensor | None = None
            ) -> Float[Tensor, " B"]:
        """``s(p; c, z) = T(p + Σ_i d_i(p))`` (tanh output, in ``(−1, 1)``)."""
        moved = p + self.displacements(p, c, z).sum(0)
        return self.template_sdf(moved)

    def template_sdf(self, p: Tensor) -> Tensor:
        """``T(p)``."""
        return torch.tanh(self.template(p)).squeeze(-1)

    def population_sdf(self, p: Tensor, c: Tensor) -> Tensor:
        """The covariates-only prediction: ``z = 0``."""
        return self.sdf(p, c, None)

    def inverse_residual(self, p: Tensor, c: Tensor, z: Tensor | None = None,
                         d: Tensor | None = None) -> Tensor:
        """``Σ_i |d_i(p) − d_i(p + d_i(p))|`` per point (inverse consistency); ``d`` reuses
        already computed displacements."""
        d = self.displacements(p, c, z) if d is None else d
        res = p.new_zeros(p.shape[0])
        for i in range(d.shape[0]):
            if self.joint:
                again = self.displacements(p + d[i], c, z)[0]
            else:
                again = self.displacement(i, p + d[i], c, z)
            res = res + torch.linalg.vector_norm(d[i] - again, dim=-1)
        return res


class LatentTable(nn.Module):
    """Auto-decoder shape codes ``z_k`` (DeepSDF), ``N(0, 1/D)`` init, rows kept at
    ``‖z‖ ≤ max_norm``.

    ``nn.Embedding(max_norm=…)`` (the released code) renormalises the *looked-up* rows in place
    during the forward pass, outside the optimiser. Here every row over the norm is renormalised
    in place at each lookup: the codes looked up are the same, and data-parallel replicas, which
    look up different rows, keep identical tables. (A differentiable clamp instead —
    ``z = w · min(1, max_norm/‖w‖)``, stored rows untouched — let the stored rows grow past the
    norm, where the clamp's gradient shrinks as ``1/‖w‖``: on the 2-D star-men the codes then
    stopped helping, held-out gain 24 % instead of 51 %.)
    """

    def __init__(self, n: int, dim: int, max_norm: float | None = 1.0) -> None:
        super().__init__()
        self.codes = nn.Embedding(n, dim)
        self.max_norm = max_norm
        with torch.no_grad():
            self.codes.weight.normal_(0.0, 1.0 / math.sqrt(max(dim, 1)))

    def forward(self, index: Tensor) -> Tensor:
        if self.max_norm is not None:
            with torch.no_grad():
                w = self.codes.weight
                w.mul_((self.max_norm / w.norm(dim=1, keepdim=True).clamp_min(1e-12))
                       .clamp(max=1.0))
        return self.codes(index)


def naisr_losses(model: AdditiveDeformationSDF, surface: Tensor, normals: Tensor, off: Tensor,
                 off_sdf: Tensor, c_surf: Tensor, c_off: Tensor, z_surf: Tensor | None,
                 z_off: Tensor | None, *, weights: dict[str, float] | None = None,
                 disentangle: bool = True, inverse: bool = True) -> dict[str, Tensor]:
    """NAISR's loss terms (released code's weights) on a batch of surface points (sdf = 0, with
    normals) and off-surface points (exact SDF), each with its shape's covariates and code:

    ``300·mean|ŝ|_Ω0 + 100·mean(1 − cos(∇ŝ, n))_Ω0 + 1000·mean|ŝ − s|_Ω+ + 100·mean|‖∇ŝ‖ − 1|``,
    the same four terms on the population prediction (``z = 0``, "…_pop"), and
    ``10·mean Σ_i |d_i(p) − d_i(p + d_i(p))|`` on the surface points, and — when
    ``weights["small"] > 0`` (0, off, by default as in the released code) — the
    small-deformation term ``Σ_i mean ‖d_i‖²`` on the surface points of the population
    prediction (``z = 0``; of the shape when there is none). All points (surface, off,
    and their ``z = 0`` copies) go through the networks in one batch. The code regulariser is
    the caller's (it depends on the epoch). Returns every term and ``total``.
    """
    w = {"surf": 300.0, "normal": 100.0, "off": 1000.0, "eik": 100.0, "inv": 10.0, "small": 0.0}
    w.update(weights or {})
    ns, no = surface.shape[0], off.shape[0]
    latent = model.latent_dim
    z_s = surface.new_zeros(ns, latent) if z_surf is None else z_surf.expand(ns, -1)
    z_o = off.new_zeros(no, latent) if z_off is None else z_off.expand(no, -1)
    pts, cov, codes = [surface, off], [c_surf.expand(ns, -1), c_off.expand(no, -1)], [z_s, z_o]
    population = disentangle and latent > 0
    if population:
        pts += [surface, off]
        cov += cov[:2]
        codes += [torch.zeros_like(z_s), torch.zeros_like(z_o)]
    x = torch.cat(pts).detach().requires_grad_(True)
    c_all, z_all = torch.cat(cov).to(x), torch.cat(codes).to(x)
    d = model.displacements(x, c_all, z_all)
    s_hat = model.template_sdf(x + d.sum(0))
    grad = torch.autograd.grad(s_hat.sum(), x, create_graph=True)[0]
    out: dict[str, Tensor] = {}
    total = s_hat.new_zeros(())
    for k, tag in enumerate(("", "_pop") if population else ("",)):
        base = k * (ns + no)
        s_s, s_o = s_hat[base:base + ns], s_hat[base + ns:base + ns + no]
        g_s, g_o = grad[base:base + ns], grad[base + ns:base + ns + no]
        terms = {
            "surf": s_s.abs().mean(),
            "normal": (1 - torch.nn.functional.cosine_similarity(g_s, normals, dim=-1)).mean(),
            "off": (s_o - off_sdf.clamp(-1, 1)).abs().mean(),
            "eik": torch.cat([g_s, g_o]).norm(dim=-1).sub(1).abs().mean(),
        }
        for name, v in terms.items():
            out[name + tag] = v
            total = total + w[name] * v
    if w["small"] > 0:
        # The released code's (disabled) small-deformation term: Σ_i mean ‖d_i‖² on the
        # surface points, here on the population prediction (z = 0) — what a covariate does
        # alone. Displacements tangent to the surface leave the SDF there unchanged, so nothing
        # else stops them drifting along the body; the codes' own deformations stay free.
        rows = slice(ns + no, 2 * ns + no) if population else slice(0, ns)
        out["small"] = d[:, rows].pow(2).sum(-1).mean(1).sum()
        total = total + w["small"] * out["small"]
    if inverse:
        p = x[:ns]
        out["inv"] = model.inverse_residual(p, c_all[:ns], z_all[:ns], d[:, :ns]).mean()
        total = total + w["inv"] * out["inv"]
    out["total"] = total
    return out

"""Linear relighting fields: appearance that is linear in the lights by construction.

URHand (Chen et al., "URHand: Universal Relightable Hands", CVPR 2024, arXiv 2401.05334) keeps
its neural appearance branch *exactly linear in the light intensities*: physics-inspired
shading features are computed per light, summed with the light intensities, and passed through a
light path with no bias, no activation, no normalisation and no clamp, whose intermediate
features are only *multiplied* by tensors that a non-linear, light-independent network
produces. A field trained on one-light-at-a-time (OLAT) images is then correct for any
combination of lights by superposition, and an environment map renders in one pass.

This module is the per-point form of that idea (a neural field queried at surface points; the
paper works per texel of a UV map):

1. **Shading basis** per point and light (:func:`shading_basis`, no parameters):
   ``φ_l = V_l · [max(n·ω_l, 0), [n·ω_l > 0]·max(n·h_l, 0)^p for p ∈ (1, 16, 32)]`` with
   ``h_l = normalise(ω_l − d)`` (Blinn–Phong lobes; Blinn, SIGGRAPH 1977) and visibility
   ``V_l``.
2. **Aggregation** per colour channel: ``Φ_c = Σ_l I_{l,c} φ_l`` (RGB lights run through the
   same linear path channel by channel, which linearity makes exact).
3. **Light-independent weights** ``g_θ(enc(x), n, v)``: an MLP producing the modulation
   ``M`` of the light path's hidden features, its per-channel output weights ``G`` and the
   physical branch's material (albedo, specular albedo, exponent). Nothing light-dependent
   enters it.
4. **Neural branch** (the linear lighting model): ``z_c = (Φ_c W₁) ⊙ M``, ``r_c = ⟨z_c, G_c⟩``
   — bias-free and activation-free in ``Φ``.
5. **Physical branch**: Blinn–Phong with the learned material,
   ``Σ_l I_l V_l (a/π · max(n·ω_l, 0) + k_s (s+8)/(8π) · max(n·h_l, 0)^s · [n·ω_l > 0])``,
   also linear in ``I``. The output is the sum of both branches (linear radiance; no clamp —
   tone mapping and clipping belong to display time).

Negative controls (constructor flags, for tests only) each break linearity: ``light_bias``
(a bias on the light path), ``light_relu`` (a ReLU on it), ``leak`` (``Φ`` fed into
``g_θ``), ``clamp`` (an output clamp at 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fields.networks import MLP

__all__ = ["SPEC_EXPONENTS", "shading_basis", "aggregate", "LinearRelightingField"]

SPEC_EXPONENTS = (1.0, 16.0, 32.0)
"""Blinn–Phong exponents of the basis' specular lobes (URHand's features)."""


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-12)


def _broadcast_lights(light_dirs: Tensor, n_points: int) -> Tensor:
    """``[L, 3]`` (shared) or ``[P, L, 3]`` (per point) → ``[P, L, 3]`` unit directions."""
    d = _unit(light_dirs)
    if d.dim() == 2:
        d = d.unsqueeze(0).expand(n_points, -1, -1)
    if d.dim() != 3 or d.shape[0] != n_points or d.shape[-1] != 3:
        raise ValueError(f"light_dirs must be [L, 3] or [P, L, 3] with P={n_points}, got "
                         f"{list(light_dirs.shape)}")
    return d


def _cosines(normals: Tensor, view_dirs: Tensor, light_dirs: Tensor) -> tuple[Tensor, Tensor]:
    """``(n·ω_l, max(n·h_l, 0))`` ``[P, L]`` with ``h_l = normalise(ω_l − d)``."""
    lights = _broadcast_lights(light_dirs.to(normals), normals.shape[0])
    n = normals.unsqueeze(1)
    half = _unit(lights - view_dirs.unsqueeze(1))
    return (n * lights).sum(-1), (n * half).sum(-1).clamp_min(0.0)


def shading_basis(
    normals: Float[Tensor, "P 3"],
    view_dirs: Float[Tensor, "P 3"],
    light_dirs: Tensor,
    visibility: Tensor | None = None,
    exponents: Sequence[float] = SPEC_EXPONENTS,
) -> Float[Tensor, "P L K"]:
    """Per point and light, ``K = 1 + len(exponents)`` features (module docstring, step 1).

    Args:
        normals: unit surface normals.
        view_dirs: ray directions, camera → point (unit).
        light_dirs: ``[L, 3]`` or ``[P, L, 3]`` directions *towards* the lights.
        visibility: ``[P, L]`` in ``[0, 1]`` (1: lit); ``None`` means unshadowed.
        exponents: the specular lobes' Blinn–Phong exponents.

    Example:
        >>> n = torch.tensor([[0.0, 0.0, 1.0]]); v = torch.tensor([[0.0, 0.0, -1.0]])
        >>> shading_basis(n, v, torch.tensor([[0.0, 0.0, 1.0]])).tolist()
        [[[1.0, 1.0, 1.0, 1.0]]]
    """
    n_dot_l, n_dot_h = _cosines(normals, view_dirs, light_dirs)
    front = (n_dot_l > 0).to(normals.dtype)
    feats = [n_dot_l.clamp_min(0.0)] + [front * n_dot_h.pow(e) for e in exponents]
    phi = torch.stack(feats, dim=-1)
    if visibility is not None:
        if visibility.shape != phi.shape[:2]:
            raise ValueError(f"visibility must be [P, L] = {list(phi.shape[:2])}, got "
                             f"{list(visibility.shape)}")
        phi = phi * visibility.to(phi).unsqueeze(-1)
    return phi


def aggregate(phi: Float[Tensor, "P L K"], intensities: Tensor) -> Float[Tensor, "P 3 K"]:
    """``Φ_c = Σ_l I_{l,c} φ_l``; ``intensities`` ``[L, 3]`` (shared) or ``[P, L, 3]``."""
    if intensities.dim() == 2:
        return torch.einsum("plk,lc->pck", phi, intensities.to(phi))
    return torch.einsum("plk,plc->pck", phi, intensities.to(phi))


class LinearRelightingField(nn.Module):
    """Radiance at surface points under any set of directional lights, linear in their
    intensities (module docstring).

    Args:
        encoding: positional encoding of ``x`` (``out_dim`` attribute), or ``None`` (raw ``x``).
        hidden_dim: width of ``g_θ``.
        num_hidden_layers: depth of ``g_θ``.
        light_hidden: width ``H`` of the light path.
        exponents: specular lobes of the shading basis.
        physical: include the physical (Blinn–Phong) branch.
        light_bias, light_relu, leak, clamp: negative controls that break linearity (tests).
    """

    def __init__(self, encoding: nn.Module | None = None, *, hidden_dim: int = 64,
                 num_hidden_layers: int = 2, light_hidden: int = 16,
                 exponents: Sequence[float] = SPEC_EXPONENTS, physical: bool = True,
                 light_bias: bool = False, light_relu: bool = False, leak: bool = False,
                 clamp: bool = False) -> None:
        super().__init__()
        self.encoding = encoding
        self.exponents = tuple(float(e) for e in exponents)
        self.k = 1 + len(self.exponents)
        self.h = light_hidden
        self.physical = physical
        self.light_bias, self.light_relu, self.leak, self.clamp = (light_bias, light_relu, leak,
                                                                   clamp)
        enc_dim = 3 if encoding is None else int(encoding.out_dim)
        in_dim = enc_dim + 6 + (3 * self.k if leak else 0)
        # Outputs: M [H], G [3·H], albedo [3], specular albedo [1], exponent [1].
        self.n_out = self.h + 3 * self.h + 5
        self.g = MLP(in_dim, self.n_out, hidden_dim=hidden_dim,
                     num_hidden_layers=num_hidden_layers, activation="relu")
        self.w1 = nn.Parameter(torch.randn(self.k, self.h) / math.sqrt(self.k))
        self.bias = nn.Parameter(0.1 * torch.randn(self.h)) if light_bias else None

    def weights(self, x: Tensor, normals: Tensor, view_dirs: Tensor,
                leak_features: Tensor | None = None) -> dict[str, Tensor]:
        """The light-independent tensors ``g_θ`` produces at the points."""
        f = x if self.encoding is None else self.encoding(x)
        inputs = [f, normals, view_dirs]
        if self.leak:
            inputs.append(leak_features.reshape(x.shape[0], -1))
        out = self.g(torch.cat([t.to(f.dtype) for t in inputs], dim=-1))
        h = self.h
        return {
            "modulation": out[:, :h],
            "gain": out[:, h:4 * h].reshape(-1, 3, h),
            "albedo": torch.sigmoid(out[:, 4 * h:4 * h + 3]),
            "specular": 0.5 * torch.sigmoid(out[:, 4 * h + 3:4 * h + 4]),
            "exponent": 8.0 + 56.0 * torch.sigmoid(out[:, 4 * h + 4:4 * h + 5]),
        }

    def forward(self, x: Float[Tensor, "P 3"], normals: Float[Tensor, "P 3"],
                view_dirs: Float[Tensor, "P 3"], light_dirs: Tensor, intensities: Tensor,
                visibility: Tensor | None = None) -> Float[Tensor, "P 3"]:
        """Linear radiance ``[P, 3]`` under lights ``light_dirs`` (``[L, 3]`` or ``[P, L, 3]``,
        towards the lights) of RGB ``intensities`` (``[L, 3]`` or ``[P, L, 3]``) with
        ``visibility`` ``[P, L]``. ``g_θ`` runs once, whatever the number of lights."""
        phi = shading_basis(normals, view_dirs, light_dirs, visibility, self.exponents)
        big_phi = aggregate(phi, intensities)                           # [P, 3, K]
        w = self.weights(x, normals, view_dirs, big_phi if self.leak else None)
        z = big_phi @ self.w1.to(big_phi)                                # [P, 3, H], no bias
        if self.bias is not None:
            z = z + self.bias.to(z)
        if self.light_relu:
            z = torch.relu(z)
        z = z * w["modulation"].unsqueeze(1).to(z)
        out = (z * w["gain"].to(z)).sum(-1)                              # [P, 3]
        if self.physical:
            out = out + self._physical(normals, view_dirs, light_dirs, intensities, visibility,
                                       w)
        if self.clamp:
            out = out.clamp_min(0.0)
        return out

    def _physical(self, normals: Tensor, view_dirs: Tensor, light_dirs: Tensor,
                  intensities: Tensor, visibility: Tensor | None,
                  w: dict[str, Tensor]) -> Tensor:
        """Blinn–Phong under the lights with the learned material (linear in ``I``)."""
        n_dot_l, n_dot_h = _cosines(normals, view_dirs, light_dirs)
        s = w["exponent"].to(normals)                                    # [P, 1]
        spec = w["specular"].to(normals) * (s + 8.0) / (8.0 * math.pi) * n_dot_h.pow(s) * (
            n_dot_l > 0).to(normals.dtype)                               # [P, L]
        diffuse = n_dot_l.clamp_min(0.0) / math.pi                       # [P, L]
        if visibility is not None:
            spec, diffuse = spec * visibility.to(spec), diffuse * visibility.to(diffuse)
        i = intensities.to(normals)
        if i.dim() == 2:
            d_sum, s_sum = diffuse @ i, spec @ i                         # [P, 3]
        else:
            d_sum = torch.einsum("pl,plc->pc", diffuse, i)
            s_sum = torch.einsum("pl,plc->pc", spec, i)
        return w["albedo"].to(normals) * d_sum + s_sum

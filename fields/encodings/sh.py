"""Real spherical-harmonics encoding of unit directions (the view-direction encoding of
instant-ngp, Müller et al., SIGGRAPH 2022).

Vocabulary: ``d`` unit directions ``[N, 3]``; the output is ``[N, degree²]``, band-major
(``l = 0`` first, then ``m = −l … l`` within each band).

The basis is the real, orthonormal one with the Condon–Shortley phase (the convention of Sloan,
"Stupid Spherical Harmonics (SH) Tricks", GDC 2008, and of tiny-cuda-nn):

    ∫_{S²} Y_i(ω) Y_j(ω) dω = δ_ij,   so   E_{ω ~ U(S²)}[Y_i Y_j] = δ_ij / (4π).

Each band is a homogeneous harmonic polynomial in ``(x, y, z)`` of degree ``l``; on the sphere,
``Σ_m Y_lm(ω)² = (2l + 1)/(4π)`` (the addition theorem). Bands 0–3 (16 functions, ``degree=4``)
are supported — what instant-ngp uses.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["SphericalHarmonics"]

_PI = math.pi
_C0 = 0.5 / math.sqrt(_PI)  # Y_00
_C1 = math.sqrt(3.0 / (4.0 * _PI))  # band 1
_C2 = (0.5 * math.sqrt(15.0 / _PI), 0.25 * math.sqrt(5.0 / _PI), 0.25 * math.sqrt(15.0 / _PI))
_C3 = (
    0.25 * math.sqrt(35.0 / (2.0 * _PI)),  # m = ±3
    0.5 * math.sqrt(105.0 / _PI),  # m = −2
    0.25 * math.sqrt(21.0 / (2.0 * _PI)),  # m = ±1
    0.25 * math.sqrt(7.0 / _PI),  # m = 0
    0.25 * math.sqrt(105.0 / _PI),  # m = 2
)


class SphericalHarmonics(nn.Module):
    """Real orthonormal spherical harmonics of bands ``0 … degree − 1`` (``degree²`` outputs).

    Args:
        degree: number of bands, 1–4 (instant-ngp: 4, i.e. 16 outputs).

    Directions must be unit vectors (not normalised here).

    Example:
        >>> sh = SphericalHarmonics(4)
        >>> sh(torch.tensor([[0.0, 0.0, 1.0]])).shape
        torch.Size([1, 16])
    """

    def __init__(self, degree: int = 4) -> None:
        super().__init__()
        if not 1 <= degree <= 4:
            raise ValueError(f"degree must be in 1..4, got {degree}")
        self.degree = degree
        self.in_dim = 3
        self.out_dim = degree * degree

    def extra_repr(self) -> str:
        return f"degree={self.degree}"

    def forward(self, d: Float[Tensor, "N 3"]) -> Float[Tensor, "N C"]:
        x, y, z = d.unbind(-1)
        out = [torch.full_like(x, _C0)]
        if self.degree > 1:
            out += [-_C1 * y, _C1 * z, -_C1 * x]
        if self.degree > 2:
            xx, yy, zz = x * x, y * y, z * z
            out += [
                _C2[0] * x * y,
                -_C2[0] * y * z,
                _C2[1] * (3.0 * zz - 1.0),
                -_C2[0] * x * z,
                _C2[2] * (xx - yy),
            ]
        if self.degree > 3:
            out += [
                -_C3[0] * y * (3.0 * xx - yy),
                _C3[1] * x * y * z,
                -_C3[2] * y * (5.0 * zz - 1.0),
                _C3[3] * z * (5.0 * zz - 3.0),
                -_C3[2] * x * (5.0 * zz - 1.0),
                _C3[4] * z * (xx - yy),
                -_C3[0] * x * (xx - 3.0 * yy),
            ]
        return torch.stack(out, dim=-1)

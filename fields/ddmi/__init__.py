"""DDMI: latent diffusion that generates adaptive positional embeddings for implicit neural
representations (Park et al., "DDMI: Domain-Agnostic Latent Diffusion Models for Synthesizing
High-Quality Implicit Neural Representations", ICLR 2024, arXiv 2401.12517).

Instead of generating MLP weights behind a fixed encoding, DDMI generates the *encoding*: a
D2C-VAE maps discrete data (a raster, a point cloud) to a latent whose decoder emits multi-scale
feature planes Ξ (2-D grids, or tri-planes for 3-D); one shared MLP π queries their bilinear
samples γ(x; Ξ) coarse-to-fine at any continuous coordinate; a latent diffusion model learns the
latent distribution. A sample is decoded once and then rendered at any resolution.

- :mod:`fields.ddmi.planes`: pixel-centre grids, plane sampling, :class:`PlaneFeaturePE`.
- :mod:`fields.ddmi.mlp`: π (:class:`HierarchicalPEDecoder`, :class:`TriplaneMLP`) and
  :class:`DecodedField`, a decoded sample as an ordinary field ``x → value``.
- :mod:`fields.ddmi.vae`: :class:`ImageVAE`, :class:`TriplaneVAE`, :class:`DiagonalGaussian`,
  ``spectral_regulariser``.
- :mod:`fields.ddmi.diffusion`: the DDMI β schedule, KL / spectral weights,
  :class:`GaussianDiffusion` (DDIM), :class:`MixedPrediction`, :class:`EMA`.
- :mod:`fields.ddmi.denoisers`: :class:`LatentUNet`, :class:`MLPDenoiser`.
"""

from fields.ddmi.denoisers import LatentUNet, MLPDenoiser
from fields.ddmi.diffusion import EMA, GaussianDiffusion, MixedPrediction
from fields.ddmi.mlp import DecodedField, HierarchicalPEDecoder, TriplaneMLP
from fields.ddmi.planes import PlaneFeaturePE
from fields.ddmi.vae import DiagonalGaussian, ImageVAE, TriplaneVAE

__all__ = [
    "DecodedField", "DiagonalGaussian", "EMA", "GaussianDiffusion", "HierarchicalPEDecoder",
    "ImageVAE", "LatentUNet", "MLPDenoiser", "MixedPrediction", "PlaneFeaturePE", "TriplaneMLP",
    "TriplaneVAE",
]

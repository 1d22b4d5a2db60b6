"""Named presets: plain, typed experiment configs. ``fields-app presets`` lists them.

A preset is a function returning a fresh config instance (so callers may mutate it). The CLI
starts from a preset and applies overrides (``--steps``, ``--data``, ``--model.hidden-dim`` …).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.config import ExperimentConfig, TrainerConfig
from app.errors import PresetError
from app.tasks.csp import CSPExperiment
from app.tasks.ddmi import DDMIDataConfig, DDMIExperiment, DDMIModelConfig
from app.tasks.image import ImageExperiment
from app.tasks.naisr import NAISRDataConfig, NAISRExperiment, NAISRModelConfig
from app.tasks.nerf import NeRFDataConfig, NeRFExperiment
from app.tasks.neus import NeuSDataConfig, NeuSExperiment
from app.tasks.relight import RelightExperiment
from app.tasks.sdf import MeshExportConfig, SDFDataConfig, SDFExperiment, SDFModelConfig
from fields.encodings.hashgrid import HashGridConfig

__all__ = ["PRESETS", "DEFAULT_PRESET", "get_preset", "Preset"]


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    make: Callable[[], ExperimentConfig]


def _spot_sdf() -> SDFExperiment:
    return SDFExperiment(preset="spot-sdf", trainer=TrainerConfig(steps=2000, lr=1e-2))


def _sdf_hq() -> SDFExperiment:
    return SDFExperiment(
        preset="sdf-hq",
        trainer=TrainerConfig(steps=6000, lr=1e-2),
        data=SDFDataConfig(n_surface=500_000, n_near=1_500_000, n_uniform=200_000,
                           batch_size=1 << 16),
        model=SDFModelConfig(encoding=HashGridConfig(
            num_levels=16, features_per_level=2, log2_hashmap_size=19, base_resolution=16,
            max_resolution=2048)),
        export=MeshExportConfig(resolution=512),
    )


def _spot_nerf() -> NeRFExperiment:
    return NeRFExperiment(preset="spot-nerf", trainer=TrainerConfig(steps=2000, lr=1e-2))


def _lego_nerf() -> NeRFExperiment:
    return NeRFExperiment(
        preset="lego-nerf", trainer=TrainerConfig(steps=2000, lr=1e-2),
        data=NeRFDataConfig(path="../shared/data/nerf/tiny_nerf/tiny_nerf_data_reconstructed.npz",
                            background=(0.0, 0.0, 0.0)),
    )


def _spot_neus() -> NeuSExperiment:
    return NeuSExperiment(preset="spot-neus", trainer=TrainerConfig(steps=2000, lr=1e-2))


def _dtu_neus() -> NeuSExperiment:
    return NeuSExperiment(
        preset="dtu-neus", trainer=TrainerConfig(steps=3000, lr=1e-2),
        data=NeuSDataConfig(path="../shared/data/nerf/dtu_scan24_subset", downscale=8,
                            background=(0.0, 0.0, 0.0)),
    )


def _astronaut_image() -> ImageExperiment:
    return ImageExperiment(preset="astronaut-image", trainer=TrainerConfig(steps=2000, lr=1e-2))


def _naisr_population(source: str) -> NAISRDataConfig:
    # 100 subjects × 3 visits (10 held out): with 20 subjects the covariates-only prediction
    # memorised the training subjects through their (unique) covariates and the codes carried
    # little (docs/naisr.md).
    return NAISRDataConfig(source=source, n_subjects=100, held_out_subjects=10)


def _naisr_model() -> NAISRModelConfig:
    return NAISRModelConfig(code_lr_factor=30.0, small_deformation=30.0)


def _starman_naisr() -> NAISRExperiment:
    return NAISRExperiment(preset="starman-naisr", data=_naisr_population("starman3d"),
                           model=_naisr_model(), trainer=TrainerConfig(steps=3000, lr=5e-4))


def _starman2d_naisr() -> NAISRExperiment:
    return NAISRExperiment(preset="starman2d-naisr", data=_naisr_population("starman2d"),
                           model=_naisr_model(), trainer=TrainerConfig(steps=1200, lr=5e-4))


def _shapes_ddmi() -> DDMIExperiment:
    return DDMIExperiment(preset="shapes-ddmi",
                          data=DDMIDataConfig(source="procshapes2d", fine=False),
                          model=DDMIModelConfig(vae_steps=1500),
                          trainer=TrainerConfig(steps=4500, lr=2e-3, decay_start=1.0))


def _discs_ddmi() -> DDMIExperiment:
    return DDMIExperiment(
        preset="discs-ddmi", data=DDMIDataConfig(source="discs", n_train=600, n_test=128,
                                                 n_random=256, fine=False),
        model=DDMIModelConfig(z_channels=1, channels=(16, 32, 32, 32), pe_channels=8, hidden=32,
                              vae_steps=400, denoiser="mlp"),
        trainer=TrainerConfig(steps=4400, lr=2e-3, decay_start=1.0))


def _shapes3d_ddmi() -> DDMIExperiment:
    return DDMIExperiment(
        preset="shapes3d-ddmi", data=DDMIDataConfig(source="primitives3d", n_train=500,
                                                    n_test=64, batch_size=8),
        model=DDMIModelConfig(channels=(16, 32, 32), vae_steps=1500),
        trainer=TrainerConfig(steps=4000, lr=2e-3, decay_start=1.0))


def _olat_relight() -> RelightExperiment:
    return RelightExperiment(preset="olat-relight", trainer=TrainerConfig(steps=1500, lr=1e-2))


def _tshirt_csp() -> CSPExperiment:
    return CSPExperiment(preset="tshirt-csp", trainer=TrainerConfig(steps=2000, lr=1e-2))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("spot-sdf", "SDF of a mesh (default: the shipped spot cow); ~2 min on 2 CPU cores",
               _spot_sdf),
        Preset("sdf-hq", "SDF of a mesh at high quality (16 levels, 2^19 table); for a GPU",
               _sdf_hq),
        Preset("spot-nerf", "radiance field of 100 synthetic views of spot; ~1 min on 2 CPU cores",
               _spot_nerf),
        Preset("lego-nerf", "radiance field of tiny lego (../shared npz, 100×100); ~1 min",
               _lego_nerf),
        Preset("spot-neus", "NeuS surface from 100 synthetic views of spot, mesh export; ~2.5 min",
               _spot_neus),
        Preset("dtu-neus", "NeuS surface of DTU scan 24 (../shared subset, 1/8 size)",
               _dtu_neus),
        Preset("tshirt-csp", "closest-surface-point field of an open surface (default: the "
               "shipped draped cloth; --data ../shared/data/meshes/open/tshirt_ponq.obj)",
               _tshirt_csp),
        Preset("starman-naisr", "NAISR shape atlas of 3-D procedural star-men (covariates: two "
               "arm angles, leg spread; --data.source FOLDER for meshes + covariates.csv)",
               _starman_naisr),
        Preset("starman2d-naisr", "NAISR shape atlas of 2-D star-men (under a minute)",
               _starman2d_naisr),
        Preset("shapes-ddmi", "DDMI: generate 2-D shape fields (VAE to feature planes, then "
               "latent diffusion) from 2000 procedural shapes; `fields-app sample RUN --n 16`",
               _shapes_ddmi),
        Preset("discs-ddmi", "DDMI on single discs (1×4×4 latent, MLP denoiser); about a "
               "minute", _discs_ddmi),
        Preset("shapes3d-ddmi", "DDMI on 3-D primitives (tri-plane VAE on point clouds); "
               "samples export as meshes", _shapes3d_ddmi),
        Preset("olat-relight", "relightable appearance (linear in the lights, URHand) from a "
               "procedural OLAT light stage: 64 lights × 8 views of a bumpy sphere",
               _olat_relight),
        Preset("astronaut-image", "2-D image field of the shipped 512² astronaut "
               "(--encoding hashgrid|rbf|fourier|siren); ~3–4 min on 2 CPU cores",
               _astronaut_image),
    )
}
DEFAULT_PRESET = "spot-sdf"


def get_preset(name: str) -> ExperimentConfig:
    """A fresh config for preset ``name``; a clear error lists the known ones."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].make()

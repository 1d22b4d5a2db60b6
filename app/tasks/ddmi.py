"""The ``ddmi`` task: a generative model whose samples are fields — DDMI's two stages (Park et
al., "DDMI: Domain-Agnostic Latent Diffusion Models for Synthesizing High-Quality Implicit Neural
Representations", ICLR 2024), scaled down for CPU by configuration.

Recipe, top to bottom:

1. data: procedural 2-D shapes (``procshapes2d``: unions of discs, boxes, triangles), single
   discs (``discs``, the under-a-minute variant), procedural 3-D primitives (``primitives3d``),
   or a user folder of images or watertight meshes; a held-out split;
2. stage 1 (``model.vae_steps``): the D2C-VAE — encoder (a 32² raster, or a point cloud through
   a local-pool PointNet to tri-planes) → latent ``z`` → decoder to multi-scale feature planes
   Ξ → one shared MLP π reading ``γ(x; Ξ)`` coarse → fine at continuous points; BCE on
   occupancy (L1 on image intensities) at random points and at the base and 2× grids,
   ``+ β_t·KL`` (DDMI's linear β ramp) ``+ c·λ(β_t)·spectral`` (DDMI's spectral regulariser);
3. stage 2 (the remaining steps): the VAE and π frozen, a latent diffusion model on posterior
   *samples* standardised to unit std (the std is stored with the checkpoint): DDMI's β
   schedule, ε-prediction with mixed prediction, a small UNet (or an MLP for 1×4×4 latents),
   an EMA copy used for sampling;
4. sampling: DDIM (η = 0, seeded) → latent → planes once → π queried on any grid (2-D images at
   any resolution, e.g. 37×53) or marching cubes of the occupancy logit (3-D meshes);
5. evaluation: reconstruction IoU of held-out shapes at the input resolution and at 4× it;
   resolution consistency of samples (avg-pooled 128² against 32²); MMD/COV (Chamfer between
   boundary point sets) of samples against held-out shapes, against decoding ``z ~ N(0, I)``;
   for discs, the fraction of samples that are discs and a KS test of their radii; for 3-D,
   watertight meshes and nearest-training-shape IoU.

Each stage has its own cosine learning-rate schedule (:meth:`DDMITask.lr_scales`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.errors import ConfigError, FieldsAppError
from app.tasks.base import Task
from fields.ddmi import (
    DecodedField,
    GaussianDiffusion,
    HierarchicalPEDecoder,
    ImageVAE,
    LatentUNet,
    MixedPrediction,
    MLPDenoiser,
    TriplaneMLP,
    TriplaneVAE,
)
from fields.ddmi.diffusion import ddmi_betas, kl_weight, spectral_weight
from fields.ddmi.vae import spectral_regulariser
from renderer.cameras import Camera

__all__ = ["DDMIDataConfig", "DDMIModelConfig", "DDMIExperiment", "DDMITask"]

PROCEDURAL = ("procshapes2d", "discs", "primitives3d")


@dataclass
class DDMIDataConfig:
    """The shapes (or images) to learn a distribution of."""

    source: str = "procshapes2d"
    """``procshapes2d``, ``discs``, ``primitives3d``, or a folder of images / watertight
    meshes."""
    n_train: int = 2000
    """Training shapes (procedural sources)."""
    n_test: int = 256
    """Held-out shapes (procedural sources; a folder holds out this many files, at most a
    quarter of them)."""
    resolution: int = 32
    """2-D: the raster the encoder sees (and the base supervision grid)."""
    n_random: int = 512
    """2-D: random continuous supervision points per shape and step."""
    fine: bool = True
    """2-D: also supervise at the 2× finer grid (DDMI's multi-scale training in miniature)."""
    input: str = "smooth"
    """2-D procedural shapes: the encoder's raster, ``smooth`` (σ(−sdf/0.01) at the pixel
    centres, which keeps where the boundary crosses a pixel) or ``occupancy`` (0/1)."""
    n_points: int = 1024
    """3-D: points of the encoder's input point cloud."""
    point_noise: float = 0.005
    """3-D: Gaussian noise on the input point cloud."""
    n_queries: int = 2048
    """3-D: occupancy queries per shape and step."""
    batch_size: int = 32
    seed: int = 0


@dataclass
class DDMIModelConfig:
    """Both stages."""

    z_channels: int = 4
    """Latent channels (per plane for tri-planes)."""
    channels: tuple[int, ...] = (32, 64, 64)
    """Encoder widths, full resolution → latent resolution (each extra level halves it)."""
    pe_channels: int = 16
    """Channels of every positional-embedding plane."""
    hidden: int = 64
    """Width of π."""
    scale_conditioning: bool = False
    """π takes the render scale ``s = base / R`` (DDMI's image decoder); off: one function for
    every resolution."""
    beta_max: float = 1e-3
    """KL weight at the end of its ramp (per-dimension mean KL)."""
    spectral: float = 1e-6
    """Spectral regulariser coefficient, × DDMI's ``λ(β_t)``. DDMI's reconstruction loss is a
    *sum* over points; ours is a mean, and at 1e-4 the regulariser shrank the encoder until the
    latent was unused (posterior collapse, measured on discs), so it is scaled down here."""
    vae_steps: int = 1500
    """Stage-1 steps; the trainer's remaining steps train the diffusion model."""
    denoiser: str = "unet"
    """``unet`` (latent UNet) or ``mlp`` (for tiny latents such as 1×4×4)."""
    unet_channels: int = 64
    unet_mult: tuple[int, ...] = (1, 2)
    mlp_hidden: int = 256
    ldm_lr_factor: float = 0.5
    """Stage-2 learning rate relative to the trainer's."""
    timesteps: int = 1000
    ddim_steps: int = 50
    ema_decay: float = 0.999


@dataclass
class DDMIExperiment(ExperimentConfig):
    """Learn to generate fields: a D2C-VAE, then latent diffusion (DDMI)."""

    task: str = "ddmi"
    data: DDMIDataConfig = field(default_factory=DDMIDataConfig)
    model: DDMIModelConfig = field(default_factory=DDMIModelConfig)


class _Stats(nn.Module):
    """The latent standard deviation measured when stage 2 starts (saved with the weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("latent_std", torch.zeros(()))


def _cosine(progress: float, floor: float = 0.05) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class DDMITask(Task):
    """DDMI (module docstring)."""

    kind = "ddmi"
    config_cls = DDMIExperiment
    render_modes = ("samples", "sample", "data", "reconstruction")
    ddp_unused_parameters = True  # stage 1 leaves the denoiser unused, stage 2 the VAE

    def __init__(self, config: DDMIExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: DDMIExperiment = config
        d, m = config.data, config.model
        if m.vae_steps >= config.trainer.steps:
            raise ConfigError(f"model.vae_steps ({m.vae_steps}) must be below trainer.steps "
                              f"({config.trainer.steps}): the rest trains the diffusion model")
        if m.denoiser not in ("unet", "mlp"):
            raise ConfigError(f"model.denoiser must be 'unet' or 'mlp', got {m.denoiser!r}")
        self.dim = 3 if d.source == "primitives3d" else 2
        self.in_channels = 1
        self.data = None
        self._kind = "procedural" if d.source in PROCEDURAL else None
        if self._kind is None:
            folder = Path(d.source)
            if folder.is_dir():
                from datasets.procshapes import IMAGE_EXTENSIONS

                files = [p for p in folder.iterdir() if p.is_file()]
                meshes = [p for p in files if p.suffix.lower() in (".obj", ".ply", ".off", ".stl")]
                if meshes:
                    self.dim, self._kind = 3, "meshes"
                elif any(p.suffix.lower() in IMAGE_EXTENSIONS for p in files):
                    self._kind, self.in_channels = "images", 3
        self.build()
        self.diffusion = GaussianDiffusion(ddmi_betas(m.timesteps))
        self._posterior: tuple[Tensor, Tensor] | None = None
        self._cache: dict[Any, Any] = {}
        self.view_sample, self.view_seed, self.view_resolution = 0, 0, 0

    # -- model ------------------------------------------------------------------------------
    def build(self) -> None:
        m = self.config.model
        if self.dim == 2:
            vae = ImageVAE(self.in_channels, m.channels, m.z_channels, m.pe_channels)
            mlp = HierarchicalPEDecoder(vae.plane_channels, m.hidden, self.in_channels,
                                        scale_conditioning=m.scale_conditioning)
            side = self.config.data.resolution // 2 ** (len(m.channels) - 1)
            latent = (m.z_channels, side, side)
        else:
            vae = TriplaneVAE(resolution=32, channels=m.channels, z_ch=m.z_channels,
                              pe_channels=m.pe_channels)
            mlp = TriplaneMLP(vae.plane_channels, m.hidden)
            side = 32 // 2 ** (len(m.channels) - 1)
            latent = (3 * m.z_channels, side, side)
        self.latent_shape = latent
        if m.denoiser == "unet":
            net = LatentUNet(latent[0], m.unet_channels, m.unet_mult)
        else:
            net = MLPDenoiser(int(np.prod(latent)), m.mlp_hidden)
        alphas = torch.cumprod(1 - ddmi_betas(m.timesteps), 0)
        denoiser = MixedPrediction(net, latent[0], alphas)
        ema = copy.deepcopy(denoiser).requires_grad_(False)
        self.model = nn.ModuleDict({"vae": vae, "mlp": mlp, "denoiser": denoiser, "ema": ema,
                                    "stats": _Stats()}).to(self.device)

    @property
    def vae(self) -> nn.Module:
        return self.model["vae"]

    @property
    def mlp(self) -> nn.Module:
        return self.model["mlp"]

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.vae.parameters()) + list(self.mlp.parameters()),
                 "lr_factor": 1.0},
                {"params": list(self.model["denoiser"].parameters()),
                 "lr_factor": self.config.model.ldm_lr_factor}]

    def lr_scales(self, step: int) -> list[float]:
        """Per parameter group: stage 1 trains the VAE and π, stage 2 the denoiser, each with
        its own cosine decay (to 5 %)."""
        v, total = self.config.model.vae_steps, self.config.trainer.steps
        if step < v:
            return [_cosine(step / v), 0.0]
        return [0.0, _cosine((step - v) / max(total - v, 1))]

    # -- data -------------------------------------------------------------------------------
    def setup_data(self) -> None:
        d = self.config.data
        if self._kind is None:
            raise FieldsAppError(f"data.source {d.source!r}: not one of {', '.join(PROCEDURAL)} "
                                 "nor a folder of images or meshes")
        g = torch.Generator().manual_seed(d.seed)
        if self._kind == "procedural":
            from datasets.procshapes import make_discs, make_primitives_3d, make_procshapes_2d

            n = d.n_train + d.n_test
            if d.source == "procshapes2d":
                shapes = make_procshapes_2d(n, seed=d.seed)
            elif d.source == "discs":
                shapes = make_discs(n, seed=d.seed)
            else:
                shapes = make_primitives_3d(n, seed=d.seed)
            self.shapes = shapes
            self.train_index = torch.arange(d.n_train)
            self.test_index = torch.arange(d.n_train, n)
            if self.dim == 2:
                if d.input not in ("smooth", "occupancy"):
                    raise ConfigError(f"data.input must be 'smooth' or 'occupancy', got "
                                      f"{d.input!r}")
                self.rasters = shapes.raster(d.resolution, target=d.input).float()
            else:
                self._pools_3d(shapes, g)
        elif self._kind == "images":
            from datasets.procshapes import load_image_folder

            big = load_image_folder(d.source, 2 * d.resolution, channels=self.in_channels)
            self.images_fine = big
            self.rasters = F.avg_pool2d(big, 2)
            n = len(big)
            n_test = min(d.n_test, n // 4)
            self.train_index = torch.arange(n - n_test)
            self.test_index = torch.arange(n - n_test, n)
            self.shapes = None
        else:
            from datasets.procshapes import load_mesh_folder

            s = load_mesh_folder(d.source, n_points=4 * d.n_points, n_queries=4 * d.n_queries,
                                 seed=d.seed)
            self.point_pool, self.query_pool, self.occ_pool = s.points, s.queries, s.occupancy
            n = len(s)
            n_test = min(d.n_test, n // 4)
            self.train_index = torch.arange(n - n_test)
            self.test_index = torch.arange(n - n_test, n)
            self.shapes = None
        if len(self.train_index) == 0:
            raise FieldsAppError(f"data.source {d.source!r}: no training shapes")
        self.data = {"source": d.source, "kind": self._kind, "train": len(self.train_index),
                     "test": len(self.test_index)}

    def _pools_3d(self, shapes, g: torch.Generator) -> None:
        """Per shape, a pool of surface points (the encoder's input) and of occupancy queries
        (half near the surface), drawn once; steps draw random subsets."""
        d = self.config.data
        self.point_pool = shapes.point_cloud(None, 4 * d.n_points, generator=g)
        q, occ = shapes.sample_occupancy(None, 4 * d.n_queries, generator=g)
        self.query_pool, self.occ_pool = q, occ

    # -- stage 1 ----------------------------------------------------------------------------
    def _encoder_input(self, idx: Tensor, g: torch.Generator | None = None) -> Tensor:
        if self.dim == 2:
            return self.rasters[idx].to(self.device)
        d = self.config.data
        pool = self.point_pool[idx]
        pick = torch.randint(pool.shape[1], (d.n_points,), generator=g)
        pts = pool[:, pick]
        if d.point_noise > 0:
            pts = pts + d.point_noise * torch.randn(pts.shape, generator=g)
        return pts.to(self.device)

    def _supervision(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Points ``[B, M, d]`` and targets ``[B, M]`` for the field loss."""
        d = self.config.data
        if self.dim == 3:
            pick = torch.randint(self.query_pool.shape[1], (d.n_queries,))
            return (self.query_pool[idx][:, pick].to(self.device),
                    self.occ_pool[idx][:, pick].float().to(self.device))
        if self._kind == "images":
            from fields.ddmi.planes import grid_coords

            r = d.resolution
            pts = [grid_coords(r, r).expand(len(idx), -1, -1)]
            tgt = [self.rasters[idx].flatten(2).transpose(1, 2)]
            if d.fine:
                pts.append(grid_coords(2 * r, 2 * r).expand(len(idx), -1, -1))
                tgt.append(self.images_fine[idx].flatten(2).transpose(1, 2))
            return torch.cat(pts, 1).to(self.device), torch.cat(tgt, 1).to(self.device)
        from datasets.procshapes import sample_points

        pts, occ = sample_points(self.shapes, idx, d.n_random, d.resolution, fine=d.fine)
        return pts.to(self.device), occ.to(self.device)

    def _field_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self._kind == "images":
            return (torch.sigmoid(pred) - target.reshape(pred.shape)).abs().mean()
        return F.binary_cross_entropy_with_logits(pred.squeeze(-1), target)

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        m = self.config.model
        self.trained_step = step
        if step < m.vae_steps:
            return self._vae_loss(step)
        return self._ldm_loss(step)

    def _vae_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        m, d = self.config.model, self.config.data
        idx = self.shard(self.train_index[torch.randint(len(self.train_index),
                                                        (d.batch_size,))])
        q = self.vae.encode(self._encoder_input(idx))
        planes = self.vae.decode(q.sample())
        pts, target = self._supervision(idx)
        pred = self.mlp(pts, planes)
        rec = self._field_loss(pred, target)
        beta = kl_weight(step, m.vae_steps, m.beta_max)
        kl = q.kl("mean").mean()
        loss = rec + beta * kl
        if m.spectral > 0:
            loss = loss + m.spectral * spectral_weight(beta) * spectral_regulariser(self.vae)
        return loss, {"stage": 1.0, "recon": rec.item(), "kl": kl.item()}

    # -- stage 2 ----------------------------------------------------------------------------
    @torch.no_grad()
    def posteriors(self, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior means and stds of shapes (default: every training shape), latent-shaped."""
        self.vae.eval()
        idx = self.train_index if index is None else index
        means, stds = [], []
        g = torch.Generator().manual_seed(self.config.data.seed + 1)
        for k in range(0, len(idx), 64):
            q = self.vae.encode(self._encoder_input(idx[k:k + 64], g))
            means.append(q.mean.reshape(-1, *self.latent_shape))
            stds.append(q.std.reshape(-1, *self.latent_shape))
        return torch.cat(means), torch.cat(stds)

    def _ldm_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        m, d = self.config.model, self.config.data
        stats = self.model["stats"]
        if self._posterior is None:
            self._posterior = self.posteriors()
            if float(stats.latent_std) == 0.0:  # the first stage-2 step (not a resumed one)
                mean, std = self._posterior
                sample = mean + std * torch.randn_like(mean)
                stats.latent_std.fill_(float(sample.std()))
                self.model["ema"].load_state_dict(self.model["denoiser"].state_dict())
        else:
            self._update_ema(m.ema_decay)
        mean, std = self._posterior
        rows = self.shard(torch.randint(len(mean), (max(d.batch_size, 64),)))
        z = (mean[rows] + std[rows] * torch.randn_like(mean[rows])) / stats.latent_std
        loss = self.diffusion.loss(self.model["denoiser"], z)
        return loss, {"stage": 2.0, "diffusion": loss.item()}

    @torch.no_grad()
    def _update_ema(self, decay: float) -> None:
        ema, live = self.model["ema"], self.model["denoiser"]
        for e, p in zip(ema.parameters(), live.parameters()):
            e.lerp_(p, 1.0 - decay)
        for e, p in zip(ema.buffers(), live.buffers()):
            e.copy_(p)

    # -- sampling ---------------------------------------------------------------------------
    def _latent_std(self) -> float:
        s = float(self.model["stats"].latent_std)
        if s == 0.0:
            raise FieldsAppError("this run has not reached its diffusion stage yet (step "
                                 f"< model.vae_steps = {self.config.model.vae_steps}); nothing "
                                 "to sample")
        return s

    @torch.no_grad()
    def sample_latents(self, n: int, seed: int = 0, steps: int | None = None,
                       prior: bool = False) -> Tensor:
        """``n`` latents from DDIM (η = 0; the same ``seed`` gives the same latents), or from
        the VAE prior ``N(0, I)`` with ``prior=True`` (the negative control)."""
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn((n, *self.latent_shape), generator=g).to(self.device)
        if prior:
            return noise
        x = self.diffusion.ddim_sample(self.model["ema"], noise=noise,
                                       steps=steps or self.config.model.ddim_steps)
        return x * self._latent_std()

    @torch.no_grad()
    def decode(self, z: Tensor) -> list[Tensor]:
        """Planes of latents ``[n, *latent_shape]``."""
        self.vae.eval()
        if self.dim == 3:
            z = z.reshape(z.shape[0], 3, -1, *z.shape[-2:])
        return self.vae.decode(z)

    def sample_fields(self, n: int, seed: int = 0, prior: bool = False) -> list[DecodedField]:
        """``n`` generated fields (ordinary ``x → logit`` callables)."""
        return self.fields_from_latents(self.sample_latents(n, seed, prior=prior))

    def fields_from_latents(self, z: Tensor) -> list[DecodedField]:
        """Fields of latents ``[n, *latent_shape]``: decoded once, then queried anywhere."""
        n = z.shape[0]
        planes = self.decode(z)
        self.mlp.eval()
        return [DecodedField(self.mlp, [p[k:k + 1] for p in planes]) for k in range(n)]

    def fields_of(self, index: Tensor) -> list[DecodedField]:
        """Reconstructions of dataset shapes (posterior means through the decoder)."""
        mu, _ = self.posteriors(index)
        planes = self.decode(mu)
        self.mlp.eval()
        return [DecodedField(self.mlp, [p[k:k + 1] for p in planes]) for k in range(len(index))]

    @staticmethod
    def probability(f: DecodedField, h: int, w: int) -> Tensor:
        """A 2-D field's occupancy probability (or intensity) on an ``h × w`` pixel-centre grid,
        ``[h, w]`` (first channel)."""
        return torch.sigmoid(f.render(h, w)[0])

    @staticmethod
    def image_of(f: DecodedField, h: int, w: int) -> Tensor:
        """A 2-D field as a picture ``[h, w, 3]``: occupancy probability in grey (white inside)
        or the RGB of an image field."""
        v = torch.sigmoid(f.render(h, w)).permute(1, 2, 0)
        return v.expand(-1, -1, 3) if v.shape[-1] == 1 else v[..., :3]

    def mesh_of(self, f: DecodedField, resolution: int = 64):
        """Marching cubes of a 3-D field's occupancy logit at 0 (probability 0.5)."""
        from renderer.meshing import extract_mesh

        def sdf(x: Tensor) -> Tensor:
            with torch.no_grad():
                return -f(x)[:, 0]

        try:
            return extract_mesh(sdf, resolution=resolution, method="dense").mesh
        except ValueError as exc:
            if "no level set" not in str(exc):
                raise
            import trimesh

            return trimesh.Trimesh()  # an empty (or full) sample: nothing to mesh

    # -- rendering --------------------------------------------------------------------------
    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        return Camera.orbit(30.0, 25.0, 3.2, width=width, height=height, fov_y_deg=40.0)

    def sliders(self) -> list[tuple[str, float, float, float]]:
        """The viewer's sliders: which sample the ``sample`` mode shows, and the seed of the
        gallery."""
        out = [("sample", float(self.view_sample), 0.0, 15.0),
               ("seed", float(self.view_seed), 0.0, 99.0)]
        if self.dim == 2:
            out.append(("resolution (0 = view)", float(self.view_resolution), 0.0, 256.0))
        return out

    def set_slider(self, name: str, value: float) -> None:
        if name == "sample":
            self.view_sample = min(max(int(round(value)), 0), 15)
        elif name == "seed":
            self.view_seed = max(int(round(value)), 0)
        elif name.startswith("resolution") and self.dim == 2:
            self.view_resolution = max(int(round(value)), 0)
        else:
            raise FieldsAppError(f"no ddmi slider {name!r}; the sliders are "
                                 f"{', '.join(n for n, *_ in self.sliders())}")

    def _gallery_fields(self, kind: str) -> list[DecodedField]:
        step = getattr(self, "trained_step", 0)
        key = (kind, self.view_seed, step // 50)
        if key not in self._cache:
            self._cache.clear()
            if kind == "samples":
                fields_ = self.sample_fields(16, seed=self.view_seed)
            else:
                if self.data is None:
                    self.setup_data()
                fields_ = self.fields_of(self._shown_held_out())
            self._cache[key] = fields_
        return self._cache[key]

    def _tile(self, f: DecodedField, h: int, w: int, camera: Camera) -> Tensor:
        if self.dim == 2:
            r = self.view_resolution
            if r <= 0 or r >= max(h, w):
                return self.image_of(f, h, w)
            # The field at the chosen resolution, shown with nearest-neighbour pixels.
            low = self.image_of(f, r, r).permute(2, 0, 1)[None]
            return F.interpolate(low, size=(h, w), mode="nearest")[0].permute(1, 2, 0)
        cam = camera if (h, w) == (camera.height, camera.width) else Camera.orbit(
            30.0, 25.0, 3.2, width=w, height=h, fov_y_deg=40.0)
        key = ("mesh", id(f))
        if key not in self._cache:  # meshing is the slow part; the cache lives as the fields do
            self._cache[key] = self.mesh_of(f, 48)
        return torch.from_numpy(self.render_mesh(self._cache[key], cam))

    @staticmethod
    def render_mesh(mesh, camera: Camera) -> np.ndarray:
        """A shaded picture ``[H, W, 3]`` of a mesh (sphere tracing its exact distance; white
        for an empty mesh)."""
        if len(mesh.faces) == 0:
            return np.ones((camera.height, camera.width, 3), dtype=np.float32)
        from datasets.sdf_samples import MeshDistance
        from renderer.surface import render_surface

        dist = MeshDistance(mesh)
        return render_surface(dist.signed_distance, camera, "shaded",
                              background=(1.0, 1.0, 1.0)).image.numpy()

    def render(self, camera: Camera, mode: str = "samples", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        """``samples``: a 4×4 gallery of generated fields (seed slider); ``sample``: one of them
        (sample slider) at the camera's full size, or at the resolution slider's ``R × R``
        (2-D; shown with square pixels); ``data``: held-out shapes;
        ``reconstruction``: their VAE reconstructions. 2-D fields show occupancy probability
        (white inside); 3-D fields their marching-cubes mesh, shaded."""
        if mode not in self.render_modes:
            raise FieldsAppError(f"unknown render mode {mode!r}; ddmi renders "
                                 f"{self.render_modes}")
        h, w = camera.height, camera.width
        if float(self.model["stats"].latent_std) == 0.0 and mode in ("samples", "sample"):
            mode = "reconstruction"  # stage 1: nothing to sample yet
        if mode == "sample":
            f = self._gallery_fields("samples")[self.view_sample]
            return self._tile(f, h, w, camera).clamp(0, 1).cpu().numpy()
        if mode == "data":
            if self.data is None:
                self.setup_data()
            return self._data_gallery(h, w)
        fields_ = self._gallery_fields("samples" if mode == "samples" else "reconstruction")
        th, tw = max(h // 4, 1), max(w // 4, 1)
        return self._mosaic([self._tile(f, th, tw, camera) for f in fields_[:16]], h, w)

    def _shown_held_out(self) -> Tensor:
        """The (up to) 16 held-out shapes the ``data`` and ``reconstruction`` galleries show
        (chosen by the seed slider)."""
        g = torch.Generator().manual_seed(self.view_seed)
        return self.test_index[torch.randperm(len(self.test_index), generator=g)[:16]]

    @staticmethod
    def _mosaic(tiles: list[Tensor], h: int, w: int) -> np.ndarray:
        """Tiles ``[h/4, w/4, 3]`` on a 4×4 grid of an ``h × w`` white picture."""
        th, tw = max(h // 4, 1), max(w // 4, 1)
        out = torch.ones(h, w, 3)
        for k, t in enumerate(tiles[:16]):
            r, c = divmod(k, 4)
            out[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = t
        return out.clamp(0, 1).cpu().numpy()

    def _data_gallery(self, h: int, w: int) -> np.ndarray:
        th, tw = max(h // 4, 1), max(w // 4, 1)
        tiles = []
        for i in self._shown_held_out().tolist():
            if self.dim == 2 and self.shapes is not None:
                from fields.ddmi.planes import grid_coords

                v = (self.shapes.sdf([i], grid_coords(th, tw))[0] < 0).float().reshape(th, tw, 1)
            elif self.dim == 2:  # an image folder: its pictures, in colour
                v = F.interpolate(self.rasters[i:i + 1], size=(th, tw), mode="bilinear",
                                  antialias=True)[0].permute(1, 2, 0)
            else:
                pts = self.point_pool[i]
                v = torch.zeros(th, tw, 1)
                x = ((pts[:, 0] + 1) / 2 * (tw - 1)).round().long().clamp(0, tw - 1)
                y = ((1 - pts[:, 1]) / 2 * (th - 1)).round().long().clamp(0, th - 1)
                v[y, x] = 1.0  # the input point cloud, seen along z
            tiles.append(v.expand(-1, -1, 3) if v.shape[-1] == 1 else v)
        return self._mosaic(tiles, h, w)

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        p.update({"latent": "×".join(map(str, self.latent_shape)),
                  "stage": 1 if float(self.model["stats"].latent_std) == 0 else 2,
                  "source": self.config.data.source})
        return p

    # -- export and evaluation ----------------------------------------------------------------
    def export(self, path: Path, **options: Any) -> dict[str, Any]:
        """A generated sample to ``path``: a mesh (3-D) or an image (2-D)."""
        seed, index = int(options.get("seed", 0)), int(options.get("index", 0))
        res = int(options.get("resolution") or (128 if self.dim == 3 else 256))
        f = self.sample_fields(index + 1, seed=seed)[index]
        if self.dim == 3:
            from renderer.meshing import export_mesh

            mesh = self.mesh_of(f, res)
            export_mesh(mesh, path)
            return {"path": str(path), "vertices": len(mesh.vertices),
                    "faces": len(mesh.faces), "watertight": bool(mesh.is_watertight)}
        from app.imaging import save_image

        save_image(Path(path), self.image_of(f, res, res).numpy())
        return {"path": str(path), "resolution": res}

    def evaluate(self, **options: Any) -> dict[str, Any]:
        """The acceptance numbers (module docstring) for the configured data."""
        from app.tasks.ddmi_eval import evaluate_ddmi

        if self.data is None:
            self.setup_data()
        return evaluate_ddmi(self, n=int(options.get("generated") or 256))

"""The ``neus`` task: reconstruct a surface from posed, masked photographs (NeuS on the CPU).

NeuS (Wang et al., "NeuS: Learning Neural Implicit Surfaces by Volume Rendering for Multi-view
Reconstruction", NeurIPS 2021) renders an SDF by turning it into opacity with a logistic CDF of
learned sharpness; the zero level set is the surface, exported by marching cubes. The recipe here
is the hash-grid flavour (Instant-NSR, NeuS2: Wang et al., ICCV 2023) made to run on two cores:

1. views: ``datasets.multiview.load_multiview`` (Blender RGBA, NeuS/DTU with masks, …);
   ``path = "spot"`` renders the synthetic spot views (``datasets.synthetic``) from the shipped
   mesh, so the preset runs from a fresh clone and has an exact reference surface;
2. field: ``fields.neus.NeuSField`` — a hash grid → SDF MLP (geometric init: a sphere) → features;
   a colour MLP of ``[x, ∇f, γ(d), features]``; the learned inverse spread ``s = exp(10 v)``;
   optional CQ-NIR coordinate quantisation of every network input (``model.quantize = R``);
3. samples: an occupancy grid (``renderer.occupancy.OccupancyGrid``) of the *surface band* —
   a cell is occupied while ``|f| < 1.5·(cell diagonal) + 5/s`` at a point of it, i.e. while the
   surface or the part of the logistic density that carries weight can reach it — marched at a
   fixed step (NeuS's own 64 + 64 hierarchical samples cost ~6× more per ray on a CPU);
4. opacity: ``renderer.volume.neus_alpha`` (annealed cosine from the autograd normal at the
   lattice point), weights ``Π(1 − α)``, composite;
5. loss: L1 of the premultiplied colour (the photo times its mask) + ``mask_weight`` · BCE of the
   opacity against the mask + ``eikonal_weight`` · ``(‖∇f‖ − 1)²``. The torch hash grid has first
   derivatives only, so the eikonal gradient is a central difference
   (``NeuSField.gradient_fd``, Neuralangelo's numerical gradients, Li et al., CVPR 2023); colour
   and α see the (detached) autograd normal.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.tasks.base import Task
from app.tasks.surfaces import (
    MeshExportConfig,
    compare_to_reference,
    export_surface,
    in_source_units,
)
from app.tasks.views import (
    SPOT_DATASET,
    MultiViewDataConfig,
    compose_view,
    dataset_path,
    encoding_groups,
    evaluate_views,
    load_views,
    scene_up,
    spot_reference,
    training_rays,
)
from datasets.meshes import Normalization, load_mesh, normalization_for
from datasets.multiview import MultiViewDataset
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.encodings.quantized import quantizer_for
from fields.neus import LearnedVariance, NeuSField
from renderer.cameras import Camera
from renderer.meshing import extract_mesh
from renderer.occupancy import OccupancyGrid
from renderer.slice import render_slice
from renderer.volume import accumulate, neus_alpha, weights_from_alpha

__all__ = ["NeuSDataConfig", "NeuSModelConfig", "NeuSLossConfig", "NeuSRenderConfig",
           "NeuSExperiment", "NeuSTask"]


@dataclass
class NeuSDataConfig(MultiViewDataConfig):
    """Where the views come from."""

    batch_rays: int = 512
    """Rays per optimisation step."""
    reference: str | None = None
    """Reference mesh for ``eval`` (default: the spot mesh for ``path = spot``)."""


@dataclass
class NeuSModelConfig:
    """The SDF and colour networks."""

    encoding: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=12, features_per_level=2, log2_hashmap_size=16, base_resolution=16,
        max_resolution=512))
    hidden_dim: int = 64
    """SDF MLP width."""
    num_hidden_layers: int = 1
    """SDF MLP hidden layers."""
    feature_dim: int = 15
    """Features passed from the SDF MLP to the colour MLP."""
    color_hidden: int = 64
    """Colour MLP width."""
    color_layers: int = 2
    """Colour MLP hidden layers."""
    init_radius: float = 0.6
    """Geometric init: the SDF starts as a sphere of this radius."""
    init_variance: float = 0.3
    """NeuS's ``v`` at the start (``s = exp(10 v)``)."""
    quantize: int = 0
    """CQ-NIR: lattice points per axis over ``±quantize_domain`` (0: off; the official NeuS
    setting is 25600 over ±2.5, cell Δ ≈ 1.95e-4)."""
    quantize_domain: float = 2.5
    """Half-width of the CQ-NIR lattice's domain."""
    backend: str = "auto"
    """Hash-grid backend: ``auto``, ``torch`` or ``tcnn``."""


@dataclass
class NeuSLossConfig:
    """Loss weights and schedules."""

    mask_weight: float = 0.1
    """Weight of the BCE between opacity and mask (NeuS ``wmask``: 0.1)."""
    eikonal_weight: float = 0.1
    """Weight of ``(‖∇f‖ − 1)²``."""
    eikonal_points: int = 1024
    """Points per step for the eikonal term: half ray samples, half uniform in the box."""
    cos_anneal_steps: int = 500
    """Steps over which NeuS's cosine annealing ratio rises from 0 to 1."""
    variance_lr_factor: float = 1.0
    """Learning-rate multiplier of the variance parameter."""


@dataclass
class NeuSRenderConfig:
    """Sampling and rendering."""

    aabb: tuple[float, float, float, float, float, float] = (-1.2, -1.2, -1.2, 1.2, 1.2, 1.2)
    """The scene box (the field's domain; a cube)."""
    samples_per_ray: int = 128
    """Marching step = box diagonal / this."""
    occupancy_res: int = 64
    """Occupancy grid cells per axis."""
    occupancy_every: int = 16
    """Steps between occupancy-grid updates."""
    chunk_rays: int = 2048
    """Rays per chunk when rendering images."""


@dataclass
class NeuSExperiment(ExperimentConfig):
    """Reconstruct a surface from posed images with NeuS."""

    task: str = "neus"
    data: NeuSDataConfig = field(default_factory=NeuSDataConfig)
    model: NeuSModelConfig = field(default_factory=NeuSModelConfig)
    loss: NeuSLossConfig = field(default_factory=NeuSLossConfig)
    render: NeuSRenderConfig = field(default_factory=NeuSRenderConfig)
    export: MeshExportConfig = field(default_factory=MeshExportConfig)


@dataclass
class NeuSRays:
    """Per-ray results of :meth:`NeuSTask.render_rays`."""

    rgb: Tensor        # [R, 3] premultiplied (no background)
    opacity: Tensor    # [R]
    depth: Tensor      # [R] accumulated Σ w t
    normals: Tensor    # [R, 3] accumulated Σ w n̂
    samples: Tensor    # [M, 3] sample points (for the eikonal term)
    num_samples: int


class NeuSTask(Task):
    """NeuS surface from posed images: train, render views and normals, export, evaluate."""

    kind = "neus"
    config_cls = NeuSExperiment
    render_modes = ("rgb", "normals", "shaded", "depth", "opacity", "slice")

    def __init__(self, config: NeuSExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: NeuSExperiment = config
        m, r = config.model, config.render
        lo, hi = min(r.aabb[:3]), max(r.aabb[3:])
        enc = HashGridEncoding(3, m.encoding, bounds=(lo, hi), backend=m.backend, device=device)
        quantizer = quantizer_for(m.quantize, m.quantize_domain, r.aabb) if m.quantize else None
        neus = NeuSField(enc, hidden_dim=m.hidden_dim, num_hidden_layers=m.num_hidden_layers,
                         feature_dim=m.feature_dim, color_hidden=m.color_hidden,
                         color_layers=m.color_layers, geometric_init=True,
                         init_radius=m.init_radius, quantizer=quantizer)
        grid = OccupancyGrid(r.aabb, res=r.occupancy_res)
        self.model = nn.ModuleDict({"field": neus, "variance": LearnedVariance(m.init_variance),
                                    "grid": grid}).to(device)
        self.step_size = math.dist(r.aabb[:3], r.aabb[3:]) / r.samples_per_ray
        self.cell_diag = math.sqrt(3.0) * (hi - lo) / r.occupancy_res
        self.fd_eps = (hi - lo) / m.encoding.max_resolution
        self.train_set: MultiViewDataset | None = None
        self.test_set: MultiViewDataset | None = None
        self._rays: tuple[Tensor, Tensor, Tensor] | None = None
        self._coverage: Tensor | None = None
        self.source_path: str | None = None
        self.up: tuple[float, ...] = (0.0, 1.0, 0.0)  # the scene's up (set from the views)
        self.normalization: Normalization | None = None
        self.reference_path: str | None = config.data.reference
        self.cos_anneal_ratio = 1.0
        self.last_samples_per_ray = 0.0

    @property
    def field(self) -> NeuSField:
        return self.model["field"]

    @property
    def variance(self) -> LearnedVariance:
        return self.model["variance"]

    @property
    def grid(self) -> OccupancyGrid:
        return self.model["grid"]

    @property
    def aabb(self) -> tuple[float, ...]:
        return tuple(self.config.render.aabb)

    # -- data -------------------------------------------------------------------------------
    def setup_data(self) -> None:
        d = self.config.data
        path = dataset_path(d.path, d.spot_size)
        self.source_path = str(path)
        self.train_set, self.test_set = load_views(path, d.downscale, tuple(d.background))
        self.up = scene_up(self.train_set)
        rays_o, rays_d, rgb, coverage = training_rays(self.train_set, tuple(d.background))
        self._rays = (rays_o.to(self.device), rays_d.to(self.device), rgb.to(self.device))
        self._coverage = None if coverage is None else coverage.to(self.device)
        if d.path == SPOT_DATASET:
            # The synthetic views show spot in its normalised frame; exports go back to the
            # mesh's own units, and the mesh is the reference surface.
            ref = spot_reference()
            self.normalization = normalization_for(load_mesh(ref))
            self.reference_path = self.reference_path or str(ref)

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [*encoding_groups(self.field),
                {"params": list(self.variance.parameters()),
                 "lr_factor": self.config.loss.variance_lr_factor}]

    # -- rendering --------------------------------------------------------------------------
    def _band_fn(self, x: Tensor) -> Tensor:
        """1 where a cell point is near enough to the surface to carry weight, else 0."""
        s = self.variance.item()
        band = 1.5 * self.cell_diag + 5.0 / s
        return (self.field.sdf_chunked(x).abs() < band).float()

    def update_grid(self, step: int) -> None:
        """Refresh the surface-band occupancy grid (every cell for the first 16 updates).

        The band test is 0/1, so the moving maximum with decay ½ keeps a cell that left the band
        for about three more updates (while ``½^k`` exceeds the mean occupancy) — enough to ride
        out the jitter of the evaluation points, short enough to follow the sharpening band."""
        self.grid.update(step, self._band_fn, occ_thre=0.5, ema_decay=0.5, warmup_steps=16)

    def render_rays(self, rays_o: Tensor, rays_d: Tensor, stratified: bool = False,
                    cos_anneal_ratio: float = 1.0) -> NeuSRays:
        """March the grid, evaluate the field at the samples, composite (no background)."""
        n = rays_o.shape[0]
        ray_indices, t0, t1 = self.grid.sample(rays_o, rays_d, 0.0, float("inf"),
                                               self.step_size, stratified=stratified)
        dirs = rays_d[ray_indices]
        t_mid = (t0 + t1) * 0.5
        x = rays_o[ray_indices] + t_mid[:, None] * dirs
        sdf, features = self.field.sdf_and_features(x)
        grads = self.field.gradient(x)  # at q(x); detached (first-order hash grid)
        alpha = neus_alpha(sdf, grads, dirs, t1 - t0, self.variance(), cos_anneal_ratio)
        rgb = self.field.rgb(x, grads, dirs, features)
        weights, _, _ = weights_from_alpha(alpha, ray_indices, n)
        # One segment sum over [rgb, n̂, t, 1] gives colour, normals, depth and opacity.
        values = torch.cat([rgb, F.normalize(grads, dim=-1), t_mid[:, None],
                            torch.ones_like(t_mid)[:, None]], dim=-1)
        sums = accumulate(weights, values, ray_indices, n)
        return NeuSRays(rgb=sums[:, :3], normals=sums[:, 3:6], depth=sums[:, 6],
                        opacity=sums[:, 7], samples=x, num_samples=int(x.shape[0]))

    # -- training ---------------------------------------------------------------------------
    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        if self._rays is None:
            raise RuntimeError("setup_data() must run before training")
        cfg = self.config
        if step % cfg.render.occupancy_every == 0:
            self.update_grid(step // cfg.render.occupancy_every)
        rays_o, rays_d, rgb = self._rays
        idx = self.shard(torch.randint(0, rays_o.shape[0], (cfg.data.batch_rays,),
                                       device=self.device))
        o, d, target = rays_o[idx], rays_d[idx], rgb[idx]
        anneal = cfg.loss.cos_anneal_steps
        self.cos_anneal_ratio = 1.0 if anneal <= 0 else min(1.0, step / anneal)
        out = self.render_rays(o, d, stratified=True, cos_anneal_ratio=self.cos_anneal_ratio)
        color = out.rgb
        if self._coverage is None:
            bg = torch.tensor(cfg.data.background, device=self.device)
            color = color + (1.0 - out.opacity)[:, None] * bg
        loss_rgb = (color - target).abs().mean()
        loss = loss_rgb
        logs: dict[str, float] = {}
        if self._coverage is not None and cfg.loss.mask_weight > 0:
            cov = self._coverage[idx, 0]
            loss_mask = F.binary_cross_entropy(out.opacity.clamp(1e-3, 1.0 - 1e-3), cov)
            loss = loss + cfg.loss.mask_weight * loss_mask
            logs["mask"] = round(loss_mask.item(), 5)
        if cfg.loss.eikonal_weight > 0:
            pts = self._eikonal_points(out.samples.detach())
            g = self.field.gradient_fd(pts, eps=self.fd_eps)
            loss_eik = ((g.norm(dim=-1) - 1.0) ** 2).mean()
            loss = loss + cfg.loss.eikonal_weight * loss_eik
            logs["eikonal"] = round(loss_eik.item(), 5)
        self.last_samples_per_ray = out.num_samples / o.shape[0]
        logs.update({"l1": round(loss_rgb.item(), 5), "inv_s": round(self.variance.item(), 1),
                     "samples_per_ray": round(self.last_samples_per_ray, 1)})
        return loss, logs

    def _eikonal_points(self, samples: Tensor) -> Tensor:
        k = self.config.loss.eikonal_points
        half = k // 2
        if samples.shape[0] > half:
            samples = samples[torch.randint(0, samples.shape[0], (half,), device=self.device)]
        a = torch.tensor(self.aabb, device=self.device, dtype=samples.dtype)
        u = torch.rand(k - samples.shape[0], 3, device=self.device, dtype=samples.dtype)
        return torch.cat([samples, a[:3] + u * (a[3:] - a[:3])])

    # -- state ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"source_path": self.source_path, "reference_path": self.reference_path,
                "normalization": self.normalization.to_dict() if self.normalization else None,
                "quantizer_cell_size": self._cell_size(), "up": list(self.up)}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.source_path = meta.get("source_path")
        self.up = tuple(meta.get("up", (0.0, 1.0, 0.0)))
        self.reference_path = meta.get("reference_path")
        norm = meta.get("normalization")
        self.normalization = Normalization.from_dict(norm) if norm else None

    def _cell_size(self) -> float | None:
        q = self.field.quantizer
        return None if q is None else float(q.cell_size)

    # -- using the field --------------------------------------------------------------------
    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        return Camera.orbit(30.0, 20.0, 3.2, up=self.up, width=width, height=height,
                            fov_y_deg=40.0)

    @torch.no_grad()
    def render_views(self, camera: Camera) -> dict[str, Tensor]:
        """``rgb`` over the background, ``premultiplied`` (over black), ``normals`` (unit,
        world), ``depth`` (normalised by opacity) and ``opacity``, each ``[H, W, …]``."""
        self.model.eval()
        rays_o, rays_d = camera.rays(device=self.device)
        parts: dict[str, list[Tensor]] = {"rgb": [], "normals": [], "depth": [], "opacity": []}
        for o, d in zip(rays_o.split(self.config.render.chunk_rays),
                        rays_d.split(self.config.render.chunk_rays)):
            out = self.render_rays(o, d)
            parts["rgb"].append(out.rgb)
            parts["normals"].append(out.normals)
            parts["depth"].append(out.depth)
            parts["opacity"].append(out.opacity)
        h, w = camera.height, camera.width
        opac = torch.cat(parts["opacity"]).reshape(h, w)
        bg = torch.tensor(self.config.data.background, device=self.device)
        premultiplied = torch.cat(parts["rgb"]).reshape(h, w, 3)
        rgb = premultiplied + (1.0 - opac)[..., None] * bg
        safe = opac.clamp_min(1e-6)[..., None]
        normals = F.normalize(torch.cat(parts["normals"]).reshape(h, w, 3) / safe, dim=-1)
        depth = torch.cat(parts["depth"]).reshape(h, w) / safe[..., 0]
        return {"rgb": rgb.clamp(0, 1), "premultiplied": premultiplied, "normals": normals,
                "depth": depth, "opacity": opac}

    def render(self, camera: Camera, mode: str = "rgb", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        if mode not in self.render_modes:
            raise ValueError(f"unknown render mode {mode!r}; the neus task has {self.render_modes}")
        bg = tuple(self.config.data.background if background is None else background)
        if mode == "slice":
            self.model.eval()
            out = render_slice(self.field.sdf_chunked, camera, aabb=self.aabb, background=bg,
                               device=self.device)
            return out.image.cpu().numpy()
        return compose_view(self.render_views(camera), mode, camera, bg, light_dir)

    def dataset_cameras(self) -> list[Camera]:
        return self.train_set.cameras() if self.train_set is not None else []

    def scene_source(self):
        """The NeuS SDF as a signed surface (its learned colours are not used: the scene's
        material shades it)."""
        from renderer.scene import SurfaceSource

        self.model.eval()
        return SurfaceSource(distance=self.field.sdf_chunked,
                             normal=lambda x: F.normalize(self.field.gradient(x), dim=-1),
                             aabb=tuple(self.aabb), signed=True,
                             mesh=lambda res: self.extract(res).mesh, name=self.kind)

    def extract(self, resolution: int | None = None, method: str | None = None,
                progress: bool | Callable[[int, int], None] = False, level: float = 0.0):
        """Marching cubes of the zero level set in the scene frame (a ``MeshResult``)."""
        self.model.eval()
        return extract_mesh(
            self.field.sdf_chunked, resolution=resolution or self.config.export.resolution,
            aabb=self.aabb, method=method or self.config.export.method, progress=progress,
            normal_fn=lambda x: F.normalize(self.field.gradient(x), dim=-1), device=self.device,
            level=level,
        )

    def export(self, path: Path, resolution: int | None = None, method: str | None = None,
               progress: bool | Callable[[int, int], None] = False,
               level: float = 0.0) -> dict[str, Any]:
        """Write the ``level`` set (0: the surface) in the reference mesh's units for the spot
        dataset, in the scene's otherwise."""
        return export_surface(self.extract(resolution, method, progress, level),
                              self.normalization, path)

    def evaluate(self, reference: str | Path | None = None, mesh: str | Path | None = None,
                 resolution: int | None = None, n_samples: int = 100_000,
                 progress: bool = False, max_views: int | None = None, **_: Any) -> dict[str, Any]:
        """PSNR / SSIM on held-out views (training views if none), and Chamfer-L1, normal
        consistency, F-score and IoU against ``reference`` when there is one."""
        if self.train_set is None:
            self.setup_data()
        views = self.test_set if self.test_set is not None else self.train_set
        split = "test" if self.test_set is not None else "train"
        out: dict[str, Any] = evaluate_views(lambda cam: self.render_views(cam)["rgb"], views,
                                             split, max_views, targets=self._target_image(views))
        ref = reference or self.reference_path
        if ref is None:
            return {**out, "reference": None}
        return {**out, **compare_to_reference(
            ref, mesh,
            lambda: in_source_units(self.extract(resolution, progress=progress),
                                    self.normalization),
            f"field@{resolution or self.config.export.resolution}^3", n_samples)}

    def _target_image(self, views: MultiViewDataset):
        """Ground truth as the renders show it: masked photos over the background."""
        if views.masks is None or views.alpha is not None:
            return None
        bg = torch.tensor(self.config.data.background)

        def target(i: int) -> Tensor:
            m = views.masks[i][..., None]
            return views.images[i] * m + (1.0 - m) * bg

        return target

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        p.update({"source": self.source_path, "reference": self.reference_path,
                  "inv_s": self.variance.item(),
                  "quantizer_cell_size": self._cell_size(),
                  "occupied_fraction": float(self.grid.occupied.float().mean()),
                  "samples_per_ray": self.last_samples_per_ray,
                  "render_modes": list(self.render_modes)})
        return p


"""The ``nerf`` task: fit a radiance field to posed photographs (instant-ngp recipe on the CPU).

Recipe, top to bottom:
1. load the views (``datasets.multiview.load_multiview``: Blender, instant-ngp transforms,
   tiny-NeRF ``.npz``, NeuS/DTU); ``path = "spot"`` renders the synthetic spot dataset once
   (``datasets.synthetic``) so the preset runs from a fresh clone;
2. flatten every training pixel into a ray (``rays_o``, ``rays_d``, ``rgb``);
3. field: hash grid → density MLP → SH-encoded view direction → colour MLP
   (``fields.radiance.RadianceField``, Müller et al. 2022);
4. samples: an occupancy grid (``renderer.occupancy.OccupancyGrid``) marches rays at a fixed
   step and keeps only samples in occupied cells; it is refreshed every few steps from the
   field's density;
5. quadrature: ``renderer.volume.render_rays`` (NeRF, Mildenhall et al. 2020) over a background;
6. loss: mean squared error of a random batch of rays; evaluation: PSNR / SSIM on held-out views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.tasks.base import Task
from app.tasks.views import (
    MultiViewDataConfig,
    compose_view,
    dataset_path,
    encoding_groups,
    evaluate_views,
    load_views,
    psnr,
    scene_up,
    training_rays,
)
from datasets.multiview import MultiViewDataset
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.encodings.quantized import QuantizedEncoding, quantizer_for
from fields.radiance import RadianceField
from renderer.cameras import Camera
from renderer.occupancy import OccupancyGrid
from renderer.volume import render_rays

__all__ = ["NeRFDataConfig", "NeRFModelConfig", "NeRFRenderConfig", "NeRFExperiment", "NeRFTask",
           "psnr"]

OCCUPANCY_REFERENCE_SAMPLES = 1024


@dataclass
class NeRFDataConfig(MultiViewDataConfig):
    """Where the views come from."""


@dataclass
class NeRFRBFConfig:
    """NeuRBF for radiance fields (Chen et al., ICCV 2023): anisotropic inverse-quadratic RBFs
    (k = 5, F = 32, no normalisation, no sinusoidal composition — the paper's NeRF-Synthetic
    setting) whose features join the colour branch only. Placement follows the paper's grid-only
    pre-fit: after ``warmup_steps`` of training, weights ``(1 − exp(−σ))·‖∇f_c‖`` on a regular
    grid (σ density, ``f_c`` the min-max normalised geometry features, finite differences) drive
    a weighted k-means."""

    n_kernels: int = 4096
    neighbours: int = 5
    features: int = 32
    warmup_steps: int = 300
    """Grid-only steps before the kernels are placed (the RBF features start at ~0)."""
    kmeans_alpha: float = 0.3
    kmeans_iters: int = 10
    placement_resolution: int = 64
    """Points per axis of the grid the placement weights are evaluated on."""
    lr_factor: float = 2.0
    """RBF features' learning rate × the trainer's (paper: 2e-2)."""


@dataclass
class NeRFModelConfig:
    """The radiance field."""

    encoding_type: str = "hashgrid"
    """``hashgrid`` (instant-ngp) or ``rbf`` (the hash grid plus NeuRBF appearance kernels)."""
    rbf: NeRFRBFConfig = field(default_factory=NeRFRBFConfig)
    encoding: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=12, features_per_level=2, log2_hashmap_size=16, base_resolution=16,
        max_resolution=512))
    hidden_dim: int = 64
    """Density MLP width."""
    geo_feat_dim: int = 15
    """Geometry features passed to the colour MLP."""
    color_hidden: int = 64
    """Colour MLP width."""
    color_layers: int = 2
    """Colour MLP hidden layers."""
    backend: str = "auto"
    """Hash-grid backend: ``auto``, ``torch`` or ``tcnn``."""
    quantize: int = 0
    """CQ-NIR: snap the encoding's input to a lattice of this many points per axis over
    ``±quantize_domain`` (0: off)."""
    quantize_domain: float = 2.5
    """Half-width of the CQ-NIR lattice's domain."""


@dataclass
class NeRFRenderConfig:
    """Sampling and rendering."""

    aabb: tuple[float, float, float, float, float, float] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    """The scene box (the field's domain; a cube)."""
    samples_per_ray: int = 128
    """Marching step = box diagonal / this."""
    occupancy_res: int = 64
    """Occupancy grid cells per axis."""
    occupancy_threshold: float = 0.01
    """Opacity (density × step) above which a cell is occupied."""
    occupancy_every: int = 16
    """Steps between occupancy-grid updates."""
    occupancy_warmup: int = 256
    """Updates during which every cell is evaluated."""
    chunk_rays: int = 4096
    """Rays per chunk when rendering images."""


@dataclass
class NeRFExperiment(ExperimentConfig):
    """Fit a radiance field to posed images."""

    task: str = "nerf"
    data: NeRFDataConfig = field(default_factory=NeRFDataConfig)
    model: NeRFModelConfig = field(default_factory=NeRFModelConfig)
    render: NeRFRenderConfig = field(default_factory=NeRFRenderConfig)


class NeRFTask(Task):
    """Radiance field of posed images: train, render novel views, evaluate PSNR / SSIM."""

    kind = "nerf"
    config_cls = NeRFExperiment
    render_modes = ("rgb", "depth", "normals", "shaded", "opacity")

    def __init__(self, config: NeRFExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: NeRFExperiment = config
        aabb = config.render.aabb
        lo, hi = min(aabb[:3]), max(aabb[3:])
        enc = HashGridEncoding(3, config.model.encoding, bounds=(lo, hi),
                               backend=config.model.backend, device=device)
        m = config.model
        if m.quantize:
            enc = QuantizedEncoding(enc, quantizer_for(m.quantize, m.quantize_domain, aabb))
        if m.encoding_type not in ("hashgrid", "rbf"):
            raise ValueError(f"model.encoding_type must be hashgrid or rbf, got "
                             f"{m.encoding_type!r}")
        appearance = None
        if m.encoding_type == "rbf":
            from fields.encodings.rbf import AdaptiveRBFEncoding

            appearance = AdaptiveRBFEncoding(
                m.rbf.n_kernels, 3, features=m.rbf.features, kernel="ivq_a",
                k=m.rbf.neighbours, msc=None, normalise=False, bounds=(lo, hi))
        radiance = RadianceField(enc, hidden_dim=m.hidden_dim, geo_feat_dim=m.geo_feat_dim,
                                 color_hidden=m.color_hidden, color_layers=m.color_layers,
                                 appearance=appearance)
        grid = OccupancyGrid(aabb, res=config.render.occupancy_res)
        self.model = nn.ModuleDict({"field": radiance, "grid": grid}).to(device)
        diag = math.dist(aabb[:3], aabb[3:])
        self.step_size = diag / config.render.samples_per_ray
        # Cells are judged by the opacity of a fine reference step (nerfacc's convention for
        # occ_thre), not of our coarse marching step, so empty space is pruned early.
        self.occupancy_step = diag / OCCUPANCY_REFERENCE_SAMPLES
        self.near, self.far = 0.0, float("inf")
        self.train_set: MultiViewDataset | None = None
        self.test_set: MultiViewDataset | None = None
        self._rays: tuple[Tensor, Tensor, Tensor] | None = None
        self._alpha: Tensor | None = None
        self.source_path: str | None = None
        self.up: tuple[float, ...] = (0.0, 1.0, 0.0)  # the scene's up (set from the views)
        self.last_samples_per_ray = 0.0

    @property
    def field(self) -> RadianceField:
        return self.model["field"]

    @property
    def grid(self) -> OccupancyGrid:
        return self.model["grid"]

    # -- data -------------------------------------------------------------------------------
    def setup_data(self) -> None:
        d = self.config.data
        path = dataset_path(d.path, d.spot_size)
        self.source_path = str(path)
        self.train_set, self.test_set = load_views(path, d.downscale, tuple(d.background))
        self.up = scene_up(self.train_set)
        rays_o, rays_d, rgb, coverage = training_rays(self.train_set, tuple(d.background))
        if coverage is not None:
            # Premultiplied colour and alpha: each step composites over a random background, so
            # empty space must become transparent (a fog the colour of a fixed background would
            # otherwise be an equally good fit and can trap training).
            self._alpha = coverage.to(self.device)
        self._rays = (rays_o.to(self.device), rays_d.to(self.device), rgb.to(self.device))
        # Object-centric scenes: the box clips every ray, so the dataset's near/far hints (made
        # for other camera distances) are not needed and could cut the object.
        self.near, self.far = 0.0, float("inf")

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = encoding_groups(self.field)
        app = self.field.appearance
        if app is not None:  # the RBF features get their own (larger) learning rate
            ids = {id(p) for p in app.parameters()}
            for g in groups:
                g["params"] = [p for p in g["params"] if id(p) not in ids]
            groups.append({"params": list(app.parameters()),
                           "lr_factor": self.config.model.rbf.lr_factor})
        return groups

    @torch.no_grad()
    def place_kernels(self) -> dict[str, float]:
        """NeuRBF's radiance initialisation from the current (grid-only) field: weights
        ``w = (1 − exp(−σ))·‖∇f_c‖`` on a regular grid over the box (δ = 1, as the official code;
        the paper writes ``1 − exp(−σδ)``), ``f_c`` the geometry features min-max normalised per
        channel, ``∇`` central differences along the grid; then weighted k-means."""
        r = self.config.model.rbf
        n = r.placement_resolution
        aabb = self.config.render.aabb
        axes = [torch.linspace(aabb[i], aabb[i + 3], n) for i in range(3)]
        pts = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        sig, geo = [], []
        self.field.eval()
        for c in pts.split(1 << 15):
            s_, g_ = self.field.density_and_features(c.to(self.device))
            sig.append(s_.cpu())
            geo.append(g_.cpu())
        sigma = torch.cat(sig).reshape(n, n, n)
        feat = torch.cat(geo)
        lo, hi = feat.min(0).values, feat.max(0).values
        feat = ((feat - lo) / (hi - lo).clamp_min(1e-12)).reshape(n, n, n, -1)
        grads = torch.gradient(feat, dim=(0, 1, 2))
        grad_norm = torch.sqrt(sum((g ** 2).sum(-1) for g in grads))
        weights = (1.0 - torch.exp(-sigma)) * grad_norm
        gen = torch.Generator().manual_seed(self.config.trainer.seed)
        side = max(aabb[3 + i] - aabb[i] for i in range(3))
        self.field.appearance.init_from_signal(
            pts, weights.reshape(-1), alpha=r.kmeans_alpha, iters=r.kmeans_iters,
            generator=gen, extent=side, samples_per_axis=n)
        self.field.appearance.to(self.device)
        self.field.train()
        return {"weighted_points": int((weights > 0).sum())}

    def _opacity_fn(self, x: Tensor) -> Tensor:
        return self.field.density_chunked(x) * self.occupancy_step

    def _rgb_sigma(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        sigma, rgb = self.field(x, d)
        return rgb, sigma

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        if self._rays is None:
            raise RuntimeError("setup_data() must run before training")
        r = self.config.render
        m = self.config.model
        if m.encoding_type == "rbf" and step == m.rbf.warmup_steps:
            self.place_kernels()
        if step % r.occupancy_every == 0:
            self.grid.update(step // r.occupancy_every, self._opacity_fn,
                             occ_thre=r.occupancy_threshold,
                             warmup_steps=r.occupancy_warmup // r.occupancy_every)
        rays_o, rays_d, rgb = self._rays
        idx = self.shard(torch.randint(0, rays_o.shape[0], (self.config.data.batch_rays,),
                                       device=self.device))
        o, d, target = rays_o[idx], rays_d[idx], rgb[idx]
        ray_indices, t0, t1 = self.grid.sample(o, d, self.near, self.far, self.step_size,
                                               stratified=True)
        if self._alpha is not None:
            bg = torch.rand(o.shape[0], 3, device=self.device)
            target = target + (1.0 - self._alpha[idx]) * bg
        else:
            bg = torch.tensor(self.config.data.background, device=self.device)
        out = render_rays(self._rgb_sigma, o, d, t0, t1, ray_indices, background=bg)
        loss = torch.mean((out.rgb - target) ** 2)
        self.last_samples_per_ray = ray_indices.shape[0] / o.shape[0]
        return loss, {"psnr": -10.0 * math.log10(max(loss.item(), 1e-10)),
                      "samples_per_ray": round(self.last_samples_per_ray, 2)}

    # -- state ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"source_path": self.source_path, "near": self.near, "far": self.far,
                "up": list(self.up)}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.source_path = meta.get("source_path")
        self.up = tuple(meta.get("up", (0.0, 1.0, 0.0)))
        self.near = float(meta.get("near", 0.0))
        far = meta.get("far")
        self.far = float(far) if far is not None else float("inf")

    # -- using the field --------------------------------------------------------------------
    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        return Camera.orbit(30.0, 25.0, 4.0, up=self.up, width=width, height=height,
                            fov_y_deg=40.0)

    def _normal_sigma(self, x: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """``(n, σ)`` with ``n = −∇σ/‖∇σ‖`` by central differences (the density's outward
        normal; differences also work behind a CQ-NIR quantiser, whose autograd gradient is 0)."""
        q = getattr(self.field.encoding, "quantizer", None)
        eps = max(self.occupancy_step, 0.0 if q is None else q.cell_size)
        offsets = eps * torch.eye(3, dtype=x.dtype, device=x.device)
        pts = torch.cat([x[:, None] + offsets, x[:, None] - offsets], dim=1).reshape(-1, 3)
        s = self.field.density(pts).reshape(-1, 6)
        grad = (s[:, :3] - s[:, 3:]) / (2.0 * eps)
        return -torch.nn.functional.normalize(grad, dim=-1), self.field.density(x)

    @torch.no_grad()
    def render_views(self, camera: Camera, normals: bool = False) -> dict[str, Tensor]:
        """``rgb [H, W, 3]`` (over the background), ``premultiplied`` (over black), ``depth [H, W]``
        (expected, normalised by opacity), ``opacity``; with ``normals`` also
        ``normals [H, W, 3]`` (unit, opacity-weighted density normals)."""
        self.model.eval()
        rays_o, rays_d = camera.rays(device=self.device)
        bg = torch.tensor(self.config.data.background, device=self.device)
        rgb, depth, opac, nrm = [], [], [], []
        n = self.config.render.chunk_rays
        for o, d in zip(rays_o.split(n), rays_d.split(n)):
            ray_indices, t0, t1 = self.grid.sample(o, d, self.near, self.far, self.step_size)
            out = render_rays(self._rgb_sigma, o, d, t0, t1, ray_indices, background=bg)
            if normals:
                nrm.append(render_rays(self._normal_sigma, o, d, t0, t1, ray_indices).rgb)
            rgb.append(out.rgb)
            depth.append(out.depth / out.opacity.clamp_min(1e-6))
            opac.append(out.opacity)
        h, w = camera.height, camera.width
        opacity = torch.cat(opac).reshape(h, w)
        composited = torch.cat(rgb).reshape(h, w, 3)
        views = {"rgb": composited.clamp(0, 1),
                 "premultiplied": composited - (1.0 - opacity)[..., None] * bg,
                 "depth": torch.cat(depth).reshape(h, w),
                 "opacity": opacity}
        if normals:
            views["normals"] = torch.nn.functional.normalize(
                torch.cat(nrm).reshape(h, w, 3), dim=-1)
        return views

    def render(self, camera: Camera, mode: str = "rgb", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        if mode not in self.render_modes:
            raise ValueError(f"unknown render mode {mode!r}; the nerf task has {self.render_modes}")
        views = self.render_views(camera, normals=mode in ("normals", "shaded"))
        bg = self.config.data.background if background is None else background
        return compose_view(views, mode, camera, tuple(bg), light_dir)

    def scene_source(self, mesh_density: float = 10.0):
        """The radiance field, volume rendered inside its box (colours as trained). Its mesh
        for a scene export is the ``σ = mesh_density`` level set (marching cubes)."""
        from renderer.meshing import extract_mesh
        from renderer.scene import RadianceSource

        self.model.eval()
        aabb = tuple(self.config.render.aabb)

        def mesh(res: int):
            with torch.no_grad():
                return extract_mesh(lambda x: mesh_density - self.field.density(x).reshape(-1),
                                    resolution=res, aabb=aabb).mesh

        return RadianceSource(rgb_sigma=self._rgb_sigma, aabb=aabb,
                              samples=self.config.render.samples_per_ray, mesh=mesh,
                              name=self.kind)

    def dataset_cameras(self) -> list[Camera]:
        return self.train_set.cameras() if self.train_set is not None else []

    def evaluate(self, max_views: int | None = None, **_: Any) -> dict[str, Any]:
        """PSNR and SSIM on the held-out views (training views if the format has none)."""
        if self.train_set is None:
            self.setup_data()
        views = self.test_set if self.test_set is not None else self.train_set
        split = "test" if self.test_set is not None else "train"
        return evaluate_views(lambda cam: self.render_views(cam)["rgb"], views, split, max_views)

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        p.update({"source": self.source_path,
                  "occupied_fraction": float(self.grid.occupied.float().mean()),
                  "samples_per_ray": self.last_samples_per_ray,
                  "render_modes": list(self.render_modes)})
        return p

"""The ``sdf`` task: fit a neural signed distance field to a watertight mesh.

Recipe, top to bottom:
1. load the mesh (``datasets.meshes.load_mesh`` validates it), warn if it is not watertight;
2. normalise it so its longest side is 2 and its centre the origin (saved with checkpoints);
3. draw a pool of SDF samples once — surface, near-surface at two σ, uniform in the padded
   box — with exact signed distances from open3d (``datasets.sdf_samples.sample_sdf``);
4. field: hash grid → small MLP, geometrically initialised (``fields.sdf.SDFField``);
5. loss: mean |f(x) − sdf(x)| over a random batch of the pool;
6. render by sphere tracing (``renderer.surface``), export by coarse-to-fine marching cubes
   (``renderer.meshing``) mapped back to the mesh's own units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.config import ExperimentConfig
from app.paths import resolve_input
from app.tasks.base import Task
from app.tasks.surfaces import (
    MeshExportConfig,
    MeshFieldState,
    compare_to_reference,
    export_surface,
    in_source_units,
)
from datasets.meshes import Normalization, load_mesh, normalize_mesh, warn_if_open
from datasets.sdf_samples import MeshDistance, sample_sdf
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.sdf import SDFField
from renderer.cameras import Camera
from renderer.meshing import extract_mesh
from renderer.slice import render_slice
from renderer.surface import RenderOutput, render_surface

__all__ = ["SDFDataConfig", "SDFModelConfig", "MeshExportConfig", "SDFExperiment", "SDFTask"]


@dataclass
class SDFDataConfig:
    """Where the samples come from."""

    path: str = "assets/meshes/spot.obj"
    """Mesh to fit (obj, ply, off, stl, glb); must be watertight for a well-defined sign."""
    n_surface: int = 200_000
    """Surface samples in the pool (sdf = 0)."""
    n_near: int = 500_000
    """Near-surface samples (half at each σ)."""
    n_uniform: int = 100_000
    """Uniform samples in the padded box."""
    sigmas: tuple[float, float] = (0.01, 0.002)
    """Standard deviations of the near-surface offsets (normalised units; the mesh spans 2)."""
    padding: float = 0.05
    """The field's box is [-1 - padding, 1 + padding]³."""
    batch_size: int = 8192
    """Samples per optimisation step."""


@dataclass
class SDFRBFConfig:
    """NeuRBF for SDFs (Chen et al., ICCV 2023): the paper's SDF defaults — tent (``nlin_s``)
    kernels, k = 8, F = 16, RBF MSC [1, 8], feature MSC [30, 300], a 16-level × 1-feature hash
    grid beside the RBFs, kernels placed by k-means of the sample pool weighted by 1/|sdf|."""

    n_kernels: int = 0
    """Number of RBFs; 0 = as many as fit the parameter count of this config's hash-grid field."""
    neighbours: int = 8
    features: int = 16
    msc: tuple[float, float] = (1.0, 8.0)
    feature_msc: tuple[float, float] = (30.0, 300.0)
    kmeans_alpha: float = 0.5
    kmeans_iters: int = 10
    kmeans_points: int = 200_000
    """Pool samples the k-means runs on (weighted by 1/|sdf|, so mostly surface points)."""
    grid: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=16, features_per_level=1, log2_hashmap_size=15, base_resolution=16,
        max_resolution=2048))
    hidden_dim: int = 64


@dataclass
class SDFModelConfig:
    """The field: hash grid + MLP (or NeuRBF with ``encoding_type = "rbf"``)."""

    encoding_type: str = "hashgrid"
    """``hashgrid`` (hash grid → MLP) or ``rbf`` (NeuRBF at the same parameter count)."""
    rbf: SDFRBFConfig = field(default_factory=SDFRBFConfig)
    encoding: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=12, features_per_level=2, log2_hashmap_size=15, base_resolution=16,
        max_resolution=512))
    hidden_dim: int = 64
    """MLP width."""
    num_hidden_layers: int = 2
    """MLP depth."""
    activation: str = "relu"
    """``relu`` or ``softplus``."""
    backend: str = "auto"
    """Hash-grid backend: ``auto`` (tcnn on CUDA when installed), ``torch`` or ``tcnn``."""
    geometric_init: bool = False
    """Start as the SDF of a sphere (SAL init). Useful when supervision is sparse (surface points,
    eikonal terms); with dense exact-SDF samples the default init converges much faster (spot,
    500 steps: Chamfer-L1 0.0007 without vs 0.0073 with; see docs/benchmarks.md)."""
    init_radius: float = 0.5
    """Radius of the sphere the untrained field represents (with ``geometric_init``)."""


@dataclass
class SDFExperiment(ExperimentConfig):
    """Fit an SDF to a mesh."""

    task: str = "sdf"
    data: SDFDataConfig = field(default_factory=SDFDataConfig)
    model: SDFModelConfig = field(default_factory=SDFModelConfig)
    export: MeshExportConfig = field(default_factory=MeshExportConfig)


class SDFTask(MeshFieldState, Task):
    """Neural SDF of a mesh: train, render (sphere tracing), export (marching cubes), evaluate."""

    kind = "sdf"
    config_cls = SDFExperiment
    render_modes = ("shaded", "normals", "depth", "steps", "slice")

    def __init__(self, config: SDFExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: SDFExperiment = config
        pad = config.data.padding
        self.bound = 1.0 + pad
        if config.model.encoding_type not in ("hashgrid", "rbf"):
            raise ValueError(f"model.encoding_type must be hashgrid or rbf, got "
                             f"{config.model.encoding_type!r}")
        self.model = (self._hashgrid_field() if config.model.encoding_type == "hashgrid"
                      else self._rbf_field()).to(device)
        self._neighbours = None
        self.normalization: Normalization | None = None
        self.source_path: str | None = None
        self.samples = None

    def _hashgrid_field(self) -> SDFField:
        m = self.config.model
        enc = HashGridEncoding(3, m.encoding, bounds=(-self.bound, self.bound),
                               backend=m.backend, device=self.device)
        return SDFField(enc, hidden_dim=m.hidden_dim, num_hidden_layers=m.num_hidden_layers,
                        activation=m.activation, geometric_init=m.geometric_init,
                        init_radius=m.init_radius)

    def _rbf_field(self):
        """NeuRBF sized to the hash-grid field's parameter count (frozen centres and shapes
        counted, as the paper's budgets are)."""
        from fields.encodings.rbf import AdaptiveRBFEncoding
        from fields.neurbf import NeuRBFSDFField, neurbf_kernel_budget

        r = self.config.model.rbf
        grid = HashGridEncoding(3, r.grid, bounds=(-self.bound, self.bound),
                                backend=self.config.model.backend, device=self.device)
        n = r.n_kernels
        if n <= 0:
            budget = sum(p.numel() for p in self._hashgrid_field().parameters())
            n = neurbf_kernel_budget(budget, grid, 3, r.features, 1, r.hidden_dim, "nlin_s")
            if n < 16:
                raise ValueError(f"the hash-grid budget ({budget} parameters) leaves room for "
                                 f"{n} kernels beside the NeuRBF grid; shrink model.rbf.grid")
        rbf = AdaptiveRBFEncoding(n, 3, features=r.features, kernel="nlin_s", k=r.neighbours,
                                  msc=tuple(r.msc), normalise=True, detach_denominator=False,
                                  bounds=(-self.bound, self.bound))
        return NeuRBFSDFField(grid, rbf, hidden_dim=r.hidden_dim,
                              feature_msc=tuple(r.feature_msc))

    @property
    def field(self) -> SDFField:
        return self.model

    # -- data -------------------------------------------------------------------------------
    def setup_data(self) -> None:
        path = resolve_input(self.config.data.path)
        mesh = load_mesh(path)
        warn_if_open(mesh, path, task="sdf")
        mesh, self.normalization = normalize_mesh(mesh)
        self.source_path = str(path)
        d = self.config.data
        self.samples = sample_sdf(
            mesh, n_surface=d.n_surface, n_near=d.n_near, n_uniform=d.n_uniform,
            sigmas=tuple(d.sigmas), bounds=(-self.bound, self.bound),
            seed=self.config.trainer.seed, distance=MeshDistance(mesh),
        ).to(self.device)
        if self.config.model.encoding_type == "rbf":
            self._place_kernels()

    def _place_kernels(self) -> None:
        """NeuRBF's SDF initialisation: weighted k-means of pool points with w = 1/(|sdf| + 1e-9)
        (in effect the surface samples); then every pool point's k nearest kernels, cached
        (centres are frozen)."""
        r = self.config.model.rbf
        gen = torch.Generator().manual_seed(self.config.trainer.seed)
        pts, sdf = self.samples.points.cpu(), self.samples.sdf.cpu()
        pick = torch.randperm(len(pts), generator=gen)[:r.kmeans_points]
        rbf = self.model.rbf
        rbf.init_from_signal(pts[pick], 1.0 / (sdf[pick].abs() + 1e-9), alpha=r.kmeans_alpha,
                             iters=r.kmeans_iters, generator=gen, extent=2.0 * self.bound,
                             samples_per_axis=self.config.export.resolution)
        rbf.to(self.device)
        self._neighbours = None  # computed at the first step from the centres in use

    def parameter_groups(self) -> list[dict[str, Any]]:
        if self.config.model.encoding_type == "rbf":
            # NeuRBF's sines (feature MSC up to 300) need a gentler step than a hash grid: the
            # paper trains SDFs at lr 1e-4 for 20k steps; on our 2000-step schedule 0.1 × the
            # trainer's lr is best (torus, 200 steps: NAE 8.6° at 0.1, 8.5° at 0.03, 18.6° at 0.3,
            # 36.9° at 1).
            return [{"params": list(self.model.parameters()), "lr_factor": 0.1}]
        return [
            {"params": list(self.model.encoding.parameters()), "lr_factor": 1.0},
            {"params": list(self.model.mlp.parameters()), "lr_factor": 1.0, "weight_decay": 1e-6},
        ]

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        if self.samples is None:
            raise RuntimeError("setup_data() must run before training")
        n = len(self.samples)
        idx = self.shard(torch.randint(0, n, (self.config.data.batch_size,),
                                       device=self.device))
        if self.config.model.encoding_type == "rbf":
            if self._neighbours is None:  # every pool point's k nearest kernels (frozen centres)
                self._neighbours = self.model.rbf.neighbours(self.samples.points)
            pred = self.model.sdf(self.samples.points[idx], self._neighbours[idx])
        else:
            pred = self.model.sdf(self.samples.points[idx])
        loss = (pred - self.samples.sdf[idx]).abs().mean()
        return loss, {}

    # -- state ------------------------------------------------------------------------------
    def load_meta(self, meta: dict[str, Any]) -> None:
        super().load_meta(meta)
        self._neighbours = None  # the checkpoint's centres replace the ones placed at set-up

    # -- using the field --------------------------------------------------------------------
    @torch.no_grad()
    def render_frame(self, camera: Camera, mode: str = "shaded", *,
                     background: tuple[float, float, float] | None = None,
                     light_dir: tuple[float, float, float] | None = None) -> RenderOutput:
        """Sphere-trace ``camera``: image plus depth, hit mask, normals and step counts."""
        if mode not in self.render_modes or mode == "slice":
            raise ValueError(f"unknown render mode {mode!r}; sphere tracing renders "
                             f"{self.render_modes[:-1]}")
        self.model.eval()
        return render_surface(
            self.model.sdf_chunked, camera, mode, normal_fn=self.model.normal,
            aabb=self.aabb, device=self.device, light_dir=light_dir,
            background=(1.0, 1.0, 1.0) if background is None else background,
        )

    def render(self, camera: Camera, mode: str = "shaded", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        if mode == "slice":
            self.model.eval()
            out = render_slice(self.model.sdf_chunked, camera, aabb=self.aabb,
                               background=(1.0, 1.0, 1.0) if background is None else background,
                               device=self.device)
            return out.image.cpu().numpy()
        return self.render_frame(camera, mode, background=background,
                                 light_dir=light_dir).image.detach().cpu().numpy()

    def scene_source(self):
        """The SDF as a signed surface in its normalised frame (autograd normals, meshes by
        marching cubes)."""
        from renderer.scene import SurfaceSource

        self.model.eval()
        return SurfaceSource(distance=self.model.sdf_chunked, normal=self.model.normal,
                             aabb=tuple(self.aabb), signed=True,
                             mesh=lambda res: self.extract(res).mesh, name=self.kind)

    def extract(self, resolution: int | None = None, method: str | None = None,
                progress: bool | Callable[[int, int], None] = False, level: float = 0.0):
        """Marching cubes of the field in its normalised frame (a :class:`MeshResult`)."""
        self.model.eval()
        return extract_mesh(
            self.model.sdf_chunked, resolution=resolution or self.config.export.resolution,
            aabb=self.aabb, method=method or self.config.export.method, progress=progress,
            normal_fn=self.model.normal, device=self.device, level=level,
        )

    def export(self, path: Path, resolution: int | None = None, method: str | None = None,
               progress: bool | Callable[[int, int], None] = False,
               level: float = 0.0) -> dict[str, Any]:
        """Extract the ``level`` set (0: the surface; in normalised units) and write it in the
        source mesh's units."""
        return export_surface(self.extract(resolution, method, progress, level),
                              self.normalization, path)

    def evaluate(self, reference: str | Path | None = None, mesh: str | Path | None = None,
                 resolution: int | None = None, n_samples: int = 100_000,
                 progress: bool = False, **_: Any) -> dict[str, Any]:
        """Compare the field's mesh (or an exported ``mesh``) with ``reference`` (default: the
        training mesh) by Chamfer-L1, normal consistency, F-score@1% and volumetric IoU."""
        return compare_to_reference(
            reference or self.source_path or self.config.data.path, mesh,
            lambda: in_source_units(self.extract(resolution, progress=progress),
                                    self.normalization),
            f"field@{resolution or self.config.export.resolution}^3", n_samples)

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        enc = getattr(self.model, "encoding", None) or self.model.grid
        p.update({
            "source": self.source_path,
            "encoding": self.config.model.encoding_type,
            "backend": getattr(enc, "backend", "torch"),
            "samples": len(self.samples) if self.samples is not None else 0,
            "render_modes": list(self.render_modes),
        })
        if hasattr(self.model, "num_parameters"):
            p["parameters (incl. frozen RBF centres/shapes)"] = self.model.num_parameters()
            p["rbf_kernels"] = int(self.model.rbf.centres.shape[0])
        return p

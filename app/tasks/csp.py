"""The ``csp`` task: fit a closest-surface-point field to a mesh of any topology (open or closed).

CSP-Net (Venkatesh et al., "Deep Implicit Surface Point Prediction Networks", ICCV 2021) maps a
point to its closest surface point; the unsigned distance, normals and sphere tracing follow, and
nothing needs an inside — garments and scans with holes stay open. Recipe, top to bottom:

1. load the mesh (any topology; ``datasets.meshes.load_mesh`` validates it) and normalise it so
   its longest side is 2 and its centre the origin (saved with checkpoints);
2. draw a pool once (``datasets.csp_samples.sample_csp``): surface points (target: themselves),
   two near-surface bands and uniform points, with exact closest points on the mesh (open3d);
3. field: hash grid + xyz → MLP predicting the displacement to the surface
   (``fields.csp.CSPField``; output ``x − MLP``);
4. loss: mean ‖CSP(x) − CSP_gt(x)‖² over a random batch of the pool;
5. render by sphere tracing the unsigned distance ``‖x − CSP(x)‖`` with a hit threshold
   (``renderer.csp_trace.render_csp``: refined hits, normals a step back); export one layer on the
   surface (``renderer.open_meshing.extract_open_mesh``) in the mesh's own units.
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
from app.tasks.surfaces import MeshFieldState, compare_to_reference, in_source_units
from datasets.csp_samples import DEFAULT_SIGMAS, sample_csp
from datasets.meshes import Normalization, load_mesh, normalize_mesh
from datasets.sdf_samples import MeshDistance
from fields.csp import CSPField
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from renderer.cameras import Camera
from renderer.csp_trace import DEFAULT_HIT_THRESHOLD, render_csp
from renderer.open_meshing import extract_open_mesh
from renderer.surface import RenderOutput

__all__ = ["CSPDataConfig", "CSPModelConfig", "CSPExportConfig", "CSPExperiment", "CSPTask"]


@dataclass
class CSPDataConfig:
    """Where the samples come from."""

    path: str = "assets/meshes/cloth.obj"
    """Mesh to fit (obj, ply, off, stl, glb); open or closed."""
    n_surface: int = 200_000
    """Surface samples (their closest point is themselves)."""
    n_near: int = 400_000
    """Near-surface samples (half at each σ)."""
    n_uniform: int = 40_000
    """Uniform samples in the padded box."""
    sigmas: tuple[float, float] = DEFAULT_SIGMAS
    """Near-surface offsets (normalised units, the mesh spans 2: CSP-Net's 0.0158 / 0.005 in its
    side-1 box, doubled)."""
    padding: float = 0.05
    """The field's box is [-1 - padding, 1 + padding]³."""
    batch_size: int = 8192
    """Samples per optimisation step."""


@dataclass
class CSPModelConfig:
    """The field: hash grid + xyz → MLP (displacement to the closest point)."""

    encoding: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=12, features_per_level=2, log2_hashmap_size=15, base_resolution=16,
        max_resolution=512))
    hidden_dim: int = 64
    num_hidden_layers: int = 3
    activation: str = "softplus"
    """``softplus`` (smooth Jacobian, smooth normals) or ``relu``."""
    backend: str = "auto"
    """Hash-grid backend: ``auto``, ``torch`` or ``tcnn``."""


@dataclass
class CSPExportConfig:
    """Single-layer meshing (``renderer.open_meshing``)."""

    resolution: int = 256
    level_voxels: float = 1.5
    """ε of the double shell the layer is cut from, in voxels."""
    rim_cos: float = 0.5


@dataclass
class CSPRenderConfig:
    hit_threshold: float = DEFAULT_HIT_THRESHOLD
    """τ: a ray hits where ‖x − CSP(x)‖ < τ (CSP-Net's 0.008 in a side-1 box, doubled)."""
    max_steps: int = 128


@dataclass
class CSPExperiment(ExperimentConfig):
    """Fit a closest-surface-point field to a mesh."""

    task: str = "csp"
    data: CSPDataConfig = field(default_factory=CSPDataConfig)
    model: CSPModelConfig = field(default_factory=CSPModelConfig)
    render: CSPRenderConfig = field(default_factory=CSPRenderConfig)
    export: CSPExportConfig = field(default_factory=CSPExportConfig)


class CSPTask(MeshFieldState, Task):
    """Closest-surface-point field of a mesh: train, render, export one layer, evaluate."""

    kind = "csp"
    config_cls = CSPExperiment
    render_modes = ("shaded", "normals", "depth", "steps")

    def __init__(self, config: CSPExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: CSPExperiment = config
        self.bound = 1.0 + config.data.padding
        m = config.model
        enc = HashGridEncoding(3, m.encoding, bounds=(-self.bound, self.bound),
                               backend=m.backend, device=device)
        self.model = CSPField(enc, hidden_dim=m.hidden_dim, num_hidden_layers=m.num_hidden_layers,
                              activation=m.activation).to(device)
        self.normalization: Normalization | None = None
        self.source_path: str | None = None
        self.samples = None

    # -- data -------------------------------------------------------------------------------
    def setup_data(self) -> None:
        path = resolve_input(self.config.data.path)
        mesh, self.normalization = normalize_mesh(load_mesh(path))
        self.source_path = str(path)
        d = self.config.data
        self.samples = sample_csp(
            mesh, n_surface=d.n_surface, n_near=d.n_near, n_uniform=d.n_uniform,
            sigmas=tuple(d.sigmas), bounds=(-self.bound, self.bound),
            seed=self.config.trainer.seed, distance=MeshDistance(mesh)).to(self.device)

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [
            {"params": list(self.model.encoding.parameters()), "lr_factor": 1.0},
            {"params": list(self.model.mlp.parameters()), "lr_factor": 1.0, "weight_decay": 1e-6},
        ]

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        if self.samples is None:
            raise RuntimeError("setup_data() must run before training")
        idx = torch.randint(0, len(self.samples), (self.config.data.batch_size,),
                            device=self.device)
        err = self.model.csp(self.samples.points[idx]) - self.samples.csp[idx]
        sq = (err * err).sum(-1)
        return sq.mean(), {"csp_err": float(sq.detach().sqrt().mean())}

    # -- using the field --------------------------------------------------------------------
    def udf(self, x: Tensor) -> Tensor:
        """Unsigned distance ``‖x − CSP(x)‖`` (no gradients, chunked)."""
        return torch.linalg.vector_norm(x - self.model.csp_chunked(x), dim=-1)

    @torch.no_grad()
    def render_frame(self, camera: Camera, mode: str = "shaded", *,
                     background: tuple[float, float, float] | None = None,
                     light_dir: tuple[float, float, float] | None = None) -> RenderOutput:
        """Sphere-trace the unsigned distance (:func:`renderer.csp_trace.render_csp`): hits
        where it falls below ``τ``, refined onto the tangent plane of the closest point; rays
        past an open boundary never hit. Normals: the direct normal ``(x − CSP(x)) / u`` a step
        back from the hit (two-sided shading)."""
        if mode not in self.render_modes:
            raise ValueError(f"unknown render mode {mode!r}; the csp task renders "
                             f"{self.render_modes}")
        self.model.eval()
        r = self.config.render
        return render_csp(
            self.model.csp, camera, mode, aabb=self.aabb, device=self.device,
            light_dir=light_dir, hit_threshold=r.hit_threshold, max_steps=r.max_steps,
            background=(1.0, 1.0, 1.0) if background is None else background)

    def render(self, camera: Camera, mode: str = "shaded", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        return self.render_frame(camera, mode, background=background,
                                 light_dir=light_dir).image.detach().cpu().numpy()

    def scene_source(self):
        """The CSP field as an unsigned surface (traced with ``trace_csp``; meshes by the
        single-layer extraction)."""
        from renderer.scene import SurfaceSource

        self.model.eval()
        return SurfaceSource(distance=self.udf, csp=self.model.csp, aabb=tuple(self.aabb),
                             signed=False, hit_threshold=self.config.render.hit_threshold,
                             mesh=lambda res: self.extract(res).mesh, name=self.kind)

    def extract(self, resolution: int | None = None,
                progress: bool | Callable[[int, int], None] = False):
        """One layer of the surface in the normalised frame (``OpenMeshResult``)."""
        self.model.eval()
        e = self.config.export
        return extract_open_mesh(self.model.csp, resolution=resolution or e.resolution,
                                 aabb=self.aabb, level_voxels=e.level_voxels, rim_cos=e.rim_cos,
                                 progress=progress, device=self.device)

    def export(self, path: Path, resolution: int | None = None, method: str | None = None,
               progress: bool | Callable[[int, int], None] = False,
               level: float = 0.0) -> dict[str, Any]:
        """Write one layer of the surface (open where the surface is) in the source units.
        (``method`` and ``level`` belong to SDF exports and are ignored here.)"""
        from renderer.meshing import export_mesh
        from renderer.open_meshing import boundary_loops

        result = self.extract(resolution, progress)
        mesh = in_source_units(result, self.normalization)
        written = export_mesh(mesh, path)
        return {"path": str(written), "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                "boundary_loops": len(boundary_loops(mesh)), "resolution": result.resolution,
                "shell_faces": result.shell_faces, "sides_kept": result.kept,
                "seconds": round(result.seconds, 2)}

    def evaluate(self, reference: str | Path | None = None, mesh: str | Path | None = None,
                 resolution: int | None = None, n_samples: int = 100_000,
                 progress: bool = False, **_: Any) -> dict[str, Any]:
        """Compare the field's single-layer mesh (or an exported ``mesh``) with ``reference``
        (default: the training mesh): Chamfer-L1, normal consistency, F-score@1%, boundary loops
        and areas of both."""
        from renderer.open_meshing import boundary_loops

        holder: dict[str, Any] = {}

        def extract():
            m = in_source_units(self.extract(resolution, progress), self.normalization)
            holder["mesh"] = m
            return m

        out = compare_to_reference(reference or self.source_path or self.config.data.path, mesh,
                                   extract, f"field@{resolution or self.config.export.resolution}"
                                   "^3 (one layer)", n_samples)
        ref = load_mesh(resolve_input(out["reference"]))
        pred = holder["mesh"] if "mesh" in holder else load_mesh(resolve_input(mesh))
        out.update({"boundary_loops": len(boundary_loops(pred)),
                    "reference_boundary_loops": len(boundary_loops(ref)),
                    "area": float(pred.area), "reference_area": float(ref.area)})
        return out

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        p.update({"source": self.source_path,
                  "samples": len(self.samples) if self.samples is not None else 0,
                  "hit threshold": self.config.render.hit_threshold,
                  "render_modes": list(self.render_modes)})
        return p

"""The ``naisr`` task: a shape atlas — a template SDF plus one additive deformation per
covariate (NAISR, Jiao et al., ICLR 2024) — learnt from a population of shapes with covariates.

Recipe, top to bottom:

1. data (``datasets.population.PopulationData``): the procedural star-man population
   (``data.source = "starman2d" | "starman3d"``: capsule figures whose covariates each move one
   limb, subjects with their own thickness/head/scale, several visits) or a user folder of
   meshes with a ``covariates.csv``; covariates min-max scaled on the training subjects;
   per shape, surface points with normals and off-surface points with exact signed distances;
2. field: :class:`fields.naisr.AdditiveDeformationSDF` (SIREN template, one SIREN displacement
   network per covariate, ``d_i = g_i(p, [c_i, z]) − g_i(p, [0, z])``) and an auto-decoder code
   per training shape (:class:`fields.naisr.LatentTable`);
3. loss: :func:`fields.naisr.naisr_losses` (surface, normal, off-surface, eikonal on the shape and
   on the population prediction ``z = 0``, inverse consistency) + the code regulariser
   ``2·min(1, step/100)·mean ‖z‖²/D``, on a random batch of training shapes per step;
4. evaluation: surface fit of training shapes; reconstruction of held-out shapes by optimising
   only their code; the evolution test (sweeping the left-arm covariate moves the left arm
   region ≥ 5× more than the rest); transfer (a code fitted on a subject's first visit, with a
   later visit's covariates, against the covariates-only prediction), by Chamfer distance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.errors import FieldsAppError
from app.tasks.base import Task
from fields.naisr import AdditiveDeformationSDF, LatentTable, naisr_losses
from renderer.cameras import Camera

__all__ = ["NAISRDataConfig", "NAISRModelConfig", "NAISRExperiment", "NAISRTask"]


@dataclass
class NAISRDataConfig:
    """The population."""

    source: str = "starman2d"
    """``starman2d``, ``starman3d`` or a folder of meshes with ``covariates.csv``."""
    n_subjects: int = 20
    n_visits: int = 3
    n_surface: int = 256
    n_off: int = 128
    held_out_subjects: int = 4
    shapes_per_step: int = 8
    points_per_shape: int = 96
    """Surface points per shape per step (and half as many off-surface points), drawn from the
    shape's pool."""
    seed: int = 0


@dataclass
class NAISRModelConfig:
    """The atlas."""

    latent_dim: int = 16
    template_hidden: int = 64
    template_layers: int = 3
    deform_hidden: int = 64
    deform_layers: int = 3
    omega0: float = 30.0
    reference_jitter: float = 1e-3
    """σ of the training-only noise on the reference value 0 (released: 1e-3)."""
    code_lr_factor: float = 10.0
    """Codes learn this many times faster than the networks (released: 1e-3 vs 5e-5… 1e-4)."""
    small_deformation: float = 0.0
    """Weight of the small-deformation term ``Σ_i mean ‖d_i‖²`` (present but off in the
    released code): it stops displacements sliding along the surface where they change
    nothing, which keeps each covariate's displacement on its own part."""
    code_per: str = "subject"
    """``subject``: one code per training subject, shared by its visits (the individual factors
    a code should carry do not change between visits, and transfer reuses a code across
    visits); ``shape``: one per training scan, as the released code."""


@dataclass
class NAISRExperiment(ExperimentConfig):
    """Learn a shape atlas with additive covariate deformations."""

    task: str = "naisr"
    data: NAISRDataConfig = field(default_factory=NAISRDataConfig)
    model: NAISRModelConfig = field(default_factory=NAISRModelConfig)


class NAISRTask(Task):
    """The NAISR atlas (module docstring)."""

    kind = "naisr"
    config_cls = NAISRExperiment
    render_modes = ("sdf", "template")

    def __init__(self, config: NAISRExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: NAISRExperiment = config
        self.data = None
        self.model = nn.ModuleDict()  # built once the data fixes dim, covariates and shapes
        self._n_cov: int | None = None
        d = config.data
        if d.source in ("starman2d", "starman3d") and 0 <= d.held_out_subjects < d.n_subjects:
            # The procedural population's layout is known before it is generated: build now,
            # so that an untrained atlas renders (the viewer) before any data is loaded.
            n_train = d.n_subjects - d.held_out_subjects
            self.build(2 if d.source == "starman2d" else 3, 3,
                       n_train if config.model.code_per == "subject" else n_train * d.n_visits)

    # -- data -----------------------------------------------------------------------------
    def _load_population(self):
        d = self.config.data
        if d.source in ("starman2d", "starman3d"):
            from datasets.starman import make_starman

            return make_starman(dim=2 if d.source == "starman2d" else 3,
                                n_subjects=d.n_subjects, n_visits=d.n_visits,
                                n_surface=d.n_surface, n_off=d.n_off, seed=d.seed,
                                held_out_subjects=d.held_out_subjects)
        from app.paths import resolve_input
        from datasets.population import load_population

        return load_population(resolve_input(d.source), n_surface=d.n_surface, n_off=d.n_off,
                               seed=d.seed, held_out_subjects=d.held_out_subjects)

    def build(self, dim: int, n_cov: int, n_codes: int) -> None:
        """Create the atlas and the training codes (also when a saved run is reopened)."""
        m = self.config.model
        if m.code_per not in ("subject", "shape"):
            raise FieldsAppError(f"model.code_per must be 'subject' or 'shape', got {m.code_per!r}")
        field_ = AdditiveDeformationSDF(dim, n_cov, m.latent_dim,
                                        template_hidden=m.template_hidden,
                                        template_layers=m.template_layers,
                                        deform_hidden=m.deform_hidden,
                                        deform_layers=m.deform_layers, omega0=m.omega0,
                                        reference_jitter=m.reference_jitter)
        self.model = nn.ModuleDict({"field": field_,
                                    "codes": LatentTable(n_codes, m.latent_dim)}).to(self.device)
        self._n_cov = n_cov

    @property
    def field(self) -> AdditiveDeformationSDF:
        if "field" not in self.model:
            raise FieldsAppError("the naisr atlas is built when its population is loaded")
        return self.model["field"]

    def setup_data(self) -> None:
        self.data = self._load_population()
        pop = self.data
        # The code row of each training shape: its subject's (rank among training subjects) or
        # its own.
        if self.config.model.code_per == "subject":
            self.code_row = torch.unique(pop.subject[pop.train_index], return_inverse=True)[1]
        else:
            self.code_row = torch.arange(len(pop.train_index))
        n_codes = int(self.code_row.max()) + 1
        if "field" not in self.model:
            self.build(pop.dim, pop.covariates.shape[1], n_codes)
        elif (self.field.dim, self.field.n_cov, self.model["codes"].codes.num_embeddings) != (
                pop.dim, pop.covariates.shape[1], n_codes):
            raise FieldsAppError(
                f"the population ({pop.dim}-D, {pop.covariates.shape[1]} covariates, "
                f"{n_codes} training codes) does not match the atlas built for it "
                f"({self.field.dim}-D, {self.field.n_cov}, "
                f"{self.model['codes'].codes.num_embeddings})")

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model["field"].parameters()), "lr_factor": 1.0},
                {"params": list(self.model["codes"].parameters()),
                 "lr_factor": self.config.model.code_lr_factor}]

    # -- viewer controls: one slider per covariate ---------------------------------------
    def sliders(self) -> list[tuple[str, float, float, float]]:
        """``(name, value, low, high)`` of the covariate sliders the viewer shows; renders use
        these values (``z = 0``: the population atlas)."""
        names = self.covariate_names() or [f"c{i}" for i in range(self.field.n_cov)]
        values = self._view_covariates()
        out = [(n, float(v), -1.0, 1.0) for n, v in zip(names, values.tolist())]
        n_codes = self.model["codes"].codes.num_embeddings
        return out + [(self.CODE_SLIDER, float(getattr(self, "view_code", 0)), 0.0,
                       float(n_codes))]

    CODE_SLIDER = "code (0 = population)"
    """The slider that picks the rendered code: 0 is ``z = 0`` (the covariates-only atlas),
    ``k`` the ``k``-th training code (a training subject's, or shape's)."""

    def set_slider(self, name: str, value: float) -> None:
        """Set one covariate of the rendered shape, or pick its code (the viewer's sliders)."""
        names = [s[0] for s in self.sliders()]
        if name not in names:
            raise FieldsAppError(f"no naisr slider {name!r}; the sliders are {names}")
        if name == self.CODE_SLIDER:
            n_codes = self.model["codes"].codes.num_embeddings
            self.view_code = min(max(int(round(value)), 0), n_codes)
            return
        values = self._view_covariates().clone()
        values[names.index(name)] = float(value)
        self.view_covariates = values

    def _view_code(self) -> Tensor | None:
        k = int(getattr(self, "view_code", 0))
        if k <= 0:
            return None
        with torch.no_grad():
            return self.model["codes"](torch.tensor([k - 1], device=self.device))[0]

    def _view_covariates(self) -> Tensor:
        values = getattr(self, "view_covariates", None)
        if values is None or len(values) != self.field.n_cov:
            values = torch.zeros(self.field.n_cov)
        return values

    def covariate_names(self) -> list[str]:
        """The covariates' names (from the data, or a reopened run's meta)."""
        if self.data is not None:
            return list(self.data.covariate_names)
        return list(getattr(self, "_meta_names", []))

    def meta(self) -> dict[str, Any]:
        pop = self.data
        if pop is None:
            return {}
        return {"dim": pop.dim, "covariate_names": list(pop.covariate_names),
                "n_train": len(pop.train_index),
                "n_codes": self.model["codes"].codes.num_embeddings,
                "cov_min": pop.cov_min.tolist(), "cov_max": pop.cov_max.tolist()}

    def prepare_from_meta(self, meta: dict[str, Any]) -> None:
        """Build the atlas from a checkpoint's meta before its weights are loaded (the shapes
        of the networks and of the code table depend on the population)."""
        if meta and "field" not in self.model:
            self.build(int(meta["dim"]), len(meta["covariate_names"]),
                       int(meta.get("n_codes", meta["n_train"])))
        if meta:
            self._meta_names = list(meta.get("covariate_names", []))

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.prepare_from_meta(meta)

    # -- training -------------------------------------------------------------------------
    def _batch(self, shapes: Tensor, codes: Tensor | None, points: int | None = None):
        """Stacked points of ``shapes`` with their covariates and codes (``points`` surface
        points per shape drawn at random, and half as many off-surface ones; all by default)."""
        pop = self.data
        dev = self.device
        surf, nrm = pop.surface[shapes], pop.normals[shapes]      # [S, Ns, d]
        off, off_sdf = pop.off[shapes], pop.off_sdf[shapes]
        if points is not None and points < surf.shape[1]:
            i = torch.randint(surf.shape[1], (points,))
            j = torch.randint(off.shape[1], (max(1, points // 2),))
            surf, nrm, off, off_sdf = surf[:, i], nrm[:, i], off[:, j], off_sdf[:, j]
        surf, nrm, off, off_sdf = surf.to(dev), nrm.to(dev), off.to(dev), off_sdf.to(dev)
        cov = pop.covariates[shapes].to(dev).float()      # [S, C]
        s, ns, d = surf.shape
        no = off.shape[1]

        def rep(t: Tensor, k: int) -> Tensor:
            return t[:, None, :].expand(-1, k, -1).reshape(s * k, -1)

        z_s = rep(codes, ns) if codes is not None else None
        z_o = rep(codes, no) if codes is not None else None
        return (surf.reshape(-1, d), nrm.reshape(-1, d), off.reshape(-1, d),
                off_sdf.reshape(-1), rep(cov, ns), rep(cov, no), z_s, z_o)

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        pop = self.data
        n_train = len(pop.train_index)
        k = min(self.config.data.shapes_per_step, n_train)
        rows = self.shard(torch.randperm(n_train)[:k])
        shapes = pop.train_index[rows]
        codes = self.model["codes"](self.code_row[rows].to(self.device))
        terms = naisr_losses(self.field, *self._batch(shapes, codes,
                                                      self.config.data.points_per_shape),
                             weights={"small": self.config.model.small_deformation})
        reg = 2.0 * min(1.0, step / 100.0) * (codes ** 2).sum(-1).mean() / codes.shape[1]
        loss = terms["total"] + reg
        return loss, {"surf": terms["surf"].item(), "off": terms["off"].item(),
                      "surf_pop": terms.get("surf_pop", terms["surf"]).item()}

    # -- using the atlas ------------------------------------------------------------------
    def surface_error(self, shapes: Tensor, codes: Tensor | None) -> float:
        """Mean ``|ŝ|`` on the shapes' surface points (0 on the true surface)."""
        self.field.eval()
        surf, _, _, _, c_s, _, z_s, _ = self._batch(shapes, codes)
        with torch.no_grad():
            return float(self.field.sdf(surf, c_s, z_s).abs().mean())

    def fit_codes(self, shapes: Tensor, steps: int = 200, lr: float = 5e-3,
                  covariates: Tensor | None = None) -> Tensor:
        """Auto-decode: optimise only new codes for ``shapes`` (networks frozen), as NAISR's
        reconstruction (Adam, lr ÷10 half way, ``1e-4·mean z²``)."""
        self.field.eval()
        for q in self.field.parameters():
            q.requires_grad_(False)
        z = torch.zeros(len(shapes), self.config.model.latent_dim, device=self.device,
                        requires_grad=True)
        opt = torch.optim.Adam([z], lr=lr)
        try:
            for it in range(steps):
                if it == steps // 2:
                    for g in opt.param_groups:
                        g["lr"] = lr / 10
                batch = list(self._batch(shapes, z, self.config.data.points_per_shape))
                if covariates is not None:
                    ns, no = batch[0].shape[0] // len(shapes), batch[2].shape[0] // len(shapes)
                    cov = covariates.to(self.device).float()
                    batch[4] = cov[:, None].expand(-1, ns, -1).reshape(-1, cov.shape[1])
                    batch[5] = cov[:, None].expand(-1, no, -1).reshape(-1, cov.shape[1])
                terms = naisr_losses(self.field, *batch, disentangle=False, inverse=False)
                loss = terms["total"] + 1e-4 * (z ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        finally:
            for q in self.field.parameters():
                q.requires_grad_(True)
        return z.detach()

    def evolution_ratio(self, covariate: int = 0, part: int = 2, steps: int = 5) -> float:
        """Sweep one covariate over ``[−1, 1]`` with the others at 0 and ``z = 0``: mean ``‖d_i‖``
        on surface points of ``part`` (labels from the data; 2 = left arm) over the mean
        elsewhere."""
        pop = self.data
        if getattr(pop, "parts", None) is None:
            raise FieldsAppError("this population has no part labels (procedural star-men do)")
        self.field.eval()
        inside, outside = [], []
        pts = pop.surface[pop.train_index].reshape(-1, pop.dim).to(self.device)
        lab = pop.parts[pop.train_index].reshape(-1).to(self.device)
        with torch.no_grad():
            for v in torch.linspace(-1, 1, steps).tolist():
                c = torch.zeros(pop.covariates.shape[1], device=self.device)
                c[covariate] = v
                d = self.field.displacements(pts, c, None)[covariate].norm(dim=-1)
                inside.append(d[lab == part].mean())
                outside.append(d[lab != part].mean())
        return float(torch.stack(inside).mean() / torch.stack(outside).mean().clamp_min(1e-12))

    def surface_points(self, c: Tensor, z: Tensor | None, resolution: int = 128) -> Tensor:
        """Points on the zero level set of ``s(·; c, z)``: marching squares (2-D, ``resolution``²)
        or marching cubes (3-D, ``resolution // 2``³) of the field on ``[−1, 1]^d``."""
        f = self.field
        f.eval()
        c = c.to(self.device).float()

        def sdf(x: Tensor) -> Tensor:
            with torch.no_grad():
                return f.sdf(x, c, None if z is None else z.to(self.device))

        if f.dim == 2:
            from skimage import measure

            n = resolution
            g = torch.linspace(-1, 1, n)
            ys, xs = torch.meshgrid(g, g, indexing="ij")
            v = sdf(torch.stack([xs, ys], -1).reshape(-1, 2)).reshape(n, n).cpu().numpy()
            lines = measure.find_contours(v, 0.0)
            if not lines:
                return torch.zeros(0, 2)
            rc = np.concatenate(lines)
            return torch.from_numpy(rc[:, ::-1].copy()).float() * (2.0 / (n - 1)) - 1.0
        from renderer.meshing import extract_mesh

        mesh = extract_mesh(sdf, resolution=max(16, resolution // 2)).mesh
        return torch.from_numpy(np.asarray(mesh.vertices)).float()

    @staticmethod
    def chamfer(pred: Tensor, truth: Tensor) -> float:
        """Chamfer distance as NAISR's code computes it: mean nearest-neighbour distance from
        each set to the other, summed (``inf`` for an empty prediction)."""
        from scipy.spatial import cKDTree

        if len(pred) == 0:
            return float("inf")
        a, b = pred.cpu().numpy(), truth.cpu().numpy()
        return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())

    def reconstruct(self, shapes: Tensor, steps: int = 200) -> dict[str, Any]:
        """NAISR's reconstruction of unseen shapes: optimise only their codes (networks frozen,
        covariates known); per shape, the surface error ``mean |ŝ|`` and the Chamfer distance
        of the zero level set to the true surface points, with the fitted code and with
        ``z = 0`` (the covariates-only prediction)."""
        pop = self.data
        z = self.fit_codes(shapes, steps=steps)
        rows = []
        for k, r in enumerate(shapes.tolist()):
            one = torch.tensor([r])
            c, truth = pop.covariates[r], pop.surface[r]
            rows.append({"shape": r, "subject": pop.subject_names[int(pop.subject[r])],
                         "visit": int(pop.visit[r]),
                         "surface_error_z0": self.surface_error(one, None),
                         "surface_error_fitted": self.surface_error(one, z[k:k + 1]),
                         "chamfer_z0": self.chamfer(self.surface_points(c, None), truth),
                         "chamfer_fitted": self.chamfer(self.surface_points(c, z[k]), truth)})
        return {"shapes": rows, "codes": z}

    def transfer(self, subject: int, covariates: Tensor | None = None) -> dict[str, Any]:
        """NAISR's patient-specific prediction: fit a code on the subject's first visit, then
        predict its later visits from that code and each visit's covariates, scored by Chamfer
        distance to the visit's true surface against the covariates-only prediction
        (``z = 0``). With ``covariates`` (``[K, C]``, scaled like the data), predict those
        instead (no ground truth, so no scores)."""
        pop = self.data
        rows = (pop.subject == subject).nonzero().squeeze(1)
        rows = rows[torch.argsort(pop.visit[rows])]
        if len(rows) == 0:
            raise FieldsAppError(f"no shape of subject {subject}")
        if covariates is None and len(rows) < 2:
            raise FieldsAppError(f"subject {pop.subject_names[subject]} has a single visit: "
                                 "nothing to predict (give target covariates)")
        z = self.fit_codes(rows[:1], steps=200)[0]
        held_out = bool((pop.subject[pop.test_index] == subject).any())
        out: dict[str, Any] = {"subject": pop.subject_names[subject], "held_out": held_out,
                               "fitted_on_visit": int(pop.visit[rows[0]]), "code": z}
        if covariates is not None:
            out["predictions"] = [{"covariates": c.tolist(), "points": self.surface_points(c, z)}
                                  for c in torch.as_tensor(covariates).float()]
            return out
        with_code, population = [], []
        for r in rows[1:].tolist():
            truth, c = pop.surface[r], pop.covariates[r]
            with_code.append(self.chamfer(self.surface_points(c, z), truth))
            population.append(self.chamfer(self.surface_points(c, None), truth))
        out["visits"] = [int(pop.visit[r]) for r in rows[1:].tolist()]
        out["chamfer_transfer_per_visit"] = with_code
        out["chamfer_covariates_only_per_visit"] = population
        out["chamfer_transfer"] = float(np.mean(with_code))
        out["chamfer_covariates_only"] = float(np.mean(population))
        return out

    def write_shape(self, path: Path, c: Tensor, z: Tensor | None, resolution: int = 128,
                    size: int = 256) -> Path:
        """The shape ``s(·; c, z) = 0`` to a file: a mesh (3-D; marching cubes at
        ``resolution``³ on ``[−1, 1]³``; ``.ply``/``.obj``) or a picture of the 2-D field
        (``.png``)."""
        f = self.field
        f.eval()
        c = c.to(self.device).float()
        zz = None if z is None else z.to(self.device).float()
        if f.dim == 2:
            from app.imaging import save_image

            cam = self.default_camera(size, size)
            save_image(path, self.render(cam, "sdf", covariates=c,
                                         code=torch.zeros(f.latent_dim) if zz is None else zz))
            return path
        from renderer.meshing import export_mesh, extract_mesh

        def sdf(x: Tensor) -> Tensor:
            with torch.no_grad():
                return f.sdf(x, c, zz)

        export_mesh(extract_mesh(sdf, resolution=resolution).mesh, path)
        return path

    def evolution_strip(self, covariate: int, steps: int = 5, size: int = 128,
                        z: Tensor | None = None) -> np.ndarray:
        """Renders of the shape as one covariate sweeps ``[−1, 1]`` (the others 0), side by
        side: ``[size, steps·size, 3]``."""
        n = self.field.n_cov
        if not 0 <= covariate < n:
            raise FieldsAppError(f"covariate must be in 0…{n - 1}, got {covariate}")
        cam = Camera.orbit(0.0, 10.0, 3.0, width=size, height=size, fov_y_deg=40.0)
        frames = []
        for v in np.linspace(-1, 1, steps):
            c = torch.zeros(n)
            c[covariate] = float(v)
            frames.append(self.render(cam, "sdf", covariates=c,
                                      code=torch.zeros(self.field.latent_dim) if z is None
                                      else z))
        return np.concatenate(frames, axis=1)

    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        return Camera.orbit(0.0, 10.0, 3.0, width=width, height=height, fov_y_deg=40.0)

    def render(self, camera: Camera, mode: str = "sdf", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None,
               covariates: Tensor | None = None, code: Tensor | None = None) -> np.ndarray:
        """2-D: the SDF over ``[−1, 1]²`` (blue inside, orange outside, iso-bands, the zero
        line); 3-D: the zero level set sphere-traced. ``sdf`` uses ``covariates`` (default: the
        viewer's sliders, 0 until moved) and ``code`` (default: the viewer's code slider,
        ``z = 0`` until moved); ``template`` is ``T`` alone."""
        if mode not in self.render_modes:
            raise FieldsAppError(f"unknown render mode {mode!r}; naisr renders "
                                 f"{self.render_modes}")
        f = self.field
        f.eval()
        c = (self._view_covariates() if covariates is None
             else torch.as_tensor(covariates).float())
        z = self._view_code() if code is None else torch.as_tensor(code).float()

        def sdf(x: Tensor) -> Tensor:
            with torch.no_grad():
                if mode == "template":
                    return f.template_sdf(x)
                return f.sdf(x, c.to(x), None if z is None else z.to(x))

        if f.dim == 2:
            h, w = camera.height, camera.width
            ys, xs = torch.meshgrid(torch.linspace(1, -1, h), torch.linspace(-1, 1, w),
                                    indexing="ij")
            v = sdf(torch.stack([xs, ys], -1).reshape(-1, 2)).reshape(h, w)
            inside = torch.tensor([0.25, 0.45, 0.85])
            outside = torch.tensor([0.95, 0.6, 0.25])
            base = torch.where((v < 0)[..., None], inside, outside)
            bands = 0.85 + 0.15 * torch.cos(v * 60.0)[..., None]
            img = base * bands
            img[v.abs() < 0.01] = 0.0
            return img.clamp(0, 1).numpy()
        from renderer.surface import render_surface

        return render_surface(sdf, camera, "shaded",
                              background=background or (1.0, 1.0, 1.0),
                              light_dir=light_dir).image.numpy()

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        if self.data is not None:
            p.update({"shapes": int(self.data.covariates.shape[0]),
                      "covariates": ", ".join(self.data.covariate_names),
                      "dim": self.data.dim})
        return p

    def evaluate(self, **_: Any) -> dict[str, Any]:
        """Fit, reconstruction, evolution and transfer numbers (module docstring)."""
        if self.data is None:
            self.setup_data()
        pop = self.data
        out: dict[str, Any] = {"shapes": int(pop.covariates.shape[0]),
                               "train_shapes": len(pop.train_index)}
        codes = self.model["codes"](self.code_row.to(self.device))
        out["train_surface_error"] = self.surface_error(pop.train_index, codes.detach())
        out["train_surface_error_population"] = self.surface_error(pop.train_index, None)
        if len(pop.test_index):
            rec = self.reconstruct(pop.test_index, steps=200)["shapes"]
            before = float(np.mean([r["surface_error_z0"] for r in rec]))
            after = float(np.mean([r["surface_error_fitted"] for r in rec]))
            out.update({"heldout_surface_error_z0": before,
                        "heldout_surface_error_fitted": after,
                        "heldout_reduction": 1.0 - after / max(before, 1e-12),
                        "heldout_chamfer_z0": float(np.mean([r["chamfer_z0"] for r in rec])),
                        "heldout_chamfer_fitted": float(np.mean([r["chamfer_fitted"]
                                                                 for r in rec]))})
        if getattr(pop, "parts", None) is not None:
            out["evolution_left_arm_ratio"] = self.evolution_ratio(0, 2)
        subjects = torch.unique(pop.subject[pop.test_index]).tolist()
        transfers = [self.transfer(s) for s in subjects
                     if int((pop.subject == s).sum()) > 1]
        if transfers:
            out["chamfer_transfer"] = float(np.mean([t["chamfer_transfer"] for t in transfers]))
            out["chamfer_covariates_only"] = float(np.mean(
                [t["chamfer_covariates_only"] for t in transfers]))
        return out

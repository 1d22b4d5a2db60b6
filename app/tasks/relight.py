"""The ``relight`` task: learn an object's appearance from one-light-at-a-time (OLAT) images
with a field that is linear in the lights (URHand, Chen et al., CVPR 2024), then relight it
under any set of lights or any HDR environment map in one pass.

Recipe, top to bottom:

1. data: the procedural light stage of ``datasets.olat`` — an analytic shape sphere-traced from
   ``n_views`` orbit cameras, lit by ``n_lights`` unit directional lights on a Fibonacci sphere
   one at a time, with hard shadows; some lights and views are held out;
2. field: :class:`fields.relight.LinearRelightingField` over a hash-grid encoding of the surface
   point — per-light Blinn–Phong shading features (with the data's visibility), a
   light-independent network for weights and material, a bias-free activation-free light path
   and a Blinn–Phong physical branch; linear in the light intensities by construction;
3. loss: MSE on linear HDR radiance for random (training view, hit pixel, training light)
   triples — OLAT supervision only;
4. evaluation: PSNR on held-out lights, on held-out views, and under an environment map (the
   shipped Venice sunset, integrated onto the light basis) against the exact ground truth
   ``Σ_j w_j·OLAT_j``, with the one-pass render timed against one pass per light;
5. render: any camera (the shape is sphere-traced and its shadows traced for every light), under
   a single light (the viewer's light direction), the environment map (rotated by the viewer's
   light azimuth, or over a video's frames), or the learned albedo; linear HDR for ``.exr``,
   exposure + sRGB for display.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.config import ExperimentConfig
from app.errors import FieldsAppError
from app.paths import resolve_input
from app.tasks.base import Task
from datasets.olat import BOX, OLATConfig, OLATDataset, make_olat, make_shape
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.relight import LinearRelightingField
from renderer.cameras import Camera

__all__ = ["RelightDataConfig", "RelightModelConfig", "RelightRenderConfig",
           "RelightExperiment", "RelightTask", "psnr_hdr"]


@dataclass
class RelightDataConfig:
    """The procedural light stage (``datasets.olat.OLATConfig``) and the batch."""

    shape: str = "bumpy"
    """``sphere``, ``bumpy``, ``torus``, ``capsules`` or ``spot`` (the shipped mesh)."""
    material_seed: int = 0
    n_lights: int = 64
    n_views: int = 8
    size: int = 64
    held_out_lights: int = 8
    held_out_views: int = 2
    batch_size: int = 4096
    """(view, pixel, light) samples per step."""
    envmap: str = "assets/envmaps/venice_sunset_1k.hdr"
    """The environment map of the evaluation and of the ``env`` render mode."""


@dataclass
class RelightModelConfig:
    """The field."""

    encoding: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=8, features_per_level=2, log2_hashmap_size=14, base_resolution=8,
        max_resolution=256))
    hidden_dim: int = 64
    num_hidden_layers: int = 2
    light_hidden: int = 16
    """Width of the linear light path."""
    physical: bool = True
    """Include the Blinn–Phong physical branch."""


@dataclass
class RelightRenderConfig:
    """Display."""

    exposure: float = 0.0
    """Stops applied before sRGB encoding (display only; ``.exr`` output is untouched). 0 in
    ``env`` mode means automatic: the image's 99th percentile maps to 0.9."""


@dataclass
class RelightExperiment(ExperimentConfig):
    """Learn a relightable object from OLAT images."""

    task: str = "relight"
    data: RelightDataConfig = field(default_factory=RelightDataConfig)
    model: RelightModelConfig = field(default_factory=RelightModelConfig)
    render: RelightRenderConfig = field(default_factory=RelightRenderConfig)


def psnr_hdr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """PSNR of linear HDR radiance with the target's maximum (over ``mask``) as the peak."""
    if mask is not None:
        pred, target = pred[mask], target[mask]
    peak = float(target.max())
    mse = float(((pred - target) ** 2).mean())
    return 10.0 * math.log10(max(peak, 1e-12) ** 2 / max(mse, 1e-20))


class RelightTask(Task):
    """Relightable appearance from OLAT images (module docstring)."""

    kind = "relight"
    config_cls = RelightExperiment
    render_modes = ("env", "light", "albedo", "normals")

    def __init__(self, config: RelightExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: RelightExperiment = config
        m = config.model
        enc = HashGridEncoding(3, m.encoding, bounds=(-1.0, 1.0), device=device)
        self.model = LinearRelightingField(enc, hidden_dim=m.hidden_dim,
                                           num_hidden_layers=m.num_hidden_layers,
                                           light_hidden=m.light_hidden,
                                           physical=m.physical).to(device)
        self.shape = make_shape(config.data.shape)
        self.data: OLATDataset | None = None
        self._envmap = None
        self._samples: Tensor | None = None

    # -- data -----------------------------------------------------------------------------
    def olat_config(self) -> OLATConfig:
        d = self.config.data
        return OLATConfig(shape=d.shape, material_seed=d.material_seed, n_lights=d.n_lights,
                          n_views=d.n_views, size=d.size, held_out_lights=d.held_out_lights,
                          held_out_views=d.held_out_views)

    def setup_data(self) -> None:
        self.data = make_olat(self.olat_config())
        ds = self.data
        # Training pixels: (view, flat pixel) of every hit in the training views.
        hits = ds.hit[ds.train_views].reshape(len(ds.train_views), -1)
        v_idx, p_idx = hits.nonzero(as_tuple=True)
        self._samples = torch.stack([ds.train_views[v_idx], p_idx], 1)

    def parameter_groups(self) -> list[dict[str, Any]]:
        enc = self.model.encoding
        rest = [p for n, p in self.model.named_parameters() if not n.startswith("encoding.")]
        return [{"params": list(enc.parameters()), "lr_factor": 1.0},
                {"params": rest, "lr_factor": 0.1}]

    def _gather(self, view: Tensor, pix: Tensor) -> dict[str, Tensor]:
        ds = self.data
        size = ds.config.size

        def take(t: Tensor) -> Tensor:
            return t.reshape(t.shape[0], size * size, *t.shape[3:])[view, pix].to(self.device)

        return {"x": take(ds.points), "n": take(ds.normals), "v": take(ds.view_dirs),
                "vis": take(ds.visibility)}

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        ds = self.data
        b = self.config.data.batch_size
        pick = torch.randint(len(self._samples), (b,))
        view, pix = self._samples[pick, 0], self._samples[pick, 1]
        light = ds.train_lights[torch.randint(len(ds.train_lights), (b,))]
        g = self._gather(view, pix)
        dirs = ds.lights[light].to(self.device)[:, None, :]              # [B, 1, 3]
        vis = g["vis"][torch.arange(b), light].float()[:, None]          # [B, 1]
        ones = torch.ones(b, 1, 3, device=self.device)
        pred = self.model(g["x"], g["n"], g["v"], dirs, ones, vis)
        size = ds.config.size
        target = ds.olat.reshape(ds.olat.shape[0], ds.olat.shape[1], size * size, 3)[
            view, light, pix].to(self.device)
        loss = torch.mean((pred - target) ** 2)
        return loss, {"psnr": -10.0 * math.log10(max(loss.item(), 1e-20))}

    # -- environment maps -----------------------------------------------------------------
    def environment(self):
        """The evaluation / ``env`` mode map (loaded once)."""
        if self._envmap is None:
            from renderer.envmap import EnvironmentMap

            self._envmap = EnvironmentMap.from_file(resolve_input(self.config.data.envmap))
        return self._envmap

    def light_dirs(self) -> Tensor:
        """The light basis: the light stage's Fibonacci directions (no data needed)."""
        from datasets.olat import fibonacci_sphere

        return self.data.lights if self.data is not None else fibonacci_sphere(
            self.config.data.n_lights)

    def env_weights(self, rotation_deg: float = 0.0, envmap=None) -> Tensor:
        """The map (rotated about +y) integrated onto the light basis
        (:meth:`renderer.envmap.EnvironmentMap.light_weights`): ``[L, 3]`` intensities."""
        env = envmap or self.environment()
        if rotation_deg:
            env = env.rotated(rotation_deg)
        return env.light_weights(self.light_dirs().double()).float()

    # -- rendering ------------------------------------------------------------------------
    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        return Camera.orbit(30.0, 15.0, 3.0, width=width, height=height, fov_y_deg=40.0)

    @torch.no_grad()
    def _gbuffer(self, camera: Camera) -> dict[str, Tensor]:
        from renderer.sphere_trace import sphere_trace

        rays_o, rays_d = camera.rays()
        tr = sphere_trace(self.shape.distance, rays_o, rays_d, aabb=BOX, hit_threshold=5e-4,
                          max_steps=256, normal_fn=self.shape.gradient)
        pix = tr.hit.nonzero().squeeze(1)
        return {"hit": tr.hit, "pix": pix, "x": tr.points[pix], "n": tr.normals[pix],
                "v": rays_d[pix]}

    def _visibility(self, x: Tensor, n: Tensor, dirs: Tensor) -> Tensor:
        """Hard shadows of novel views and lights, traced as the light stage traces them."""
        from datasets.olat import shadow_visibility

        return shadow_visibility(self.shape, x, n, dirs, OLATConfig.shadow_offset).float()

    @torch.no_grad()
    def render_linear(self, camera: Camera, mode: str = "env", *,
                      light_dir: tuple[float, float, float] | None = None,
                      env_rotation: float = 0.0, envmap=None) -> np.ndarray:
        """Linear HDR radiance ``[H, W, 3]`` (no tone mapping): ``env`` (the map, rotated by
        ``env_rotation`` degrees about +y), ``light`` (one white light towards ``light_dir``,
        default: above-right of the camera), ``albedo`` or ``normals`` (``(n+1)/2``)."""
        if mode not in self.render_modes:
            raise FieldsAppError(f"unknown render mode {mode!r}; the relight task renders "
                                 f"{self.render_modes}")
        self.model.eval()
        g = self._gbuffer(camera)
        h, w = camera.height, camera.width
        out = torch.zeros(h * w, 3)
        if len(g["pix"]):
            x, n, v = (g[k].to(self.device) for k in ("x", "n", "v"))
            if mode == "normals":
                val = (g["n"] + 1) / 2
            elif mode == "albedo":
                val = self.model.weights(x, n, v)["albedo"]
            else:
                if mode == "env":
                    dirs = self.light_dirs()
                    inten = self.env_weights(env_rotation, envmap)
                else:
                    if light_dir is None:
                        light_dir = (camera.c2w[:3, :3] @ torch.tensor([0.5, 0.6, 0.6])).tolist()
                    dirs = torch.nn.functional.normalize(torch.tensor([light_dir],
                                                                      dtype=torch.float32), dim=-1)
                    inten = torch.full((1, 3), math.pi)  # white, radiance ~albedo head-on
                vis = self._visibility(g["x"], g["n"], dirs)
                val = self.model(x, n, v, dirs.to(self.device), inten.to(self.device),
                                 vis.to(self.device))
            out[g["pix"]] = val.float().cpu()
        return out.reshape(h, w, 3).numpy()

    def render(self, camera: Camera, mode: str = "env", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None,
               env_rotation: float | None = None, envmap=None) -> np.ndarray:
        """Display image: :meth:`render_linear` with exposure and sRGB encoding; in ``env``
        mode the viewer's light azimuth rotates the map (``env_rotation`` overrides it)."""
        from renderer.shading import linear_to_srgb

        rotation = env_rotation
        if rotation is None:
            rotation = 0.0 if light_dir is None or mode != "env" else math.degrees(
                math.atan2(light_dir[0], light_dir[2]))
        lin = torch.from_numpy(self.render_linear(
            camera, mode, light_dir=light_dir if mode == "light" else None,
            env_rotation=rotation, envmap=envmap))
        hit = lin.abs().sum(-1) > 0
        if mode in ("env", "light"):
            stops = self.config.render.exposure
            if stops == 0.0 and mode == "env" and hit.any():
                q = float(torch.quantile(lin[hit].max(-1).values, 0.99))
                scale = 0.9 / max(q, 1e-8)
            else:
                scale = 2.0 ** stops
            lin = linear_to_srgb((lin * scale).clamp(0, 1))
        img = lin.clamp(0, 1)
        bg = torch.tensor(background if background is not None else (0.0, 0.0, 0.0))
        img[~hit] = bg
        return img.numpy()

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def predict_views(self, views: Tensor, dirs: Tensor, intensities: Tensor,
                      visibility_of=None) -> Tensor:
        """``[len(views), H, W, 3]`` predictions of dataset views under the given lights (their
        visibility from the dataset when the lights are its own: ``visibility_of`` indices)."""
        ds = self.data
        size = ds.config.size
        out = torch.zeros(len(views), size * size, 3)
        for i, v in enumerate(views.tolist()):
            pix = ds.hit[v].reshape(-1).nonzero().squeeze(1)
            x = ds.points[v].reshape(-1, 3)[pix]
            n = ds.normals[v].reshape(-1, 3)[pix]
            d = ds.view_dirs[v].reshape(-1, 3)[pix]
            if visibility_of is not None:
                vis = ds.visibility[v].reshape(size * size, -1)[pix][:, visibility_of].float()
            else:
                vis = self._visibility(x, n, dirs)
            pred = self.model(x.to(self.device), n.to(self.device), d.to(self.device),
                              dirs.to(self.device), intensities.to(self.device),
                              vis.to(self.device))
            out[i, pix] = pred.float().cpu()
        return out.reshape(len(views), size, size, 3)

    @torch.no_grad()
    def evaluate(self, **_: Any) -> dict[str, Any]:
        """PSNR (linear HDR, masked, peak = the target's maximum) on held-out lights (training
        views), held-out views (training lights) and the environment map (all views), and the
        time of the one-pass environment render against one pass per light."""
        if self.data is None:
            self.setup_data()
        self.model.eval()
        ds = self.data
        size = ds.config.size
        mask_of = lambda views: ds.hit[views]  # noqa: E731

        def olat_psnr(views: Tensor, lights: Tensor) -> float:
            vals = []
            for j in lights.tolist():
                one = torch.ones(1, 3)
                pred = self.predict_views(views, ds.lights[j:j + 1], one,
                                          visibility_of=torch.tensor([j]))
                gt = ds.olat[views, j]
                vals.append(float(((pred - gt)[mask_of(views)] ** 2).mean()))
            mse = sum(vals) / len(vals)
            peak = float(ds.olat[views][:, lights].max())
            return 10 * math.log10(peak ** 2 / max(mse, 1e-20))

        out: dict[str, Any] = {"lights": len(ds.lights), "views": len(ds.cameras),
                               "size": size}
        if len(ds.test_lights):
            out["psnr_heldout_lights"] = round(olat_psnr(ds.train_views, ds.test_lights), 2)
        if len(ds.test_views):
            out["psnr_heldout_views"] = round(olat_psnr(ds.test_views, ds.train_lights[::4]), 2)
        out["psnr_train"] = round(olat_psnr(ds.train_views[:2], ds.train_lights[::8]), 2)
        w = self.env_weights()
        all_views = torch.arange(len(ds.cameras))
        gt = ds.env_ground_truth(w)
        t0 = time.perf_counter()
        pred = self.predict_views(all_views, ds.lights, w,
                                  visibility_of=torch.arange(len(ds.lights)))
        one_pass = time.perf_counter() - t0
        out["psnr_env"] = round(psnr_hdr(pred, gt, ds.hit), 2)
        out["psnr_env_heldout_views"] = round(psnr_hdr(pred[ds.test_views], gt[ds.test_views],
                                                       ds.hit[ds.test_views]), 2) \
            if len(ds.test_views) else None
        # The same frame light by light (what a model without superposition would need).
        t0 = time.perf_counter()
        v0 = all_views[:1]
        per_light = torch.zeros(1, size, size, 3)
        for j in range(len(ds.lights)):
            per_light += self.predict_views(v0, ds.lights[j:j + 1], w[j:j + 1],
                                            visibility_of=torch.tensor([j]))
        loop_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        single = self.predict_views(v0, ds.lights, w, visibility_of=torch.arange(len(ds.lights)))
        pass_s = time.perf_counter() - t0
        out["env_one_pass_s_per_view"] = round(pass_s, 4)
        out["env_per_light_s_per_view"] = round(loop_s, 4)
        out["env_superposition_rel_error"] = float(
            (single - per_light).norm() / single.norm().clamp_min(1e-20))
        out["env_all_views_s"] = round(one_pass, 3)
        return out

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        d = self.config.data
        p.update({"shape": d.shape, "lights": d.n_lights, "views": d.n_views,
                  "envmap": Path(d.envmap).name, "render_modes": list(self.render_modes)})
        return p

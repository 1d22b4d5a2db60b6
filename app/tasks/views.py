"""What the multi-view tasks (``nerf``, ``neus``) share: their data, training rays and metrics.

* :func:`dataset_path` — ``"spot"`` renders the synthetic spot dataset once (cached under
  ``outputs/.datasets``) so presets run from a fresh clone; anything else is a user path.
* :func:`load_views` — the training split and the held-out split (``None`` when the format has
  none, e.g. NeuS/DTU folders).
* :func:`training_rays` — every training pixel as a ray with its colour and coverage: for RGBA
  inputs the colour is *premultiplied* (``α · rgb``, i.e. over black) so that a task can composite
  it over any background it likes; for NeuS masks likewise.
* :func:`psnr`, :func:`evaluate_views` — PSNR / SSIM over views.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.paths import PROJECT_ROOT, resolve_input
from datasets.multiview import MultiViewDataset, load_multiview
from renderer.cameras import Camera
from renderer.shading import linear_to_srgb, shade_blinn_phong, shade_depth, shade_normals
from renderer.surface import default_light_dir

__all__ = ["SPOT_DATASET", "MultiViewDataConfig", "dataset_path", "encoding_groups", "load_views",
           "training_rays", "psnr", "evaluate_views", "spot_reference", "compose_view", "scene_up"]

SPOT_DATASET = "spot"


@dataclass
class MultiViewDataConfig:
    """Where the views come from (shared by the multi-view tasks)."""

    path: str = SPOT_DATASET
    """Blender folder or transforms file, instant-ngp ``transforms.json``, tiny-NeRF ``.npz``
    or NeuS/DTU folder (``cameras_sphere.npz``, ``image/``, ``mask/``); ``spot`` renders the
    synthetic spot dataset (cached under ``outputs/.datasets``)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour behind the object (RGBA images are composited over it; also the render's)."""
    downscale: int = 1
    """Integer image downscale factor."""
    batch_rays: int = 1024
    """Rays per optimisation step."""
    spot_size: int = 100
    """Image size of the synthetic spot views."""


def encoding_groups(field: torch.nn.Module) -> list[dict[str, Any]]:
    """Optimiser groups of a field with an ``encoding``: the encoding's parameters (hash tables:
    no weight decay) and the rest (MLPs: weight decay 1e-6, instant-ngp's setting)."""
    enc = list(field.encoding.parameters())
    enc_ids = {id(p) for p in enc}
    rest = [p for p in field.parameters() if id(p) not in enc_ids]
    return [{"params": enc, "lr_factor": 1.0},
            {"params": rest, "lr_factor": 1.0, "weight_decay": 1e-6}]


def dataset_path(path: str, spot_size: int = 100) -> Path:
    """The folder or file to load: the synthetic spot dataset for ``"spot"``, else ``path``."""
    if path == SPOT_DATASET:
        from datasets.synthetic import spot_blender_dataset

        root = PROJECT_ROOT / "outputs" / ".datasets" / f"spot-{spot_size}"
        return spot_blender_dataset(root, size=spot_size)
    return resolve_input(path)


def spot_reference() -> Path:
    """The mesh the synthetic spot views were rendered from (reference for Chamfer)."""
    return PROJECT_ROOT / "assets" / "meshes" / "spot.obj"


def load_views(
    path: Path, downscale: int, background: tuple[float, float, float]
) -> tuple[MultiViewDataset, MultiViewDataset | None]:
    """``(train, test)``; ``test`` is ``None`` for formats without a held-out split (NeuS/DTU
    and instant-ngp scenes load as one ``"all"`` split, which must not pass for held-out)."""
    train = load_multiview(path, split="train", downscale=downscale, background=background)
    try:
        test = load_multiview(path, split="test", downscale=downscale, background=background)
    except Exception:  # no held-out split in this format: evaluate on training views
        test = None
    if test is not None and test.split != "test":
        test = None
    return train, test


def training_rays(
    views: MultiViewDataset, background: tuple[float, float, float]
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """``(rays_o, rays_d, rgb, coverage)`` of every training pixel.

    ``coverage`` ``[P, 1]`` is the RGBA alpha or the object mask (``None`` without either); with
    it, ``rgb`` is premultiplied — ``α · rgb``, the colour over black. RGBA images arrive
    composited over ``background``, which is subtracted again; masked photos are multiplied.
    """
    rays_o, rays_d, rgb = views.training_rays()
    if views.alpha is not None:
        a = views.alpha.reshape(-1, 1).to(rgb.dtype)
        rgb = rgb - (1.0 - a) * torch.tensor(background, dtype=rgb.dtype)
        return rays_o, rays_d, rgb, a
    if views.masks is not None:
        m = views.masks.reshape(-1, 1).to(rgb.dtype)
        return rays_o, rays_d, rgb * m, m
    return rays_o, rays_d, rgb, None


def psnr(pred: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio for images in [0, 1]: ``−10 log10(MSE)``."""
    mse = torch.mean((pred - target) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def evaluate_views(
    render_rgb: Callable[[Camera], Tensor],
    views: MultiViewDataset,
    split: str,
    max_views: int | None = None,
    targets: Callable[[int], Tensor] | None = None,
) -> dict[str, Any]:
    """Mean PSNR and SSIM of ``render_rgb(camera) [H, W, 3]`` against ``views``' images.

    ``targets(i)`` overrides the ground truth of view ``i`` (e.g. masked photos).
    """
    from skimage.metrics import structural_similarity

    n = len(views) if max_views is None else min(max_views, len(views))
    psnrs, ssims = [], []
    for i in range(n):
        pred = render_rgb(views.camera(i)).detach().cpu().float()
        gt = views.images[i] if targets is None else targets(i)
        psnrs.append(psnr(pred, gt))
        ssims.append(float(structural_similarity(pred.numpy(), gt.numpy(), channel_axis=2,
                                                 data_range=1.0)))
    return {"split": split, "views": n, "psnr": float(np.mean(psnrs)),
            "ssim": float(np.mean(ssims)), "psnr_per_view": [round(p, 3) for p in psnrs]}


def compose_view(
    views: dict[str, Tensor],
    mode: str,
    camera: Camera,
    background: tuple[float, float, float],
    light_dir: tuple[float, float, float] | None = None,
) -> np.ndarray:
    """The display image of a volume render (``premultiplied`` colour, ``opacity``, ``depth``
    and, for ``normals``/``shaded``, ``normals``) in one of the multi-view tasks' modes:

    * ``rgb`` — the colour composited over ``background``;
    * ``opacity`` — accumulated opacity as grey;
    * ``depth`` — expected depth through the colour map where opacity > ½;
    * ``normals`` — ``(n + 1)/2`` where opacity > ½;
    * ``shaded`` — the normals lit by two-sided Blinn–Phong from ``light_dir`` (default: the
      camera's key light), like the sdf task's shaded mode.
    """
    opac = views["opacity"]
    hit = opac > 0.5
    bg = torch.tensor(background, dtype=opac.dtype, device=opac.device)
    if mode == "rgb":
        img = views["premultiplied"] + (1.0 - opac)[..., None] * bg
    elif mode == "opacity":
        img = opac[..., None].expand(-1, -1, 3)
    elif mode == "normals":
        img = shade_normals(views["normals"], hit, background)
    elif mode == "shaded":
        _, dirs = camera.rays(device=opac.device)
        light = default_light_dir(camera) if light_dir is None else light_dir
        lin = shade_blinn_phong(views["normals"], hit, dirs.reshape(*hit.shape, 3),
                                torch.as_tensor(light, dtype=opac.dtype),
                                background=bg.pow(2.2))
        img = linear_to_srgb(lin)
    elif mode == "depth":
        img = shade_depth(views["depth"], hit, background=background)
    else:
        raise ValueError(f"unknown render mode {mode!r}")
    return img.clamp(0.0, 1.0).detach().cpu().numpy()


def scene_up(views: MultiViewDataset) -> tuple[float, float, float]:
    """The scene's up direction: the mean of the views' camera up axes (``c2w[:3, 1]``), unit
    length — photographers hold cameras upright, so this is the world's up for Blender's z-up
    scenes and y-up ones alike. Within 15° of a coordinate axis it snaps to that axis (views on
    a slightly tilted rig); ``+y`` when the views disagree too much to tell."""
    mean = views.c2w[:, :3, 1].double().mean(0)
    norm = float(mean.norm())
    if norm < 0.5:
        return (0.0, 1.0, 0.0)
    up = mean / norm
    axis = int(up.abs().argmax())
    if float(up[axis].abs()) > math.cos(math.radians(15.0)):
        snapped = [0.0, 0.0, 0.0]
        snapped[axis] = 1.0 if float(up[axis]) > 0 else -1.0
        return tuple(snapped)
    return tuple(float(v) for v in up)

"""The ``image`` task: fit a 2-D image as a field ``f(x, y) → colour``.

Recipe, top to bottom:
1. load the image (``datasets.images.load_image``: PNG/JPG/EXR…, float in [0, 1]) and lay its
   pixel centres on ``[−1, 1]²`` (``pixel_coordinates``);
2. field, chosen by ``model.encoding``:
   ``hashgrid`` (multiresolution hash grid → ReLU MLP, the Instant-NGP baseline),
   ``rbf`` (NeuRBF: adaptive radial basis functions placed by gradient-weighted k-means + a
   coarse dense grid, sinusoidal composition, MSC decoder — ``fields.neurbf``),
   ``fourier`` (random Fourier features → MLP) or ``siren`` (sine MLP);
   ``rbf`` sizes itself to the parameter count of the ``hashgrid`` model of the same config
   (``model.rbf.budget``), so comparisons are at equal parameters;
3. loss: MSE on a stratified batch of pixels (one random pixel per block);
4. metrics: PSNR / SSIM of the clipped prediction on the pixel lattice;
5. render at any size (letter-boxed), the error, or the RBF centres over the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.paths import resolve_input
from app.tasks.base import Task
from datasets.images import load_image, pixel_coordinates, stratified_pixels
from fields.encodings.frequency import RandomFourierFeatures
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.networks import MLP, Siren
from renderer.cameras import Camera
from renderer.shading import heatmap

__all__ = ["ImageDataConfig", "ImageModelConfig", "RBFConfig", "ImageExperiment", "ImageTask",
           "ENCODINGS"]

ENCODINGS = ("hashgrid", "rbf", "fourier", "siren")


@dataclass
class ImageDataConfig:
    """The image to fit."""

    path: str = "assets/images/astronaut.png"
    """Image file (PNG, JPG, BMP, TIFF; EXR/HDR with an imageio plugin)."""
    max_side: int = 0
    """Shrink (integer box filter) until the longer side is at most this; 0 keeps the size."""
    batch_pixels: int = 1 << 16
    """Pixels per step (stratified: one random pixel per block)."""


@dataclass
class RBFConfig:
    """NeuRBF (Chen et al., ICCV 2023) for images: the paper's image defaults."""

    n_kernels: int = 0
    """Number of RBFs; 0 = as many as fit the budget (the hash-grid model's parameter count)."""
    budget: int = 0
    """Parameter budget for ``n_kernels = 0``; 0 = the ``hashgrid`` model of this config."""
    neighbours: int = 4
    """k nearest kernels per point."""
    features: int = 32
    """F, channels per kernel (and of the RBF MSC)."""
    msc: tuple[float, float] = (2.0**-3, 2.0**12)
    """[m_l, m_h] of the sinusoidal composition of kernel responses; (0, 0) turns it off."""
    feature_msc: tuple[float, float] = (1.0, 1000.0)
    """Range of the decoder's feature MSC frequencies; (0, 0) turns it off."""
    kmeans_alpha: float = 0.5
    """Shape scale α of the weighted k-means (Σ = covariance / α)."""
    kmeans_iters: int = 10
    adaptive: bool = True
    """Centres by gradient-weighted k-means; False = a regular lattice (the ablation)."""
    grid_resolutions: tuple[int, ...] = (16, 64)
    """Resolutions of the dense 2-D grid part (2 features per level)."""


@dataclass
class ImageModelConfig:
    """The field."""

    encoding: str = "hashgrid"
    """``hashgrid``, ``rbf``, ``fourier`` or ``siren``."""
    hidden_dim: int = 64
    num_hidden_layers: int = 2
    hashgrid: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=16, features_per_level=2, log2_hashmap_size=12, base_resolution=16,
        max_resolution=512))
    rbf: RBFConfig = field(default_factory=RBFConfig)
    fourier_features: int = 256
    fourier_scale: float = 10.0
    siren_hidden: int = 256
    siren_layers: int = 3


@dataclass
class ImageExperiment(ExperimentConfig):
    """Fit an image."""

    task: str = "image"
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    model: ImageModelConfig = field(default_factory=ImageModelConfig)


class _EncodedMLP(nn.Module):
    """``MLP(encoding(x))`` for the hash-grid and Fourier baselines."""

    def __init__(self, encoding: nn.Module, out_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.encoding = encoding
        self.mlp = MLP(encoding.out_dim, out_dim, hidden, layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(self.encoding(x))


def hashgrid_model(cfg: ImageModelConfig, channels: int) -> nn.Module:
    return _EncodedMLP(HashGridEncoding(2, cfg.hashgrid, bounds=(-1.0, 1.0), backend="torch"),
                       channels, cfg.hidden_dim, cfg.num_hidden_layers)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters plus frozen buffers that are part of the representation (NeuRBF's
    centres and shapes count, as in the paper's budgets)."""
    if hasattr(model, "num_parameters"):
        return int(model.num_parameters())
    return sum(p.numel() for p in model.parameters())


class ImageTask(Task):
    """Fit, render and score a 2-D image field."""

    kind = "image"
    config_cls = ImageExperiment
    render_modes = ("rgb", "error", "centres")

    def __init__(self, config: ImageExperiment, device: torch.device) -> None:
        super().__init__(config, device)
        self.config: ImageExperiment = config
        m = config.model
        if m.encoding not in ENCODINGS:
            raise ValueError(f"model.encoding must be one of {ENCODINGS}, got {m.encoding!r}")
        self.channels = 3
        self.model = self._build(m).to(device)
        self.image: Tensor | None = None
        self.coords: Tensor | None = None
        self.source_path: str | None = None
        self._neighbours: Tensor | None = None
        self._gen = torch.Generator().manual_seed(config.trainer.seed)

    def _build(self, m: ImageModelConfig) -> nn.Module:
        c = self.channels
        if m.encoding == "hashgrid":
            return hashgrid_model(m, c)
        if m.encoding == "fourier":
            return _EncodedMLP(RandomFourierFeatures(2, m.fourier_features, m.fourier_scale,
                                                     seed=self.config.trainer.seed),
                               c, m.hidden_dim, m.num_hidden_layers)
        if m.encoding == "siren":
            return Siren(2, c, m.siren_hidden, m.siren_layers)
        return self._build_rbf(m)

    def _build_rbf(self, m: ImageModelConfig) -> nn.Module:
        from fields.encodings.densegrid import DenseGridEncoding
        from fields.encodings.rbf import AdaptiveRBFEncoding
        from fields.neurbf import NeuRBFField, neurbf_kernel_budget

        r = m.rbf
        grid = DenseGridEncoding(2, resolutions=tuple(r.grid_resolutions), features_per_level=2,
                                 bounds=(-1.0, 1.0))
        n = r.n_kernels
        if n <= 0:
            budget = r.budget or count_parameters(hashgrid_model(m, self.channels))
            n = neurbf_kernel_budget(budget, grid, 2, r.features, self.channels, m.hidden_dim)
            if n < 16:
                raise ValueError(f"the parameter budget {budget} leaves room for {n} kernels")
        rbf = AdaptiveRBFEncoding(n, 2, features=r.features, kernel="ivq_a", k=r.neighbours,
                                  msc=_range(r.msc), normalise=True)
        return NeuRBFField(grid, rbf, self.channels, hidden_dim=m.hidden_dim,
                           feature_msc=_range(r.feature_msc))

    # -- data -------------------------------------------------------------------------------
    def setup_data(self) -> None:
        self._load_image()
        if self.config.model.encoding == "rbf":
            self._init_rbf()

    def _load_image(self) -> None:
        path = resolve_input(self.source_path or self.config.data.path)
        img = load_image(path, self.config.data.max_side or None)
        if img.shape[2] == 1:
            img = img.expand(-1, -1, 3).contiguous()
        self.image = img.to(self.device)
        self.source_path = str(path)
        h, w = img.shape[:2]
        self.coords = pixel_coordinates(h, w).to(self.device)
        self._target = self.image.reshape(-1, 3)

    def _init_rbf(self) -> None:
        """Place the kernels (gradient-weighted k-means, or a lattice) and cache each pixel's
        nearest kernels (centres are frozen, so the neighbours never change)."""
        from fields.encodings.rbf import sobel_weights

        r = self.config.model.rbf
        rbf = self.model.rbf
        h, w = self.image.shape[:2]
        if r.adaptive:
            weights = sobel_weights(self.image.cpu()).reshape(-1)
            rbf.init_from_signal(self.coords.cpu(), weights, alpha=r.kmeans_alpha,
                                 iters=r.kmeans_iters, generator=self._gen,
                                 extent=2.0, samples_per_axis=max(h, w))
        else:
            rbf.init_lattice(extent=2.0, samples_per_axis=max(h, w))
        rbf.to(self.device)
        self._neighbours = None  # recomputed from the centres in use at the first step

    def parameter_groups(self) -> list[dict[str, Any]]:
        # NeuRBF's image recipe: lr 1e-2 for the decoder, half for grid, RBF features and bias.
        if self.config.model.encoding == "rbf":
            dec = list(self.model.decoder.parameters())
            ids = {id(p) for p in dec}
            rest = [p for p in self.model.parameters() if id(p) not in ids]
            return [{"params": dec, "lr_factor": 1.0}, {"params": rest, "lr_factor": 0.5}]
        return [{"params": list(self.model.parameters()), "lr_factor": 1.0}]

    def _predict(self, idx: Tensor | None = None, x: Tensor | None = None) -> Tensor:
        if self.config.model.encoding == "rbf" and idx is not None:
            if self._neighbours is None:  # every pixel's k nearest kernels (centres are frozen)
                self._neighbours = self.model.rbf.cache_neighbours(self.coords)
            return self.model(self.coords[idx], neighbours=self._neighbours[idx])
        return self.model(self.coords[idx] if x is None else x)

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        if self.image is None:
            raise RuntimeError("setup_data() must run before training")
        h, w = self.image.shape[:2]
        idx = stratified_pixels(h, w, self.config.data.batch_pixels, self._gen, self.device)
        loss = torch.mean((self._predict(idx) - self._target[idx]) ** 2)
        return loss, {"psnr": -10.0 * math.log10(max(loss.item(), 1e-12))}

    # -- state ------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        shape = list(self.image.shape) if self.image is not None else None
        return {"source_path": self.source_path, "shape": shape}

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.source_path = meta.get("source_path")
        self._shape = meta.get("shape")
        self._neighbours = None  # the checkpoint's centres replace the ones placed at set-up

    # -- using the field --------------------------------------------------------------------
    def image_shape(self) -> tuple[int, int]:
        if self.image is not None:
            return int(self.image.shape[0]), int(self.image.shape[1])
        shape = getattr(self, "_shape", None)
        return (int(shape[0]), int(shape[1])) if shape else (512, 512)

    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        # An image has no 3-D view; the camera only carries the output size.
        return Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=width, height=height)

    @torch.no_grad()
    def predict_lattice(self, height: int, width: int, chunk: int = 1 << 16) -> Tensor:
        """The field on the pixel centres of a ``height × width`` image of the same extent,
        ``[height, width, 3]`` clipped to ``[0, 1]``."""
        self.model.eval()
        x = pixel_coordinates(height, width).to(self.device)
        out = torch.cat([self._predict(x=c) for c in x.split(chunk)])
        return out.clamp(0.0, 1.0).reshape(height, width, 3)

    def render(self, camera: Camera, mode: str = "rgb", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        """The fit at the camera's size, letter-boxed to the image's aspect: ``rgb``, ``error``
        (|fit − image| heat map, needs the data) or ``centres`` (the RBF centres over the fit)."""
        if mode not in self.render_modes:
            raise ValueError(f"unknown render mode {mode!r}; the image task has "
                             f"{self.render_modes}")
        ih, iw = self.image_shape()
        scale = min(camera.width / iw, camera.height / ih)
        w, h = max(1, round(iw * scale)), max(1, round(ih * scale))
        fit = self.predict_lattice(h, w)
        if mode == "error":
            if self.image is None:
                self._load_image()
            ref = self._resample_image(h, w)
            fit = heatmap((fit - ref).abs().mean(-1), 0.0, 0.25)
        elif mode == "centres":
            fit = self._draw_centres(fit)
        bg = torch.tensor(background or (0.0, 0.0, 0.0), dtype=fit.dtype, device=fit.device)
        out = bg.expand(camera.height, camera.width, 3).clone()
        top, left = (camera.height - h) // 2, (camera.width - w) // 2
        out[top:top + h, left:left + w] = fit
        return out.cpu().numpy()

    def _resample_image(self, h: int, w: int) -> Tensor:
        img = self.image.permute(2, 0, 1)[None]
        return torch.nn.functional.interpolate(img, size=(h, w), mode="area" if (
            h < img.shape[2]) else "nearest")[0].permute(1, 2, 0)

    def _draw_centres(self, fit: Tensor) -> Tensor:
        rbf = getattr(self.model, "rbf", None)
        if rbf is None:
            return fit
        h, w = fit.shape[:2]
        c = rbf.centres.detach().to(fit.device)
        col = ((c[:, 0] + 1.0) * (w / 2.0)).long().clamp(0, w - 1)
        row = ((1.0 - c[:, 1]) * (h / 2.0)).long().clamp(0, h - 1)
        out = fit * 0.6
        out[row, col] = torch.tensor([1.0, 0.15, 0.1], device=fit.device)
        return out

    def evaluate(self, **_: Any) -> dict[str, Any]:
        """PSNR and SSIM of the clipped fit on the image's own pixel lattice."""
        from skimage.metrics import structural_similarity

        if self.image is None:
            self.setup_data()
        h, w = self.image.shape[:2]
        fit = self.predict_lattice(h, w)
        mse = float(torch.mean((fit - self.image) ** 2))
        return {"psnr": -10.0 * math.log10(max(mse, 1e-12)),
                "ssim": float(structural_similarity(fit.cpu().numpy(), self.image.cpu().numpy(),
                                                   channel_axis=2, data_range=1.0)),
                "size": [h, w], "parameters": count_parameters(self.model),
                "encoding": self.config.model.encoding}

    def properties(self) -> dict[str, Any]:
        p = super().properties()
        p.update({"source": self.source_path, "encoding": self.config.model.encoding,
                  "parameters (incl. frozen RBF centres/shapes)": count_parameters(self.model),
                  "image": "x".join(str(v) for v in self.image_shape()),
                  "render_modes": list(self.render_modes)})
        rbf = getattr(self.model, "rbf", None)
        if rbf is not None:
            p["rbf_kernels"] = int(rbf.centres.shape[0])
        return p


def _range(pair: tuple[float, float]) -> tuple[float, float] | None:
    return None if (not pair or pair[1] <= 0) else (float(pair[0]), float(pair[1]))

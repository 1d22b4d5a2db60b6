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
   with ``model.fresh`` the frequency hyper-parameter of ``fourier`` (``fourier_scale``),
   ``siren`` (``siren_omega0``) or ``hashgrid`` (``hashgrid.max_resolution``) is first chosen by
   FreSh (``fields.fresh``: the untrained models' spectra against the image's), written into the
   config, and the field rebuilt with it;
3. loss: MSE on a stratified batch of pixels (one random pixel per block);
4. metrics: PSNR / SSIM of the clipped prediction on the pixel lattice;
5. render at any size (letter-boxed), the error, or the RBF centres over the fit.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.paths import resolve_input
from app.tasks.base import Task
from datasets.errors import DataError
from datasets.images import load_image, pixel_coordinates, stratified_pixels
from fields.encodings.frequency import RandomFourierFeatures
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding
from fields.fresh import (
    FOURIER_SIGMA_CANDIDATES,
    SIREN_OMEGA0_CANDIDATES,
    FreshResult,
    fresh_search,
    hashgrid_candidates,
)
from fields.networks import MLP, Siren
from renderer.cameras import Camera
from renderer.shading import heatmap

__all__ = ["ImageDataConfig", "ImageModelConfig", "RBFConfig", "ImageExperiment", "ImageTask",
           "ENCODINGS", "FRESH_HYPERPARAMETERS", "FRESH_RECORD_KEYS", "image_fresh_search",
           "make_fresh_record", "check_fresh_record"]

ENCODINGS = ("hashgrid", "rbf", "fourier", "siren")

FRESH_HYPERPARAMETERS = {"fourier": "fourier_scale", "siren": "siren_omega0",
                         "hashgrid": "hashgrid.max_resolution"}
"""The config field FreSh tunes for each encoding (``model.…``; ``rbf`` has none)."""


@dataclass
class ImageDataConfig:
    """The image to fit."""

    path: str = "assets/images/astronaut.png"
    """Image file (PNG, JPG, BMP, TIFF; EXR/HDR with an imageio plugin)."""
    max_side: int = 0
    """Shrink (integer box filter) until the longer side is at most this; 0 keeps the size."""
    crop: int = 0
    """Centre-crop to ``crop × crop`` pixels after shrinking (the paper's 256² Kodak
    protocol); 0 keeps the whole image."""
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
    kmeans_alpha: float = 1.0
    """Shape scale α of the weighted k-means (Σ = covariance / α; the official image config
    uses 1)."""
    kmeans_iters: int = 10
    adaptive: bool = True
    """Centres by gradient-weighted k-means; False = a regular lattice (the ablation)."""
    grid_resolutions: tuple[int, ...] = (16, 0)
    """Resolutions of the dense 2-D grid part (2 features per level); 0 = half the image's
    longer side (the paper's finest level)."""


@dataclass
class ImageModelConfig:
    """The field."""

    encoding: str = "hashgrid"
    """``hashgrid``, ``rbf``, ``fourier`` or ``siren``."""
    hidden_dim: int = 64
    num_hidden_layers: int = 2
    hashgrid: HashGridConfig = field(default_factory=lambda: HashGridConfig(
        num_levels=16, features_per_level=2, log2_hashmap_size=24, base_resolution=16,
        max_resolution=0))
    """The Instant-NGP image reference of the NeuRBF paper (16 levels × 2 features from 16 to
    half the image's longer side; ``2^24`` rows, so no level collides); ``max_resolution = 0``
    means half the longer side. It also sets the ``rbf`` parameter budget."""
    rbf: RBFConfig = field(default_factory=RBFConfig)
    fourier_features: int = 256
    fourier_scale: float = 10.0
    """σ of the Gaussian Fourier features ``B ~ N(0, σ²)``, used as ``sin(2πBx)``."""
    siren_hidden: int = 256
    siren_layers: int = 3
    siren_omega0: float = 30.0
    """SIREN's first-layer ω₀ (hidden layers keep ω = 30)."""
    fresh: bool = False
    """Choose ``fourier_scale``, ``siren_omega0`` or ``hashgrid.max_resolution`` with FreSh
    before training (the chosen value replaces the configured one in the saved config)."""
    fresh_inits: int = 10
    """FreSh: untrained models per candidate."""
    fresh_size: int = 64
    """FreSh: S, spectrum bins compared (the paper's image setting)."""


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


def frequency_model(cfg: ImageModelConfig, channels: int, seed: int = 0) -> nn.Module:
    """The ``hashgrid``, ``fourier`` or ``siren`` field of ``cfg`` (``seed`` draws the Fourier
    matrix; everything else draws from the global torch RNG)."""
    if cfg.encoding == "hashgrid":
        return hashgrid_model(cfg, channels)
    if cfg.encoding == "fourier":
        return _EncodedMLP(RandomFourierFeatures(2, cfg.fourier_features, cfg.fourier_scale,
                                                 seed=seed),
                           channels, cfg.hidden_dim, cfg.num_hidden_layers)
    if cfg.encoding == "siren":
        return Siren(2, channels, cfg.siren_hidden, cfg.siren_layers, omega0=30.0,
                     omega0_first=cfg.siren_omega0)
    raise ValueError(f"model.encoding {cfg.encoding!r} is not a hashgrid, fourier or siren field")


def with_fresh_value(cfg: ImageModelConfig, value: float) -> ImageModelConfig:
    """A copy of ``cfg`` whose FreSh hyper-parameter (:data:`FRESH_HYPERPARAMETERS`) is
    ``value`` (rounded to an integer for the hash grid's finest resolution)."""
    if cfg.encoding == "fourier":
        return dataclasses.replace(cfg, fourier_scale=float(value))
    if cfg.encoding == "siren":
        return dataclasses.replace(cfg, siren_omega0=float(value))
    if cfg.encoding == "hashgrid":  # HashGridConfig is frozen: replace, never assign
        return dataclasses.replace(cfg, hashgrid=dataclasses.replace(
            cfg.hashgrid, max_resolution=int(round(value))))
    tuned = ", ".join(f"{e} ({p})" for e, p in FRESH_HYPERPARAMETERS.items())
    raise ValueError(f"FreSh tunes {tuned}; model.encoding {cfg.encoding!r} has no frequency "
                     "hyper-parameter")


def fresh_candidates(cfg: ImageModelConfig, height: int, width: int) -> tuple[float, ...]:
    """The values FreSh tries: SIREN ω₀ ∈ {10, …, 200}, Fourier σ ∈ {1, …, 20} (the paper's
    lists) or hash-grid finest resolutions 32 … 2·max(H, W) in half-octave steps."""
    if cfg.encoding == "fourier":
        return FOURIER_SIGMA_CANDIDATES
    if cfg.encoding == "siren":
        return SIREN_OMEGA0_CANDIDATES
    if cfg.encoding == "hashgrid":
        return tuple(float(r) for r in hashgrid_candidates(max(height, width),
                                                           cfg.hashgrid.base_resolution))
    with_fresh_value(cfg, 0.0)  # raises the error that names the supported encodings
    raise AssertionError("unreachable")


def read_image(data: ImageDataConfig) -> tuple[Tensor, Path]:
    """The configured image as ``[H, W, 3]`` in ``[0, 1]`` (grey repeated), and its path."""
    path = resolve_input(data.path)
    img = load_image(path, data.max_side or None)
    if data.crop > 0:
        h, w = img.shape[:2]
        if data.crop > min(h, w):
            raise DataError(path, f"data.crop={data.crop} is larger than the image ({w}×{h})")
        top, left = (h - data.crop) // 2, (w - data.crop) // 2
        img = img[top:top + data.crop, left:left + data.crop].contiguous()
    if img.shape[2] == 1:
        img = img.expand(-1, -1, 3).contiguous()
    return img, path


def image_fresh_search(
    cfg: ImageExperiment,
    image: Tensor | None = None,
    coords: Tensor | None = None,
    *,
    device: torch.device | str = "cpu",
    candidates: tuple[float, ...] | None = None,
    inits: int | None = None,
    size: int | None = None,
    log: Callable[[str], None] | None = None,
) -> FreshResult:
    """FreSh (Kania et al., ICLR 2025) for the image task: score each candidate value of the
    configured encoding's frequency hyper-parameter by the spectrum of its untrained field on
    the image's pixel centres (the coordinates training uses), and return the search
    (``result.chosen`` is the value to train with; nothing in ``cfg`` changes).

    Args:
        cfg: the experiment (its ``model.encoding`` decides what is tuned; ``trainer.seed`` is
            the first of the ``inits`` seeds, so the trained field is one of those scored).
        image: ``[H, W, C]`` in ``[0, 1]``; default: read ``cfg.data``.
        coords: ``[H·W, 2]`` pixel centres; default: ``pixel_coordinates(H, W)``.
        device: where the untrained fields run.
        candidates, inits, size: override :func:`fresh_candidates`, ``model.fresh_inits`` and
            ``model.fresh_size``.
        log: gets one line per candidate.

    Raises:
        ValueError: the encoding has no frequency hyper-parameter (``rbf``), the hash grid's
            ``per_level_scale`` is fixed (``max_resolution`` would do nothing), ``size`` is too
            large for the image, or the image is constant.
    """
    m = cfg.model
    name = FRESH_HYPERPARAMETERS.get(m.encoding)
    if name is None:
        with_fresh_value(m, 0.0)  # the error naming the supported encodings
    if m.encoding == "hashgrid" and m.hashgrid.per_level_scale is not None:
        raise ValueError("FreSh tunes model.hashgrid.max_resolution, which a fixed "
                         f"model.hashgrid.per_level_scale={m.hashgrid.per_level_scale} overrides; "
                         "set per_level_scale to None")
    if image is None:
        image, _ = read_image(cfg.data)
    h, w = int(image.shape[0]), int(image.shape[1])
    if coords is None:
        coords = pixel_coordinates(h, w)
    channels = 3

    def make(value: float, seed: int) -> nn.Module:
        return frequency_model(with_fresh_value(m, value), channels, seed)

    return fresh_search(
        make, coords.to(device), image.to(device),
        candidates if candidates is not None else fresh_candidates(m, h, w),
        inits=m.fresh_inits if inits is None else inits,
        size=m.fresh_size if size is None else size,
        seed=cfg.trainer.seed, hyperparameter=name, log=log)


FRESH_RECORD_KEYS = ("hyperparameter", "candidates", "mean_w1", "std_error", "chosen", "size",
                     "inits", "seed", "seconds", "target_spectrum", "model_spectrum")
"""What :func:`make_fresh_record` keeps of a FreSh search (the per-seed distances are left out)."""


def make_fresh_record(result: FreshResult) -> dict[str, Any]:
    """A compact, JSON-able record of a FreSh search, as the image task saves it in every
    checkpoint's meta: the hyper-parameter's name, ``candidates``, ``mean_w1`` and ``std_error``
    per candidate, the ``chosen`` value, ``size`` (S), ``inits``, the first ``seed``,
    ``seconds``, and two spectra normalised to sum 1: ``target_spectrum`` (the image's) and
    ``model_spectrum`` (the chosen candidate's untrained fields, averaged over the seeds).

    Example:
        >>> f64 = torch.float64
        >>> r = FreshResult("siren_omega0", (10.0, 20.0), torch.tensor([[0.5], [0.2]], dtype=f64),
        ...                 torch.tensor([0.5, 0.5], dtype=f64),
        ...                 torch.tensor([[1.0, 0.0], [0.25, 0.75]], dtype=f64), 0, 1.5)
        >>> rec = make_fresh_record(r)
        >>> rec["chosen"], rec["model_spectrum"], sorted(rec) == sorted(FRESH_RECORD_KEYS)
        (20.0, [0.25, 0.75], True)
    """
    d = result.to_dict()
    return {k: d[k] for k in FRESH_RECORD_KEYS}


def check_fresh_record(record: Any) -> dict[str, Any]:
    """``record`` if it is a FreSh record as :func:`make_fresh_record` writes it (every key
    present, per-candidate lists as long as ``candidates``, both spectra ``size`` long), else a
    :class:`ValueError` that says what is wrong (a checkpoint written by other code)."""
    if not isinstance(record, dict):
        raise ValueError(f"checkpoint meta 'fresh' must be a dict, got {type(record).__name__}")
    missing = [k for k in FRESH_RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"checkpoint meta 'fresh' lacks {', '.join(missing)}")
    lists = ("candidates", "mean_w1", "std_error", "target_spectrum", "model_spectrum")
    bad = [key for key in lists if not isinstance(record[key], list)]
    if bad or not isinstance(record["size"], int):
        raise ValueError(f"checkpoint meta 'fresh': {', '.join(bad) or 'size'} has the wrong "
                         "type (lists of numbers and an integer size expected)")
    k, s = len(record["candidates"]), record["size"]
    for key, n in (("mean_w1", k), ("std_error", k), ("target_spectrum", s),
                   ("model_spectrum", s)):
        if len(record[key]) != n:
            raise ValueError(f"checkpoint meta 'fresh': {key} has {len(record[key])} entries, "
                             f"expected {n}")
    return record


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
        if m.fresh and m.encoding not in FRESH_HYPERPARAMETERS:
            raise ValueError(f"model.fresh: FreSh tunes {', '.join(FRESH_HYPERPARAMETERS)} "
                             f"fields; model.encoding {m.encoding!r} has no frequency "
                             "hyper-parameter")
        self.channels = 3
        self.image: Tensor | None = None
        self.coords: Tensor | None = None
        self.source_path: str | None = None
        self._resolve_auto_resolutions()
        self.model = self._build(m).to(device)
        self._neighbours: Tensor | None = None
        self._gen = torch.Generator().manual_seed(config.trainer.seed)
        self.fresh_result: FreshResult | None = None
        """The FreSh search of :meth:`setup_data` (``model.fresh``), e.g. to plot its spectra."""

    def _resolve_auto_resolutions(self) -> None:
        """Replace the "0 = half the image's longer side" resolutions by numbers (this reads the
        image once); the resolved config is what the run saves, so a reload needs no image."""
        m = self.config.model
        if m.hashgrid.max_resolution > 0 and all(r > 0 for r in m.rbf.grid_resolutions):
            return
        self._load_image()
        h, w = self.image.shape[:2]
        half = max(2, max(h, w) // 2)
        if m.hashgrid.max_resolution <= 0:
            m.hashgrid = dataclasses.replace(
                m.hashgrid, max_resolution=max(half, m.hashgrid.base_resolution))
        m.rbf.grid_resolutions = tuple(r if r > 0 else half for r in m.rbf.grid_resolutions)

    def _build(self, m: ImageModelConfig) -> nn.Module:
        if m.encoding == "rbf":
            return self._build_rbf(m)
        return frequency_model(m, self.channels, seed=self.config.trainer.seed)

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
        if self.config.model.fresh and self.fresh_record is None:
            # (a run reopened from a checkpoint already carries its search and its choice)
            self._choose_frequency()
        if self.config.model.encoding == "rbf":
            self._init_rbf()

    def _load_image(self) -> None:
        data = self.config.data
        if self.source_path:
            data = dataclasses.replace(data, path=self.source_path)
        key = (str(resolve_input(data.path)), data.max_side, data.crop)
        if self.image is not None and getattr(self, "_loaded_key", None) == key:
            return  # already read (e.g. by the resolution check at construction)
        img, path = read_image(data)
        self._loaded_key = key
        self.image = img.to(self.device)
        self.source_path = str(path)
        h, w = img.shape[:2]
        self.coords = pixel_coordinates(h, w).to(self.device)
        self._target = self.image.reshape(-1, 3)

    def _choose_frequency(self) -> None:
        """FreSh: score the candidates on this image, keep the best in the config (so the run's
        ``config.json`` records it) and rebuild the field with it, seeded as a run configured
        with that value from the start would be."""
        def say(line: str) -> None:
            print(f"fresh: {line}", file=sys.stderr, flush=True)

        result = image_fresh_search(self.config, self.image, self.coords, device=self.device,
                                    log=say)
        self.config.model = with_fresh_value(self.config.model, result.chosen)
        torch.manual_seed(self.config.trainer.seed)
        self.model = self._build(self.config.model).to(self.device)
        self.fresh_result = result
        say(f"chosen {result.hyperparameter} = {result.chosen:g} (S = {result.size}, "
            f"{result.inits} inits per candidate, {result.seconds:.1f} s)")

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
    @property
    def fresh_record(self) -> dict[str, Any] | None:
        """The FreSh search as plain JSON types (:func:`make_fresh_record`): from this session's
        :attr:`fresh_result`, else as restored from a checkpoint by :meth:`load_meta`; None when
        no search ran."""
        if self.fresh_result is not None:
            return make_fresh_record(self.fresh_result)
        return getattr(self, "_fresh_record", None)

    def meta(self) -> dict[str, Any]:
        shape = list(self.image.shape) if self.image is not None else None
        out: dict[str, Any] = {"source_path": self.source_path, "shape": shape}
        record = self.fresh_record
        if record is not None:
            out["fresh"] = record
        return out

    def load_meta(self, meta: dict[str, Any]) -> None:
        self.source_path = meta.get("source_path")
        self._shape = meta.get("shape")
        self._neighbours = None  # the checkpoint's centres replace the ones placed at set-up
        self._fresh_record = None
        if meta.get("fresh") is not None:  # a broken record costs the plot, not the run
            try:
                self._fresh_record = check_fresh_record(meta["fresh"])
            except ValueError as exc:
                print(f"warning: {exc}; the run's FreSh record is ignored", file=sys.stderr)

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
        r = self.fresh_record
        if r is not None:
            i = r["candidates"].index(r["chosen"]) if r["chosen"] in r["candidates"] else None
            w1 = f"mean W1 {r['mean_w1'][i]:.3f}, " if i is not None else ""
            p["fresh"] = (f"{r['hyperparameter']} = {r['chosen']:g} ({w1}S = {r['size']}, "
                          f"{r['inits']} inits × {len(r['candidates'])} candidates, "
                          f"{r['seconds']:.1f} s)")
        return p


def _range(pair: tuple[float, float]) -> tuple[float, float] | None:
    return None if (not pair or pair[1] <= 0) else (float(pair[0]), float(pair[1]))

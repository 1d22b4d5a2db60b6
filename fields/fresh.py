"""FreSh: choose a field's frequency hyper-parameter from its spectrum at initialisation.

Kania, Mihajlovic, Prokudin, Tabor, Spurek, "FreSh: Frequency Shifting for Accelerated Neural
Representation Learning", ICLR 2025 (arXiv 2410.05050). Before any training, FreSh evaluates the
*untrained* model at each candidate value of its frequency hyper-parameter (SIREN's first-layer
``ω₀``, the Fourier-feature scale ``σ``, a hash grid's finest resolution) on the target's
coordinates, compares the low-frequency spectrum of the output with the target's, and trains only
the candidate whose spectrum is closest.

Vocabulary: a signal is ``values [H, W, C]`` on a pixel lattice; ``n`` is the side of the square
it is resized to; ``S`` (``size``) is the number of spectrum bins kept.

**Spectrum** (:func:`diagonal_spectrum`, identical for target and model output):

1. resize to a square of side ``n = min(H, W, 1024)`` (bilinear with antialiasing; skipped when
   the signal is already square with side ≤ 1024);
2. ``A[i, j] = Σ_c |F_c[i, j]|``, the 2-D DFT magnitude of every channel, summed over channels
   (magnitudes, not power);
3. diagonal bins in raw (unshifted) FFT-index space, ``bin_k = Σ_{i+j=k} A[i, j] · M[i, j]``
   with ``M`` the mask of the non-redundant half plane (``i + j ≤ n − 1``, half of the diagonal
   ``i + j = n``, and only the non-negative frequencies of row 0 and column 0). For ``k ≤ n/2``
   that is exactly the non-negative quadrant ``i, j ≥ 0, i + j = k``: a Manhattan radius, not a
   radial average;
4. drop ``bin_0`` (DC) and keep ``bin_1 … bin_S``: the spectrum ``v ∈ R^S``.

**Distance** (:func:`wasserstein1`): both spectra are normalised to sum 1 and compared as
distributions on the grid ``{0, …, S−1}``: ``W₁ = Σ_k |CDF_a(k) − CDF_b(k)|``. Only the shape of
the spectrum matters, so any affine map of the values ``y → a·y + b`` (``a ≠ 0``) leaves the
distance unchanged: the scale cancels in the normalisation and the offset lives in the dropped DC.
Mapping values to ``[−1, 1]`` as the paper does is therefore cosmetic, and left to the caller.

**Selection** (:func:`fresh_search`): for each candidate, build ``inits`` models under the seeds
``seed, seed + 1, …``, average ``W₁`` to the target, report the standard error, pick the smallest
mean. Only forward passes are needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = [
    "FOURIER_SIGMA_CANDIDATES", "SIREN_OMEGA0_CANDIDATES", "FreshResult", "diagonal_spectrum",
    "fresh_search", "grid_coordinates", "hashgrid_candidates", "wasserstein1",
]

MAX_SIDE = 1024
"""The square the spectrum is taken on is at most this wide (as in the paper's code)."""

SIREN_OMEGA0_CANDIDATES: tuple[float, ...] = tuple(float(w) for w in range(10, 201, 10))
"""SIREN first-layer ``ω₀ ∈ {10, 20, …, 200}`` (the paper's released configs; baseline 30)."""

FOURIER_SIGMA_CANDIDATES: tuple[float, ...] = tuple(float(s) for s in range(1, 21))
"""Gaussian Fourier-feature scale ``σ ∈ {1, …, 20}`` (the paper's released configs)."""

_MIN_MASS = 1e-9
"""Spectra whose bins 1…S hold less than this fraction of all magnitude are called constant."""


def grid_coordinates(height: int, width: int) -> Float[Tensor, "HW 2"]:
    """The paper's align-corners lattice: ``x`` from −1 (left column) to 1 (right), ``y`` from 1
    (top row) to −1 (bottom), both endpoints exact; row-major ``[H·W, 2]`` as ``(x, y)``.

    (The image task trains on half-pixel centres instead, see ``datasets.images``; the two differ
    by a factor ``W / (W − 1)`` in spacing, i.e. in effective frequency.)

    Example:
        >>> grid_coordinates(2, 3).tolist()
        [[-1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [0.0, -1.0], [1.0, -1.0]]
    """
    if height < 2 or width < 2:
        raise ValueError(f"an align-corners grid needs at least 2×2 points, got {height}×{width}")
    xs = torch.linspace(-1.0, 1.0, width)
    ys = torch.linspace(1.0, -1.0, height)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).reshape(-1, 2)


def hashgrid_candidates(side: int, base_resolution: int = 16) -> tuple[int, ...]:
    """Finest resolutions of a hash grid to try for an image whose longer side is ``side``:
    half-octave steps ``round(32 · 2^(k/2))`` = 32, 45, 64, 91, 128, 181, 256, … up to
    ``2 · side``, keeping only values above ``base_resolution`` (the paper swept this knob for
    NeRF only and did not publish its list; beyond about twice the pixel count per axis the
    finest levels only add aliasing).

    Example:
        >>> hashgrid_candidates(64)
        (32, 45, 64, 91, 128)
    """
    if side < 1:
        raise ValueError(f"side must be positive, got {side}")
    out, k = [], 0
    while (r := round(32 * 2 ** (k / 2))) <= 2 * side:
        if r > base_resolution:
            out.append(r)
        k += 1
    if not out:
        raise ValueError(f"no finest resolution between base_resolution={base_resolution} and "
                         f"2 × side = {2 * side}; use a smaller base resolution")
    return tuple(out)


def _half_plane_mask(n: int, device: torch.device) -> Tensor:
    """``M[i, j]``: the non-redundant half plane of an ``n × n`` DFT in raw index space."""
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    s = i + j
    keep = (s <= n - 1) | ((s == n) & (i >= 1) & (i <= n // 2))
    keep &= ~((j == 0) & (i > n // 2))  # negative frequencies of column 0 …
    keep &= ~((i == 0) & (j > n // 2))  # … and of row 0 are mirror images
    return keep


def _diagonal_bins(amplitude: Float[Tensor, "n n"]) -> Float[Tensor, " K"]:
    """All ``2n − 1`` diagonal bins ``Σ_{i+j=k} A[i, j] · M[i, j]`` of a square magnitude array."""
    n = amplitude.shape[0]
    idx = torch.arange(n, device=amplitude.device)
    diag = (idx[:, None] + idx[None, :]).reshape(-1)
    masked = (amplitude * _half_plane_mask(n, amplitude.device)).reshape(-1)
    return torch.zeros(2 * n - 1, dtype=amplitude.dtype, device=amplitude.device).index_add_(
        0, diag, masked)


def diagonal_spectrum(values: Float[Tensor, "H W C"], size: int) -> Float[Tensor, " S"]:
    """FreSh's spectrum of a signal on a pixel lattice: bins ``1 … size`` of the diagonally
    binned DFT magnitude (see the module docstring), in float64, not normalised.

    The values are used as given: the paper maps them to ``[−1, 1]`` first, which changes
    nothing but the dropped DC and the overall scale (see :func:`wasserstein1`).

    Args:
        values: ``[H, W, C]`` signal (any real dtype; computed in float64).
        size: S, the number of bins kept after DC. Must be at most ``n // 2`` with ``n`` the
            side of the square the signal is resized to, so that every kept bin is a complete
            quadrant diagonal of non-negative frequencies.

    Raises:
        ValueError: ``size`` is not in ``1 … n // 2``, or bins ``1 … size`` hold (almost) no
            mass, e.g. a constant signal, whose spectrum is all DC.

    Example:
        >>> n = 32
        >>> yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        >>> grating = torch.cos(2 * torch.pi * (3 * xx + 2 * yy) / n)[..., None]
        >>> int(diagonal_spectrum(grating, 8).argmax()) + 1  # lands in bin a + b = 5
        5
    """
    h, w, _ = values.shape
    n = min(h, w, MAX_SIDE)
    if not 1 <= size <= n // 2:
        raise ValueError(
            f"spectrum size S={size} needs a square of side n ≥ 2S, but a {h}×{w} signal gives "
            f"n = {n} (S must be in 1..{n // 2})")
    x = values.to(torch.float64).permute(2, 0, 1)  # [C, H, W]
    if h != w or h > MAX_SIDE:
        x = F.interpolate(x[None], size=(n, n), mode="bilinear", align_corners=False,
                          antialias=True)[0]
    amplitude = torch.fft.fft2(x).abs().sum(0)
    bins = _diagonal_bins(amplitude)
    kept = bins[1:size + 1]
    total = float(bins.sum())
    if not float(kept.sum()) > _MIN_MASS * total:
        raise ValueError(
            f"the signal has no spectral mass in bins 1..{size} (all of it is DC, "
            f"{float(kept.sum()):.3g} of {total:.3g}): a constant image has no spectrum to match")
    return kept


def wasserstein1(a: Float[Tensor, " S"], b: Float[Tensor, " S"]) -> float:
    """1-D Wasserstein-1 distance between two spectra treated as distributions on ``{0 … S−1}``:
    ``W₁ = Σ_k |CDF_a(k) − CDF_b(k)|`` after normalising each to sum 1 (computed in float64).

    Scale-invariant (``W₁(a, c·a) = 0`` for ``c > 0``); moving all mass by one bin costs 1.

    Raises:
        ValueError: the shapes differ, a spectrum has a negative or non-finite entry, or its
            total mass is zero (no distribution to normalise).

    Example:
        >>> wasserstein1(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 2.0]))
        2.0
    """
    if a.shape != b.shape:
        raise ValueError(f"spectra must have the same length, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    cdfs = []
    for name, v in (("first", a), ("second", b)):
        v = v.to(torch.float64)
        if not bool(torch.isfinite(v).all()) or bool((v < 0).any()):
            raise ValueError(f"the {name} spectrum has negative or non-finite entries")
        mass = float(v.sum())
        if not mass > 0.0:
            raise ValueError(f"the {name} spectrum has zero total mass; W1 needs distributions "
                             "(is the signal constant?)")
        cdfs.append(torch.cumsum(v / mass, dim=0))
    return float((cdfs[0] - cdfs[1]).abs().sum())


@dataclass(frozen=True)
class FreshResult:
    """What :func:`fresh_search` measured.

    ``distances[k, i]`` is ``W₁`` between the target and the untrained model for candidate ``k``
    under seed ``seed + i``; ``model_spectra[k]`` is that candidate's spectrum normalised to sum
    1 and averaged over the seeds; ``target_spectrum`` is normalised to sum 1.
    """

    hyperparameter: str
    candidates: tuple[float, ...]
    distances: Float[Tensor, "K I"]
    target_spectrum: Float[Tensor, " S"]
    model_spectra: Float[Tensor, "K S"]
    seed: int
    seconds: float

    @property
    def size(self) -> int:
        """S, the number of spectrum bins compared."""
        return int(self.target_spectrum.shape[0])

    @property
    def inits(self) -> int:
        """Models built per candidate."""
        return int(self.distances.shape[1])

    @property
    def mean_w1(self) -> Float[Tensor, " K"]:
        """Mean ``W₁`` per candidate."""
        return self.distances.mean(dim=1)

    @property
    def std_error(self) -> Float[Tensor, " K"]:
        """Standard error of the mean per candidate, ``std / √inits`` with the population
        standard deviation (as the paper's code logs it)."""
        return self.distances.std(dim=1, correction=0) / math.sqrt(self.inits)

    @property
    def chosen_index(self) -> int:
        """Index of the smallest mean ``W₁`` (the first one on ties)."""
        means = self.mean_w1.tolist()
        return min(range(len(means)), key=means.__getitem__)

    @property
    def chosen(self) -> float:
        """The selected candidate value."""
        return self.candidates[self.chosen_index]

    @property
    def model_spectrum(self) -> Float[Tensor, " S"]:
        """The chosen candidate's mean normalised spectrum (to plot against the target's)."""
        return self.model_spectra[self.chosen_index]

    def rows(self) -> list[tuple[float, float, float]]:
        """``(value, mean W₁, standard error)`` per candidate, in candidate order."""
        return list(zip(self.candidates, self.mean_w1.tolist(), self.std_error.tolist()))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: the table, the choice, both spectra and the settings."""
        return {
            "hyperparameter": self.hyperparameter, "chosen": self.chosen, "size": self.size,
            "inits": self.inits, "seed": self.seed, "seconds": self.seconds,
            "candidates": list(self.candidates), "mean_w1": self.mean_w1.tolist(),
            "std_error": self.std_error.tolist(), "distances": self.distances.tolist(),
            "target_spectrum": self.target_spectrum.tolist(),
            "model_spectrum": self.model_spectrum.tolist(),
        }


@torch.no_grad()
def _evaluate(model: nn.Module, coords: Tensor, chunk: int) -> Tensor:
    model.eval()
    return torch.cat([model(c) for c in coords.split(chunk)])


def fresh_search(
    make: Callable[[float, int], nn.Module],
    coords: Float[Tensor, "N D"],
    target: Float[Tensor, "H W C"],
    candidates: Sequence[float],
    *,
    inits: int = 10,
    size: int = 64,
    seed: int = 0,
    hyperparameter: str = "value",
    chunk: int = 1 << 14,
    log: Callable[[str], None] | None = None,
) -> FreshResult:
    """Score every candidate by the mean ``W₁`` between the spectra of the target and of the
    untrained model, over ``inits`` initialisations (FreSh, Kania et al., ICLR 2025).

    The target is mapped from ``[0, 1]`` to ``[−1, 1]`` (``2v − 1``) and each model's raw output
    is used as it is, as in the paper's code; both maps are immaterial to ``W₁`` (see the module
    docstring). Outputs are reshaped to ``[H, W, C']`` in the row-major order of ``coords``.

    Args:
        make: ``make(value, seed)`` builds a fresh model mapping ``[N, D]`` coordinates to
            ``[N, C']`` values. It runs with the global torch RNG seeded to ``seed`` (and
            restored afterwards), so components drawing from it are reproducible; components
            with their own ``seed`` argument should be given ``seed``.
        coords: ``[H·W, D]`` coordinates of the target's pixels, row-major; their device is
            where the models run.
        target: ``[H, W, C]`` values in ``[0, 1]``.
        candidates: the values to try.
        inits: models per candidate (the paper: 10).
        size: S, spectrum bins compared (the paper's image configs: 64).
        seed: the first seed; candidate models use ``seed … seed + inits − 1``.
        hyperparameter: the name reported in the result (e.g. ``"siren_omega0"``).
        chunk: points per forward pass.
        log: called with one line per candidate as it is scored.

    Returns:
        A :class:`FreshResult`; the same seeds give bitwise-equal distances on the same device.

    Raises:
        ValueError: no candidates, ``inits < 1``, coordinates that do not match the target, an
            invalid ``size``, a constant target, or a model whose output is non-finite or
            constant (the message names the candidate and seed).
    """
    candidates = tuple(float(c) for c in candidates)
    if not candidates:
        raise ValueError("fresh_search needs at least one candidate value")
    if inits < 1:
        raise ValueError(f"inits must be at least 1, got {inits}")
    h, w, _ = target.shape
    if coords.shape[0] != h * w:
        raise ValueError(f"{coords.shape[0]} coordinates for a {h}×{w} target; expected one per "
                         f"pixel ({h * w})")
    t0 = time.perf_counter()
    try:
        target_spec = diagonal_spectrum(2.0 * target - 1.0, size)
    except ValueError as exc:
        raise ValueError(f"target: {exc}") from None
    target_spec = target_spec / target_spec.sum()
    devices = [coords.device] if coords.device.type == "cuda" else []
    distances = torch.empty(len(candidates), inits, dtype=torch.float64)
    spectra = torch.zeros(len(candidates), size, dtype=torch.float64)
    for k, value in enumerate(candidates):
        for i in range(inits):
            s = seed + i
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(s)
                model = make(value, s).to(coords.device)
            out = _evaluate(model, coords, chunk)
            del model
            where = f"{hyperparameter}={value:g}, seed {s}"
            if out.shape[0] != h * w or out.ndim != 2:
                raise ValueError(f"{where}: the model returned {tuple(out.shape)}, expected "
                                 f"[{h * w}, C]")
            if not bool(torch.isfinite(out).all()):
                raise ValueError(f"{where}: the untrained model's output is not finite")
            try:
                spec = diagonal_spectrum(out.reshape(h, w, -1), size)
            except ValueError as exc:
                raise ValueError(f"{where}: model output: {exc}") from None
            distances[k, i] = wasserstein1(target_spec, spec)
            spectra[k] += (spec / spec.sum()).cpu() / inits
        if log is not None:
            row = distances[k]
            se = float(row.std(correction=0)) / math.sqrt(inits)
            log(f"{hyperparameter} = {value:g}: mean W1 {float(row.mean()):.4f} (SE {se:.4f})")
    return FreshResult(hyperparameter, candidates, distances, target_spec.cpu(), spectra, seed,
                       time.perf_counter() - t0)

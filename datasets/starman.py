"""Procedural "star-man" populations: capsule stick figures with known, disentangled covariates.

NAISR (Jiao et al., "NAISR: A 3D Neural Additive Model for Interpretable Shape Representation",
ICLR 2024) evaluates on a simulated 2-D *Starman* population built on the "starmen" of Bône et
al. (Bône, Colliot & Durrleman, "Learning distributions of shape trajectories from longitudinal
datasets: a hierarchical model on a manifold of diffeomorphisms", CVPR 2018): stick figures whose
limbs move over time. NAISR's exact recipe is not public, so this is a stand-in that exercises
the same properties, with a *known ground-truth disentanglement*; it makes no claim of fidelity.

Figure (base frame, before the global scale; every limb a capsule = segment SDF minus radius):

* torso ``(0, 0.25) → (0, −0.2)``, head disc/sphere at ``(0, 0.45)``;
* arms of length 0.4 from the shoulder ``(0, 0.2)``; legs from the hip ``(0, −0.2)`` to
  ``(∓spread, −0.7)`` (the left leg goes to ``−x``, like the left arm at rest).

Covariates, each driving exactly one part (angles in the x–y plane from +x, counter-clockwise):

* ``c1``: left-arm angle ``200° − 60°·c1``;  ``c2``: right-arm angle ``−20° + 60°·c2``;
* ``c3``: leg spread ``0.2 + 0.12·c3`` (both legs, one part pair).

Nominal range ``[−1, 1]``; other finite values extrapolate. Individual (subject) factors, which a
latent code should absorb: limb thickness ``× U(0.8, 1.2)`` of the base radius 0.05, head radius
``U(0.09, 0.14)``, global scale ``U(0.9, 1.1)`` about :data:`FIGURE_CENTER`.

The SDF is ``min`` over parts: exact outside the figure, a valid (1-Lipschitz, unit-gradient)
underestimate of the depth inside. In 3-D the same figure lies in the ``z = 0`` plane built from
3-D capsules and a head sphere, and both arms are tilted towards ``+z`` by
:data:`ARM_TILT_3D_DEG` (their x–y projection keeps the covariate's angle), so the figure is not
a mere extrusion. Everything fits well inside ``[−1, 1]^d``.

:func:`make_starman` builds a longitudinal population (subjects with fixed factors, several
visits with covariates drawn ``U(−1, 1)``) as a :class:`~datasets.population.PopulationData`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import trimesh
from jaxtyping import Float, Int
from torch import Tensor

from datasets.population import HeldOut, PopulationData, build_population
from renderer.meshing import extract_mesh

__all__ = [
    "PARTS",
    "COVARIATE_NAMES",
    "FACTOR_NAMES",
    "StarmanFactors",
    "StarmanShape",
    "sample_shape",
    "StarmanPopulation",
    "make_starman",
]

PARTS: tuple[str, ...] = ("torso", "head", "left_arm", "right_arm", "left_leg", "right_leg")
"""Part names; :meth:`StarmanShape.part_labels` returns indices into this tuple."""

COVARIATE_NAMES: tuple[str, ...] = ("left_arm", "right_arm", "leg_spread")
"""The three covariates ``c1, c2, c3``, each in ``[−1, 1]`` nominally."""

FACTOR_NAMES: tuple[str, ...] = ("thickness", "head_radius", "scale")
"""The individual factors of :class:`StarmanFactors`, in the order of ``PopulationData.factors``."""

BASE_LIMB_RADIUS = 0.05
ARM_LENGTH = 0.4
TORSO_TOP = (0.0, 0.25)
HIP = (0.0, -0.2)
SHOULDER = (0.0, 0.2)
HEAD_CENTER = (0.0, 0.45)
FOOT_Y = -0.7
FIGURE_CENTER = (0.0, -0.1)
"""The fixed point of the global scale (midway between the head centre and the feet)."""
ARM_TILT_3D_DEG = 15.0
"""Default elevation of both arms out of the ``z = 0`` plane (towards ``+z``) in 3-D."""

_SAMPLE_BAND = 0.03  # |sdf| band of the Newton seeds (< the thinnest possible limb, 0.036)
_SURFACE_TOL = 1e-5


def left_arm_angle_deg(c1: float) -> float:
    """``200° − 60°·c1``."""
    return 200.0 - 60.0 * c1


def right_arm_angle_deg(c2: float) -> float:
    """``−20° + 60°·c2``."""
    return -20.0 + 60.0 * c2


def leg_spread(c3: float) -> float:
    """``0.2 + 0.12·c3``."""
    return 0.2 + 0.12 * c3


@dataclass(frozen=True)
class StarmanFactors:
    """A subject's individual factors (fixed over its visits).

    Attributes:
        thickness: multiplier of the base limb radius 0.05 (population ``U(0.8, 1.2)``).
        head_radius: head radius before the global scale (population ``U(0.09, 0.14)``).
        scale: global scale about :data:`FIGURE_CENTER` (population ``U(0.9, 1.1)``).
    """

    thickness: float = 1.0
    head_radius: float = 0.115
    scale: float = 1.0

    @classmethod
    def sample(cls, rng: np.random.Generator) -> StarmanFactors:
        """Draw factors from the population distribution."""
        return cls(
            thickness=float(rng.uniform(0.8, 1.2)),
            head_radius=float(rng.uniform(0.09, 0.14)),
            scale=float(rng.uniform(0.9, 1.1)),
        )

    def as_tuple(self) -> tuple[float, float, float]:
        """``(thickness, head_radius, scale)``, the order of :data:`FACTOR_NAMES`."""
        return (self.thickness, self.head_radius, self.scale)


class StarmanShape:
    """One star-man: exact capsule-union SDF, normals, part labels, meshes.

    Parts are stored as world-space capsules (segment ``a → b``, radius ``r``); the head is a
    zero-length capsule. The global scale is applied to the endpoints and radii, so
    ``sdf = min_k (|p − closest_k(p)| − r_k)`` holds exactly in world units, and the world head
    radius is ``factors.head_radius · factors.scale`` (:attr:`head_radius`).

    Args:
        covariates: ``(c1, c2, c3)`` (a sequence, array or tensor), see the module docstring.
        factors: the individual factors (default: the population's mean figure).
        dim: 2 or 3.
        arm_tilt_deg: elevation of both arms towards ``+z``; only for ``dim = 3`` (default
            :data:`ARM_TILT_3D_DEG`); must be 0 or ``None`` in 2-D.

    Example:
        >>> shape = StarmanShape((0.0, 0.0, 0.0), dim=2)
        >>> shape.sdf(torch.tensor([[0.0, 0.45]]))
        tensor([-0.1150])
        >>> PARTS[int(shape.part_labels(torch.tensor([[0.0, 0.45]]))[0])]
        'head'
    """

    def __init__(
        self,
        covariates: Sequence[float] | np.ndarray | Tensor,
        factors: StarmanFactors | None = None,
        dim: int = 2,
        arm_tilt_deg: float | None = None,
    ) -> None:
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        cov = [float(c) for c in np.asarray(covariates, dtype=np.float64).reshape(-1)]
        if len(cov) != 3 or not all(math.isfinite(c) for c in cov):
            raise ValueError(f"covariates must be 3 finite numbers (c1, c2, c3), got {covariates}")
        if arm_tilt_deg is None:
            arm_tilt_deg = ARM_TILT_3D_DEG if dim == 3 else 0.0
        if dim == 2 and arm_tilt_deg != 0.0:
            raise ValueError("arm_tilt_deg needs dim=3")
        self.covariates = tuple(cov)
        self.factors = factors if factors is not None else StarmanFactors()
        self.dim = dim
        self.arm_tilt_deg = float(arm_tilt_deg)

        f = self.factors
        limb = BASE_LIMB_RADIUS * f.thickness
        tilt = math.radians(self.arm_tilt_deg)

        def arm_end(angle_deg: float) -> tuple[float, float, float]:
            t = math.radians(angle_deg)
            return (
                SHOULDER[0] + ARM_LENGTH * math.cos(t) * math.cos(tilt),
                SHOULDER[1] + ARM_LENGTH * math.sin(t) * math.cos(tilt),
                ARM_LENGTH * math.sin(tilt),
            )

        spread = leg_spread(cov[2])
        segments = [  # (a, b, radius) in the base frame, in PARTS order
            ((*TORSO_TOP, 0.0), (*HIP, 0.0), limb),
            ((*HEAD_CENTER, 0.0), (*HEAD_CENTER, 0.0), f.head_radius),
            ((*SHOULDER, 0.0), arm_end(left_arm_angle_deg(cov[0])), limb),
            ((*SHOULDER, 0.0), arm_end(right_arm_angle_deg(cov[1])), limb),
            ((*HIP, 0.0), (-spread, FOOT_Y, 0.0), limb),
            ((*HIP, 0.0), (spread, FOOT_Y, 0.0), limb),
        ]
        a = torch.tensor([s[0] for s in segments], dtype=torch.float64)[:, :dim]
        b = torch.tensor([s[1] for s in segments], dtype=torch.float64)[:, :dim]
        r = torch.tensor([s[2] for s in segments], dtype=torch.float64)
        center = torch.zeros(dim, dtype=torch.float64)
        center[:2] = torch.tensor(FIGURE_CENTER, dtype=torch.float64)
        self._a = center + f.scale * (a - center)
        self._b = center + f.scale * (b - center)
        self._r = f.scale * r

    # -------------------------------------------------------------------------------------------
    @property
    def head_center(self) -> Float[Tensor, " d"]:
        """World position of the head centre (float64)."""
        return self._a[1].clone()

    @property
    def head_radius(self) -> float:
        """World head radius, ``factors.head_radius · factors.scale``."""
        return float(self._r[1])

    @property
    def segments(self) -> tuple[Float[Tensor, "P d"], Float[Tensor, "P d"], Float[Tensor, " P"]]:
        """World capsules ``(a, b, radius)``, one row per part of :data:`PARTS` (float64 copies)."""
        return self._a.clone(), self._b.clone(), self._r.clone()

    def bounds(self, padding: float = 0.0) -> tuple[Float[Tensor, " d"], Float[Tensor, " d"]]:
        """Axis-aligned bounds ``(lo, hi)`` of the figure, grown by ``padding`` (float64)."""
        lo = torch.minimum(self._a, self._b) - self._r[:, None]
        hi = torch.maximum(self._a, self._b) + self._r[:, None]
        return lo.min(dim=0).values - padding, hi.max(dim=0).values + padding

    # -------------------------------------------------------------------------------------------
    def _closest(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """``p − closest point on each segment`` ``[N, P, d]`` and the radii, in ``p``'s dtype."""
        a = self._a.to(p.dtype)
        ba = self._b.to(p.dtype) - a
        pa = p[:, None, :] - a
        t = ((pa * ba).sum(-1) / (ba * ba).sum(-1).clamp_min(1e-30)).clamp(0.0, 1.0)
        return pa - t[..., None] * ba, self._r.to(p.dtype)

    def part_sdf(self, p: Float[Tensor, "N d"]) -> Float[Tensor, "N P"]:
        """Signed distance to each part's capsule, ``[N, len(PARTS)]``, in ``p``'s dtype."""
        self._check(p)
        diff, r = self._closest(p)
        return diff.norm(dim=-1) - r

    def sdf(self, p: Float[Tensor, "N d"]) -> Float[Tensor, " N"]:
        """Signed distance (negative inside) at ``p``: ``min`` over :meth:`part_sdf`.

        Differentiable with autograd; computed in ``p``'s dtype (parameters are float64).
        """
        return self.part_sdf(p).min(dim=-1).values

    def part_labels(self, p: Float[Tensor, "N d"]) -> Int[Tensor, " N"]:
        """Index into :data:`PARTS` of the part with the smallest SDF at ``p`` (int64)."""
        with torch.no_grad():
            return self.part_sdf(p).argmin(dim=-1)

    def normals(self, p: Float[Tensor, "N d"]) -> Float[Tensor, "N d"]:
        """Unit SDF gradient at ``p``, by autograd (detached, ``p``'s dtype)."""
        with torch.enable_grad():
            q = p.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.sdf(q).sum(), q)
        return grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def sdf_and_grad(
        self, p: Float[Tensor, "N d"]
    ) -> tuple[Float[Tensor, " N"], Float[Tensor, "N d"]]:
        """SDF and its analytic gradient (the nearest part's unit direction), no autograd."""
        self._check(p)
        diff, r = self._closest(p)
        dist = diff.norm(dim=-1)
        values, idx = (dist - r).min(dim=-1)
        n = torch.arange(len(p))
        chosen = diff[n, idx]
        return values, chosen / dist[n, idx, None].clamp_min(torch.finfo(p.dtype).tiny)

    def _check(self, p: Tensor) -> None:
        if p.ndim != 2 or p.shape[1] != self.dim:
            raise ValueError(f"expected points [N, {self.dim}], got {list(p.shape)}")

    # -------------------------------------------------------------------------------------------
    def to_mesh(
        self, resolution: int = 128, aabb: Sequence[float] | None = None
    ) -> trimesh.Trimesh:
        """Marching-cubes mesh of a 3-D star-man (:func:`renderer.meshing.extract_mesh`).

        Args:
            resolution: grid points per axis.
            aabb: ``(x0, y0, z0, x1, y1, z1)``; default the figure's bounds padded by 3 cells.

        Returns:
            A watertight mesh, outward winding.
        """
        if self.dim != 3:
            raise ValueError("to_mesh needs dim=3; use to_polylines for a 2-D star-man")
        if aabb is None:
            lo, hi = self.bounds()
            pad = 3.0 * float((hi - lo).max()) / (resolution - 1)
            aabb = (lo - pad).tolist() + (hi + pad).tolist()
        result = extract_mesh(self.sdf, resolution=resolution, aabb=aabb)
        return result.mesh

    def to_polylines(self, resolution: int = 256) -> list[np.ndarray]:
        """Zero-level contours of a 2-D star-man (marching squares), each ``[K, 2]`` float64.

        Closed contours repeat their first point at the end.
        """
        if self.dim != 2:
            raise ValueError("to_polylines needs dim=2; use to_mesh for a 3-D star-man")
        from skimage import measure

        lo, hi = self.bounds(padding=0.05)
        xs = torch.linspace(float(lo[0]), float(hi[0]), resolution, dtype=torch.float64)
        ys = torch.linspace(float(lo[1]), float(hi[1]), resolution, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), dim=-1).reshape(-1, 2)
        values = self.sdf(grid).reshape(resolution, resolution).numpy()
        step = ((hi - lo) / (resolution - 1)).numpy()
        return [lo.numpy() + c * step for c in measure.find_contours(values, 0.0)]


def sample_shape(
    shape: StarmanShape, n_surface: int, n_off: int, seed: int = 0
) -> dict[str, Tensor]:
    """Training samples of one star-man.

    Surface points: seeds uniform in the figure's padded bounding box, kept where
    ``|sdf| < 0.03`` (thinner than any limb, so the projected density is close to area-uniform),
    then Newton-projected ``p ← p − f ∇f / |∇f|²`` (analytic gradient, float64, ≤ 12 steps). A
    point is kept when, cast to float32, ``|sdf| < 1e-5`` in float32 and float64; failures are
    dropped and replaced by fresh seeds.

    Args:
        shape: the star-man.
        n_surface: surface points.
        n_off: off-surface points, uniform in ``[-1, 1]^d``.
        seed: seeds a ``torch.Generator``; the same seed gives bitwise-identical samples.

    Returns:
        ``surface [n_surface, d]``, ``normals [n_surface, d]`` (autograd, unit), ``off
        [n_off, d]``, ``off_sdf [n_off]`` (float32, computed in float64) and ``parts
        [n_surface]`` (int64 indices into :data:`PARTS`).

    Raises:
        RuntimeError: if the projection keeps failing (it does not for valid figures).
    """
    gen = torch.Generator().manual_seed(int(seed))
    d = shape.dim
    lo, hi = shape.bounds(padding=_SAMPLE_BAND)
    kept: list[Tensor] = []
    count = 0
    rate = 0.05  # running estimate of the fraction of box seeds that end up kept
    for _ in range(64):
        need = n_surface - count
        if need <= 0:
            break
        m = int(min(max(1.5 * need / rate, 256), 1 << 20))
        x = lo + (hi - lo) * torch.rand(m, d, generator=gen, dtype=torch.float64)
        f = shape.sdf(x)
        x = x[f.abs() < _SAMPLE_BAND]
        for _ in range(12):
            f, g = shape.sdf_and_grad(x)
            if bool((f.abs() < 1e-12).all()):
                break
            x = x - (f / (g * g).sum(-1).clamp_min(1e-300))[:, None] * g
        x32 = x.float()
        ok = (shape.sdf(x32).abs() < _SURFACE_TOL) & (shape.sdf(x32.double()).abs() < _SURFACE_TOL)
        rate = max(0.5 * rate + 0.5 * float(ok.sum()) / m, 1e-3)
        got = x32[ok][:need]
        kept.append(got)
        count += len(got)
    if count < n_surface:
        raise RuntimeError(f"Newton projection found only {count} of {n_surface} surface points")
    surface = torch.cat(kept)
    off = torch.rand(n_off, d, generator=gen, dtype=torch.float32) * 2.0 - 1.0
    return {
        "surface": surface,
        "normals": shape.normals(surface),
        "off": off,
        "off_sdf": shape.sdf(off.double()).float(),
        "parts": shape.part_labels(surface),
    }


@dataclass
class StarmanPopulation:
    """A longitudinal star-man population: subjects with fixed factors, visits with covariates.

    Randomness comes from independent streams of ``numpy.random.SeedSequence(seed)``: factors,
    covariates, per-shape samples and the split, so e.g. changing ``n_surface`` does not change
    the shapes. Shapes are ordered subject-major (subject 0's visits first).

    Attributes:
        dim: 2 or 3.
        n_subjects: subjects (each with its own :class:`StarmanFactors`).
        n_visits: visits per subject (covariates ``U(−1, 1)`` per visit).
        n_surface: surface samples per shape.
        n_off: off-surface samples per shape.
        seed: the master seed.
        held_out_subjects: see :data:`datasets.population.HeldOut` (default: 20% of subjects).
        arm_tilt_deg: see :class:`StarmanShape`.
    """

    dim: int = 2
    n_subjects: int = 20
    n_visits: int = 3
    n_surface: int = 256
    n_off: int = 128
    seed: int = 0
    held_out_subjects: HeldOut = 0.2
    arm_tilt_deg: float | None = None

    def _streams(self) -> list[np.random.SeedSequence]:
        return np.random.SeedSequence(self.seed).spawn(4)

    def factors(self) -> list[StarmanFactors]:
        """One :class:`StarmanFactors` per subject."""
        rng = np.random.default_rng(self._streams()[0])
        return [StarmanFactors.sample(rng) for _ in range(self.n_subjects)]

    def covariates(self) -> Float[np.ndarray, "K V 3"]:
        """``[n_subjects, n_visits, 3]`` covariates, ``U(−1, 1)``."""
        rng = np.random.default_rng(self._streams()[1])
        return rng.uniform(-1.0, 1.0, (self.n_subjects, self.n_visits, 3))

    def shapes(self) -> list[StarmanShape]:
        """All ``n_subjects · n_visits`` shapes, subject-major."""
        cov = self.covariates()
        return [
            StarmanShape(cov[k, v], f, dim=self.dim, arm_tilt_deg=self.arm_tilt_deg)
            for k, f in enumerate(self.factors())
            for v in range(self.n_visits)
        ]

    def generate(self) -> PopulationData:
        """Sample every shape and assemble the :class:`~datasets.population.PopulationData`."""
        if self.n_subjects < 2 or self.n_visits < 1:
            raise ValueError("a population needs at least 2 subjects and 1 visit")
        shapes = self.shapes()
        streams = self._streams()
        shape_seeds = [int(s.generate_state(1)[0]) for s in streams[2].spawn(len(shapes))]
        samples = [
            sample_shape(s, self.n_surface, self.n_off, seed=k)
            for s, k in zip(shapes, shape_seeds)
        ]

        def stack(key: str) -> Tensor:
            return torch.stack([s[key] for s in samples])

        return build_population(
            surface=stack("surface"),
            normals=stack("normals"),
            off=stack("off"),
            off_sdf=stack("off_sdf"),
            covariates_raw=torch.tensor([s.covariates for s in shapes], dtype=torch.float32),
            covariate_names=COVARIATE_NAMES,
            subjects=[f"subject_{k:03d}" for k in range(self.n_subjects) for _ in
                      range(self.n_visits)],
            visit=torch.arange(self.n_visits).repeat(self.n_subjects),
            held_out_subjects=self.held_out_subjects,
            seed=int(streams[3].generate_state(1)[0]),
            parts=stack("parts"),
            factors=torch.tensor([s.factors.as_tuple() for s in shapes], dtype=torch.float32),
            factor_names=list(FACTOR_NAMES),
            meta={
                "generator": "starman",
                "dim": self.dim,
                "n_subjects": self.n_subjects,
                "n_visits": self.n_visits,
                "seed": self.seed,
                "arm_tilt_deg": shapes[0].arm_tilt_deg,
                "parts": list(PARTS),
            },
        )


def make_starman(
    dim: int = 2,
    n_subjects: int = 20,
    n_visits: int = 3,
    n_surface: int = 256,
    n_off: int = 128,
    seed: int = 0,
    held_out_subjects: HeldOut = 0.2,
    arm_tilt_deg: float | None = None,
) -> PopulationData:
    """A star-man population as :class:`~datasets.population.PopulationData`.

    Shorthand for ``StarmanPopulation(...).generate()``; see :class:`StarmanPopulation`. The
    result has ``parts`` and the ground-truth ``factors`` (:data:`FACTOR_NAMES`) set.

    Example:
        >>> pop = make_starman(dim=2, n_subjects=4, n_visits=2, n_surface=32, n_off=16)
        >>> pop.surface.shape, pop.covariate_names
        (torch.Size([8, 32, 2]), ['left_arm', 'right_arm', 'leg_spread'])
    """
    return StarmanPopulation(
        dim=dim,
        n_subjects=n_subjects,
        n_visits=n_visits,
        n_surface=n_surface,
        n_off=n_off,
        seed=seed,
        held_out_subjects=held_out_subjects,
        arm_tilt_deg=arm_tilt_deg,
    ).generate()

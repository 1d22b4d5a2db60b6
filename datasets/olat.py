"""A procedural one-light-at-a-time (OLAT) light stage: analytic SDF shapes, sphere traced, lit by
``L`` directional lights one at a time, with hard shadows, in linear HDR.

This is the stand-in for a light-stage capture in URHand-style linear relighting (Chen et al.,
"URHand: Universal Relightable Hands", CVPR 2024): every view is rendered under each light of a
Fibonacci sphere on its own, so that any distant illumination expressible in that light basis has
an exact ground truth, ``GT = Σ_j w_j ⊙ OLAT_j`` with ``w_j = E(ω_j)·ΔΩ_j`` for an environment
map ``E`` (``ΔΩ_j = 4π/L``, :func:`fibonacci_cell_solid_angle`).

Vocabulary (ARCHITECTURE.md): ``x`` world points ``[N, 3]``; ``d`` ray directions (unit, pointing
*into* the scene); ``l`` light directions (unit, pointing *towards* the light); ``V`` views,
``L`` lights, ``H×W`` pixels per view. All tensors are float32 CPU tensors.

Pipeline of :func:`make_olat`:

1. *Geometry*: an analytic SDF from :data:`SHAPES` inside the box ``[−1, 1]³`` is sphere traced
   (Hart, "Sphere tracing: a geometric method for the antialiased ray tracing of implicit
   surfaces", The Visual Computer 1996) from ``n_views`` orbit cameras
   (:func:`renderer.sphere_trace.sphere_trace`). Normals are the normalised autograd gradient of
   the SDF. This gives a G-buffer per view: ``hit``, ``points``, ``normals``, ``view_dirs``.
2. *Material*: procedural, seeded and light-independent fields of the 3-D point (an
   :class:`OLATMaterial`): diffuse albedo ``ρ(x) ∈ [0.05, 0.95]³`` (a smooth 3-D checker mixed with
   value noise), specular albedo ``k_s(x) ∈ [0.05, 0.5]``, Blinn–Phong exponent
   ``s(x) ∈ [8, 64]``, and one wrap-diffuse parameter ``w ∈ [0, 0.5]`` per material.
3. *Visibility*: for each light, a secondary sphere trace from ``x + ε·n`` towards ``l`` over all
   hit points of a view; hard shadows, ``V_j(x) = 0`` when it hits the surface, else 1.
4. *Shading* of one white directional light of unit irradiance (see :func:`shade`), the
   Blinn–Phong lobe after Blinn, "Models of light reflection for computer synthesized pictures",
   SIGGRAPH 1977, energy-normalised::

       h = normalize(l − d)
       L_o = V · ( ρ/π · max((n·l + w)/(1 + w), 0)
                   + k_s · (s + 8)/(8π) · max(n·h, 0)^s · [n·l > 0] ).

   Background pixels are 0. Radiance is linear in the light intensity, so a set of lights
   renders as the sum of the single-light renders (:meth:`OLATDataset.render_light` renders any
   directional lights exactly, not through the basis).

Everything is deterministic: the same :class:`OLATConfig` gives bitwise-equal tensors.

Example:
    >>> ds = make_olat(OLATConfig(shape="sphere", n_lights=4, n_views=1, size=8))
    >>> tuple(ds.olat.shape), tuple(ds.visibility.shape)
    ((1, 4, 8, 8, 3), (1, 8, 8, 4))
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from datasets.errors import DataError
from renderer.cameras import Camera
from renderer.scene import sphere as _sphere_source
from renderer.scene import torus as _torus_source
from renderer.sphere_trace import sphere_trace

__all__ = [
    "fibonacci_sphere", "fibonacci_cell_solid_angle", "OLATShape", "SHAPES", "make_shape",
    "OLATMaterial", "make_material", "shade", "shadow_visibility", "OLATConfig", "OLATDataset",
    "make_olat",
]

BOX: tuple[float, ...] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
"""Every shape lies inside this box; primary and shadow rays are traced in it."""

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
_HIT_THRESHOLD = 5e-4
_MAX_STEPS = 256
_RAYS_PER_TRACE = 1 << 17  # shadow rays per sphere_trace call (lights are grouped up to this)


# -- light directions --------------------------------------------------------------------------
def fibonacci_sphere(n: int) -> Float[Tensor, "n 3"]:
    """``n`` unit directions on a golden-angle (Fibonacci) spiral, from top (+y) to bottom.

    ``y_i = 1 − (2i + 1)/n``, ``φ_i = i·π(3 − √5)``, ``(x, z) = √(1 − y_i²)·(cos φ_i, sin φ_i)``;
    computed in float64 and returned as float32. Each direction owns a cell of about equal solid
    angle, :func:`fibonacci_cell_solid_angle`.

    Raises:
        DataError: ``n < 1``.

    Example:
        >>> fibonacci_sphere(2).tolist()
        [[0.8660253882408142, 0.5, 0.0], [-0.6385802030563354, -0.5, 0.5849917531013489]]
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError("fibonacci_sphere", f"n must be an int ≥ 1, got {n!r}")
    i = torch.arange(n, dtype=torch.float64)
    y = 1.0 - (2.0 * i + 1.0) / n
    r = torch.sqrt((1.0 - y * y).clamp_min(0.0))
    phi = i * _GOLDEN_ANGLE
    dirs = torch.stack([r * torch.cos(phi), y, r * torch.sin(phi)], dim=-1)
    return (dirs / dirs.norm(dim=-1, keepdim=True)).to(torch.float32)


def fibonacci_cell_solid_angle(n: int) -> float:
    """The solid angle ``4π/n`` of each of :func:`fibonacci_sphere`'s ``n`` cells (steradians).

    Raises:
        DataError: ``n < 1``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError("fibonacci_cell_solid_angle", f"n must be an int ≥ 1, got {n!r}")
    return 4.0 * math.pi / n


# -- small deterministic helpers ---------------------------------------------------------------
def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``Σ_k a_k b_k`` over the last axis (size 3) written out, so that the rounding of a row
    never depends on the batch it is computed in."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _normalize(v: Tensor) -> Tensor:
    return v / torch.sqrt(_dot(v, v)).clamp_min(1e-20)[..., None]


def _rotation_xz(ax_deg: float, az_deg: float) -> Tensor:
    """``R_z(az) · R_x(ax)`` as a float32 3×3."""
    ax, az = math.radians(ax_deg), math.radians(az_deg)
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(ax), -math.sin(ax)],
                       [0.0, math.sin(ax), math.cos(ax)]], dtype=torch.float64)
    rz = torch.tensor([[math.cos(az), -math.sin(az), 0.0], [math.sin(az), math.cos(az), 0.0],
                       [0.0, 0.0, 1.0]], dtype=torch.float64)
    return (rz @ rx).to(torch.float32)


def _apply_rows(x: Tensor, m: Tensor) -> Tensor:
    """``x @ m`` for ``x [N, 3]`` and a 3×3 ``m``, written out (batch-independent rounding)."""
    cols = [x[:, 0] * m[0, k] + x[:, 1] * m[1, k] + x[:, 2] * m[2, k] for k in range(3)]
    return torch.stack(cols, dim=-1)


# -- shapes ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class OLATShape:
    """An analytic shape inside ``[−1, 1]³``.

    Attributes:
        name: its key in :data:`SHAPES`.
        distance: ``x [N, 3] → [N]``, a signed distance (negative inside) that never
            over-estimates the distance to the surface (exact, or divided by a Lipschitz bound),
            so sphere tracing with step scale 1 is safe.
        description: one line for documentation and messages.
    """

    name: str
    distance: Callable[[Tensor], Tensor]
    description: str = ""
    gradient_fn: Callable[[Tensor], Tensor] | None = None
    """``∇f`` for distances autograd cannot differentiate (a mesh's exact distance)."""

    def normals(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """Unit normals: the normalised gradient of :attr:`distance` at ``x``."""
        return _normalize(self.gradient(x))

    def gradient(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """The autograd gradient ``∇f(x)`` (not normalised), computed even under ``no_grad``
        (or :attr:`gradient_fn`'s when given)."""
        if self.gradient_fn is not None:
            return self.gradient_fn(x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.distance(xg).sum(), xg)
        return g.detach()


def _sphere_shape() -> OLATShape:
    return OLATShape("sphere", _sphere_source(0.7).distance, "sphere of radius 0.7 (exact SDF)")


_BUMP_AMPLITUDE, _BUMP_FREQUENCY = 0.05, 6.0
# |∇(A·sin(kx)sin(ky)sin(kz))| ≤ A·k (the sum of the three squared partials is at most k²), so
# ‖x‖ − 0.7 − bump is (1 + A·k)-Lipschitz; dividing by that keeps it a distance lower bound.
_BUMP_LIPSCHITZ = 1.0 + _BUMP_AMPLITUDE * _BUMP_FREQUENCY


def _bumpy_shape() -> OLATShape:
    def distance(x: Tensor) -> Tensor:
        k = _BUMP_FREQUENCY
        bump = torch.sin(k * x[:, 0]) * torch.sin(k * x[:, 1]) * torch.sin(k * x[:, 2])
        radius = torch.sqrt(_dot(x, x))
        return (radius - 0.7 - _BUMP_AMPLITUDE * bump) / _BUMP_LIPSCHITZ

    return OLATShape("bumpy", distance,
                     "sphere of radius 0.7 + 0.05·sin(6x)sin(6y)sin(6z) (Lipschitz-scaled)")


def _torus_shape() -> OLATShape:
    local = _torus_source(0.55, 0.22).distance
    rot = _rotation_xz(35.0, 20.0)  # world = rot · local, so local = rotᵀ·world = world @ rot

    def distance(x: Tensor) -> Tensor:
        return local(_apply_rows(x, rot))

    return OLATShape("torus", distance, "torus (0.55, 0.22) tilted 35° about x, 20° about z")


def _capsule(x: Tensor, a: Sequence[float], b: Sequence[float], radius: float) -> Tensor:
    """Exact SDF of the capsule around segment ``ab`` (Quílez): ``‖pa − ba·h‖ − r`` with
    ``h = clamp(pa·ba / ba·ba, 0, 1)``."""
    pa = torch.stack([x[:, k] - a[k] for k in range(3)], dim=-1)
    ba = [b[k] - a[k] for k in range(3)]
    h = ((pa[:, 0] * ba[0] + pa[:, 1] * ba[1] + pa[:, 2] * ba[2])
         / sum(c * c for c in ba)).clamp(0.0, 1.0)
    q = torch.stack([pa[:, k] - ba[k] * h for k in range(3)], dim=-1)
    return torch.sqrt(_dot(q, q)) - radius


# A leaning tripod: three legs from a common apex; the legs shade one another and the apex.
_CAPSULES: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = (
    ((0.05, 0.5, 0.0), (0.62, -0.62, 0.05), 0.17),
    ((0.05, 0.5, 0.0), (-0.35, -0.62, 0.52), 0.15),
    ((0.05, 0.5, 0.0), (-0.3, -0.62, -0.55), 0.13),
)


def _capsules_shape() -> OLATShape:
    def distance(x: Tensor) -> Tensor:
        d = _capsule(x, *_CAPSULES[0])
        for a, b, r in _CAPSULES[1:]:
            d = torch.minimum(d, _capsule(x, a, b, r))
        return d

    return OLATShape("capsules", distance, "tripod: union of 3 capsules from a common apex")


def _spot_shape() -> OLATShape:
    """Keenan Crane's spot (the shipped mesh), centred, longest side 1.6: open3d's exact signed
    distance to the mesh, normals by central differences (h = 1e-3)."""
    from pathlib import Path

    from datasets.meshes import load_mesh, normalize_mesh
    from datasets.sdf_samples import MeshDistance

    mesh, _ = normalize_mesh(load_mesh(Path(__file__).resolve().parents[1] / "assets" /
                                       "meshes" / "spot.obj"))
    mesh.apply_scale(0.8)
    dist = MeshDistance(mesh, nsamples=1)

    def distance(x: Tensor) -> Tensor:
        return dist.signed_distance(x.detach().float()).to(x.dtype)

    def gradient(x: Tensor) -> Tensor:
        h = 1e-3
        off = h * torch.eye(3, dtype=x.dtype)
        pts = torch.cat([x[:, None] + off, x[:, None] - off], 1).reshape(-1, 3)
        d = distance(pts).reshape(-1, 6)
        return (d[:, :3] - d[:, 3:]) / (2 * h)

    return OLATShape("spot", distance, "Keenan Crane's spot (shipped mesh), longest side 1.6",
                     gradient_fn=gradient)


SHAPES: dict[str, Callable[[], OLATShape]] = {
    "sphere": _sphere_shape,
    "bumpy": _bumpy_shape,
    "torus": _torus_shape,
    "capsules": _capsules_shape,
    "spot": _spot_shape,
}
"""Shape name → constructor. Every shape lies in ``[−1, 1]³`` and is centred near the origin."""


def make_shape(name: str) -> OLATShape:
    """The shape called ``name`` in :data:`SHAPES`.

    Raises:
        DataError: unknown name (the message lists the known ones).
    """
    if name not in SHAPES:
        raise DataError("OLATConfig.shape", f"unknown shape {name!r}; choose one of "
                        f"{', '.join(sorted(SHAPES))}")
    return SHAPES[name]()


# -- materials ---------------------------------------------------------------------------------
def _value_noise(x: Tensor, lattice: Tensor) -> Tensor:
    """Smooth value noise in ``[0, 1]``: ``lattice [G, G, G, C]`` (values in ``[0, 1]``) spans
    ``[−1, 1]³`` and is interpolated trilinearly with the smoothstep fade ``3t² − 2t³`` (C¹).
    Points outside the box are clamped to it. Returns ``[N, C]``."""
    g = lattice.shape[0]
    u = ((x.clamp(-1.0, 1.0) + 1.0) * (0.5 * (g - 1))).clamp(0.0, g - 1 - 1e-4)
    i0 = u.floor().long()
    t = u - i0
    t = t * t * (3.0 - 2.0 * t)
    out = torch.zeros(x.shape[0], lattice.shape[-1], dtype=x.dtype)
    for cx in (0, 1):
        wx = t[:, 0] if cx else 1.0 - t[:, 0]
        for cy in (0, 1):
            wy = t[:, 1] if cy else 1.0 - t[:, 1]
            for cz in (0, 1):
                wz = t[:, 2] if cz else 1.0 - t[:, 2]
                v = lattice[i0[:, 0] + cx, i0[:, 1] + cy, i0[:, 2] + cz]
                out = out + (wx * wy * wz)[:, None] * v
    return out


@dataclass(frozen=True, eq=False)
class OLATMaterial:
    """A procedural, light-independent material: fields of the 3-D point ``x``.

    Build one with :func:`make_material`; its random parts come from ``seed``.

    Attributes:
        seed: the material seed ("identity"); other seeds are other (e.g. held-out) materials.
        wrap: the wrap-diffuse parameter ``w ∈ [0, 0.5]`` (one per material; 0 = Lambert).
        specular: whether the specular lobe is on (``False`` forces ``k_s = 0``).
        colors: two checker colours ``[2, 3]`` in ``[0, 1]``.
        checker_freq: checker cells per unit length (the cell side is ``1/checker_freq``).
        checker_phase: checker offset ``[3]``.
        albedo_noise: value-noise lattices for the albedo (coarse ``[5,5,5,3]``, fine
            ``[11,11,11,3]``).
        ks_noise: lattice ``[5, 5, 5, 1]`` for ``k_s``.
        exponent_noise: lattice ``[4, 4, 4, 1]`` for ``s``.
    """

    seed: int
    wrap: float
    specular: bool
    colors: Tensor
    checker_freq: float
    checker_phase: Tensor
    albedo_noise: tuple[Tensor, Tensor]
    ks_noise: Tensor
    exponent_noise: Tensor

    def albedo(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]:
        """Diffuse albedo in ``[0.05, 0.95]³``:
        ``0.05 + 0.9·clamp(0.55·lerp(c₀, c₁, q(x)) + 0.45·n(x), 0, 1)`` with the smooth checker
        ``q = ½ + ½ tanh(6 Π_k sin(π f (x_k + φ_k)))`` and the two-octave RGB value noise ``n``.
        """
        p = math.pi * self.checker_freq * (x + self.checker_phase)
        q = 0.5 + 0.5 * torch.tanh(6.0 * torch.sin(p[:, 0]) * torch.sin(p[:, 1])
                                   * torch.sin(p[:, 2]))
        base = self.colors[0] + q[:, None] * (self.colors[1] - self.colors[0])
        coarse, fine = self.albedo_noise
        noise = 0.65 * _value_noise(x, coarse) + 0.35 * _value_noise(x, fine)
        return 0.05 + 0.9 * (0.55 * base + 0.45 * noise).clamp(0.0, 1.0)

    def specular_albedo(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """``k_s(x) = 0.05 + 0.45·n(x) ∈ [0.05, 0.5]`` (value noise), or 0 without specular."""
        ks = 0.05 + 0.45 * _value_noise(x, self.ks_noise)[:, 0]
        return ks if self.specular else torch.zeros_like(ks)

    def exponent(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, " N"]:
        """Blinn–Phong exponent ``s(x) = 8·8^{n(x)} ∈ [8, 64]`` (log-uniform in the noise)."""
        return 8.0 * torch.pow(8.0, _value_noise(x, self.exponent_noise)[:, 0])


def make_material(seed: int = 0, *, wrap: float | None = 0.0,
                  specular: bool = True) -> OLATMaterial:
    """The procedural material of ``seed``.

    Args:
        seed: material seed ≥ 0; its colours, checker and noise come from
            ``torch.Generator().manual_seed(seed)``.
        wrap: the wrap-diffuse ``w ∈ [0, 0.5]``; ``None`` draws it from the seed, uniform in
            ``[0, 0.5]``.
        specular: ``False`` sets ``k_s = 0`` (pure diffuse).

    Raises:
        DataError: negative seed or ``wrap`` outside ``[0, 0.5]``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError("OLATConfig.material_seed", f"must be an int ≥ 0, got {seed!r}")
    if wrap is not None and not (0.0 <= wrap <= 0.5):
        raise DataError("OLATConfig.wrap", f"must lie in [0, 0.5] or be None, got {wrap!r}")
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=gen, dtype=torch.float32)

    colors = rand(2, 3)
    freq = float(2.0 + 2.0 * rand(1).item())
    phase = rand(3)
    albedo_noise = (rand(5, 5, 5, 3), rand(11, 11, 11, 3))
    ks_noise, exp_noise = rand(5, 5, 5, 1), rand(4, 4, 4, 1)
    drawn_wrap = 0.5 * float(rand(1).item())
    return OLATMaterial(
        seed=seed, wrap=drawn_wrap if wrap is None else float(wrap), specular=bool(specular),
        colors=colors, checker_freq=freq, checker_phase=phase, albedo_noise=albedo_noise,
        ks_noise=ks_noise, exponent_noise=exp_noise,
    )


# -- shading -----------------------------------------------------------------------------------
def shade(
    normals: Float[Tensor, "M 3"],
    view_dirs: Float[Tensor, "M 3"],
    albedo: Float[Tensor, "M 3"],
    specular: Float[Tensor, " M"],
    exponent: Float[Tensor, " M"],
    wrap: float,
    lights: Float[Tensor, "K 3"],
    visibility: Bool[Tensor, "M K"] | Float[Tensor, "M K"],
) -> Float[Tensor, "M K 3"]:
    """Radiance towards the camera under each of ``K`` white directional lights of unit irradiance.

    With ``d`` the ray direction (into the scene), ``l`` the unit light direction, ``n`` the unit
    normal, ``ρ`` the albedo, ``k_s``, ``s`` and ``w`` the specular albedo, exponent and wrap::

        h = (l − d)/‖l − d‖
        L_o = V · ( ρ/π · max((n·l + w)/(1 + w), 0) + k_s·(s + 8)/(8π)·max(n·h, 0)^s·[n·l > 0] ).

    Each light is shaded independently (no sums across lights), so the result for a light does
    not depend on which other lights are in the batch.

    Returns:
        ``[M, K, 3]`` linear radiance, ≥ 0.
    """
    n = normals[:, None, :]
    l_ = lights[None, :, :]
    ndl = _dot(n, l_)  # [M, K]
    diffuse = ((ndl + wrap) / (1.0 + wrap)).clamp_min(0.0)
    h = _normalize(l_ - view_dirs[:, None, :])
    ndh = _dot(n, h).clamp_min(0.0)
    s = exponent[:, None]
    lobe = specular[:, None] * (s + 8.0) / (8.0 * math.pi) * torch.pow(ndh, s)
    lobe = torch.where(ndl > 0, lobe, torch.zeros_like(lobe))
    vis = visibility.to(normals.dtype)
    rad = albedo[:, None, :] * (vis * diffuse / math.pi)[..., None] + (vis * lobe)[..., None]
    return rad


# -- configuration -----------------------------------------------------------------------------
def _bad(field_name: str, problem: str) -> DataError:
    return DataError(f"OLATConfig.{field_name}", problem)


def _spread(count: int, total: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)``: ``⌊(k + ½)·total/count⌋``."""
    return [int((k + 0.5) * total / count) for k in range(count)]


@dataclass(frozen=True)
class OLATConfig:
    """What :func:`make_olat` builds. Validated on construction.

    Attributes:
        shape: a key of :data:`SHAPES` (``sphere``, ``bumpy``, ``torus``, ``capsules``).
        material_seed: the material's seed (:func:`make_material`).
        n_lights: directional lights on :func:`fibonacci_sphere`, ≥ 1.
        n_views: orbit cameras, ≥ 1; azimuths ``360°·i/V``, elevations spread over
            ``elevation_range`` by the golden-ratio sequence.
        size: image side in pixels (square images), 8 … 1024.
        elevation_range: camera elevations ``(low, high)`` in degrees within ``[−89, 89]``.
        camera_radius: orbit radius; the cameras must be outside ``[−1, 1]³`` (``> √3``).
        fov_y_deg: vertical field of view in degrees.
        held_out_lights: light indices kept for testing: a count (spread evenly over the
            Fibonacci order, which runs from top to bottom) or explicit indices;
            ``None`` = ``n_lights // 8``.
        held_out_views: how many views to keep for testing (spread evenly);
            ``None`` = ``n_views // 8``.
        wrap: the wrap-diffuse ``w ∈ [0, 0.5]``; ``None`` draws it from the material seed.
        specular: ``False`` turns the specular lobe off (``k_s = 0``).
        shadow_offset: the shadow-ray origin offset ``ε`` along the normal.
    """

    shape: str = "bumpy"
    material_seed: int = 0
    n_lights: int = 64
    n_views: int = 8
    size: int = 64
    elevation_range: Sequence[float] = (-10.0, 40.0)
    camera_radius: float = 3.0
    fov_y_deg: float = 40.0
    held_out_lights: int | Sequence[int] | None = None
    held_out_views: int | None = None
    wrap: float | None = 0.0
    specular: bool = True
    shadow_offset: float = 2e-3

    def __post_init__(self) -> None:
        if not isinstance(self.shape, str) or self.shape not in SHAPES:
            raise _bad("shape", f"unknown shape {self.shape!r}; choose one of "
                       f"{', '.join(sorted(SHAPES))}")
        for name, low in (("n_lights", 1), ("n_views", 1), ("size", 8), ("material_seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise _bad(name, f"must be an int ≥ {low}, got {v!r}")
        if self.size > 1024:
            raise _bad("size", f"must be ≤ 1024, got {self.size}")
        er = tuple(self.elevation_range)
        if len(er) != 2 or not all(math.isfinite(e) and -89.0 <= e <= 89.0 for e in er) \
                or er[0] > er[1]:
            raise _bad("elevation_range", f"must be (low, high) degrees with −89 ≤ low ≤ high ≤ "
                       f"89, got {self.elevation_range!r}")
        object.__setattr__(self, "elevation_range", (float(er[0]), float(er[1])))
        if not (math.isfinite(self.camera_radius) and self.camera_radius > math.sqrt(3.0)):
            raise _bad("camera_radius", f"must be > √3 (cameras outside [−1, 1]³), got "
                       f"{self.camera_radius!r}")
        if not (math.isfinite(self.fov_y_deg) and 0.0 < self.fov_y_deg < 180.0):
            raise _bad("fov_y_deg", f"must lie in (0, 180), got {self.fov_y_deg!r}")
        if self.wrap is not None and not (0.0 <= self.wrap <= 0.5):
            raise _bad("wrap", f"must lie in [0, 0.5] or be None, got {self.wrap!r}")
        if not (math.isfinite(self.shadow_offset) and 0.0 < self.shadow_offset <= 0.1):
            raise _bad("shadow_offset", f"must lie in (0, 0.1], got {self.shadow_offset!r}")
        hl = self.held_out_lights
        if isinstance(hl, bool):
            raise _bad("held_out_lights", f"must be a count, indices or None, got {hl!r}")
        if isinstance(hl, int):
            if not 0 <= hl < self.n_lights:
                raise _bad("held_out_lights", f"count must lie in [0, n_lights) = "
                           f"[0, {self.n_lights}), got {hl}")
        elif hl is not None:
            idx = tuple(hl)
            if any(isinstance(i, bool) or not isinstance(i, int) for i in idx) \
                    or len(set(idx)) != len(idx) or len(idx) >= self.n_lights \
                    or not all(0 <= i < self.n_lights for i in idx):
                raise _bad("held_out_lights", f"indices must be distinct ints in [0, "
                           f"{self.n_lights}) leaving at least one training light, got {hl!r}")
            object.__setattr__(self, "held_out_lights", idx)
        hv = self.held_out_views
        if hv is not None and (isinstance(hv, bool) or not isinstance(hv, int)
                               or not 0 <= hv < self.n_views):
            raise _bad("held_out_views", f"must be None or an int in [0, n_views) = "
                       f"[0, {self.n_views}), got {hv!r}")

    def test_light_indices(self) -> list[int]:
        """The held-out light indices, sorted."""
        hl = self.held_out_lights
        if hl is None:
            hl = self.n_lights // 8
        return sorted(_spread(hl, self.n_lights) if isinstance(hl, int) else hl)

    def test_view_indices(self) -> list[int]:
        """The held-out view indices, sorted."""
        hv = self.n_views // 8 if self.held_out_views is None else self.held_out_views
        return _spread(hv, self.n_views)

    def cameras(self) -> list[Camera]:
        """The ``n_views`` orbit cameras: azimuth ``360°·i/V``, elevation
        ``low + (high − low)·frac(½ + i·0.618…)``, looking at the origin."""
        low, high = self.elevation_range
        inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
        return [
            Camera.orbit(360.0 * i / self.n_views, low + (high - low) * ((0.5 + i * inv_phi) % 1),
                         self.camera_radius, width=self.size, height=self.size,
                         fov_y_deg=self.fov_y_deg)
            for i in range(self.n_views)
        ]


# -- the dataset -------------------------------------------------------------------------------
@dataclass(eq=False)
class OLATDataset:
    """A rendered OLAT light stage (build it with :func:`make_olat`).

    Attributes:
        config: what was built.
        shape: the :class:`OLATShape`.
        material: the :class:`OLATMaterial`.
        lights: ``[L, 3]`` unit directions towards the lights (:func:`fibonacci_sphere`).
        solid_angle: ``4π/L``, each light's cell (for ``w_j = E(ω_j)·ΔΩ_j``).
        cameras: the ``V`` cameras.
        train_lights, test_lights: light indices (long tensors); together ``0 … L−1``.
        train_views, test_views: view indices (long tensors); together ``0 … V−1``.
        hit: ``[V, H, W]`` whether the primary ray hit the surface.
        points: ``[V, H, W, 3]`` hit points (0 for misses).
        normals: ``[V, H, W, 3]`` unit normals (0 for misses).
        view_dirs: ``[V, H, W, 3]`` the primary ray directions (into the scene), every pixel.
        albedo: ``[V, H, W, 3]`` ground-truth diffuse albedo (0 for misses).
        specular: ``[V, H, W]`` ground-truth ``k_s`` (0 for misses).
        exponent: ``[V, H, W]`` ground-truth Blinn–Phong exponent (0 for misses).
        visibility: ``[V, H, W, L]`` bool hard-shadow visibility (``False`` for misses); use
            ``.float()`` for 0/1 values.
        olat: ``[V, L, H, W, 3]`` float32 linear HDR images, one per light (background 0).
    """

    config: OLATConfig
    shape: OLATShape
    material: OLATMaterial
    lights: Float[Tensor, "L 3"]
    solid_angle: float
    cameras: list[Camera]
    train_lights: Int[Tensor, " Ltr"]
    test_lights: Int[Tensor, " Lte"]
    train_views: Int[Tensor, " Vtr"]
    test_views: Int[Tensor, " Vte"]
    hit: Bool[Tensor, "V H W"]
    points: Float[Tensor, "V H W 3"]
    normals: Float[Tensor, "V H W 3"]
    view_dirs: Float[Tensor, "V H W 3"]
    albedo: Float[Tensor, "V H W 3"]
    specular: Float[Tensor, "V H W"]
    exponent: Float[Tensor, "V H W"]
    visibility: Bool[Tensor, "V H W L"]
    olat: Float[Tensor, "V L H W 3"]

    def __len__(self) -> int:
        return len(self.cameras)

    # ---------------------------------------------------------------- rendering
    def render_light(
        self,
        view: int,
        direction: Float[Tensor, "*K 3"] | Sequence[float] | Sequence[Sequence[float]],
        intensity: Float[Tensor, "*J 3"] | Sequence[float] | Sequence[Sequence[float]],
    ) -> Float[Tensor, "H W 3"]:
        """View ``view`` under directional lights, rendered exactly (new shadow traces), not
        through the OLAT basis: ``Σ_k I_k ⊙ L_o(l_k)`` with :func:`shade`'s ``L_o``.

        Args:
            view: the view index.
            direction: ``[3]`` or ``[K, 3]`` directions towards the lights (normalised here).
            intensity: ``[3]`` or ``[K, 3]`` RGB irradiance of each light (at normal incidence);
                ``[3]`` is shared by all ``K`` lights.

        Returns:
            ``[H, W, 3]`` linear radiance (0 for misses).

        Raises:
            DataError: bad view index, shapes, zero-length or non-finite directions.
        """
        if isinstance(view, bool) or not isinstance(view, int) or not 0 <= view < len(self):
            raise DataError("OLATDataset.render_light", f"view must be an int in [0, "
                            f"{len(self)}), got {view!r}")
        dirs = torch.as_tensor(direction, dtype=torch.float32).reshape(-1, 3) \
            if torch.as_tensor(direction).numel() % 3 == 0 else None
        inten = torch.as_tensor(intensity, dtype=torch.float32)
        if dirs is None or dirs.shape[0] == 0 or inten.numel() not in (3, dirs.numel()):
            raise DataError("OLATDataset.render_light", f"direction must be [3] or [K, 3] (K ≥ 1) "
                            f"and intensity [3] or [K, 3], got "
                            f"{list(torch.as_tensor(direction).shape)} and {list(inten.shape)}")
        inten = inten.reshape(-1, 3).expand(dirs.shape[0], 3)
        norms = torch.sqrt(_dot(dirs, dirs))
        if not (torch.isfinite(dirs).all() and torch.isfinite(inten).all()
                and (norms > 1e-12).all()):
            raise DataError("OLATDataset.render_light",
                            "directions must be finite and non-zero, intensities finite")
        dirs = dirs / norms[:, None]
        with torch.no_grad():
            pix = self.hit[view].reshape(-1).nonzero().squeeze(1)
            p, n = self.points[view].reshape(-1, 3)[pix], self.normals[view].reshape(-1, 3)[pix]
            vis = shadow_visibility(self.shape, p, n, dirs, self.config.shadow_offset)
            rad = shade(n, self.view_dirs[view].reshape(-1, 3)[pix],
                        self.albedo[view].reshape(-1, 3)[pix],
                        self.specular[view].reshape(-1)[pix],
                        self.exponent[view].reshape(-1)[pix], self.material.wrap, dirs, vis)
            total = rad[:, 0] * inten[0]
            for k in range(1, dirs.shape[0]):
                total = total + rad[:, k] * inten[k]
            h, w = self.hit.shape[1:]
            img = torch.zeros(h * w, 3)
            img[pix] = total
        return img.reshape(h, w, 3)

    def env_ground_truth(self, weights: Float[Tensor, "L 3"]) -> Float[Tensor, "V H W 3"]:
        """``Σ_j w_j ⊙ OLAT_j`` for every view: exact for illumination in the light basis.

        For an environment map ``E``, ``w_j = E(ω_j)·solid_angle``.

        Raises:
            DataError: ``weights`` is not ``[L, 3]`` and finite.
        """
        w = torch.as_tensor(weights, dtype=torch.float32)
        if w.shape != (self.lights.shape[0], 3) or not torch.isfinite(w).all():
            raise DataError("OLATDataset.env_ground_truth", f"weights must be finite "
                            f"[{self.lights.shape[0]}, 3], got {list(w.shape)}")
        with torch.no_grad():
            return torch.einsum("vlhwc,lc->vhwc", self.olat, w)


def shadow_visibility(
    shape: OLATShape, points: Tensor, normals: Tensor, lights: Tensor, offset: float
) -> Tensor:
    """``[M, K]`` bool: the shadow ray from ``x + ε·n`` along each light escapes the box.

    Lights are traced in groups of ``⌊2¹⁷ / M⌋`` (at least one light per
    :func:`~renderer.sphere_trace.sphere_trace` call, over all ``M`` points at once)."""
    m, k = points.shape[0], lights.shape[0]
    vis = torch.zeros(m, k, dtype=torch.bool)
    if m == 0:
        return vis
    origins = points + offset * normals
    group = max(1, _RAYS_PER_TRACE // m)
    for start in range(0, k, group):
        ls = lights[start:start + group]
        g = ls.shape[0]
        rays_o = origins[None].expand(g, m, 3).reshape(-1, 3)
        rays_d = ls[:, None, :].expand(g, m, 3).reshape(-1, 3)
        res = sphere_trace(shape.distance, rays_o, rays_d, aabb=BOX,
                           hit_threshold=_HIT_THRESHOLD, max_steps=_MAX_STEPS,
                           normal_fn=lambda x: x)  # normals unused: skip their evaluation cost
        vis[:, start:start + g] = ~res.hit.reshape(g, m).T
    return vis


def make_olat(config: OLATConfig | None = None, **overrides: object) -> OLATDataset:
    """Render the OLAT light stage of ``config`` (default :class:`OLATConfig`), with any field
    replaced by ``overrides`` (``make_olat(shape="torus", size=32)``).

    Per view: one primary sphere trace (normals by autograd), the material at the hit points,
    shadow traces for all lights over all hit points, then :func:`shade`. Cost grows with
    ``V·L·(hit pixels)`` shadow rays.

    Raises:
        DataError: an invalid configuration or an unknown override.
    """
    config = OLATConfig() if config is None else config
    if overrides:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(OLATConfig)})
        if unknown:
            raise DataError("OLATConfig", f"unknown field(s) {unknown}")
        config = dataclasses.replace(config, **overrides)
    shape = make_shape(config.shape)
    material = make_material(config.material_seed, wrap=config.wrap, specular=config.specular)
    lights = fibonacci_sphere(config.n_lights)
    cameras = config.cameras()
    n_views, n_lights, size = config.n_views, config.n_lights, config.size
    n_pix = size * size

    hit = torch.zeros(n_views, n_pix, dtype=torch.bool)
    points = torch.zeros(n_views, n_pix, 3)
    normals = torch.zeros(n_views, n_pix, 3)
    view_dirs = torch.zeros(n_views, n_pix, 3)
    albedo = torch.zeros(n_views, n_pix, 3)
    specular = torch.zeros(n_views, n_pix)
    exponent = torch.zeros(n_views, n_pix)
    visibility = torch.zeros(n_views, n_pix, n_lights, dtype=torch.bool)
    olat = torch.zeros(n_views, n_lights, n_pix, 3)
    with torch.no_grad():
        for v, cam in enumerate(cameras):
            rays_o, rays_d = cam.rays()
            tr = sphere_trace(shape.distance, rays_o, rays_d, aabb=BOX,
                              hit_threshold=_HIT_THRESHOLD, max_steps=_MAX_STEPS,
                              normal_fn=shape.gradient)
            pix = tr.hit.nonzero().squeeze(1)
            p, n, d = tr.points[pix], tr.normals[pix], rays_d[pix]
            rho, ks, s = material.albedo(p), material.specular_albedo(p), material.exponent(p)
            vis = shadow_visibility(shape, p, n, lights, config.shadow_offset)
            rad = shade(n, d, rho, ks, s, material.wrap, lights, vis)  # [M, L, 3]
            hit[v], points[v, pix], normals[v, pix] = tr.hit, p, n
            view_dirs[v] = rays_d
            albedo[v, pix], specular[v, pix], exponent[v, pix] = rho, ks, s
            visibility[v, pix] = vis
            olat[v][:, pix] = rad.transpose(0, 1)

    test_l = config.test_light_indices()
    test_v = config.test_view_indices()

    def split(total: int, test: list[int]) -> tuple[Tensor, Tensor]:
        train = [i for i in range(total) if i not in set(test)]
        return torch.tensor(train, dtype=torch.long), torch.tensor(test, dtype=torch.long)

    train_lights, test_lights = split(n_lights, test_l)
    train_views, test_views = split(n_views, test_v)
    hw = (n_views, size, size)
    return OLATDataset(
        config=config, shape=shape, material=material, lights=lights,
        solid_angle=fibonacci_cell_solid_angle(n_lights), cameras=cameras,
        train_lights=train_lights, test_lights=test_lights, train_views=train_views,
        test_views=test_views, hit=hit.reshape(hw), points=points.reshape(*hw, 3),
        normals=normals.reshape(*hw, 3), view_dirs=view_dirs.reshape(*hw, 3),
        albedo=albedo.reshape(*hw, 3), specular=specular.reshape(hw),
        exponent=exponent.reshape(hw), visibility=visibility.reshape(*hw, n_lights),
        olat=olat.reshape(n_views, n_lights, size, size, 3),
    )

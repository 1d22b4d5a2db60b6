"""Python-scriptable scenes: trained fields and analytic shapes, placed, lit and rendered together.

Vocabulary (ARCHITECTURE.md): a *source* is a field in its own (local) frame — a
:class:`SurfaceSource` (a signed or unsigned distance, or a closest-surface-point field) or a
:class:`RadianceSource` (``rgb_sigma(x, d)``, volume rendered). A :class:`SceneObject` places a
source in the world with a similarity :class:`Transform` (rotation ``R``, translation ``t``,
uniform scale ``s``: ``x_world = s·R·x_local + t``) and a :class:`Material`. A :class:`Scene`
holds objects, :class:`Lights` and a background, and renders any :class:`~renderer.cameras.Camera`
or exports one mesh of everything.

    >>> from renderer.scene import Scene, sphere
    >>> from renderer.cameras import Camera
    >>> scene = Scene(background="white")
    >>> _ = scene.add(sphere(0.5), translate=(0.6, 0.0, 0.0), material="clay")
    >>> _ = scene.add(sphere(0.5), translate=(-0.6, 0.0, 0.0), material=(0.2, 0.4, 0.9))
    >>> scene.lights.sun(direction=(1.0, 1.0, 1.0))
    >>> img = scene.render(Camera.orbit(0.0, 0.0, 4.0, width=32, height=24))
    >>> img.array.shape, bool(img.hit[12, 8]), bool(img.hit[0, 0])
    ((24, 32, 3), True, False)

Trained runs join through duck typing — anything with a ``scene_source()`` method (``app.Run``
and the app's tasks) — so this module never imports the app.

How a frame is made (``Scene.render``):

1. *Culling*: every object's world box (its local ``aabb`` transformed) is intersected with every
   ray (slab test); an object only sees the rays that meet its box, so the cost of a frame grows
   with the objects the rays meet, not with all objects.
2. *Surfaces*: each surface object sphere-traces its rays in its own frame —
   ``o_l = Rᵀ(o − t)/s``, ``d_l = Rᵀd``, local depth ``t_l = t/s``, distances scale by ``s``
   (:func:`renderer.sphere_trace.sphere_trace`; CSP fields through
   :func:`renderer.csp_trace.trace_csp`). The union of the surfaces is the nearest hit per ray:
   exactly the first hit of the union ``min_i f_i`` without evaluating every object everywhere.
   Normals return to the world as ``R·n``.
3. *Shading*: per-object material under the lights — Lambert + Blinn–Phong for suns and point
   lights (inverse-square), diffuse irradiance of an environment map (order-2 spherical
   harmonics, when :mod:`renderer.envmap` is given one), an ambient term; two-sided (normals
   face the viewer); no shadows. Linear light, then sRGB.
4. *Radiance fields*: each is volume rendered over its box, *clipped at the nearest surface
   hit* (depth-correct: a surface in front hides the fog behind it, fog in front veils the
   surface), composited front to back over the shaded surfaces/background in display space.
   Several radiance objects are composited in order of their boxes' distance to the camera
   (exact when their boxes do not overlap along a ray).

Limits: no shadows or inter-reflections; radiance objects do not occlude each other inside
overlapping boxes (see 4.); unsigned/CSP surfaces are hit within their threshold ``τ``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from renderer.cameras import Camera

__all__ = [
    "SurfaceSource", "RadianceSource", "Transform", "Material", "MATERIALS", "Lights",
    "SceneObject", "Scene", "SceneImage", "SceneError", "sphere", "box", "torus",
    "ray_box_intervals",
]

AABB = tuple[float, float, float, float, float, float]


class SceneError(ValueError):
    """A scene that cannot be built or rendered as asked (the message says what and where)."""


# -- sources ----------------------------------------------------------------------------------
@dataclass
class SurfaceSource:
    """A surface in its own frame.

    Attributes:
        distance: ``[N, 3] → [N]`` signed (negative inside) or unsigned distance.
        aabb: the local box that bounds the surface ``(xmin, ymin, zmin, xmax, ymax, zmax)``.
        signed: whether ``distance`` is signed.
        normal: ``[N, 3] → [N, 3]`` normals at surface points (default: autograd gradient of
            ``distance``, or finite differences when it is not differentiable).
        csp: a closest-surface-point field ``[N, 3] → [N, 3]``; when given the surface is traced
            with :func:`renderer.csp_trace.trace_csp` (refined hits, step-back normals).
        hit_threshold: local hit threshold (default: 5e-4 signed, 0.016 unsigned/CSP).
        mesh: ``resolution → trimesh.Trimesh`` in the local frame, for ``Scene.export_mesh``
            (default: marching cubes of ``distance``; unsigned sources need one).
        name: a label for messages.
    """

    distance: Callable[[Tensor], Tensor]
    aabb: Sequence[float]
    signed: bool = True
    normal: Callable[[Tensor], Tensor] | None = None
    csp: Callable[[Tensor], Tensor] | None = None
    hit_threshold: float | None = None
    mesh: Callable[[int], Any] | None = None
    name: str = "surface"


@dataclass
class RadianceSource:
    """A radiance field in its own frame, volume rendered.

    Attributes:
        rgb_sigma: ``(x [N, 3], d [N, 3]) → (rgb [N, 3] in [0, 1], σ [N])``, density per local
            unit length.
        aabb: the local box outside which the density is zero.
        samples: uniform samples per ray across the box.
        mesh: ``resolution → trimesh.Trimesh`` (local frame) for ``Scene.export_mesh``.
        name: a label for messages.
    """

    rgb_sigma: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    aabb: Sequence[float]
    samples: int = 128
    mesh: Callable[[int], Any] | None = None
    name: str = "radiance"


def _check_aabb(aabb: Sequence[float], what: str) -> AABB:
    box = tuple(float(v) for v in aabb)
    if len(box) != 6 or not all(math.isfinite(v) for v in box) or not all(
            box[i] < box[i + 3] for i in range(3)):
        raise SceneError(f"{what}: aabb must be 6 finite numbers (xmin, ymin, zmin, xmax, ymax, "
                         f"zmax) with min < max, got {tuple(aabb)}")
    return box  # type: ignore[return-value]


def _primitive(name: str, sdf: Callable[[Tensor], Tensor], half: Sequence[float]) -> SurfaceSource:
    pad = 1.02
    aabb = (*(-pad * h for h in half), *(pad * h for h in half))
    return SurfaceSource(distance=sdf, aabb=aabb, signed=True, name=name)


def sphere(radius: float = 0.5) -> SurfaceSource:
    """A sphere centred at the origin (exact SDF ``‖x‖ − r``)."""
    if not radius > 0:
        raise SceneError(f"sphere: radius must be > 0, got {radius}")
    return _primitive(f"sphere(r={radius:g})", lambda x: x.norm(dim=-1) - radius, (radius,) * 3)


def box(size: float | Sequence[float] = 1.0) -> SurfaceSource:
    """An axis-aligned box centred at the origin with edge lengths ``size`` (exact SDF)."""
    s = (float(size),) * 3 if isinstance(size, (int, float)) else tuple(float(v) for v in size)
    if len(s) != 3 or not all(v > 0 for v in s):
        raise SceneError(f"box: size must be a positive number or three, got {size}")
    half = torch.tensor(s) / 2

    def sdf(x: Tensor) -> Tensor:
        q = x.abs() - half.to(x)
        return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)

    return _primitive(f"box({s[0]:g}×{s[1]:g}×{s[2]:g})", sdf, [v / 2 for v in s])


def torus(major: float = 0.5, minor: float = 0.15) -> SurfaceSource:
    """A torus around the y axis (exact SDF)."""
    if not 0 < minor < major:
        raise SceneError(f"torus: need 0 < minor < major, got major={major}, minor={minor}")

    def sdf(x: Tensor) -> Tensor:
        q = torch.stack([torch.linalg.vector_norm(x[:, [0, 2]], dim=-1) - major, x[:, 1]], -1)
        return q.norm(dim=-1) - minor

    return _primitive(f"torus({major:g}, {minor:g})", sdf, (major + minor, minor, major + minor))


# -- transforms, materials, lights ------------------------------------------------------------
def _rotation(rotate: Any) -> Tensor:
    """A rotation matrix from Euler angles in degrees (applied x, then y, then z) or a 3×3."""
    if rotate is None:
        return torch.eye(3, dtype=torch.float64)
    r = torch.as_tensor(rotate, dtype=torch.float64)
    if r.shape == (3, 3):
        if not torch.allclose(r @ r.T, torch.eye(3, dtype=torch.float64), atol=1e-6) or \
                torch.linalg.det(r) < 0:
            raise SceneError("rotate: a 3×3 matrix must be a rotation (orthonormal, det +1)")
        return r
    if r.shape != (3,):
        raise SceneError(f"rotate: give Euler angles (x, y, z) in degrees or a 3×3 rotation, "
                         f"got shape {list(r.shape)}")
    ax, ay, az = (math.radians(float(v)) for v in r)
    cx, sx, cy, sy, cz, sz = (math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay),
                              math.cos(az), math.sin(az))
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx


@dataclass
class Transform:
    """A similarity transform ``x_world = scale · R · x_local + translation``."""

    rotation: Tensor = field(default_factory=lambda: torch.eye(3, dtype=torch.float64))
    translation: Tensor = field(default_factory=lambda: torch.zeros(3, dtype=torch.float64))
    scale: float = 1.0

    @classmethod
    def make(cls, translate: Any = None, rotate: Any = None, scale: float = 1.0) -> Transform:
        """From a translation, Euler angles in degrees (x, y, z order) or a 3×3, and a scale."""
        t = torch.zeros(3, dtype=torch.float64) if translate is None else torch.as_tensor(
            translate, dtype=torch.float64)
        if t.shape != (3,) or not torch.isfinite(t).all():
            raise SceneError(f"translate: need three finite numbers, got {translate}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise SceneError(f"scale: need a positive number, got {scale!r}")
        return cls(_rotation(rotate), t, float(scale))

    def points_to_local(self, x: Tensor) -> Tensor:
        r, t = self.rotation.to(x), self.translation.to(x)
        return ((x - t) @ r) / self.scale

    def points_to_world(self, p: Tensor) -> Tensor:
        r, t = self.rotation.to(p), self.translation.to(p)
        return self.scale * (p @ r.T) + t

    def dirs_to_local(self, d: Tensor) -> Tensor:
        return d @ self.rotation.to(d)

    def dirs_to_world(self, d: Tensor) -> Tensor:
        return d @ self.rotation.to(d).T

    def world_aabb(self, aabb: Sequence[float]) -> AABB:
        """The world box around the transformed local box (its 8 corners)."""
        lo, hi = aabb[:3], aabb[3:]
        corners = torch.tensor([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]]
                                for i in (0, 1) for j in (0, 1) for k in (0, 1)],
                               dtype=torch.float64)
        w = self.points_to_world(corners)
        return (*w.amin(0).tolist(), *w.amax(0).tolist())  # type: ignore[return-value]


@dataclass
class Material:
    """Surface appearance: linear albedo, Blinn–Phong specular weight and exponent."""

    albedo: tuple[float, float, float] = (0.8, 0.8, 0.8)
    specular: float = 0.25
    shininess: float = 32.0


MATERIALS: dict[str, Material] = {
    "clay": Material((0.72, 0.45, 0.35), 0.05, 8.0),
    "plastic": Material((0.75, 0.75, 0.75), 0.5, 64.0),
    "white": Material((0.85, 0.85, 0.85), 0.2, 32.0),
    "red": Material((0.75, 0.12, 0.1), 0.3, 32.0),
    "green": Material((0.15, 0.6, 0.2), 0.3, 32.0),
    "blue": Material((0.12, 0.25, 0.8), 0.3, 32.0),
    "gold": Material((0.8, 0.6, 0.2), 0.8, 96.0),
}
"""Named materials for ``Scene.add(..., material="clay")``."""


def _material(spec: Any) -> Material:
    if spec is None:
        return Material()
    if isinstance(spec, Material):
        return spec
    if isinstance(spec, str):
        if spec not in MATERIALS:
            raise SceneError(f"unknown material {spec!r}; known: {', '.join(MATERIALS)} (or an "
                             "(r, g, b) albedo, or a dict of Material fields)")
        return MATERIALS[spec]
    if isinstance(spec, dict):
        try:
            m = Material(**spec)
        except TypeError as exc:
            raise SceneError(f"material {spec}: {exc}") from None
        return Material(tuple(float(v) for v in m.albedo), float(m.specular),  # type: ignore
                        float(m.shininess))
    values = tuple(float(v) for v in spec)
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise SceneError(f"material: an albedo is three numbers in [0, 1], got {spec}")
    return Material(values)  # type: ignore[arg-type]


def _unit3(v: Sequence[float], what: str) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.float64)
    if t.shape != (3,) or not torch.isfinite(t).all() or t.norm() == 0:
        raise SceneError(f"{what}: need a non-zero 3-vector, got {v}")
    return t / t.norm()


@dataclass
class Lights:
    """The scene's lights. With none added, a key light above-left of the camera (as single-field
    renders use) lights the scene. ``ambient`` is added to every light setup."""

    suns: list[tuple[Tensor, float, Tensor]] = field(default_factory=list)
    points: list[tuple[Tensor, float, Tensor]] = field(default_factory=list)
    environment_map: Any = None
    environment_intensity: float = 1.0
    ambient: float = 0.08

    def sun(self, direction: Sequence[float] = (1.0, 1.0, 1.0), intensity: float = 1.0,
            color: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        """A directional light; ``direction`` points from the scene towards the light."""
        self.suns.append((_unit3(direction, "sun direction"), float(intensity),
                          torch.as_tensor(color, dtype=torch.float64)))

    def point(self, position: Sequence[float], intensity: float = 1.0,
              color: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
        """A point light; irradiance ``intensity / r²`` (``intensity`` at distance 1)."""
        p = torch.as_tensor(position, dtype=torch.float64)
        if p.shape != (3,) or not torch.isfinite(p).all():
            raise SceneError(f"point light position: need three finite numbers, got {position}")
        self.points.append((p, float(intensity), torch.as_tensor(color, dtype=torch.float64)))

    def environment(self, envmap: Any, intensity: float = 1.0) -> None:
        """Diffuse light from an environment map: a :class:`renderer.envmap.EnvironmentMap` or a
        path to an equirectangular ``.hdr`` / image."""
        from renderer.envmap import EnvironmentMap

        if isinstance(envmap, (str, Path)):
            envmap = EnvironmentMap.from_file(envmap)
        if not hasattr(envmap, "irradiance"):
            raise SceneError("lights.environment: give an EnvironmentMap or a file path")
        self.environment_map, self.environment_intensity = envmap, float(intensity)

    def clear(self) -> None:
        self.suns.clear()
        self.points.clear()
        self.environment_map = None

    @property
    def empty(self) -> bool:
        return not (self.suns or self.points or self.environment_map is not None)


# -- objects and the scene --------------------------------------------------------------------
@dataclass
class SceneObject:
    """A source placed in the world."""

    source: SurfaceSource | RadianceSource
    transform: Transform
    material: Material
    name: str
    visible: bool = True

    @property
    def world_aabb(self) -> AABB:
        return self.transform.world_aabb(self.source.aabb)


@dataclass
class SceneImage:
    """A rendered frame: ``array`` ``[H, W, 3]`` display colours in ``[0, 1]``, the surface
    ``depth`` (world units, ``inf`` where no surface), ``hit`` (a surface or an opaque enough
    radiance field), ``object_id`` (index of the nearest surface object, −1 for none)."""

    array: np.ndarray
    depth: np.ndarray
    hit: np.ndarray
    object_id: np.ndarray

    def save(self, path: str | Path) -> Path:
        """Write a PNG (or any format imageio knows from the suffix)."""
        import imageio.v3 as iio

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, (np.clip(self.array, 0, 1) * 255 + 0.5).astype(np.uint8))
        return path

    def __array__(self, dtype=None, copy=None):  # noqa: ANN001 - numpy protocol
        return self.array if dtype is None else self.array.astype(dtype)


_BACKGROUNDS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "grey": (0.5, 0.5, 0.5),
                "gray": (0.5, 0.5, 0.5)}


def ray_box_intervals(rays_o: Tensor, rays_d: Tensor, aabb: Sequence[float]
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test: ``(t_near, t_far, meets)`` of every ray with ``aabb`` (``t_near ≥ 0``)."""
    lo = torch.as_tensor(aabb[:3], dtype=rays_o.dtype, device=rays_o.device)
    hi = torch.as_tensor(aabb[3:], dtype=rays_o.dtype, device=rays_o.device)
    safe = torch.where(rays_d.abs() < 1e-12, torch.full_like(rays_d, 1e-12), rays_d)
    t0, t1 = (lo - rays_o) / safe, (hi - rays_o) / safe
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far, near < far


class Scene:
    """Objects, lights, a background; renders cameras and exports meshes (module docstring)."""

    def __init__(self, background: str | Sequence[float] = "white") -> None:
        if isinstance(background, str):
            if background not in _BACKGROUNDS:
                raise SceneError(f"unknown background {background!r}; use one of "
                                 f"{', '.join(_BACKGROUNDS)} or an (r, g, b) in [0, 1]")
            background = _BACKGROUNDS[background]
        bg = tuple(float(v) for v in background)
        if len(bg) != 3 or not all(0.0 <= v <= 1.0 for v in bg):
            raise SceneError(f"background: three numbers in [0, 1], got {background}")
        self.background = bg
        self.objects: list[SceneObject] = []
        self.lights = Lights()

    # -- building -----------------------------------------------------------------------------
    def add(self, obj: Any, *, translate: Any = None, rotate: Any = None, scale: float = 1.0,
            material: Any = None, name: str | None = None) -> SceneObject:
        """Place ``obj`` — a :class:`SurfaceSource` / :class:`RadianceSource` (e.g.
        :func:`sphere`), or anything with a ``scene_source()`` method (a loaded run) — with a
        translation, Euler angles in degrees (x, y, z) or a 3×3 rotation, a uniform scale and a
        material (a name from :data:`MATERIALS`, an ``(r, g, b)`` albedo or a dict)."""
        source = obj.scene_source() if hasattr(obj, "scene_source") else obj
        if not isinstance(source, (SurfaceSource, RadianceSource)):
            raise SceneError(f"cannot add {type(obj).__name__} to a scene: give an analytic "
                             "shape (sphere, box, torus), a SurfaceSource/RadianceSource or a "
                             "loaded run")
        _check_aabb(source.aabb, f"object {name or source.name}")
        placed = SceneObject(source, Transform.make(translate, rotate, scale),
                             _material(material), name or f"{len(self.objects)}:{source.name}")
        self.objects.append(placed)
        return placed

    def bounds(self) -> AABB:
        """The world box around every visible object."""
        boxes = [o.world_aabb for o in self.objects if o.visible]
        if not boxes:
            raise SceneError("the scene has no visible objects")
        b = np.array(boxes)
        return (*b[:, :3].min(0).tolist(), *b[:, 3:].max(0).tolist())  # type: ignore[return-value]

    # -- tracing ------------------------------------------------------------------------------
    def trace(self, rays_o: Tensor, rays_d: Tensor, max_steps: int = 128
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Nearest surface hit of every ray over all surface objects (culled by their boxes):
        ``(depth [R], normals [R, 3] world, object index [R] (−1: none), evaluations [R])``."""
        from renderer.csp_trace import DEFAULT_HIT_THRESHOLD, trace_csp
        from renderer.sphere_trace import sphere_trace

        n = rays_o.shape[0]
        depth = torch.full((n,), math.inf, dtype=rays_o.dtype, device=rays_o.device)
        normals = torch.zeros_like(rays_o)
        which = torch.full((n,), -1, dtype=torch.long, device=rays_o.device)
        evals = torch.zeros(n, dtype=torch.long, device=rays_o.device)
        for i, obj in enumerate(self.objects):
            src = obj.source
            if not obj.visible or not isinstance(src, SurfaceSource):
                continue
            _, _, meets = ray_box_intervals(rays_o, rays_d, obj.world_aabb)
            idx = meets.nonzero().squeeze(1)
            if len(idx) == 0:
                continue
            tr = obj.transform
            o_l = tr.points_to_local(rays_o[idx])
            d_l = torch.nn.functional.normalize(tr.dirs_to_local(rays_d[idx]), dim=-1)
            if src.csp is not None:
                out = trace_csp(src.csp, o_l, d_l, aabb=src.aabb, max_steps=max_steps,
                                hit_threshold=src.hit_threshold or DEFAULT_HIT_THRESHOLD,
                                jacobian_at="hit")
                hit, t_l, n_l, steps = out.hit, out.depth, out.normals, out.steps
            else:
                tau = src.hit_threshold or (5e-4 if src.signed else DEFAULT_HIT_THRESHOLD)
                with torch.no_grad():
                    out = sphere_trace(src.distance, o_l, d_l, aabb=src.aabb, hit_threshold=tau,
                                       max_steps=max_steps, unsigned=not src.signed,
                                       normal_fn=src.normal)
                hit, t_l, n_l, steps = out.hit, out.depth, out.normals, out.steps
            t_w = t_l * tr.scale
            closer = hit & (t_w < depth[idx])
            sel = idx[closer]
            depth[sel] = t_w[closer].to(depth.dtype)
            normals[sel] = tr.dirs_to_world(n_l[closer].to(normals.dtype))
            which[sel] = i
            evals[idx] += steps.to(evals.dtype)
        return depth, normals, which, evals

    def _shade(self, camera: Camera, rays_d: Tensor, depth: Tensor, normals: Tensor,
               which: Tensor) -> Tensor:
        """Linear RGB of the surface hits under the lights (zeros where ``which < 0``)."""
        from renderer.surface import default_light_dir

        hit = which >= 0
        out = torch.zeros_like(rays_d)
        if not hit.any():
            return out
        d = rays_d[hit]
        n = torch.nn.functional.normalize(normals[hit], dim=-1)
        n = torch.where((n * d).sum(-1, keepdim=True) > 0, -n, n)  # two-sided
        x = camera.c2w[:3, 3].to(d) + depth[hit, None] * d
        ids = which[hit]
        albedo = torch.tensor([m.albedo for m in (o.material for o in self.objects)],
                              dtype=d.dtype)[ids]
        ks = torch.tensor([o.material.specular for o in self.objects], dtype=d.dtype)[ids, None]
        p = torch.tensor([o.material.shininess for o in self.objects], dtype=d.dtype)[ids, None]
        lights = self.lights
        suns = list(lights.suns)
        if lights.empty:
            suns = [(default_light_dir(camera).to(torch.float64), 1.0,
                     torch.ones(3, dtype=torch.float64))]
        colour = albedo * lights.ambient

        def add(l_dir: Tensor, radiance: Tensor) -> Tensor:
            n_l = (n * l_dir).sum(-1, keepdim=True)
            half = torch.nn.functional.normalize(l_dir - d, dim=-1)
            spec = ks * (n * half).sum(-1, keepdim=True).clamp_min(0).pow(p) * (n_l > 0)
            return (albedo * n_l.clamp_min(0) + spec) * radiance

        for direction, intensity, color in suns:
            colour = colour + add(direction.to(d).expand_as(n), (intensity * color).to(d))
        for position, intensity, color in lights.points:
            to_light = position.to(d) - x
            r2 = (to_light * to_light).sum(-1, keepdim=True).clamp_min(1e-8)
            colour = colour + add(to_light / r2.sqrt(), (intensity * color).to(d) / r2)
        if lights.environment_map is not None:
            e = lights.environment_map.irradiance(n.to(torch.float32)).to(d)
            colour = colour + lights.environment_intensity * albedo * e / math.pi
        out[hit] = colour
        return out

    def render(self, camera: Camera, mode: str = "shaded", *, max_steps: int = 128,
               device: str | torch.device | None = None) -> SceneImage:
        """Render ``camera``: ``"shaded"`` (lit surfaces and radiance fields), ``"normals"``
        (``(n + 1)/2`` of the nearest surface), ``"depth"`` (colour-mapped surface depth) or
        ``"objects"`` (one colour per object)."""
        from renderer.shading import colormap, linear_to_srgb

        modes = ("shaded", "normals", "depth", "objects")
        if mode not in modes:
            raise SceneError(f"unknown scene render mode {mode!r}; use one of {modes}")
        if not any(o.visible for o in self.objects):
            raise SceneError("the scene has no visible objects to render")
        rays_o, rays_d = camera.rays(device=device)
        depth, normals, which, _ = self.trace(rays_o, rays_d, max_steps)
        hit = which >= 0
        bg = torch.tensor(self.background, dtype=rays_d.dtype, device=rays_d.device)
        img = bg.expand_as(rays_d).clone()
        if mode == "shaded":
            surf = linear_to_srgb(self._shade(camera, rays_d, depth, normals, which).clamp(0, 1))
            img[hit] = surf[hit]
            img, vol_hit = self._composite_radiance(rays_o, rays_d, depth, img)
            hit = hit | vol_hit
        elif mode == "normals":
            img[hit] = (torch.nn.functional.normalize(normals[hit], dim=-1) + 1) / 2
        elif mode == "depth":
            if hit.any():
                lo, hi = depth[hit].min(), depth[hit].max()
                img[hit] = colormap((depth[hit] - lo) / (hi - lo).clamp_min(1e-8))
        else:
            golden = 0.618033988749895
            hues = (torch.arange(len(self.objects), dtype=rays_d.dtype) * golden) % 1.0
            palette = colormap(0.1 + 0.8 * hues)
            img[hit] = palette[which[hit]]
        h, w = camera.height, camera.width
        return SceneImage(img.reshape(h, w, 3).detach().cpu().numpy(),
                          depth.reshape(h, w).cpu().numpy(), hit.reshape(h, w).cpu().numpy(),
                          which.reshape(h, w).cpu().numpy())

    def _composite_radiance(self, rays_o: Tensor, rays_d: Tensor, depth: Tensor,
                            img: Tensor) -> tuple[Tensor, Tensor]:
        """Volume-render the radiance objects, each clipped at the surface depth, front to back
        over ``img``; returns the image and where the accumulated opacity exceeds ½."""
        from renderer.volume import render_rays, sample_uniform

        vols = [o for o in self.objects if o.visible and isinstance(o.source, RadianceSource)]
        if not vols:
            return img, torch.zeros_like(depth, dtype=torch.bool)
        eye = rays_o[0]

        def distance(o: SceneObject) -> float:
            b = torch.tensor(o.world_aabb, dtype=rays_o.dtype)
            return float(((b[:3] + b[3:]) / 2 - eye).norm())

        acc = torch.zeros_like(img)
        transmittance = torch.ones_like(depth)
        for obj in sorted(vols, key=distance):
            src, tr = obj.source, obj.transform
            near, far, meets = ray_box_intervals(rays_o, rays_d, obj.world_aabb)
            far = torch.minimum(far, depth)
            meets = meets & (near < far)
            idx = meets.nonzero().squeeze(1)
            if len(idx) == 0:
                continue
            o_l = tr.points_to_local(rays_o[idx])
            d_l = torch.nn.functional.normalize(tr.dirs_to_local(rays_d[idx]), dim=-1)
            t0, t1 = sample_uniform(o_l, d_l, near[idx] / tr.scale, far[idx] / tr.scale,
                                    src.samples)
            with torch.no_grad():
                out = render_rays(src.rgb_sigma, o_l, d_l, t0, t1, background=0.0)
            acc[idx] += transmittance[idx, None] * out.rgb.to(acc.dtype)
            transmittance[idx] *= (1.0 - out.opacity.to(acc.dtype)).clamp(0, 1)
        return acc + transmittance[:, None] * img, transmittance < 0.5

    # -- meshes -------------------------------------------------------------------------------
    def export_mesh(self, path: str | Path | None = None, resolution: int = 256):
        """One mesh of every visible object in place (each extracted in its own frame at a
        resolution giving the same world voxel size, then transformed); writes ``path`` when
        given and returns the ``trimesh.Trimesh``."""
        import trimesh

        from renderer.meshing import export_mesh, extract_mesh

        if resolution < 8:
            raise SceneError(f"resolution must be ≥ 8, got {resolution}")
        scene_box = np.array(self.bounds())
        scene_extent = float((scene_box[3:] - scene_box[:3]).max())
        parts = []
        for obj in self.objects:
            if not obj.visible:
                continue
            src, tr = obj.source, obj.transform
            wb = np.array(obj.world_aabb)
            res = max(16, int(round(resolution * float((wb[3:] - wb[:3]).max()) / scene_extent)))
            if src.mesh is not None:
                mesh = src.mesh(res)
            elif isinstance(src, SurfaceSource) and src.signed:
                mesh = extract_mesh(src.distance, resolution=res, aabb=tuple(src.aabb)).mesh
            else:
                raise SceneError(f"object {obj.name}: its source has no mesh extraction "
                                 "(unsigned and radiance sources must provide one)")
            v = tr.points_to_world(torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float64))
            parts.append(trimesh.Trimesh(v.numpy(), np.asarray(mesh.faces), process=False))
        merged = trimesh.util.concatenate(parts) if len(parts) > 1 else parts[0]
        if path is not None:
            export_mesh(merged, path)
        return merged

    # -- cameras --------------------------------------------------------------------------------
    def turntable(self, frames: int = 48, *, radius: float | None = None,
                  elevation: float = 20.0, azimuth: float = 0.0, width: int = 512,
                  height: int = 512, fov_y_deg: float = 40.0,
                  target: Sequence[float] | None = None) -> list[Camera]:
        """Cameras circling ``target`` (default: the scene's centre) at ``elevation``; the
        default radius frames the scene's bounds."""
        b = np.array(self.bounds())
        centre = ((b[:3] + b[3:]) / 2).tolist() if target is None else list(target)
        if radius is None:
            half = float(np.linalg.norm(b[3:] - b[:3])) / 2
            radius = 1.1 * half / math.sin(math.radians(fov_y_deg) / 2)
        return [Camera.orbit(azimuth + 360.0 * k / frames, elevation, radius, target=centre,
                             width=width, height=height, fov_y_deg=fov_y_deg)
                for k in range(frames)]

    def __iter__(self) -> Iterable[SceneObject]:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

"""Render a distance field's surface from a camera: the one call an app task makes.

Vocabulary (ARCHITECTURE.md, :mod:`renderer.cameras`, :mod:`renderer.sphere_trace`):

* ``distance_fn(x) -> [N]`` — signed or (with ``unsigned=True``) unsigned distance.
* ``camera`` — a :class:`~renderer.cameras.Camera`; images are ``[H, W, …]``, row 0 at the top.
* ``mode`` — ``"shaded"`` (two-sided Blinn–Phong, sRGB-encoded), ``"normals"`` (``(n + 1)/2``),
  ``"depth"`` (turbo-like colour map of the ray depth) or ``"steps"`` (heat map of the distance
  evaluations per pixel, misses included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from renderer.cameras import Camera
from renderer.shading import (
    heatmap,
    linear_to_srgb,
    shade_blinn_phong,
    shade_depth,
    shade_normals,
    srgb_to_linear,
)
from renderer.sphere_trace import sphere_trace

__all__ = ["RenderOutput", "render_surface", "shade_trace", "MODES", "default_light_dir"]

MODES = ("shaded", "normals", "depth", "steps")

# Key light in camera space (towards the light): up, to the left and from the viewer's side.
_KEY_LIGHT_CAMERA = (-0.4, 0.6, 0.7)


@dataclass
class RenderOutput:
    """A rendered frame.

    Attributes:
        image: colours in ``[0, 1]`` for display (the chosen ``mode``).
        depth: distance along each pixel's ray to the surface; ``+inf`` where missed.
        hit: whether the pixel's ray hit the surface.
        normals: unit normals at hits, zeros elsewhere.
        steps: distance evaluations spent on each pixel's ray.
    """

    image: Float[Tensor, "H W 3"]
    depth: Float[Tensor, "H W"]
    hit: Bool[Tensor, "H W"]
    normals: Float[Tensor, "H W 3"]
    steps: Int[Tensor, "H W"]


def default_light_dir(camera: Camera) -> Float[Tensor, " 3"]:
    """World direction towards a key light above-left of ``camera``, from the viewer's side
    (a headlight tilted so that shapes read in relief): the camera-space direction
    ``(−0.4, 0.6, 0.7)`` rotated by ``c2w`` and normalised.

    Example:
        >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=8, height=8)
        >>> bool(default_light_dir(cam)[2] > 0)  # towards the camera's side (+z)
        True
    """
    light = camera.c2w[:3, :3] @ torch.tensor(_KEY_LIGHT_CAMERA, dtype=camera.c2w.dtype)
    return light / torch.linalg.norm(light)


def render_surface(
    distance_fn: Callable[[Tensor], Tensor],
    camera: Camera,
    mode: str = "shaded",
    *,
    normal_fn: Callable[[Tensor], Tensor] | None = None,
    aabb: Float[Tensor, " 6"] | Sequence[float] | None = None,
    light_dir: Float[Tensor, " 3"] | Sequence[float] | None = None,
    albedo: Sequence[float] = (0.8, 0.8, 0.8),
    background: Sequence[float] = (1.0, 1.0, 1.0),
    unsigned: bool = False,
    hit_threshold: float = 5e-4,
    max_steps: int = 128,
    step_scale: float = 1.0,
    chunk_size: int = 1 << 16,
    device: torch.device | str | None = None,
) -> RenderOutput:
    """Sphere-trace ``distance_fn`` through every pixel of ``camera`` and shade the result.

    ``"shaded"`` lights the surface with two-sided Blinn–Phong (:func:`shade_blinn_phong`) in
    linear RGB, from ``light_dir`` (world, towards the light; default
    :func:`default_light_dir`), and encodes it to sRGB; ``albedo`` is linear, ``background`` is a
    display (sRGB) colour and comes out unchanged. ``"steps"`` maps ``0 … max(steps)`` through the
    colour map over every pixel. The tracing arguments are those of
    :func:`~renderer.sphere_trace.sphere_trace`.

    Example:
        >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=15, height=15)
        >>> out = render_surface(lambda x: x.norm(dim=-1) - 0.5, cam, "normals")
        >>> out.image.shape, bool(out.hit[7, 7]), [round(v, 2) for v in out.image[7, 7].tolist()]
        (torch.Size([15, 15, 3]), True, [0.5, 0.5, 1.0])
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    rays_o, rays_d = camera.rays(device=device)
    trace = sphere_trace(
        distance_fn,
        rays_o,
        rays_d,
        aabb=aabb,
        hit_threshold=hit_threshold,
        max_steps=max_steps,
        step_scale=step_scale,
        unsigned=unsigned,
        normal_fn=normal_fn,
        chunk_size=chunk_size,
    )
    return shade_trace(camera, rays_d, trace.hit, trace.depth, trace.normals, trace.steps, mode,
                       light_dir=light_dir, albedo=albedo, background=background)


def shade_trace(
    camera: Camera,
    rays_d: Float[Tensor, "R 3"],
    hit: Bool[Tensor, " R"],
    depth: Float[Tensor, " R"],
    normals: Float[Tensor, "R 3"],
    steps: Int[Tensor, " R"],
    mode: str = "shaded",
    *,
    light_dir: Float[Tensor, " 3"] | Sequence[float] | None = None,
    albedo: Sequence[float] = (0.8, 0.8, 0.8),
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> RenderOutput:
    """Turn a trace of ``camera``'s rays (one entry per pixel, row-major) into a frame in
    ``mode`` — the shading half of :func:`render_surface`, for tracers of other fields (e.g.
    :func:`renderer.csp_trace.render_csp`)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    h, w = camera.height, camera.width
    if mode == "shaded":
        light = default_light_dir(camera) if light_dir is None else light_dir
        light = torch.as_tensor(light, device=rays_d.device, dtype=rays_d.dtype)
        bg = srgb_to_linear(torch.as_tensor(background, device=rays_d.device, dtype=rays_d.dtype))
        linear = shade_blinn_phong(normals, hit, rays_d, light, albedo=albedo, background=bg)
        image = linear_to_srgb(linear)
    elif mode == "normals":
        image = shade_normals(normals, hit, background)
    elif mode == "depth":
        image = shade_depth(depth, hit, background=background)
    else:
        image = heatmap(steps.to(rays_d.dtype), 0.0, max(1.0, float(steps.max())))
    return RenderOutput(
        image=image.reshape(h, w, 3),
        depth=depth.reshape(h, w),
        hit=hit.reshape(h, w),
        normals=normals.reshape(h, w, 3),
        steps=steps.reshape(h, w),
    )

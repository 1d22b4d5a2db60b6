"""A planar slice through a distance field, colour-coded: the viewer's "slice" mode.

The plane faces the camera: its normal is the viewing axis ``f`` (camera ``−z``) and it passes
through the point of that axis nearest to ``center``, ``p₀ = e + f·((center − e)·f)`` with ``e``
the eye. Pixel ``(u, v)`` shows the field where its ray meets the plane,
``x = o + t·d`` with ``t = ((p₀ − o)·f) / (d·f)``, so orbiting the camera turns the slice with it.

Colours follow the usual signed-distance picture: warm outside (``f > 0``), cool inside, darker
bands every ``spacing`` (iso-distance lines) and a black zero level set. Points outside ``aabb``
(where the field is not defined) show ``background``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from renderer.cameras import Camera

__all__ = ["SliceOutput", "render_slice", "slice_colors"]

_OUTSIDE = (0.93, 0.55, 0.20)
_INSIDE = (0.22, 0.50, 0.85)


@dataclass
class SliceOutput:
    """A slice image and what it shows.

    Attributes:
        image: display colours ``[H, W, 3]`` in ``[0, 1]``.
        values: field values on the plane, ``nan`` outside ``aabb``.
        inside: pixels whose plane point lies in ``aabb``.
    """

    image: Float[Tensor, "H W 3"]
    values: Float[Tensor, "H W"]
    inside: Bool[Tensor, "H W"]


def slice_colors(
    values: Float[Tensor, "*batch"], spacing: float, line_width: float
) -> Float[Tensor, "*batch 3"]:
    """Signed-distance colours: orange where ``values > 0``, blue where ``< 0``, fading to white
    far from zero, darker bands every ``spacing`` and black within ``line_width`` of zero.

    Example:
        >>> c = slice_colors(torch.tensor([0.0, 0.3, -0.3]), spacing=0.1, line_width=0.01)
        >>> c[0].tolist(), bool(c[1, 0] > c[1, 2]), bool(c[2, 2] > c[2, 0])
        ([0.0, 0.0, 0.0], True, True)
    """
    v = torch.nan_to_num(values, nan=0.0)
    out = torch.tensor(_OUTSIDE, dtype=v.dtype, device=v.device)
    ins = torch.tensor(_INSIDE, dtype=v.dtype, device=v.device)
    base = torch.where((v >= 0)[..., None], out, ins)
    fade = torch.exp(-v.abs() / (4.0 * spacing))[..., None]  # 1 at the surface, → 0 far away
    colour = 1.0 - fade * (1.0 - base)  # white far away, saturated near the surface
    band = 0.85 + 0.15 * torch.cos(2.0 * torch.pi * v / spacing)[..., None]
    colour = colour * band
    on_zero = (v.abs() <= line_width)[..., None]
    return torch.where(on_zero, torch.zeros_like(colour), colour).clamp(0.0, 1.0)


@torch.no_grad()
def render_slice(
    distance_fn: Callable[[Tensor], Tensor],
    camera: Camera,
    *,
    aabb: Sequence[float],
    center: Sequence[float] = (0.0, 0.0, 0.0),
    spacing: float | None = None,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    chunk_size: int = 1 << 16,
    device: torch.device | str | None = None,
) -> SliceOutput:
    """Evaluate ``distance_fn`` on the camera-facing plane through ``center`` and colour it.

    Args:
        distance_fn: ``x [N, 3] -> [N]`` (or ``[N, 1]``).
        camera: the view; the plane is perpendicular to its viewing axis.
        aabb: ``(x_min, y_min, z_min, x_max, y_max, z_max)``: the field's box.
        center: the plane passes through this point's projection on the viewing axis.
        spacing: distance between iso-bands (default: 1/20 of the box's largest side).
        background: colour outside the box.
        chunk_size: most points per ``distance_fn`` call.
        device: where rays are made.

    Example:
        >>> cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=9, height=9)
        >>> out = render_slice(lambda x: x.norm(dim=-1) - 0.5, cam, aabb=(-1, -1, -1, 1, 1, 1))
        >>> round(float(out.values[4, 4]), 3), bool(out.image[4, 4, 2] > out.image[4, 4, 0])
        (-0.5, True)
    """
    rays_o, rays_d = camera.rays(device=device)
    box = torch.as_tensor(aabb, dtype=rays_o.dtype, device=rays_o.device)
    if box.shape != (6,) or bool((box[3:] <= box[:3]).any()):
        raise ValueError(f"aabb must be (x_min, y_min, z_min, x_max, y_max, z_max), got {aabb}")
    c2w = camera.c2w.to(rays_o.device)
    eye, forward = c2w[:3, 3], -c2w[:3, 2]
    c = torch.as_tensor(center, dtype=rays_o.dtype, device=rays_o.device)
    p0 = eye + forward * torch.dot(c - eye, forward)
    denom = (rays_d * forward).sum(-1)
    t = ((p0 - rays_o) * forward).sum(-1) / denom.clamp_min(1e-8)
    x = rays_o + t[:, None] * rays_d
    inside = (denom > 1e-8) & ((x >= box[:3]) & (x <= box[3:])).all(-1)
    values = torch.full((x.shape[0],), float("nan"), dtype=x.dtype, device=x.device)
    pts = x[inside]
    if pts.shape[0]:
        values[inside] = torch.cat([distance_fn(p).reshape(-1) for p in pts.split(chunk_size)])
    extent = float((box[3:] - box[:3]).max())
    spacing = extent / 20.0 if spacing is None else float(spacing)
    # The zero line is about one pixel wide: a pixel spans t/f of world units on the plane.
    pixel = float(t[inside].mean()) / camera.fy if pts.shape[0] else 0.0
    colour = slice_colors(values, spacing, line_width=max(pixel, 1e-6))
    bg = torch.as_tensor(background, dtype=colour.dtype, device=colour.device)
    colour = torch.where(inside[:, None], colour, bg)
    h, w = camera.height, camera.width
    return SliceOutput(colour.reshape(h, w, 3), values.reshape(h, w), inside.reshape(h, w))

"""Shading: pure functions from per-pixel geometry to colours.

Vocabulary (ARCHITECTURE.md and :mod:`renderer.sphere_trace`):

* ``normals`` ``[*batch, 3]`` unit normals; ``hit`` ``[*batch]`` bool — where ``hit`` is False
  the output is ``background``. ``*batch`` is any batch shape: ``[R]`` rays or ``[H, W]`` pixels.
* ``depth`` ``[*batch]`` distance along the ray; ``values`` ``[*batch]`` any scalar.
* ``view_dirs`` ``[*batch, 3]`` unit directions from the eye *into* the scene (``rays_d``).
* ``light_dir`` ``[3]`` unit direction from the surface *towards* the light (a distant light).
* colours ``[*batch, 3]`` float in ``[0, 1]``. Lighting (:func:`shade_lambert`,
  :func:`shade_blinn_phong`) is computed in linear RGB — encode with :func:`linear_to_srgb` for
  display; the visualisations (:func:`shade_normals`, :func:`shade_depth`, :func:`heatmap`) are
  display colours already.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor

__all__ = [
    "shade_normals",
    "shade_depth",
    "heatmap",
    "colormap",
    "shade_lambert",
    "shade_blinn_phong",
    "to_uint8",
    "linear_to_srgb",
    "srgb_to_linear",
]

# A turbo-like rainbow (dark blue → cyan → green → yellow → red → dark red): our own piecewise-
# linear approximation through eleven hand-placed key colours at 0, 0.1, …, 1. Its lightness
# rises then falls, as turbo's does, so neighbouring values stay distinguishable at both ends.
_COLORMAP_KEYS = (
    (0.19, 0.07, 0.23),
    (0.27, 0.42, 0.89),
    (0.16, 0.70, 0.96),
    (0.10, 0.90, 0.70),
    (0.40, 0.99, 0.38),
    (0.66, 0.99, 0.23),
    (0.91, 0.82, 0.21),
    (0.99, 0.60, 0.14),
    (0.93, 0.36, 0.07),
    (0.78, 0.18, 0.02),
    (0.48, 0.02, 0.01),
)


def _rgb(
    colour: Float[Tensor, " 3"] | Sequence[float], like: Tensor
) -> Float[Tensor, " 3"]:
    c = torch.as_tensor(colour, device=like.device, dtype=like.dtype)
    if c.shape != (3,):
        raise ValueError(f"a colour must be 3 numbers, got shape {list(c.shape)}")
    return c


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.norm(v, dim=-1, keepdim=True).clamp_min(1e-20)


def _with_background(
    colour: Tensor, hit: Tensor, background: Float[Tensor, " 3"] | Sequence[float]
) -> Tensor:
    return torch.where(hit[..., None], colour, _rgb(background, colour)).clamp(0.0, 1.0)


def colormap(t: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch 3"]:
    """The turbo-like colour of ``t ∈ [0, 1]`` (clamped): dark blue at 0, dark red at 1.

    Piecewise-linear interpolation between 11 key colours spaced 0.1 apart. NaN maps to 0.

    Example:
        >>> [[round(v, 2) for v in c] for c in colormap(torch.tensor([0.0, 1.0])).tolist()]
        [[0.19, 0.07, 0.23], [0.48, 0.02, 0.01]]
    """
    keys = torch.tensor(_COLORMAP_KEYS, device=t.device, dtype=t.dtype)
    n = keys.shape[0] - 1
    s = torch.nan_to_num(t, nan=0.0).clamp(0.0, 1.0) * n
    lo = s.floor().clamp(max=n - 1).long()
    w = (s - lo.to(s.dtype))[..., None]
    return keys[lo] * (1.0 - w) + keys[lo + 1] * w


def heatmap(
    values: Float[Tensor, "*batch"],
    vmin: float | None = None,
    vmax: float | None = None,
) -> Float[Tensor, "*batch 3"]:
    """Colour-map scalars: ``colormap((v − vmin) / (vmax − vmin))``.

    ``vmin``/``vmax`` default to the minimum/maximum of the finite values; non-finite values map
    to the ends of the scale (−inf and NaN to ``vmin``, +inf to ``vmax``).

    Example:
        >>> heatmap(torch.tensor([0.0, 5.0, 10.0])).shape
        torch.Size([3, 3])
    """
    finite = values[torch.isfinite(values)]
    lo = (float(finite.min()) if finite.numel() else 0.0) if vmin is None else float(vmin)
    hi = (float(finite.max()) if finite.numel() else 1.0) if vmax is None else float(vmax)
    scale = hi - lo if hi > lo else 1.0
    return colormap((values - lo) / scale)


def shade_normals(
    normals: Float[Tensor, "*batch 3"],
    hit: Bool[Tensor, "*batch"],
    background: Float[Tensor, " 3"] | Sequence[float] = (1.0, 1.0, 1.0),
) -> Float[Tensor, "*batch 3"]:
    """The usual normal map: colour ``(n + 1) / 2`` (so ``+z ↦ (½, ½, 1)``, ``−z ↦ (½, ½, 0)``).

    Example:
        >>> shade_normals(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([True])).tolist()
        [[0.5, 0.5, 1.0]]
    """
    return _with_background((normals + 1.0) * 0.5, hit, background)


def shade_depth(
    depth: Float[Tensor, "*batch"],
    hit: Bool[Tensor, "*batch"],
    near: float | None = None,
    far: float | None = None,
    background: Float[Tensor, " 3"] | Sequence[float] = (1.0, 1.0, 1.0),
) -> Float[Tensor, "*batch 3"]:
    """Depth through :func:`colormap`: ``near`` is dark blue, ``far`` dark red.

    ``near``/``far`` default to the smallest/largest depth among hits.

    Example:
        >>> img = shade_depth(torch.tensor([1.0, 2.0, float("inf")]),
        ...                   torch.tensor([True, True, False]))
        >>> img[2].tolist()
        [1.0, 1.0, 1.0]
    """
    d_hit = depth[hit]
    lo = (float(d_hit.min()) if d_hit.numel() else 0.0) if near is None else float(near)
    hi = (float(d_hit.max()) if d_hit.numel() else 1.0) if far is None else float(far)
    colour = heatmap(torch.where(hit, depth, lo), lo, hi)
    return _with_background(colour, hit, background)


def _facing(normals: Tensor, view_dirs: Tensor | None) -> Tensor:
    """Unit normals flipped, where needed, to face the viewer (two-sided shading)."""
    n = _unit(normals)
    if view_dirs is None:
        return n
    return torch.where(((n * view_dirs).sum(-1, keepdim=True) > 0), -n, n)


def shade_lambert(
    normals: Float[Tensor, "*batch 3"],
    hit: Bool[Tensor, "*batch"],
    view_dirs: Float[Tensor, "*batch 3"] | None,
    light_dir: Float[Tensor, " 3"] | Sequence[float],
    albedo: Float[Tensor, " 3"] | Sequence[float] = (0.8, 0.8, 0.8),
    ambient: float = 0.1,
    background: Float[Tensor, " 3"] | Sequence[float] = (1.0, 1.0, 1.0),
) -> Float[Tensor, "*batch 3"]:
    """Diffuse (Lambertian) shading of a distant light, in linear RGB:

        c = albedo · (a + (1 − a) · max(n · l, 0)),      a = ``ambient``.

    With ``view_dirs`` given, normals facing away from the viewer are flipped first (two-sided:
    open surfaces and back faces shade like front faces); ``None`` uses them as they are.

    Example:
        >>> n = torch.tensor([[0.0, 0.0, 1.0]])
        >>> shade_lambert(n, torch.tensor([True]), None, (0.0, 0.6, 0.8), albedo=(1.0, 1.0, 1.0),
        ...               ambient=0.0).tolist()  # doctest: +ELLIPSIS
        [[0.8..., 0.8..., 0.8...]]
    """
    n = _facing(normals, view_dirs)
    light = _unit(_rgb(light_dir, n))
    diffuse = (n * light).sum(-1, keepdim=True).clamp_min(0.0)
    colour = _rgb(albedo, n) * (ambient + (1.0 - ambient) * diffuse)
    return _with_background(colour, hit, background)


def shade_blinn_phong(
    normals: Float[Tensor, "*batch 3"],
    hit: Bool[Tensor, "*batch"],
    view_dirs: Float[Tensor, "*batch 3"],
    light_dir: Float[Tensor, " 3"] | Sequence[float],
    albedo: Float[Tensor, " 3"] | Sequence[float] = (0.8, 0.8, 0.8),
    ambient: float = 0.1,
    specular: float = 0.25,
    shininess: float = 32.0,
    background: Float[Tensor, " 3"] | Sequence[float] = (1.0, 1.0, 1.0),
) -> Float[Tensor, "*batch 3"]:
    """Two-sided Blinn–Phong shading (Blinn, "Models of light reflection for computer synthesized
    pictures", SIGGRAPH 1977) of a distant white light, in linear RGB:

        h = (l − v) / ‖l − v‖,
        c = albedo · (a + (1 − a) · max(n·l, 0)) + k_s · max(n·h, 0)^p · [n·l > 0],

    with ``v`` the view direction (eye → surface), ``n`` flipped to face the viewer, ``a`` the
    ambient term, ``k_s = specular`` and ``p = shininess``; clamped to ``[0, 1]``.

    Example:
        >>> n, v = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, -1.0]])
        >>> c = shade_blinn_phong(n, torch.tensor([True]), v, (0.0, 0.0, 1.0), albedo=(0.5,) * 3,
        ...                       ambient=0.0, specular=0.25)
        >>> [round(x, 6) for x in c[0].tolist()]
        [0.75, 0.75, 0.75]
    """
    n = _facing(normals, view_dirs)
    light = _unit(_rgb(light_dir, n))
    n_dot_l = (n * light).sum(-1, keepdim=True)
    half = _unit(light - _unit(view_dirs))
    n_dot_h = (n * half).sum(-1, keepdim=True).clamp_min(0.0)
    spec = specular * n_dot_h.pow(shininess) * (n_dot_l > 0).to(n.dtype)
    colour = _rgb(albedo, n) * (ambient + (1.0 - ambient) * n_dot_l.clamp_min(0.0)) + spec
    return _with_background(colour, hit, background)


def linear_to_srgb(linear: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
    """The sRGB transfer function (IEC 61966-2-1), input clamped to ``[0, 1]``:

        s = 12.92 c                      for c ≤ 0.0031308,
        s = 1.055 c^(1/2.4) − 0.055      otherwise.

    Example:
        >>> [round(v, 4) for v in linear_to_srgb(torch.tensor([0.0, 0.5, 1.0])).tolist()]
        [0.0, 0.7354, 1.0]
    """
    c = linear.clamp(0.0, 1.0)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp_min(1e-12).pow(1 / 2.4) - 0.055)


def srgb_to_linear(srgb: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
    """Inverse of :func:`linear_to_srgb`:

        c = s / 12.92                    for s ≤ 0.04045,
        c = ((s + 0.055) / 1.055)^2.4    otherwise.

    Example:
        >>> [round(v, 3) for v in srgb_to_linear(torch.tensor([0.0, 0.7354, 1.0])).tolist()]
        [0.0, 0.5, 1.0]
    """
    s = srgb.clamp(0.0, 1.0)
    return torch.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055).pow(2.4))


def to_uint8(img: Float[Tensor, "*batch"]) -> UInt8[Tensor, "*batch"]:
    """Float colours in ``[0, 1]`` to bytes: ``round(255 · clamp(c, 0, 1))``; NaN becomes 0.

    Example:
        >>> to_uint8(torch.tensor([0.0, 0.5, 1.0, 2.0])).tolist()
        [0, 128, 255, 255]
    """
    c = torch.nan_to_num(img, nan=0.0).clamp(0.0, 1.0)
    return (c * 255.0).round().to(torch.uint8)

"""Ray utilities: intersecting rays with an axis-aligned bounding box.

Vocabulary (ARCHITECTURE.md):

* ``rays_o``, ``rays_d`` — ray origins and unit directions ``[R, 3]``; a ray is
  ``x(t) = rays_o + t · rays_d`` for ``t ≥ 0``.
* ``aabb`` — an axis-aligned box ``[6]`` = ``(xmin, ymin, zmin, xmax, ymax, zmax)``.
* ``t_near``, ``t_far`` — the interval ``[t_near, t_far]`` of a ray inside the box ``[R]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["intersect_aabb", "as_aabb", "DEFAULT_AABB"]

DEFAULT_AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
"""The box the renderer assumes when none is given: the cube ``[−1, 1]³``."""


def as_aabb(
    aabb: Float[Tensor, " 6"] | Sequence[float] | None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, " 6"]:
    """``aabb`` as a validated ``[6]`` tensor; ``None`` gives :data:`DEFAULT_AABB`.

    Raises:
        ValueError: if it is not 6 finite numbers with ``min < max`` on every axis.

    Example:
        >>> as_aabb(None).tolist()
        [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    """
    box = torch.as_tensor(DEFAULT_AABB if aabb is None else aabb, device=device, dtype=dtype)
    if box.shape != (6,):
        raise ValueError(f"aabb must be 6 numbers (xmin, ymin, zmin, xmax, ymax, zmax), got "
                         f"shape {list(box.shape)}")
    lo, hi = box[:3], box[3:]
    if not bool(torch.isfinite(box).all()) or not bool((lo < hi).all()):
        raise ValueError(f"aabb must be finite with min < max on every axis, got {box.tolist()}")
    return box


def intersect_aabb(
    rays_o: Float[Tensor, "R 3"],
    rays_d: Float[Tensor, "R 3"],
    aabb: Float[Tensor, " 6"] | Sequence[float],
) -> tuple[Float[Tensor, " R"], Float[Tensor, " R"], Bool[Tensor, " R"]]:
    """Slab-method ray/box intersection (Kay & Kajiya, "Ray tracing complex scenes", 1986).

    Per axis ``k`` the ray is inside the slab ``[lo_k, hi_k]`` for ``t`` between
    ``(lo_k − o_k)/d_k`` and ``(hi_k − o_k)/d_k``; the box interval is the intersection of the
    three slab intervals and of ``t ≥ 0``:

        t_near = max(0, max_k min(t_lo_k, t_hi_k)),   t_far = min_k max(t_lo_k, t_hi_k),
        hit = t_far ≥ t_near.

    A zero direction component never divides: that slab is all of ``ℝ`` when ``lo_k ≤ o_k ≤
    hi_k`` and empty otherwise, so the outputs hold no NaN for finite inputs. Origins inside the
    box get ``t_near = 0``. A ray touching an edge or corner (``t_far = t_near``) counts as a hit.
    Where ``hit`` is False the values of ``t_near`` and ``t_far`` carry no meaning.

    Args:
        rays_o: ray origins.
        rays_d: ray directions (need not be unit; ``t`` is then in units of ``‖rays_d‖``).
        aabb: ``(xmin, ymin, zmin, xmax, ymax, zmax)``.

    Returns:
        ``(t_near, t_far, hit)``.

    Example:
        >>> o = torch.tensor([[-3.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
        >>> d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        >>> t_near, t_far, hit = intersect_aabb(o, d, (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0))
        >>> t_near[0].item(), t_far[0].item(), hit.tolist()
        (2.0, 4.0, [True, False])
    """
    box = as_aabb(aabb, device=rays_o.device, dtype=rays_o.dtype)
    lo, hi = box[:3], box[3:]
    zero = rays_d == 0
    safe_d = torch.where(zero, torch.ones_like(rays_d), rays_d)
    t_lo = (lo - rays_o) / safe_d
    t_hi = (hi - rays_o) / safe_d
    t_min = torch.minimum(t_lo, t_hi)
    t_max = torch.maximum(t_lo, t_hi)
    inside_slab = (rays_o >= lo) & (rays_o <= hi)
    inf = torch.full_like(t_min, float("inf"))
    t_min = torch.where(zero, torch.where(inside_slab, -inf, inf), t_min)
    t_max = torch.where(zero, torch.where(inside_slab, inf, -inf), t_max)
    t_near = t_min.amax(dim=-1).clamp_min(0.0)
    t_far = t_max.amin(dim=-1)
    hit = t_far >= t_near
    return t_near, t_far, hit

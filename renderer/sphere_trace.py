"""Sphere tracing of any distance function: signed (SDF) or unsigned (UDF / closest-point fields).

Vocabulary (ARCHITECTURE.md):

* ``distance_fn(x) -> [N]`` — a callable from query points ``x`` ``[N, 3]`` to distances. For a
  signed field it is negative inside; for ``unsigned=True`` it is ``≥ 0`` (its magnitude is used).
* ``rays_o``, ``rays_d`` — ray origins and unit directions ``[R, 3]``; a ray point is
  ``x(t) = rays_o + t · rays_d``, so ``t`` (the returned ``depth``) is the distance along the ray.
* ``aabb`` — the box ``(xmin, ymin, zmin, xmax, ymax, zmax)`` that bounds the surface.
* ``hit_threshold`` — a ray hits when ``|distance| < hit_threshold``.
* ``steps`` — distance evaluations spent on a ray (marching and refinement; normals excluded).

Sphere tracing (Hart, "Sphere tracing: a geometric method for the antialiased ray tracing of
implicit surfaces", The Visual Computer 1996) advances each ray by the distance to the nearest
surface, which cannot cross the surface when the field is an exact (or under-estimating,
1-Lipschitz) distance:

    t₀ = t_near,    t_{k+1} = t_k + s · |f(x(t_k))|,   s = ``step_scale`` ∈ (0, 1].

A ray stops as a hit when ``|f| < hit_threshold``, as a miss when it leaves the box
(``t > t_far``) or runs out of ``max_steps``. Rays that miss the box are never evaluated.
Each iteration evaluates ``distance_fn`` only on the rays still marching (active-ray compaction
through index tensors), in chunks of ``chunk_size`` points.

Depth accuracy. A hit at ``t_k`` with ``f_k = f(x(t_k))`` lies ``≈ f_k / cos θ`` before the true
surface (``θ`` between the ray and the normal). The reported depth adds one secant step through
the last two samples, ``t* = t_k + f_k (t_k − t_{k−1}) / (f_{k−1} − f_k)`` — exact for a plane —
clamped to ``±8 |f_k|`` so that noise in a learned field cannot throw it far. For signed fields a
step that lands inside (``f < 0``) brackets the surface between the last outside sample and this
one; the root is then refined with a few Illinois (modified regula falsi) steps, and such a sign
change always counts as a hit. ``unsigned=True`` has no inside, so only the threshold decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from renderer.rays import as_aabb, intersect_aabb

__all__ = ["TraceResult", "sphere_trace", "finite_difference_normals"]

_MAX_SECANT_GAIN = 8.0  # the final secant step moves a hit by at most this many |f|


@dataclass
class TraceResult:
    """What :func:`sphere_trace` returns, one entry per ray.

    Attributes:
        hit: whether the ray found the surface.
        depth: distance ``t`` along the ray to the surface; ``+inf`` for misses.
        points: ``rays_o + depth · rays_d`` for hits; zeros for misses.
        normals: unit surface normals at hits (the field's gradient direction); zeros for misses.
        steps: distance evaluations spent on the ray (0 for rays that miss the box).
    """

    hit: Bool[Tensor, " R"]
    depth: Float[Tensor, " R"]
    points: Float[Tensor, "R 3"]
    normals: Float[Tensor, "R 3"]
    steps: Int[Tensor, " R"]


def _evaluate(
    distance_fn: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int
) -> Tensor:
    """``distance_fn`` over ``x`` in chunks, returned flat ``[N]`` in ``x``'s dtype."""
    parts = []
    for chunk in x.split(chunk_size) if x.shape[0] > chunk_size else (x,):
        d = distance_fn(chunk)
        if d.shape not in ((chunk.shape[0],), (chunk.shape[0], 1)):
            raise ValueError(
                f"distance_fn must map [N, 3] points to [N] distances; for N={chunk.shape[0]} "
                f"it returned shape {list(d.shape)}"
            )
        parts.append(d.reshape(-1))
    out = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out.to(dtype=x.dtype)


def finite_difference_normals(
    distance_fn: Callable[[Tensor], Tensor],
    x: Float[Tensor, "N 3"],
    eps: float = 1e-3,
) -> Float[Tensor, "N 3"]:
    """Unit normals from central differences of a distance field.

        ∇f(x)_k ≈ (f(x + ε e_k) − f(x − ε e_k)) / 2ε,     n = ∇f / ‖∇f‖.

    ``distance_fn`` is called once on the ``6N`` offset points. Where the gradient vanishes the
    normal is the zero vector. The error is ``O(ε²)`` for smooth fields; ``ε`` should be larger
    than the field's noise and smaller than its features.

    Example:
        >>> sphere = lambda x: x.norm(dim=-1) - 1.0
        >>> finite_difference_normals(sphere, torch.tensor([[0.0, 2.0, 0.0]])).tolist()
        [[0.0, 1.0, 0.0]]
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    n = x.shape[0]
    offsets = torch.cat([torch.eye(3), -torch.eye(3)]).to(device=x.device, dtype=x.dtype) * eps
    xs = (x[:, None, :] + offsets[None]).reshape(-1, 3)
    f = distance_fn(xs)
    if f.numel() != 6 * n:
        raise ValueError(f"distance_fn must return one distance per point; got {list(f.shape)} "
                         f"for {6 * n} points")
    f = f.reshape(n, 6).to(x.dtype)
    grad = (f[:, :3] - f[:, 3:]) / (2.0 * eps)
    return grad / torch.linalg.norm(grad, dim=-1, keepdim=True).clamp_min(1e-20)


def sphere_trace(
    distance_fn: Callable[[Tensor], Tensor],
    rays_o: Float[Tensor, "R 3"],
    rays_d: Float[Tensor, "R 3"],
    *,
    aabb: Float[Tensor, " 6"] | Sequence[float] | None = None,
    hit_threshold: float = 5e-4,
    max_steps: int = 128,
    step_scale: float = 1.0,
    unsigned: bool = False,
    normal_fn: Callable[[Tensor], Tensor] | None = None,
    chunk_size: int = 1 << 16,
    refine_steps: int = 8,
) -> TraceResult:
    """Sphere-trace rays against the zero level set of ``distance_fn`` (Hart 1996).

    See the module docstring for the iteration, the stopping rules and the depth refinement.

    Args:
        distance_fn: ``[N, 3] -> [N]`` (``[N, 1]`` is accepted). Evaluated under
            ``torch.no_grad()`` only on active rays.
        rays_o: ray origins.
        rays_d: unit ray directions.
        aabb: bounding box of the surface; default ``(−1, −1, −1, 1, 1, 1)``. Marching starts
            where a ray enters it (or at its origin, if inside) and stops, a miss, where it leaves.
        hit_threshold: a ray hits when ``|f| < hit_threshold``.
        max_steps: marching evaluations per ray; rays still marching after them are misses.
        step_scale: ``s ∈ (0, 1]``; use ``s < 1`` for fields that over-estimate the distance
            (learned SDFs with gradient norm > 1, closest-point fields far from the surface).
        unsigned: ``True`` for unsigned fields (UDF, CSP): hits only by threshold, no sign test.
        normal_fn: ``[N, 3] -> [N, 3]`` normals at hit points (e.g. an SDF's autograd gradient);
            called under ``torch.enable_grad()`` and normalised here. Default: central
            differences of ``distance_fn`` with ``ε = 10⁻³ ×`` the box's longest side; for
            unsigned fields they are taken ``4ε`` back along the ray, off the field's kink at
            the surface.
        chunk_size: most points passed to ``distance_fn`` (and ``normal_fn``) in one call.
        refine_steps: Illinois steps at most per ray whose step crossed a signed surface.

    Returns:
        A :class:`TraceResult` (hit, depth, points, normals, steps), one entry per ray.

    Example:
        >>> sphere = lambda x: x.norm(dim=-1) - 0.5
        >>> rays_o = torch.tensor([[0.0, 0.0, 3.0], [0.0, 2.0, 3.0]])
        >>> rays_d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
        >>> out = sphere_trace(sphere, rays_o, rays_d)
        >>> out.hit.tolist(), round(out.depth[0].item(), 4), out.normals[0].round().tolist()
        ([True, False], 2.5, [0.0, 0.0, 1.0])
    """
    if not hit_threshold > 0:
        raise ValueError(f"hit_threshold must be positive, got {hit_threshold!r}")
    if max_steps < 1 or refine_steps < 0 or chunk_size < 1:
        raise ValueError(f"need max_steps ≥ 1, refine_steps ≥ 0, chunk_size ≥ 1; got "
                         f"{max_steps}, {refine_steps}, {chunk_size}")
    if not 0 < step_scale <= 1:
        raise ValueError(f"step_scale must lie in (0, 1], got {step_scale!r}")
    box = as_aabb(aabb, device=rays_o.device, dtype=rays_o.dtype)

    with torch.no_grad():
        hit, depth, steps = _march(
            distance_fn, rays_o, rays_d, box, hit_threshold, max_steps, step_scale, unsigned,
            chunk_size, refine_steps,
        )
        points = torch.where(hit[:, None], rays_o + depth[:, None] * rays_d, 0.0)
    normals = torch.zeros_like(points)
    hit_idx = hit.nonzero().squeeze(1)
    if hit_idx.numel() > 0:
        p = points[hit_idx]
        if normal_fn is not None:
            with torch.enable_grad():
                n = torch.cat([normal_fn(c).detach().to(p.dtype) for c in p.split(chunk_size)])
            n = n / torch.linalg.norm(n, dim=-1, keepdim=True).clamp_min(1e-20)
        else:
            eps = 1e-3 * float((box[3:] - box[:3]).max())
            if unsigned:
                p = p - 4.0 * eps * rays_d[hit_idx]
            with torch.no_grad():
                n = torch.cat([
                    finite_difference_normals(distance_fn, c, eps)
                    for c in p.split(max(1, chunk_size // 6))
                ])
        normals[hit_idx] = n
    return TraceResult(hit=hit, depth=depth, points=points, normals=normals, steps=steps)


def _march(
    distance_fn: Callable[[Tensor], Tensor],
    rays_o: Tensor,
    rays_d: Tensor,
    box: Tensor,
    hit_threshold: float,
    max_steps: int,
    step_scale: float,
    unsigned: bool,
    chunk_size: int,
    refine_steps: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The marching loop over compacted active rays; returns ``(hit, depth, steps)``."""
    n_rays = rays_o.shape[0]
    t_near, t_far, in_box = intersect_aabb(rays_o, rays_d, box)
    depth = torch.full((n_rays,), float("inf"), device=rays_o.device, dtype=rays_o.dtype)
    hit = torch.zeros(n_rays, dtype=torch.bool, device=rays_o.device)
    steps = torch.zeros(n_rays, dtype=torch.long, device=rays_o.device)

    # Active set, compacted every iteration: ray indices and their per-ray state.
    idx = in_box.nonzero().squeeze(1)
    o, d, t, t_end = rays_o[idx], rays_d[idx], t_near[idx], t_far[idx]
    t_prev, f_prev = t, t  # the previous sample; only read from the second iteration on
    # Signed crossings, refined after marching: (idx, o, d, t_out, f_out, t_in, f_in).
    brackets: list[tuple[Tensor, ...]] = []

    for it in range(max_steps):
        if idx.numel() == 0:
            break
        f = _evaluate(distance_fn, torch.addcmul(o, d, t[:, None]), chunk_size)
        steps[idx] += 1
        if unsigned:
            f = f.abs()
        converged = f.abs() < hit_threshold
        crossed = (f < 0) & ~converged

        if it == 0:
            # The first sample has no predecessor; if it is already inside, the surface is clipped
            # by the box (or the origin is inside): report the entry point.
            converged = converged | crossed
            c = converged.nonzero().squeeze(1)
            t_hit = t[c]
        else:
            c = converged.nonzero().squeeze(1)
            t_hit = _secant_hit(t[c], f[c], t_prev[c], f_prev[c])
            # A step that landed inside: bracket [t_prev (outside), t (inside)] for refinement.
            b = crossed.nonzero().squeeze(1)
            if b.numel() > 0:
                brackets.append((idx[b], o[b], d[b], t_prev[b], f_prev[b], t[b], f[b]))
        depth[idx[c]] = t_hit
        hit[idx[c]] = True

        t_next = t + step_scale * f
        # `t_next <= t_end` is also False for a NaN distance, which retires the ray as a miss.
        keep = (~converged & ~crossed & (t_next <= t_end)).nonzero().squeeze(1)
        idx, o, d, t_end = idx[keep], o[keep], d[keep], t_end[keep]
        t_prev, f_prev, t = t[keep], f[keep], t_next[keep]

    if brackets:
        _refine(distance_fn, brackets, hit_threshold, refine_steps, chunk_size, hit, depth, steps)
    return hit, depth, steps


def _secant_hit(t: Tensor, f: Tensor, t_prev: Tensor, f_prev: Tensor) -> Tensor:
    """Depth of a threshold hit: one secant step through the last two samples (exact for a
    plane), ``t + f (t − t_prev) / (f_prev − f)``, moved by at most ``±8 |f|``; no step when the
    samples are not approaching the surface."""
    slope_den = f_prev - f
    approaching = slope_den > 0
    gain = f * (t - t_prev) / torch.where(approaching, slope_den, torch.ones_like(f))
    limit = _MAX_SECANT_GAIN * f.abs()
    gain = torch.maximum(torch.minimum(gain, limit), -limit)
    return t + torch.where(approaching, gain, torch.zeros_like(f))


def _refine(
    distance_fn: Callable[[Tensor], Tensor],
    brackets: list[tuple[Tensor, ...]],
    hit_threshold: float,
    refine_steps: int,
    chunk_size: int,
    hit: Tensor,
    depth: Tensor,
    steps: Tensor,
) -> None:
    """Illinois (modified regula falsi) root finding on brackets ``f(a) > 0 > f(b)``; writes the
    roots into ``depth``/``hit`` and counts evaluations in ``steps`` (in place)."""
    idx, o, d, a, fa, b, fb = (torch.cat(parts) for parts in zip(*brackets, strict=True))
    side = torch.zeros_like(idx, dtype=torch.int8)  # which end was replaced last: +1 a, −1 b
    for _ in range(refine_steps):
        if idx.numel() == 0:
            break
        tm = b - fb * (b - a) / (fb - fa)  # fa > 0 > fb, so the denominator is never 0
        fm = _evaluate(distance_fn, torch.addcmul(o, d, tm[:, None]), chunk_size)
        steps[idx] += 1
        done = fm.abs() < hit_threshold
        depth[idx[done]] = tm[done]
        hit[idx[done]] = True
        pos = fm > 0
        # Illinois: when the same end is replaced twice running, halve the other end's value so
        # that the secant estimate cannot stall against it.
        fb = torch.where(pos & (side == 1), fb * 0.5, fb)
        fa = torch.where(~pos & (side == -1), fa * 0.5, fa)
        a, fa = torch.where(pos, tm, a), torch.where(pos, fm, fa)
        b, fb = torch.where(pos, b, tm), torch.where(pos, fb, fm)
        side = torch.where(pos, 1, -1).to(torch.int8)
        keep = (~done).nonzero().squeeze(1)
        idx, o, d, a, fa, b, fb, side = (v[keep] for v in (idx, o, d, a, fa, b, fb, side))
    # Brackets that did not converge within refine_steps: their final secant estimate.
    depth[idx] = b - fb * (b - a) / (fb - fa)
    hit[idx] = True

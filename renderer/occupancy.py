"""An occupancy grid that skips empty space when marching rays (instant-ngp's density grid).

Vocabulary (ARCHITECTURE.md): ``rays_o``, ``rays_d`` ``[R, 3]``; packed samples ``t_starts``,
``t_ends`` ``[M]`` with ``ray_indices`` ``[M]`` (int64, sorted by ray); ``aabb`` ``[6]``;
``density_fn(x [N, 3]) -> sigma [N]``.

The grid (Müller et al., "Instant neural graphics primitives", SIGGRAPH 2022, §4 "Accelerated
ray marching"; the same estimator as nerfacc's ``OccGridEstimator``, Li et al. 2023) splits the
box into ``res³`` cells and keeps, per cell, an exponential moving maximum of the density

    d_c ← max(γ · d_c, σ(x_c)),   x_c = a jittered point of cell c,   γ = ``ema_decay``,

and a binary mask ``occupied_c = d_c > min(mean(d), occ_thre)``. During the first
``warmup_steps`` updates every cell is evaluated; afterwards ``n`` random cells plus ``n`` of the
occupied ones. Sampling marches every ray through the box at a fixed step and keeps the
intervals whose midpoint lies in an occupied cell. Everything is vectorised in torch: per-ray
step counts → ``repeat_interleave`` into a packed index → one gather of the mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from renderer.rays import as_aabb, intersect_aabb

__all__ = ["OccupancyGrid"]


class OccupancyGrid(nn.Module):
    """A one-level binary occupancy grid over ``aabb`` with ``res³`` cells.

    State lives in buffers (``aabb``, ``density`` ``[res³]``, ``occupied`` ``[res, res, res]``),
    so ``state_dict`` / ``load_state_dict`` and ``.to(device)`` just work. The torch path runs on
    any device.

    Example:
        >>> grid = OccupancyGrid(res=16)
        >>> ball = lambda x: 10.0 * (x.norm(dim=-1) < 0.3).float()
        >>> grid.update(0, ball, warmup_steps=1)
        >>> o, d = torch.tensor([[0.0, 0.0, -3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
        >>> ray_indices, t0, t1 = grid.sample(o, d, render_step_size=0.05)
        >>> 2.5 < t0.min().item() and t1.max().item() < 3.5
        True
    """

    aabb: Tensor
    density: Tensor
    occupied: Tensor

    def __init__(self, aabb: Sequence[float] | Tensor | None = None, res: int = 128) -> None:
        super().__init__()
        if res < 1:
            raise ValueError(f"res must be ≥ 1, got {res}")
        self.res = res
        self.register_buffer("aabb", as_aabb(aabb))
        self.register_buffer("density", torch.zeros(res**3))
        # Until the first update every cell is occupied: sampling is then dense, never wrong.
        self.register_buffer("occupied", torch.ones(res, res, res, dtype=torch.bool))


    def extra_repr(self) -> str:
        return f"res={self.res}³, occupied={float(self.occupied.float().mean()):.1%}"
    def _cell_points(self, cells: Int[Tensor, " N"], generator: torch.Generator | None) -> Tensor:
        """A uniformly jittered point inside each of ``cells`` (flat indices, x-major)."""
        r = self.res
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1)
        u = torch.rand(cells.shape[0], 3, generator=generator, device=cells.device)
        lo, hi = self.aabb[:3], self.aabb[3:]
        return lo + (ijk.to(lo.dtype) + u) / r * (hi - lo)

    @torch.no_grad()
    def update(
        self,
        step: int,
        density_fn: Callable[[Tensor], Tensor],
        occ_thre: float = 0.01,
        ema_decay: float = 0.95,
        warmup_steps: int = 256,
        n: int | None = None,
        chunk_size: int = 1 << 16,
        generator: torch.Generator | None = None,
    ) -> None:
        """One update of the moving maximum and the binary mask.

        Args:
            step: the training step; below ``warmup_steps`` all cells are evaluated.
            density_fn: ``x [N, 3] -> sigma [N]`` (called without gradient, in chunks).
            occ_thre: density above which a cell is occupied (lowered to the mean density when
                the mean is smaller, so that a dim scene is not emptied).
            ema_decay: ``γ`` of the moving maximum.
            warmup_steps: updates that evaluate every cell.
            n: after warm-up, random cells per update (and at most as many occupied cells);
                default ``res³ / 4``.
            chunk_size: points per ``density_fn`` call.
            generator: for the random cells and jitter.
        """
        n_cells = self.res**3
        device = self.density.device
        if step < warmup_steps:
            cells = torch.arange(n_cells, device=device)
        else:
            k = n if n is not None else max(1, n_cells // 4)
            random_cells = torch.randint(n_cells, (k,), generator=generator, device=device)
            occ = self.occupied.reshape(-1).nonzero().squeeze(-1)
            if occ.numel() > k:
                pick = torch.randint(occ.numel(), (k,), generator=generator, device=device)
                occ = occ[pick]
            cells = torch.cat([random_cells, occ])
        x = self._cell_points(cells, generator)
        sigma = torch.cat([density_fn(c).reshape(-1) for c in x.split(chunk_size)])
        sigma = sigma.to(self.density.dtype)
        decayed = self.density[cells] * ema_decay
        # scatter_reduce "amax" handles repeated cells (random picks may repeat).
        self.density.scatter_reduce_(0, cells, torch.maximum(decayed, sigma), "amax",
                                   include_self=False)
        thre = min(float(self.density.mean()), occ_thre)
        self.occupied.copy_((self.density > thre).reshape(self.occupied.shape))

    def occupancy(self, x: Float[Tensor, "N 3"]) -> Bool[Tensor, " N"]:
        """Whether each point lies in an occupied cell (points outside the box are not)."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        u = (x - lo) / (hi - lo)
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        ijk = (u * self.res).long().clamp(0, self.res - 1)
        return self.occupied[ijk[:, 0], ijk[:, 1], ijk[:, 2]] & inside

    @torch.no_grad()
    def sample(
        self,
        rays_o: Float[Tensor, "R 3"],
        rays_d: Float[Tensor, "R 3"],
        near: float = 0.0,
        far: float = float("inf"),
        render_step_size: float = 1e-2,
        stratified: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Int[Tensor, " M"], Float[Tensor, " M"], Float[Tensor, " M"]]:
        """March each ray through the box at a fixed step; keep intervals in occupied cells.

        A ray inside the box over ``[t₀, t₁]`` (clipped to ``[near, far]``) is cut into intervals
        ``[t₀ + o + kΔ, min(t₀ + o + (k+1)Δ, t₁)]`` with ``Δ = render_step_size`` and offset
        ``o = 0`` (or ``o ~ U[0, Δ)`` per ray when ``stratified``); an interval is kept when its
        midpoint's cell is occupied. Rays that miss the box get no samples.

        Returns:
            packed ``(ray_indices, t_starts, t_ends)``, sorted by ray and by ``t`` within a ray.
        """
        if not render_step_size > 0:
            raise ValueError(f"render_step_size must be positive, got {render_step_size!r}")
        t_near, t_far, hit = intersect_aabb(rays_o, rays_d, self.aabb.to(rays_o.dtype))
        t0 = t_near.clamp_min(near)
        t1 = t_far.clamp_max(far)
        offset = torch.zeros_like(t0)
        if stratified:
            offset = torch.rand(t0.shape, generator=generator, device=t0.device,
                                dtype=t0.dtype) * render_step_size
        span = torch.where(hit & (t1 > t0 + offset), t1 - t0 - offset, torch.zeros_like(t0))
        counts = torch.ceil(span / render_step_size).long()
        ray_indices = torch.repeat_interleave(torch.arange(rays_o.shape[0], device=t0.device),
                                              counts)
        first = counts.cumsum(0) - counts
        k = torch.arange(ray_indices.shape[0], device=t0.device) - first[ray_indices]
        t_starts = t0[ray_indices] + offset[ray_indices] + k.to(t0.dtype) * render_step_size
        t_ends = torch.minimum(t_starts + render_step_size, t1[ray_indices])
        mid = (t_starts + t_ends) * 0.5
        x = rays_o[ray_indices] + mid[:, None] * rays_d[ray_indices]
        keep = self.occupancy(x) & (t_ends > t_starts)
        return ray_indices[keep], t_starts[keep], t_ends[keep]

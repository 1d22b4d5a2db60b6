"""Occupancy grid: which cells it marks, which rays get samples, and the issue's acceptance check
(same image as dense sampling with ≥ 3× fewer field evaluations per ray)."""

import math

import pytest
import torch

from renderer.occupancy import OccupancyGrid
from renderer.rays import intersect_aabb
from renderer.volume import render_rays

CENTRE = torch.tensor([0.1, -0.05, 0.0])
RADIUS = 0.35
RES = 32


def ball_density(x):
    """σ = 30 inside a small ball, exactly 0 elsewhere."""
    return 30.0 * ((x - CENTRE).norm(dim=-1) < RADIUS).to(x.dtype)


def field(x, d):
    return torch.sigmoid(3.0 * x + 0.5 * d), ball_density(x)


@pytest.fixture(scope="module")
def grid():
    g = OccupancyGrid(res=RES)
    gen = torch.Generator().manual_seed(0)
    for step in range(96):  # all warm-up: every cell evaluated at a fresh jittered point
        g.update(step, ball_density, warmup_steps=96, generator=gen)
    return g


def _cell_centres(res):
    c = (torch.arange(res) + 0.5) / res * 2 - 1
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1)


def test_grid_marks_the_ball_and_not_far_cells(grid):
    centres = _cell_centres(RES)
    dist = (centres - CENTRE).norm(dim=-1)
    half_diag = math.sqrt(3) / RES
    assert grid.occupied[dist < RADIUS - half_diag].all()  # cells fully inside
    assert not grid.occupied[dist > RADIUS + half_diag].any()  # cells fully outside
    border = (dist >= RADIUS - half_diag) & (dist <= RADIUS + half_diag)
    assert grid.occupied[border].float().mean() > 0.5


def test_first_update_after_warmup_touches_a_subset_and_keeps_the_mask(grid):
    g = OccupancyGrid(res=RES)
    g.load_state_dict(grid.state_dict())
    before = g.occupied.clone()
    calls = []

    def counting(x):
        calls.append(x.shape[0])
        return ball_density(x)

    g.update(1000, counting, warmup_steps=96, n=512, generator=torch.Generator().manual_seed(1))
    assert sum(calls) <= 2 * 512
    assert (g.occupied == before).float().mean() > 0.99


def _camera_rays(n=32):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    o = torch.stack([xs * 0.9, ys * 0.9, torch.full_like(xs, -3.0)], -1).reshape(-1, 3)
    d = torch.stack([xs * 0.05, ys * 0.05, torch.ones_like(xs)], -1).reshape(-1, 3)
    return o, torch.nn.functional.normalize(d, dim=-1)


def test_rays_missing_the_ball_get_no_samples(grid):
    o, d = _camera_rays()
    ray_indices, t0, t1 = grid.sample(o, d, render_step_size=0.01)
    # Distance from the ball centre to each ray line.
    to_c = CENTRE - o
    miss = (to_c - (to_c * d).sum(-1, keepdim=True) * d).norm(dim=-1)
    far_away = miss > RADIUS + 2 * math.sqrt(3) * 2 / RES
    counts = torch.bincount(ray_indices, minlength=o.shape[0])
    assert far_away.any() and (counts[far_away] == 0).all()
    assert (counts[miss < RADIUS * 0.9] > 0).all()
    # Packed layout: sorted by ray, increasing t within a ray, intervals inside the box.
    assert (ray_indices[1:] >= ray_indices[:-1]).all()
    same = ray_indices[1:] == ray_indices[:-1]
    assert (t0[1:][same] >= t1[:-1][same] - 1e-6).all()
    assert (t1 > t0).all() and (t1 - t0 <= 0.01 + 1e-6).all()


def _psnr(a, b):
    return (-10 * torch.log10(((a - b) ** 2).mean())).item()


def test_acceptance_same_image_as_dense_with_fewer_evaluations(grid):
    o, d = _camera_rays()
    step = 2 * math.sqrt(3) / 512
    dense_grid = OccupancyGrid(res=1)  # never updated: all occupied, i.e. dense marching
    ri, t0, t1 = grid.sample(o, d, render_step_size=step)
    rd, d0, d1 = dense_grid.sample(o, d, render_step_size=step)
    rr, r0, r1 = dense_grid.sample(o, d, render_step_size=step / 8)  # the reference image
    bg = torch.ones(3)
    occ = render_rays(field, o, d, t0, t1, ri, background=bg).rgb
    dense = render_rays(field, o, d, d0, d1, rd, background=bg).rgb
    ref = render_rays(field, o, d, r0, r1, rr, background=bg).rgb
    assert abs(_psnr(occ, ref) - _psnr(dense, ref)) <= 0.1
    _, _, hit = intersect_aabb(o, d, grid.aabb)
    per_ray_dense = rd.shape[0] / hit.sum().item()
    per_ray_occ = ri.shape[0] / hit.sum().item()
    assert per_ray_dense >= 3 * per_ray_occ


def test_stratified_sampling_and_near_far(grid):
    o, d = _camera_rays(8)
    g = torch.Generator().manual_seed(0)
    a = grid.sample(o, d, render_step_size=0.02, stratified=True, generator=g)
    b = grid.sample(o, d, render_step_size=0.02, stratified=True, generator=g)
    assert not torch.equal(a[1], b[1])
    ri, t0, t1 = grid.sample(o, d, near=2.9, far=3.0, render_step_size=0.02)
    assert (t0 >= 2.9 - 1e-6).all() and (t1 <= 3.0 + 1e-6).all()


def test_fresh_grid_is_dense_and_state_dict_round_trips(grid):
    fresh = OccupancyGrid(res=4)
    assert fresh.occupied.all()
    assert set(grid.state_dict()) == {"aabb", "density", "occupied"}
    o, d = torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    ri, t0, _ = fresh.sample(o, d, render_step_size=0.1)  # pointing away from the box
    assert ri.numel() == 0 and t0.numel() == 0
    with pytest.raises(ValueError):
        fresh.sample(o, d, render_step_size=0.0)

"""Ray/box intersection: hand-computed cases, zero direction components, a sampling oracle."""

import math

import pytest
import torch

from renderer.rays import as_aabb, intersect_aabb

BOX = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)


def test_hand_computed_axis_aligned_rays():
    o = torch.tensor([[-3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0], [3.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    t_near, t_far, hit = intersect_aabb(o, d, BOX)
    assert hit.tolist() == [True, True, True, False]  # the last one points away from the box
    torch.testing.assert_close(t_near[:3], torch.tensor([2.0, 0.0, 4.0]))
    torch.testing.assert_close(t_far[:3], torch.tensor([4.0, 1.0, 6.0]))


def test_origin_inside_clamps_t_near_to_zero():
    o = torch.tensor([[0.2, -0.3, 0.5]])
    d = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, -0.5]]), dim=-1)
    t_near, t_far, hit = intersect_aabb(o, d, BOX)
    assert hit.item() and t_near.item() == 0.0 and t_far.item() > 0.0


def test_zero_direction_components_give_no_nan():
    # Rays parallel to faces: inside the slab, outside it, and exactly on its boundary.
    o = torch.tensor([[-2.0, 0.5, 0.0], [-2.0, 1.5, 0.0], [-2.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    t_near, t_far, hit = intersect_aabb(o, d, BOX)
    assert not torch.isnan(t_near).any() and not torch.isnan(t_far).any()
    assert hit.tolist() == [True, False, True, True]  # the zero ray sits inside the box
    torch.testing.assert_close(t_near[[0, 2]], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(t_far[[0, 2]], torch.tensor([3.0, 3.0]))


def test_box_behind_the_ray_is_a_miss():
    _, _, hit = intersect_aabb(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]]),
                               BOX)
    assert not hit.item()


def test_matches_a_dense_sampling_oracle():
    torch.manual_seed(0)
    box = torch.tensor([-0.5, -1.0, -0.2, 0.7, 0.4, 0.9], dtype=torch.float64)
    o = torch.rand(500, 3, dtype=torch.float64) * 6 - 3
    d = torch.nn.functional.normalize(torch.randn(500, 3, dtype=torch.float64), dim=-1)
    d[::7, 0] = 0.0  # some zero components
    d = torch.nn.functional.normalize(d, dim=-1)
    t_near, t_far, hit = intersect_aabb(o, d, box)
    ts = torch.linspace(0, 8, 16001, dtype=torch.float64)
    pts = o[:, None] + ts[None, :, None] * d[:, None]
    inside = ((pts >= box[:3]) & (pts <= box[3:])).all(-1)  # [R, S]
    # Sampling can miss only rays that clip the box over less than a sample spacing.
    assert (hit != inside.any(1)).sum() <= 2
    h = hit & inside.any(1)
    first = torch.where(inside, ts, torch.inf).amin(1)
    last = torch.where(inside, ts, -torch.inf).amax(1)
    step = ts[1] - ts[0]
    assert ((t_near[h] - first[h]).abs() <= step).all()
    assert ((t_far[h] - last[h]).abs() <= step).all()


@pytest.mark.parametrize(
    "bad",
    [
        (0.0, 0.0, 0.0, 1.0, 1.0),  # five numbers
        (1.0, 0.0, 0.0, 0.0, 1.0, 1.0),  # xmin > xmax
        (0.0, 0.0, 0.0, 1.0, math.nan, 1.0),
    ],
)
def test_invalid_boxes_raise(bad):
    with pytest.raises(ValueError, match="aabb"):
        as_aabb(bad)

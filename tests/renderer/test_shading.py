"""Shading: hand-computed Lambert and Blinn–Phong values, background, normal-map colours, the
colour map, sRGB and bytes; every function on two batch ranks ([R] rays and [H, W] pixels)."""

import math

import pytest
import torch

from renderer.shading import (
    colormap,
    heatmap,
    linear_to_srgb,
    shade_blinn_phong,
    shade_depth,
    shade_lambert,
    shade_normals,
    srgb_to_linear,
    to_uint8,
)


def test_normal_map_colours_and_background():
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    hit = torch.tensor([True, True, True, False])
    img = shade_normals(n, hit, background=(0.2, 0.3, 0.4))
    expected = torch.tensor([[0.5, 0.5, 1.0], [0.5, 0.5, 0.0], [1.0, 0.5, 0.5], [0.2, 0.3, 0.4]])
    torch.testing.assert_close(img, expected)


def test_lambert_hand_computed():
    light = torch.tensor([0.0, 0.6, 0.8])
    n = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0],
                      [0.0, 0.0, 1.0]])
    hit = torch.tensor([True, True, True, True, False])
    img = shade_lambert(n, hit, None, light, albedo=(1.0, 0.5, 0.25), ambient=0.0,
                        background=(0.0, 0.0, 0.0))
    n_dot_l = torch.tensor([0.8, 0.6, 0.0, 0.0, 0.0])  # clamped at 0 facing away; miss → bg
    torch.testing.assert_close(img, n_dot_l[:, None] * torch.tensor([1.0, 0.5, 0.25]))
    # With ambient a: albedo · (a + (1 − a) n·l).
    img = shade_lambert(n[:1], hit[:1], None, light, albedo=(1.0, 1.0, 1.0), ambient=0.25)
    torch.testing.assert_close(img, torch.full((1, 3), 0.25 + 0.75 * 0.8))
    # Un-normalised light directions are normalised.
    img2 = shade_lambert(n[:1], hit[:1], None, light * 7, albedo=(1.0, 1.0, 1.0), ambient=0.25)
    torch.testing.assert_close(img, img2)


def test_two_sided_shading_flips_normals_towards_the_viewer():
    light = (0.0, 0.0, 1.0)
    view = torch.tensor([[0.0, 0.0, -1.0]])  # looking down −z, at a surface facing +z
    front = torch.tensor([[0.0, 0.0, 1.0]])
    hit = torch.tensor([True])
    for shade in (shade_lambert, shade_blinn_phong):
        torch.testing.assert_close(shade(-front, hit, view, light), shade(front, hit, view, light))
    # Without view directions Lambert is one-sided: the back face gets only the ambient term.
    back = shade_lambert(-front, hit, None, light, albedo=(1.0, 1.0, 1.0), ambient=0.1)
    torch.testing.assert_close(back, torch.full((1, 3), 0.1))


def test_blinn_phong_hand_computed():
    # Light 60° from the normal in the x–z plane, viewer along the normal: h bisects them.
    light = (math.sin(math.pi / 3), 0.0, math.cos(math.pi / 3))
    n = torch.tensor([[0.0, 0.0, 1.0]])
    view = torch.tensor([[0.0, 0.0, -1.0]])
    c = shade_blinn_phong(n, torch.tensor([True]), view, light, albedo=(0.5, 0.5, 0.5),
                          ambient=0.0, specular=0.5, shininess=8.0)
    expected = 0.5 * 0.5 + 0.5 * math.cos(math.pi / 6) ** 8
    torch.testing.assert_close(c, torch.full((1, 3), expected))
    # No highlight when the light is behind the surface.
    c = shade_blinn_phong(n, torch.tensor([True]), view, (0.0, 0.6, -0.8), ambient=0.0)
    torch.testing.assert_close(c, torch.zeros(1, 3))


def test_colormap_and_heatmap():
    ends = colormap(torch.tensor([0.0, 1.0, -5.0, 5.0, float("nan")]))
    torch.testing.assert_close(ends[2], ends[0])  # clamped
    torch.testing.assert_close(ends[3], ends[1])
    torch.testing.assert_close(ends[4], ends[0])  # NaN → low end
    assert ends[0, 2] > ends[0, 0] and ends[1, 0] > ends[1, 2]  # blue → red
    c = colormap(torch.linspace(0, 1, 1001))
    assert c.min() >= 0 and c.max() <= 1
    assert (c[1:] - c[:-1]).abs().max() < 0.01  # continuous (piecewise linear, slope < 10)
    v = torch.tensor([2.0, 4.0, 6.0])
    torch.testing.assert_close(heatmap(v), colormap(torch.tensor([0.0, 0.5, 1.0])))
    torch.testing.assert_close(heatmap(v, 0.0, 8.0), colormap(v / 8))
    assert not torch.isnan(heatmap(torch.tensor([1.0, 1.0, float("inf")]))).any()


def test_shade_depth_near_far_and_background():
    depth = torch.tensor([1.0, 2.0, 3.0, float("inf")])
    hit = torch.tensor([True, True, True, False])
    img = shade_depth(depth, hit)
    torch.testing.assert_close(img[:3], colormap(torch.tensor([0.0, 0.5, 1.0])))
    torch.testing.assert_close(img[3], torch.ones(3))
    img = shade_depth(depth, hit, near=0.0, far=4.0, background=(0.0, 0.0, 0.0))
    torch.testing.assert_close(img[:3], colormap(torch.tensor([0.25, 0.5, 0.75])))
    torch.testing.assert_close(img[3], torch.zeros(3))


def test_srgb_round_trip_and_known_values():
    x = torch.linspace(0, 1, 1001, dtype=torch.float64)
    torch.testing.assert_close(srgb_to_linear(linear_to_srgb(x)), x)
    torch.testing.assert_close(linear_to_srgb(torch.tensor([0.0, 0.001, 0.18, 1.0],
                                                           dtype=torch.float64)),
                               torch.tensor([0.0, 0.01292, 0.461356, 1.0], dtype=torch.float64),
                               atol=1e-5, rtol=0)


def test_to_uint8():
    out = to_uint8(torch.tensor([[-1.0, 0.0, 0.2], [0.5, 1.0, float("nan")]]))
    assert out.dtype == torch.uint8
    assert out.tolist() == [[0, 0, 51], [128, 255, 0]]


@pytest.mark.parametrize("batch", [(12,), (3, 4)])
def test_every_function_accepts_two_batch_ranks(batch):
    torch.manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(*batch, 3), dim=-1)
    v = torch.nn.functional.normalize(torch.randn(*batch, 3), dim=-1)
    hit = torch.rand(batch) > 0.3
    depth = torch.rand(batch) + 1
    light = (0.3, 0.5, 0.8)
    outs = [
        shade_normals(n, hit),
        shade_depth(depth, hit),
        heatmap(depth),
        colormap(depth - 1),
        shade_lambert(n, hit, v, light),
        shade_blinn_phong(n, hit, v, light),
    ]
    for out in outs:
        assert out.shape == (*batch, 3) and out.min() >= 0 and out.max() <= 1
    assert linear_to_srgb(outs[-1]).shape == (*batch, 3)
    assert to_uint8(outs[-1]).shape == (*batch, 3)
    # Batched and flat results agree.
    flat = shade_blinn_phong(n.reshape(-1, 3), hit.reshape(-1), v.reshape(-1, 3), light)
    torch.testing.assert_close(outs[-1].reshape(-1, 3), flat)

"""render_surface: every mode on an analytic sphere, against the tracer and the shading rules."""

import pytest
import torch

from renderer.cameras import Camera
from renderer.shading import colormap
from renderer.surface import MODES, default_light_dir, render_surface


def sphere(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=-1) - 0.5


CAM = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=33, height=25, fov_y_deg=40.0)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_renders_an_image_in_range(mode):
    out = render_surface(sphere, CAM, mode)
    assert out.image.shape == (25, 33, 3) and out.depth.shape == (25, 33)
    assert out.hit.shape == (25, 33) and out.normals.shape == (25, 33, 3)
    assert out.steps.shape == (25, 33)
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert out.hit[12, 16] and not out.hit[0, 0]
    assert out.depth[12, 16].item() == pytest.approx(2.5, abs=1e-4)
    if mode != "steps":  # steps colours every pixel, misses included
        torch.testing.assert_close(out.image[~out.hit], torch.ones(int((~out.hit).sum()), 3))


def test_normals_mode_colours_the_front_of_the_sphere_blue():
    out = render_surface(sphere, CAM, "normals", background=(0.0, 0.0, 0.0))
    torch.testing.assert_close(out.image[12, 16], torch.tensor([0.5, 0.5, 1.0]), atol=2e-3,
                               rtol=0)
    assert (out.image[0, 0] == 0).all()


def test_depth_and_steps_modes_use_the_colour_map():
    out = render_surface(sphere, CAM, "depth")
    near = colormap(torch.tensor(0.0))
    nearest = out.depth.masked_fill(~out.hit, float("inf")).argmin()
    torch.testing.assert_close(out.image.reshape(-1, 3)[nearest], near)
    steps = render_surface(sphere, CAM, "steps")
    most = steps.steps.argmax()
    torch.testing.assert_close(steps.image.reshape(-1, 3)[most], colormap(torch.tensor(1.0)))


def test_shaded_mode_is_brightest_where_the_light_is_reflected():
    light = torch.tensor([0.0, 0.0, 1.0])
    out = render_surface(sphere, CAM, "shaded", light_dir=light, background=(0.0, 0.0, 0.0))
    lum = out.image.mean(-1)
    assert lum.argmax().item() == 12 * 33 + 16  # head-on light and viewer: centre pixel
    # The default key light comes from above-left: the upper-left of the sphere is brighter.
    out = render_surface(sphere, CAM, "shaded")
    assert out.image[8, 12].mean() > out.image[16, 20].mean()
    assert default_light_dir(CAM)[0] < 0 and default_light_dir(CAM)[1] > 0


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        render_surface(sphere, CAM, "wireframe")

"""Cameras: conventions (−z forward, y up, row-major from the top-left), project ∘ rays = id,
look-at and orbit geometry, serialisation and argument validation."""

import json
import math

import pytest
import torch

from renderer.cameras import Camera


def random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_c2w(seed: int) -> torch.Tensor:
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = random_rotation(seed)
    m[:3, 3] = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64)
    return m


def test_centre_ray_is_minus_z_of_c2w():
    c2w = random_c2w(0)
    cam = Camera.from_fov(7, 5, 50.0, c2w)  # odd sizes: pixel (2, 3) sits on the axis
    rays_o, rays_d = cam.rays()
    centre = 2 * 7 + 3
    torch.testing.assert_close(rays_d[centre], -c2w[:3, 2].float(), atol=1e-6, rtol=0)
    torch.testing.assert_close(rays_o, c2w[:3, 3].float().expand(35, 3))


def test_rays_are_unit_row_major_from_the_top_left():
    cam = Camera.from_fov(4, 3, 60.0, torch.eye(4))
    _, rays_d = cam.rays()
    assert rays_d.shape == (12, 3)
    torch.testing.assert_close(rays_d.norm(dim=-1), torch.ones(12))
    d = rays_d.reshape(3, 4, 3)
    assert d[0, 0, 0] < 0 and d[0, 0, 1] > 0  # top-left pixel looks left and up
    assert (d[:, 1:, 0] > d[:, :-1, 0]).all()  # columns run right (+x)
    assert (d[1:, :, 1] < d[:-1, :, 1]).all()  # rows run down (−y)


def test_rays_through_pixel_centres_match_the_pinhole_formula():
    cam = Camera(5, 4, fx=3.0, fy=2.0, cx=2.0, cy=1.5, c2w=torch.eye(4))
    _, rays_d = cam.rays(dtype=torch.float64)
    i, j = 3, 1
    expected = torch.tensor([(j + 0.5 - 2.0) / 3.0, -(i + 0.5 - 1.5) / 2.0, -1.0],
                            dtype=torch.float64)
    torch.testing.assert_close(rays_d[i * 5 + j], expected / expected.norm())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_project_inverts_rays(seed):
    cam = Camera.from_fov(9, 6, 45.0, random_c2w(seed))
    rays_o, rays_d = cam.rays(dtype=torch.float64)
    t = torch.rand(rays_o.shape[0], 1, dtype=torch.float64, generator=torch.Generator()
                   .manual_seed(seed)) * 5 + 0.1
    pixels, depth = cam.project(rays_o + t * rays_d)
    jj, ii = torch.meshgrid(torch.arange(9.0), torch.arange(6.0), indexing="xy")
    expected = torch.stack([jj.reshape(-1) + 0.5, ii.reshape(-1) + 0.5], dim=-1).double()
    # c2w is stored in float32, so RᵀR = I only to ~1e-7.
    torch.testing.assert_close(pixels, expected, atol=1e-5, rtol=0)
    # z-depth is the ray distance times the cosine to the optical axis.
    cos = -(rays_d @ cam.c2w[:3, 2].double())
    torch.testing.assert_close(depth, t[:, 0] * cos)


def test_project_accepts_two_batch_ranks():
    cam = Camera.look_at((1.0, 2.0, 3.0), (0.0, 0.0, 0.0), width=10, height=8)
    pts = torch.rand(4, 5, 3) * 0.5
    px, depth = cam.project(pts)
    px_flat, depth_flat = cam.project(pts.reshape(20, 3))
    assert px.shape == (4, 5, 2) and depth.shape == (4, 5)
    torch.testing.assert_close(px.reshape(20, 2), px_flat)
    torch.testing.assert_close(depth.reshape(20), depth_flat)


def test_look_at_puts_the_target_at_the_image_centre():
    eye, target = (1.5, 0.7, -2.0), (0.2, -0.1, 0.3)
    cam = Camera.look_at(eye, target, width=32, height=24, fov_y_deg=35.0)
    px, depth = cam.project(torch.tensor([target]))
    torch.testing.assert_close(px, torch.tensor([[16.0, 12.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(depth, torch.tensor([math.dist(eye, target)]))
    # "up" projects upwards: a point above the target lands on an earlier row.
    above, _ = cam.project(torch.tensor([[0.2, 0.2, 0.3]]))
    assert above[0, 1] < 12.0
    assert cam.fov_y_deg == pytest.approx(35.0)


def test_orbit_geometry():
    cam = Camera.orbit(0.0, 0.0, 2.0, width=9, height=9)
    torch.testing.assert_close(cam.position, torch.tensor([0.0, 0.0, 2.0]))
    target = (0.5, -0.2, 0.1)
    for az, el in [(30.0, 20.0), (200.0, -45.0), (75.0, 90.0), (10.0, -90.0)]:
        cam = Camera.orbit(az, el, 3.0, target=target, width=9, height=9)
        offset = cam.position - torch.tensor(target)
        assert offset.norm().item() == pytest.approx(3.0, abs=1e-5)
        assert math.degrees(math.asin(offset[1].item() / 3.0)) == pytest.approx(el, abs=1e-3)
        px, _ = cam.project(torch.tensor([target]))
        torch.testing.assert_close(px, torch.tensor([[4.5, 4.5]]), atol=1e-4, rtol=0)
    # Positive azimuth turns counter-clockwise seen from above: 90° sits on +x.
    torch.testing.assert_close(Camera.orbit(90.0, 0.0, 2.0).position,
                               torch.tensor([2.0, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_orbit_about_another_up_axis():
    cam = Camera.orbit(40.0, 30.0, 2.0, up=(0.0, 0.0, 1.0), width=9, height=9)
    assert cam.position[2].item() == pytest.approx(2.0 * math.sin(math.radians(30.0)), abs=1e-5)
    px, _ = cam.project(torch.zeros(1, 3))
    torch.testing.assert_close(px, torch.tensor([[4.5, 4.5]]), atol=1e-4, rtol=0)


def test_turntable():
    cams = Camera.turntable(8, 25.0, 2.5, width=16, height=16)
    assert len(cams) == 8
    azimuths = [math.degrees(math.atan2(c.position[0].item(), c.position[2].item())) % 360
                for c in cams]
    assert azimuths == pytest.approx([45.0 * k for k in range(8)], abs=1e-3)
    assert all(c.position.norm().item() == pytest.approx(2.5, abs=1e-5) for c in cams)
    assert len(Camera.turntable(3, 0.0, 1.0)) == 3


def test_scaled_keeps_the_field_of_view():
    cam = Camera.look_at((1.0, 2.0, 3.0), (0.0, 0.0, 0.0), width=64, height=48, fov_y_deg=50.0)
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (32, 24)
    assert half.fov_y_deg == pytest.approx(cam.fov_y_deg)
    pts = torch.rand(20, 3) - 0.5
    px_full, d_full = cam.project(pts)
    px_half, d_half = half.project(pts)
    torch.testing.assert_close(px_half, px_full * 0.5, atol=1e-4, rtol=0)
    torch.testing.assert_close(d_half, d_full)
    assert cam.scaled(2.0).width == 128


def test_to_dict_from_dict_round_trip_through_json():
    cam = Camera(12, 10, fx=11.5, fy=12.25, cx=6.1, cy=4.9, c2w=random_c2w(3))
    data = json.loads(json.dumps(cam.to_dict()))
    back = Camera.from_dict(data)
    for name in ("width", "height", "fx", "fy", "cx", "cy"):
        assert getattr(back, name) == getattr(cam, name)
    assert torch.equal(back.c2w, cam.c2w)
    assert back.c2w.dtype == torch.float32


def test_invalid_inputs_raise_value_errors():
    eye = torch.eye(4)
    with pytest.raises(ValueError, match="width"):
        Camera(0, 10, 5.0, 5.0, 0.0, 5.0, eye)
    with pytest.raises(ValueError, match="fx"):
        Camera(10, 10, -5.0, 5.0, 5.0, 5.0, eye)
    with pytest.raises(ValueError, match="cy"):
        Camera(10, 10, 5.0, 5.0, 5.0, float("nan"), eye)
    with pytest.raises(ValueError, match="orthonormal"):
        Camera(10, 10, 5.0, 5.0, 5.0, 5.0, torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0])))
    with pytest.raises(ValueError, match="reflection"):
        Camera(10, 10, 5.0, 5.0, 5.0, 5.0, torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0])))
    with pytest.raises(ValueError, match="finite"):
        Camera(10, 10, 5.0, 5.0, 5.0, 5.0, torch.full((4, 4), float("inf")))
    with pytest.raises(ValueError, match="shape"):
        Camera.from_fov(10, 10, 40.0, [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="fov"):
        Camera.from_fov(10, 10, 180.0, eye)
    with pytest.raises(ValueError, match="zero length"):
        Camera.look_at((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="parallel"):
        Camera.look_at((0.0, 3.0, 0.0), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="radius"):
        Camera.orbit(0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="missing"):
        Camera.from_dict({"width": 4})
    with pytest.raises(ValueError, match="factor"):
        Camera.look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0)).scaled(0.0)

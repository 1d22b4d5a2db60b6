"""Scenes (renderer/scene.py): composition against closed forms, transforms, culling, radiance
mixing, mesh export, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from renderer.cameras import Camera
from renderer.scene import (
    RadianceSource,
    Scene,
    SceneError,
    SurfaceSource,
    box,
    ray_box_intervals,
    sphere,
    torus,
)


def _ray_sphere(o: torch.Tensor, d: torch.Tensor, c, r: float) -> torch.Tensor:
    """Closed-form first hit of rays with a sphere (inf for misses)."""
    oc = o.double() - torch.tensor(c, dtype=torch.float64)
    d = d.double()
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - r * r)
    t = -b - disc.clamp_min(0).sqrt()
    return torch.where((disc > 0) & (t > 0), t, torch.full_like(t, math.inf))


def _camera(size=(48, 40), az=20.0, el=15.0, radius=4.0, target=(0.0, 0.0, 0.0)):
    return Camera.orbit(az, el, radius, target=target, width=size[0], height=size[1],
                        fov_y_deg=45.0)


def test_two_spheres_render_the_closed_form_union_depth():
    scene = Scene()
    scene.add(sphere(0.5), translate=(0.6, 0.1, 0.0))
    scene.add(sphere(0.4), translate=(-0.5, -0.2, 0.3))
    cam = _camera()
    img = scene.render(cam, "depth")
    o, d = cam.rays()
    truth = torch.minimum(_ray_sphere(o, d, (0.6, 0.1, 0.0), 0.5),
                          _ray_sphere(o, d, (-0.5, -0.2, 0.3), 0.4)).reshape(40, 48).numpy()
    hit_truth = np.isfinite(truth)
    # Rays that graze a sphere (within the hit threshold of the silhouette) may go either way.
    agree = (img.hit == hit_truth).mean()
    assert agree > 0.995
    both = img.hit & hit_truth
    err = np.abs(img.depth[both] - truth[both])
    # Sphere tracing stops within its threshold (5e-4) of the surface, ~τ/cos θ along the ray:
    # tiny head-on, larger on grazing rays near a silhouette.
    assert np.median(err) < 1e-4 and err.mean() < 3e-4 and err.max() < 1e-2
    # Which sphere is nearest comes out per pixel.
    ids = set(np.unique(img.object_id[img.hit]).tolist())
    assert ids == {0, 1}


def test_a_transform_moves_the_render_exactly():
    t = np.array([0.3, -0.2, 0.4])
    moved, still = Scene(), Scene()
    moved.add(torus(0.5, 0.18), translate=t, rotate=(30.0, 10.0, 0.0))
    still.add(torus(0.5, 0.18), rotate=(30.0, 10.0, 0.0))
    cam = _camera()
    cam_shifted = _camera(target=tuple(-t))  # the same view of the torus, from a moved camera
    a = moved.render(Camera(cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy,
                            cam.c2w.clone()), "depth")
    b = still.render(Camera(cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy,
                            _shift(cam.c2w, -t)), "depth")
    assert a.hit.sum() > 100 and (a.hit == b.hit).all()
    assert np.abs(a.depth[a.hit] - b.depth[b.hit]).max() < 1e-4
    del cam_shifted


def _shift(c2w: torch.Tensor, t) -> torch.Tensor:
    out = c2w.clone()
    out[:3, 3] += torch.as_tensor(t, dtype=out.dtype)
    return out


def test_scale_and_rotation_match_the_scaled_shape():
    a, b = Scene(), Scene()
    a.add(sphere(0.25), scale=2.0, rotate=(0.0, 45.0, 0.0))
    b.add(sphere(0.5))
    cam = _camera()
    ra, rb = a.render(cam, "depth"), b.render(cam, "depth")
    assert (ra.hit == rb.hit).mean() > 0.998
    both = ra.hit & rb.hit
    assert np.abs(ra.depth[both] - rb.depth[both]).max() < 2e-3
    # Normals are rotated back to the world: on a sphere they are radial.
    img = a.render(cam, "normals").array
    n = img[ra.hit] * 2 - 1
    o, d = cam.rays()
    x = (o + torch.from_numpy(ra.depth).reshape(-1, 1) * d).reshape(40, 48, 3).numpy()[ra.hit]
    radial = x / np.linalg.norm(x, axis=-1, keepdims=True)
    assert np.mean(np.abs((n * radial).sum(-1))) > 0.99


def test_culling_only_evaluates_objects_a_ray_meets():
    calls = []

    def counted(r: float):
        def f(x):
            calls.append(len(x))
            return x.norm(dim=-1) - r
        return SurfaceSource(distance=f, aabb=(-r, -r, -r, r, r, r), name="counted")

    scene = Scene()
    scene.add(counted(0.3), translate=(0.0, 0.0, 0.0))
    cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=24, height=24, fov_y_deg=20.0)
    scene.render(cam, "depth")
    one = sum(calls)
    for k in range(15):  # far off to the side: no ray of this camera meets them
        scene.add(counted(0.3), translate=(5.0 + k, 0.0, 0.0))
    calls.clear()
    img = scene.render(cam, "depth")
    assert sum(calls) == one and img.hit.any()
    # Negative control: one more counted object in view is evaluated on the rays meeting it.
    scene.add(counted(0.3), translate=(0.0, 0.0, -1.5))
    calls.clear()
    scene.render(cam, "depth")
    _, _, meets = ray_box_intervals(*cam.rays(), scene.objects[-1].world_aabb)
    assert meets.any() and sum(calls) > one


def test_radiance_fields_mix_with_surfaces_by_depth():
    sigma, r = 3.0, 0.6

    def fog(x, d):
        inside = (x.norm(dim=-1) < r).to(x.dtype)
        return torch.tensor([1.0, 0.0, 0.0]).expand_as(x), sigma * inside

    scene = Scene(background="black")
    scene.add(RadianceSource(fog, aabb=(-r, -r, -r, r, r, r), samples=256), name="fog")
    wall = scene.add(box((4.0, 4.0, 0.2)), translate=(0.0, 0.0, 0.0), material="white")
    cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=33, height=33, fov_y_deg=30.0)
    o, d = cam.rays()
    img = scene.render(cam).array.reshape(-1, 3)
    # The wall (front face z = 0.1) cuts the fog ball: light crosses only the fog in front of it.
    oc = o.double()
    b = (oc * d).sum(-1)
    disc = (b * b - ((oc * oc).sum(-1) - r * r)).clamp_min(0)
    t_in = -b - disc.sqrt()
    t_wall = (3.0 - 0.1) / (-d[:, 2]).double()
    length = (t_wall - t_in).clamp_min(0) * (disc > 0)
    alpha = 1 - torch.exp(-sigma * length)
    centre = 16 * 33 + 16
    # Red fog over a grey wall: red − green = α (the fog's opacity in front of the wall).
    assert float(alpha[centre]) > 0.5
    assert abs(float(img[centre, 0] - img[centre, 1]) - float(alpha[centre])) < 0.02
    # Move the wall in front of the fog: the fog disappears from those pixels.
    wall.transform.translation[2] = 1.0
    front = scene.render(cam).array.reshape(-1, 3)
    assert np.allclose(front[centre, 0], front[centre, 1], atol=1e-6)  # grey wall, no red
    # Negative control: without the wall the fog's whole chord shows.
    wall.visible = False
    alone = scene.render(cam).array.reshape(-1, 3)
    full = 1 - math.exp(-sigma * 2 * r)
    assert abs(float(alone[centre, 0]) - full) < 0.02
    assert full > float(alpha[centre]) + 0.1  # the wall did cut the chord


def test_export_mesh_puts_every_object_in_place(tmp_path):
    import trimesh

    scene = Scene()
    scene.add(sphere(0.5), translate=(1.0, 0.0, 0.0))
    scene.add(box(0.6), translate=(-1.0, 0.5, 0.0), rotate=(0.0, 0.0, 30.0))
    mesh = scene.export_mesh(tmp_path / "scene.ply", resolution=96)
    loaded = trimesh.load(tmp_path / "scene.ply", process=False)
    assert len(loaded.vertices) == len(mesh.vertices)
    v = np.asarray(mesh.vertices)
    near_sphere = np.linalg.norm(v - [1.0, 0.0, 0.0], axis=1) < 0.6
    assert near_sphere.sum() > 100 and (~near_sphere).sum() > 100
    assert np.abs(np.linalg.norm(v[near_sphere] - [1.0, 0.0, 0.0], axis=1) - 0.5).max() < 0.02
    c, s_ = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
    rot = np.array([[c, -s_, 0.0], [s_, c, 0.0], [0.0, 0.0, 1.0]])
    local = (v[~near_sphere] - [-1.0, 0.5, 0.0]) @ rot  # back into the box's frame
    assert np.abs(np.abs(local).max(1) - 0.3).max() < 0.02  # on the box's faces, in place


def test_lights_change_the_shading():
    scene = Scene(background="black")
    scene.add(sphere(0.5), material="white")
    cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=32, height=32, fov_y_deg=30.0)
    scene.lights.sun(direction=(1.0, 0.0, 0.2))
    right = scene.render(cam).array
    scene.lights.clear()
    scene.lights.sun(direction=(-1.0, 0.0, 0.2))
    left = scene.render(cam).array
    assert right[16, 24].mean() > left[16, 24].mean() + 0.2
    assert left[16, 7].mean() > right[16, 7].mean() + 0.2
    scene.lights.clear()
    scene.lights.point((0.0, 0.0, 1.0), intensity=0.5)
    near = scene.render(cam).array[16, 16].mean()
    scene.lights.clear()
    scene.lights.point((0.0, 0.0, 2.0), intensity=0.5)
    far = scene.render(cam).array[16, 16].mean()
    assert near > far  # inverse-square falloff


def test_bad_scenes_fail_clearly():
    with pytest.raises(SceneError, match="background"):
        Scene(background="purple")
    scene = Scene()
    with pytest.raises(SceneError, match="material"):
        scene.add(sphere(), material="velvet")
    with pytest.raises(SceneError, match="scale"):
        scene.add(sphere(), scale=0.0)
    with pytest.raises(SceneError, match="rotation"):
        scene.add(sphere(), rotate=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(SceneError, match="cannot add"):
        scene.add("outputs/spot-sdf")
    with pytest.raises(SceneError, match="no visible objects"):
        scene.render(_camera())
    scene.add(sphere())
    with pytest.raises(SceneError, match="mode"):
        scene.render(_camera(), "xray")
    with pytest.raises(SceneError, match="aabb"):
        scene.add(SurfaceSource(lambda x: x.norm(dim=-1), aabb=(1, 1, 1, 0, 0, 0)))


def test_environment_light_closed_form_and_the_shipped_map():
    from renderer.envmap import EnvironmentMap
    from renderer.shading import linear_to_srgb

    scene = Scene(background="black")
    scene.add(sphere(0.5), material={"albedo": (0.5, 0.6, 0.7), "specular": 0.0})
    scene.lights.ambient = 0.0
    scene.lights.environment(EnvironmentMap.constant(0.8))
    cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=24, height=24, fov_y_deg=30.0)
    img = scene.render(cam)
    # A constant map of radiance L gives irradiance πL on every normal: colour = albedo · L.
    expect = linear_to_srgb(torch.tensor([0.5, 0.6, 0.7]) * 0.8).numpy()
    assert np.abs(img.array[img.hit] - expect).max() < 2e-3
    path = Path(__file__).resolve().parents[2] / "assets" / "envmaps" / "venice_sunset_1k.hdr"
    scene.lights.environment(path, intensity=0.2)
    lit = scene.render(cam).array
    assert lit[4, 12].mean() > lit[20, 12].mean()  # the sky above is brighter than the ground

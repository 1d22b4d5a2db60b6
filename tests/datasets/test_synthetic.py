"""Synthetic textured renders: closed-form colours and coverage, dataset layout and caching."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh

from datasets.synthetic import (
    _linear_to_srgb,
    _srgb_to_linear,
    make_textured_views,
    spot_blender_dataset,
)
from renderer.cameras import Camera


def _quad(half: float = 1.0) -> trimesh.Trimesh:
    q = trimesh.Trimesh([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]],
                        [[0, 1, 2], [0, 2, 3]], process=False)
    q.visual = trimesh.visual.TextureVisuals(uv=[[0, 0], [1, 0], [1, 1], [0, 1]])
    return q


def test_colour_closed_form_and_view_independence():
    tex = np.full((4, 4, 3), [0.8, 0.4, 0.2])
    cam = Camera.look_at((0, 0, 3), (0, 0, 0), width=16, height=16, fov_y_deg=30.0)
    # Light along the normal: shade 1, the texture colour comes back.
    img = make_textured_views(_quad(), tex, [cam], light_dir=(0, 0, 1))[0]
    centre = img[6:10, 6:10]
    assert np.allclose(centre[..., :3], tex[0, 0], atol=2e-6)
    assert (centre[..., 3] == 1).all()
    # Light grazing (n·l = 0): only the ambient term, in linear space.
    img2 = make_textured_views(_quad(), tex, [cam], light_dir=(1, 0, 0), ambient=0.35)[0]
    expect = _linear_to_srgb(_srgb_to_linear(tex[0, 0]) * 0.35)
    assert np.allclose(img2[8, 8, :3], expect, atol=2e-6)
    # Seen from another angle (same side), the colour is the same: no view dependence.
    cam_b = Camera.look_at((1.5, 0.7, 2.5), (0, 0, 0), width=16, height=16, fov_y_deg=30.0)
    img3 = make_textured_views(_quad(), tex, [cam_b], light_dir=(0, 0, 1))[0]
    assert np.allclose(img3[img3[..., 3] == 1][:, :3], tex[0, 0], atol=2e-6)


def test_alpha_coverage_matches_projected_area():
    cam = Camera.look_at((0, 0, 3), (0, 0, 0), width=64, height=64, fov_y_deg=40.0)
    img = make_textured_views(_quad(0.5), np.full((2, 2, 3), 0.5), [cam], supersample=4)[0]
    side_px = 2 * 0.5 / 3 * cam.fx  # pinhole projection of a 1×1 square at distance 3
    assert img[..., 3].sum() == pytest.approx(side_px**2, rel=0.02)
    assert set(np.unique(img[..., 3])) > {0.0, 1.0}  # anti-aliased edges


def test_texture_lookup_orientation():
    # Left half red, right half blue in the image (u < 0.5 red); row 0 is v = 1.
    tex = np.zeros((8, 8, 3))
    tex[:, :4] = [1, 0, 0]
    tex[:, 4:] = [0, 0, 1]
    cam = Camera.look_at((0, 0, 3), (0, 0, 0), width=32, height=32, fov_y_deg=40.0)
    img = make_textured_views(_quad(), tex, [cam], light_dir=(0, 0, 1), supersample=1)[0]
    assert img[16, 10, 0] > 0.9 and img[16, 10, 2] < 0.1  # left of centre (−x): red
    assert img[16, 22, 2] > 0.9 and img[16, 22, 0] < 0.1  # right of centre: blue


def test_spot_dataset_layout_and_cache(tmp_path):
    root = spot_blender_dataset(tmp_path / "spot", n_train=3, n_test=2, size=24)
    meta = json.loads((root / "transforms_train.json").read_text())
    assert meta["camera_angle_x"] == pytest.approx(0.6911)
    assert len(meta["frames"]) == 3 and (root / "train" / "r_2.png").is_file()
    c2w = np.array(meta["frames"][0]["transform_matrix"])
    assert np.allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-5)
    assert math.isclose(np.linalg.norm(c2w[:3, 3]), 3.2, rel_tol=1e-5)
    import imageio.v2 as imageio

    img = imageio.imread(root / "train" / "r_0.png")
    assert img.shape == (24, 24, 4) and 0 < (img[..., 3] > 0).mean() < 0.9
    mtime = (root / "train" / "r_0.png").stat().st_mtime_ns
    spot_blender_dataset(tmp_path / "spot", n_train=3, n_test=2, size=24)  # cached
    assert (root / "train" / "r_0.png").stat().st_mtime_ns == mtime


def test_written_dataset_loads_with_consistent_cameras(tmp_path):
    """Rays from the Blender loader hit spot exactly where the rendered alpha says they do."""
    from datasets.meshes import load_mesh, normalize_mesh
    from datasets.multiview import load_blender
    from datasets.sdf_samples import MeshDistance
    from tests.conftest import SPOT

    root = spot_blender_dataset(tmp_path / "spot", n_train=2, n_test=1, size=48)
    ds = load_blender(root, split="train")
    assert len(ds) == 2 and ds.alpha is not None
    md = MeshDistance(normalize_mesh(load_mesh(SPOT))[0])
    for i in range(len(ds)):
        rays_o, rays_d, _ = ds.rays(i)
        _, hit, _ = md.cast_rays(rays_o, rays_d)
        covered = ds.alpha[i].reshape(-1) > 0.5
        iou = (hit & covered).sum() / (hit | covered).sum()
        assert iou > 0.95, iou

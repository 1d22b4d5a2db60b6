"""Multi-view datasets: tiny synthetic scenes written on the spot, plus the shared real data."""

import json
import math
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from datasets.errors import DataError, DataWarning
from datasets.multiview import (
    MultiViewDataset,
    decompose_projection,
    distort,
    load_blender,
    load_multiview,
    load_neus_dtu,
    load_ngp_transforms,
    load_tiny_nerf,
    opencv_to_opengl,
    pixel_directions,
    undistort,
)
from renderer.cameras import Camera
from tests.conftest import shared_path


def _pose(eye, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    return Camera.look_at(eye, target, width=4, height=4).c2w.double().numpy()


POSES = [_pose((0.0, 0.5, 4.0)), _pose((3.0, 1.0, 2.0)), _pose((-2.0, -1.0, 3.0))]


def _rgba(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 4), dtype=np.uint8)


def _write_blender(root: Path, images: list[np.ndarray], angle: float = 0.7) -> Path:
    (root / "train").mkdir(parents=True, exist_ok=True)
    frames = []
    for k, img in enumerate(images):
        iio.imwrite(root / "train" / f"r_{k}.png", img)
        frames.append({"file_path": f"./train/r_{k}", "transform_matrix": POSES[k].tolist()})
    path = root / "transforms_train.json"
    path.write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return path


def _write_ngp(root: Path, meta: dict, frames: list[dict], sizes: list[tuple[int, int]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for k, (frame, (h, w)) in enumerate(zip(frames, sizes)):
        frame.setdefault("transform_matrix", POSES[k].tolist())
        frame.setdefault("file_path", f"images/{k:04d}.png")
        if h:
            (root / "images").mkdir(exist_ok=True)
            iio.imwrite(root / frame["file_path"], _rgba(h, w, k)[..., :3])
    path = root / "transforms.json"
    path.write_text(json.dumps({**meta, "frames": frames}))
    return path


# --- Blender ------------------------------------------------------------------------------------


def test_blender_intrinsics_from_camera_angle_x(tmp_path):
    _write_blender(tmp_path, [_rgba(6, 8, 0), _rgba(6, 8, 1)], angle=0.7)
    ds = load_blender(tmp_path)
    f = 4.0 / math.tan(0.35)
    assert (len(ds), ds.width, ds.height, ds.split) == (2, 8, 6, "train")
    assert torch.allclose(ds.fx, torch.full((2,), f)) and torch.allclose(ds.fy, ds.fx)
    assert ds.cx.tolist() == [4.0, 4.0] and ds.cy.tolist() == [3.0, 3.0]
    assert torch.allclose(ds.c2w, torch.tensor(np.stack(POSES[:2]), dtype=torch.float32))
    assert ds.names == ["r_0.png", "r_1.png"] and ds.aabb.tolist() == [-1.5] * 3 + [1.5] * 3
    cam = ds.cameras()[1]
    assert isinstance(cam, Camera) and cam.fx == pytest.approx(f, rel=1e-6)


def test_blender_composites_over_background_and_keeps_alpha(tmp_path):
    img = np.zeros((2, 2, 4), np.uint8)
    img[..., 0] = 255  # pure red ...
    img[..., 3] = [[0, 51], [153, 255]]  # ... at alpha 0, 0.2, 0.6, 1
    _write_blender(tmp_path, [img])
    ds = load_blender(tmp_path / "transforms_train.json", background=(0.0, 0.0, 1.0))
    a = torch.tensor([[0.0, 0.2], [0.6, 1.0]])
    assert torch.allclose(ds.alpha[0], a)
    expected = torch.stack([a, torch.zeros_like(a), 1 - a], dim=-1)
    assert torch.allclose(ds.images[0], expected, atol=1e-6)
    assert ds.background == (0.0, 0.0, 1.0)


def test_blender_downscale_averages_premultiplied_colour(tmp_path):
    img = _rgba(5, 7, 3)  # odd sizes: the last row and column are dropped at downscale 2
    _write_blender(tmp_path, [img])
    full = load_blender(tmp_path, background=(0.2, 0.4, 0.6))
    half = load_blender(tmp_path, background=(0.2, 0.4, 0.6), downscale=2)
    assert (half.width, half.height) == (3, 2)
    # Compositing is linear in premultiplied colour, so composite-then-average is the oracle.
    oracle = full.images[0, :4, :6].reshape(2, 2, 3, 2, 3).mean(dim=(1, 3))
    assert torch.allclose(half.images[0], oracle, atol=1e-5)
    assert torch.allclose(half.alpha[0], full.alpha[0, :4, :6].reshape(2, 2, 3, 2).mean((1, 3)))
    assert torch.allclose(half.fx, full.fx / 2) and torch.allclose(half.cx, full.cx / 2)


def test_blender_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="transforms_train.json: file not found"):
        load_blender(tmp_path)
    bad = tmp_path / "transforms_train.json"
    bad.write_text('{"camera_angle_x": 0.7, "frames": [')
    with pytest.raises(DataError, match=r"transforms_train.json: invalid JSON.*line 1"):
        load_blender(tmp_path)
    bad.write_text('{"frames": []}')
    with pytest.raises(DataError, match="missing key 'camera_angle_x'"):
        load_blender(tmp_path)
    bad.write_text('{"camera_angle_x": 0.7, "frames": []}')
    with pytest.raises(DataError, match="no usable frames"):
        load_blender(tmp_path)
    bad.write_text('{"camera_angle_x": 0.7, "frames": [{"file_path": "./train/x"}]}')
    with pytest.raises(DataError, match="frame 0 is missing key 'transform_matrix'"):
        load_blender(tmp_path)


def test_blender_missing_mismatched_and_unreadable_images(tmp_path):
    _write_blender(tmp_path, [_rgba(6, 8, 0), _rgba(6, 7, 1)])
    with pytest.raises(DataError, match=r"r_1.png: image is 7×6 but the first frame"):
        load_blender(tmp_path)
    (tmp_path / "train" / "r_1.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"r_1.png: could not read image"):
        load_blender(tmp_path)
    (tmp_path / "train" / "r_1.png").unlink()
    with pytest.raises(DataError, match=r"r_1: image file not found"):
        load_blender(tmp_path)


def test_blender_rejects_non_rigid_pose(tmp_path):
    path = _write_blender(tmp_path, [_rgba(4, 4, 0)])
    meta = json.loads(path.read_text())
    meta["frames"][0]["transform_matrix"][0][0] *= 2.0
    path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match="frame 0's transform_matrix is not a rigid transform"):
        load_blender(tmp_path)


# --- instant-ngp --------------------------------------------------------------------------------


def test_ngp_per_frame_intrinsics_override_global(tmp_path):
    meta = {"fl_x": 10.0, "fl_y": 11.0, "cx": 3.0, "cy": 2.5, "w": 8, "h": 6, "aabb_scale": 2}
    frames = [{}, {"fl_x": 20.0, "cx": 4.5}, {"fl_y": 7.0}]
    ds = load_ngp_transforms(_write_ngp(tmp_path, meta, frames, [(6, 8)] * 3))
    assert ds.fx.tolist() == [10.0, 20.0, 10.0]
    assert ds.fy.tolist() == [11.0, 11.0, 7.0]
    assert ds.cx.tolist() == [3.0, 4.5, 3.0] and ds.cy.tolist() == [2.5, 2.5, 2.5]
    assert ds.distortion is None and ds.alpha is None
    # instant-ngp's [0.5 ± a/2] cube with scale 0.33, offset 0.5 mapped back: ±a/(2·0.33).
    assert torch.allclose(ds.aabb, torch.tensor([-1.0, -1, -1, 1, 1, 1]) / 0.33)
    assert 0 < ds.near < ds.far


def test_ngp_camera_angle_fallback_and_default_centre(tmp_path):
    frames = [{"camera_angle_x": 1.0}, {"camera_angle_x": 1.0, "camera_angle_y": 0.5}]
    ds = load_ngp_transforms(_write_ngp(tmp_path, {}, frames, [(6, 8)] * 2))
    fx = 4.0 / math.tan(0.5)
    assert ds.fx.tolist() == pytest.approx([fx, fx])
    assert ds.fy.tolist() == pytest.approx([fx, 3.0 / math.tan(0.25)])
    assert ds.cx.tolist() == [4.0, 4.0] and ds.cy.tolist() == [3.0, 3.0]


def test_ngp_missing_images_are_skipped_with_a_warning(tmp_path):
    meta = {"fl_x": 10.0}
    path = _write_ngp(tmp_path, meta, [{}, {}, {}], [(6, 8), (0, 0), (6, 8)])
    with pytest.warns(DataWarning, match=r"skipped 1 of 3 frames .*images/0001.png"):
        ds = load_ngp_transforms(path)
    assert ds.names == ["0000.png", "0002.png"]
    assert torch.allclose(ds.c2w[1], torch.tensor(POSES[2], dtype=torch.float32))
    path = _write_ngp(tmp_path / "none", meta, [{}, {}], [(0, 0), (0, 0)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match=r"transforms.json: no usable frames"):
            load_ngp_transforms(path)


def test_ngp_declared_size_and_focal_errors(tmp_path):
    path = _write_ngp(tmp_path, {"fl_x": 10.0, "w": 9, "h": 6}, [{}], [(6, 8)])
    with pytest.raises(DataError, match=r"0000.png: image is 8×6 but transforms.json declares w=9"):
        load_ngp_transforms(path)
    path = _write_ngp(tmp_path / "b", {}, [{}], [(6, 8)])
    with pytest.raises(DataError, match="no focal length"):
        load_ngp_transforms(path)
    path = _write_ngp(tmp_path / "c", {"fl_x": 10.0}, [{}, {}], [(6, 8), (6, 9)])
    with pytest.raises(DataError, match=r"0001.png: image is 9×6"):
        load_ngp_transforms(path)


def test_undistort_inverts_distort():
    g = torch.Generator().manual_seed(0)
    xy = (torch.rand(500, 2, generator=g, dtype=torch.float64) - 0.5) * 1.2
    for k in ([-0.25, 0.08, 0.001, -0.002], [0.1, -0.02, -0.003, 0.004], [0.0, 0.0, 0.0, 0.0]):
        coeffs = torch.tensor(k, dtype=torch.float64)
        assert torch.allclose(undistort(distort(xy, coeffs), coeffs), xy, atol=1e-9)
    # Negative control: the distortion is not the identity, so the test above has teeth.
    assert not torch.allclose(distort(xy, torch.tensor([-0.25, 0.08, 0.0, 0.0])), xy, atol=1e-3)
    # Works on two batch ranks.
    assert undistort(xy.reshape(10, 50, 2), coeffs).shape == (10, 50, 2)


def test_ngp_distortion_is_stored_and_rays_undistort(tmp_path):
    meta = {"fl_x": 9.0, "fl_y": 8.0, "cx": 4.2, "cy": 2.9, "k1": -0.2, "k2": 0.05, "p1": 0.01}
    ds = load_ngp_transforms(_write_ngp(tmp_path, meta, [{}, {"p2": -0.02}], [(6, 8)] * 2))
    expected = torch.tensor([[-0.2, 0.05, 0.01, 0.0], [-0.2, 0.05, 0.01, -0.02]])
    assert torch.allclose(ds.distortion, expected)
    rays_o, rays_d, rgb = ds.rays(1)
    assert rays_d.shape == (48, 3) and torch.allclose(rays_d.norm(dim=1), torch.ones(48))
    # Forward oracle: rotate back to camera space, take normalised coordinates, distort, and
    # land on the pixel centres.
    d_cam = rays_d.double() @ ds.c2w[1, :3, :3].double()
    xy = torch.stack([d_cam[:, 0] / -d_cam[:, 2], -d_cam[:, 1] / -d_cam[:, 2]], dim=-1)
    uv = distort(xy, ds.distortion[1].double()) * torch.tensor([9.0, 8.0]) + torch.tensor(
        [4.2, 2.9]
    )
    jj, ii = torch.meshgrid(torch.arange(8.0), torch.arange(6.0), indexing="xy")
    centres = torch.stack([jj, ii], dim=-1).reshape(-1, 2).double() + 0.5
    assert torch.allclose(uv, centres, atol=1e-4)


def test_pixel_directions_without_distortion_match_camera_rays():
    cam = Camera.look_at((1.0, 2.0, 3.0), (0.0, 0.0, 0.0), width=5, height=4)
    _, rays_d = cam.rays()
    jj, ii = torch.meshgrid(torch.arange(5.0), torch.arange(4.0), indexing="xy")
    pixels = torch.stack([jj, ii], dim=-1).reshape(-1, 2) + 0.5
    d_cam = pixel_directions(pixels, cam.fx, cam.fy, cam.cx, cam.cy)
    assert torch.allclose(d_cam @ cam.c2w[:3, :3].T, rays_d, atol=1e-6)


# --- projection matrices ------------------------------------------------------------------------


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decompose_projection_round_trip(seed):
    rng = np.random.default_rng(seed)
    k = np.array([[800.0, 0.0, 310.0], [0.0, 780.0, 250.0], [0.0, 0.0, 1.0]])
    rot = _random_rotation(rng)  # world → camera (OpenCV)
    centre = rng.normal(size=3) * 3
    t = -rot @ centre
    scale = -2.5 if seed == 1 else 0.01  # P is defined up to any non-zero scale, sign included
    p = scale * k @ np.hstack([rot, t[:, None]])
    k2, c2w_cv = decompose_projection(p)
    assert np.allclose(k2, k, rtol=1e-9, atol=1e-7)
    assert np.allclose(c2w_cv[:3, :3], rot.T, atol=1e-9)
    assert np.allclose(c2w_cv[:3, 3], centre, atol=1e-9)
    # The project's Camera (OpenGL pose, half-integer pixel centres) sees what P sees.
    cam = Camera(
        640,
        480,
        k2[0, 0],
        k2[1, 1],
        k2[0, 2] + 0.5,
        k2[1, 2] + 0.5,
        torch.from_numpy(opencv_to_opengl(c2w_cv)),
    )
    x = centre + rot.T @ np.array([0.3, -0.2, 5.0])  # a point in front of the camera
    ph = p @ np.append(x, 1.0)
    px, depth = cam.project(torch.tensor(x, dtype=torch.float32)[None])
    assert np.allclose(px[0].numpy(), ph[:2] / ph[2] + 0.5, atol=1e-3)
    assert depth.item() == pytest.approx(5.0, rel=1e-5)


def _write_neus(root: Path, views: list[int], h: int = 12, w: int = 16) -> dict:
    """A NeuS scene whose sphere frame is world / 2 shifted by (1, 0, 0); returns the truth."""
    (root / "image").mkdir(parents=True)
    (root / "mask").mkdir()
    k = np.array([[20.0, 0, 7.5, 0], [0, 21.0, 5.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    scale_mat = np.diag([2.0, 2.0, 2.0, 1.0])
    scale_mat[:3, 3] = [1.0, 0.0, 0.0]
    arrays, truth = {}, {}
    for n, view in enumerate(views):
        c2w_gl = POSES[n].copy()  # in the sphere frame
        c2w_world = scale_mat @ c2w_gl
        c2w_world[:3, :3] = c2w_gl[:3, :3]
        w2c_cv = np.linalg.inv(opencv_to_opengl(c2w_world))
        arrays[f"world_mat_{view}"] = k @ w2c_cv
        arrays[f"scale_mat_{view}"] = scale_mat
        truth[view] = c2w_gl
        iio.imwrite(root / "image" / f"{view:06d}.png", _rgba(h, w, view)[..., :3])
        mask = np.zeros((h, w), np.uint8)
        mask[:, : w // 2] = 200
        mask[:, w // 2 :] = 100  # below the threshold
        iio.imwrite(root / "mask" / f"{view:03d}.png", np.repeat(mask[..., None], 3, axis=2))
    np.savez(root / "cameras_sphere.npz", **arrays)
    return truth


def test_neus_dtu_recovers_poses_intrinsics_and_masks(tmp_path):
    truth = _write_neus(tmp_path, [0, 3])
    ds = load_neus_dtu(tmp_path)
    assert ds.names == ["000000.png", "000003.png"]
    assert torch.allclose(ds.c2w, torch.tensor(np.stack(list(truth.values()))).float(), atol=1e-5)
    assert ds.fx.tolist() == pytest.approx([20.0, 20.0])
    assert ds.fy.tolist() == pytest.approx([21.0, 21.0])
    assert ds.cx.tolist() == pytest.approx([8.0, 8.0]) and ds.cy.tolist() == pytest.approx(
        [6.0] * 2
    )
    assert ds.masks[:, :, :8].eq(1).all() and ds.masks[:, :, 8:].eq(0).all()
    assert ds.aabb.tolist() == [-1.0] * 3 + [1.0] * 3
    half = load_neus_dtu(tmp_path, downscale=2)
    assert (half.width, half.height) == (8, 6) and half.fx.tolist() == pytest.approx([10.0] * 2)
    assert torch.allclose(half.images[0], ds.images[0].reshape(6, 2, 8, 2, 3).mean((1, 3)))


def test_neus_dtu_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_neus_dtu(tmp_path / "nope")
    _write_neus(tmp_path, [0, 1])
    (tmp_path / "mask" / "001.png").unlink()
    with pytest.raises(DataError, match=r"mask: no mask for image 000001.png"):
        load_neus_dtu(tmp_path)
    (tmp_path / "mask" / "001.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"001.png: could not read image"):
        load_neus_dtu(tmp_path)
    iio.imwrite(tmp_path / "mask" / "001.png", np.zeros((12, 16), np.uint8))
    assert len(load_neus_dtu(tmp_path)) == 2
    iio.imwrite(tmp_path / "image" / "000005.png", _rgba(12, 16, 5)[..., :3])
    with pytest.raises(DataError, match=r"cameras_sphere.npz: has no world_mat_5"):
        load_neus_dtu(tmp_path)


# --- rays and the dataset object ----------------------------------------------------------------


def test_rays_are_unit_and_pass_through_pixel_centres(tmp_path):
    _write_blender(tmp_path, [_rgba(5, 7, 0), _rgba(5, 7, 1), _rgba(5, 7, 2)])
    ds = load_blender(tmp_path)
    jj, ii = torch.meshgrid(torch.arange(7.0), torch.arange(5.0), indexing="xy")
    centres = torch.stack([jj, ii], dim=-1).reshape(-1, 2) + 0.5
    for i, cam in enumerate(ds.cameras()):
        rays_o, rays_d, rgb = ds.rays(i)
        assert torch.allclose(rays_d.norm(dim=1), torch.ones(35), atol=1e-6)
        assert torch.equal(rgb, ds.images[i].reshape(-1, 3))
        px, depth = cam.project(rays_o + 2.5 * rays_d)
        assert torch.allclose(px, centres, atol=1e-4) and torch.all(depth > 0)
    rays_o, rays_d, rgb = ds.training_rays()
    assert rays_o.shape == rays_d.shape == rgb.shape == (105, 3)
    sub = ds.subset([2, 0])
    assert sub.names == ["r_2.png", "r_0.png"] and torch.equal(sub.images[0], ds.images[2])
    assert torch.equal(sub.alpha[1], ds.alpha[0]) and len(sub) == 2


def test_dataset_rejects_inconsistent_fields():
    # jaxtyping's checker (under pytest) or __post_init__ (without one) catches shape mismatches.
    with pytest.raises((TypeError, ValueError), match="c2w|N"):
        MultiViewDataset(
            torch.zeros(2, 2, 2, 3),
            torch.eye(4).repeat(3, 1, 1),
            *torch.ones(4, 2),
            names=["a", "b"],
        )
    with pytest.raises(ValueError, match="names"):
        MultiViewDataset(
            torch.zeros(2, 2, 2, 3), torch.eye(4).repeat(2, 1, 1), *torch.ones(4, 2), names=["a"]
        )
    with pytest.raises(ValueError, match="near < far"):
        MultiViewDataset(
            torch.zeros(1, 2, 2, 3),
            torch.eye(4)[None],
            *torch.ones(4, 1),
            names=["a"],
            near=3.0,
            far=1.0,
        )


# --- tiny NeRF and dispatch ---------------------------------------------------------------------


def _write_tiny(path: Path, n: int = 8) -> None:
    rng = np.random.default_rng(0)
    poses = np.stack([POSES[k % 3] for k in range(n)]).astype(np.float32)
    images = rng.random((n, 4, 6, 3), dtype=np.float32)
    np.savez(path, images=images, poses=poses, focal=np.float64(5.0))


def test_tiny_nerf_splits_and_intrinsics(tmp_path):
    path = tmp_path / "tiny.npz"
    _write_tiny(path)
    train = load_tiny_nerf(path, holdout=(5, 8))
    test = load_tiny_nerf(path, "test", holdout=(5, 8))
    assert (len(train), len(test), len(load_tiny_nerf(path, "all"))) == (5, 3, 8)
    assert train.fx.tolist() == [5.0] * 5 and train.cx[0] == 3.0 and train.cy[0] == 2.0
    assert test.names[0] == "tiny.npz[5]" and train.background == (0.0, 0.0, 0.0)
    with np.load(path) as data:
        assert torch.equal(test.images[0], torch.from_numpy(data["images"][5]))


def test_tiny_nerf_errors(tmp_path):
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, images=np.array([{"a": 1}], dtype=object), poses=np.eye(4)[None], focal=1.0)
    with pytest.raises(DataError, match=r"pickled.npz: contains pickled Python objects"):
        load_tiny_nerf(pickled)
    partial = tmp_path / "partial.npz"
    np.savez(partial, images=np.zeros((1, 2, 2, 3), np.float32))
    with pytest.raises(DataError, match=r"partial.npz: missing arrays \['poses', 'focal'\]"):
        load_tiny_nerf(partial)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"nope")
    with pytest.raises(DataError, match=r"garbage.npz: not a readable .npz"):
        load_tiny_nerf(garbage)
    path = tmp_path / "tiny.npz"
    _write_tiny(path, n=4)
    with pytest.raises(DataError, match="no frames in split 'test'"):
        load_tiny_nerf(path, "test")


def test_load_multiview_dispatches_on_layout(tmp_path):
    _write_blender(tmp_path / "blender", [_rgba(4, 4, 0)])
    assert load_multiview(tmp_path / "blender").names == ["r_0.png"]
    assert load_multiview(tmp_path / "blender", background=(0, 0, 0)).background == (0, 0, 0)
    assert load_multiview(tmp_path / "blender" / "transforms_train.json").split == "train"
    _write_ngp(tmp_path / "ngp", {"fl_x": 5.0}, [{}], [(4, 4)])
    assert load_multiview(tmp_path / "ngp").names == ["0000.png"]
    _write_tiny(tmp_path / "tiny.npz")
    assert len(load_multiview(tmp_path / "tiny.npz", split="all")) == 8
    _write_neus(tmp_path / "neus", [0])
    assert load_multiview(tmp_path / "neus").masks is not None
    with pytest.raises(DataError, match="no multi-view dataset found"):
        load_multiview(tmp_path / "ngp" / "images")
    with pytest.raises(DataError, match="file or folder not found"):
        load_multiview(tmp_path / "missing")


# --- real data (../shared/data) -----------------------------------------------------------------


def test_lego_400_train_split():
    ds = load_blender(shared_path("nerf/lego_400"), "train")
    assert (len(ds), ds.width, ds.height) == (100, 400, 400)
    radii = ds.c2w[:, :3, 3].norm(dim=1)
    assert torch.allclose(radii, torch.full_like(radii, 4.03), atol=0.01)
    assert 0.05 < float(ds.alpha.mean()) < 0.6  # an object on a transparent background
    assert ds.images.min() >= 0 and ds.images.max() <= 1


def test_tiny_nerf_real_file():
    path = shared_path("nerf/tiny_nerf/tiny_nerf_data_reconstructed.npz")
    assert len(load_tiny_nerf(path, "all")) == 106
    train, test = load_tiny_nerf(path), load_tiny_nerf(path, "test")
    assert (len(train), len(test), train.width) == (100, 6, 100)
    assert train.fx[0].item() == pytest.approx(138.8889, abs=1e-3)


def test_dtu_scan24_cameras_surround_the_unit_sphere():
    ds = load_neus_dtu(shared_path("nerf/dtu_scan24_subset"), downscale=8)
    assert (len(ds), ds.width, ds.height) == (10, 200, 150)
    centres = ds.c2w[:, :3, 3]
    radii = centres.norm(dim=1)
    assert torch.all((radii > 1.5) & (radii < 5.0))
    forward = -ds.c2w[:, :3, 2]  # OpenGL: the camera looks down −z
    miss = torch.linalg.cross(-centres, forward).norm(dim=1)  # principal ray ↔ origin distance
    assert torch.all(miss < 0.5) and torch.all((forward * -centres).sum(dim=1) > 0)
    for cam in ds.cameras():  # the origin projects inside the image
        px, depth = cam.project(torch.zeros(1, 3))
        assert 0 < px[0, 0] < 200 and 0 < px[0, 1] < 150 and depth[0] > 0
    fraction = ds.masks.mean(dim=(1, 2))
    assert torch.all((fraction > 0.05) & (fraction < 0.95))


def test_ngp_rgba_images_are_composited_and_keep_alpha(tmp_path):
    (tmp_path / "images").mkdir()
    img = np.zeros((2, 2, 4), np.uint8)
    img[..., 1] = 255  # green at alpha 0 and 1
    img[..., 3] = [[0, 255], [255, 0]]
    iio.imwrite(tmp_path / "images" / "a.png", img)
    frame = {"file_path": "images/a.png", "transform_matrix": POSES[0].tolist()}
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 2.0, "frames": [frame]}))
    ds = load_ngp_transforms(tmp_path, background=(1.0, 0.0, 0.0))
    assert ds.alpha[0].tolist() == [[0.0, 1.0], [1.0, 0.0]] and ds.background == (1.0, 0.0, 0.0)
    assert ds.images[0, 0].tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]

"""Synthetic multi-view datasets rendered by our own ray caster from the shipped spot mesh.

``make_textured_views`` ray-casts a textured mesh (open3d's BVH, exact hits) from a list of
cameras and shades every hit with its texture colour under fixed, view-independent lighting
(ambient + Lambert from a key light, in linear RGB), so a radiance field can reproduce it
exactly. Pixels are supersampled (``ss × ss`` rays per pixel) and stored as straight-alpha RGBA.
``write_blender_dataset`` writes the NeRF-synthetic ("Blender") layout: ``transforms_{split}.json``
with ``camera_angle_x`` and per-frame ``transform_matrix`` (OpenGL ``c2w``), and
``{split}/r_{i}.png``. ``spot_blender_dataset`` builds (once, cached) the small spot dataset used by
the ``spot-nerf`` and ``spot-neus`` presets, so they run from a fresh clone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import open3d as o3d
import torch
import trimesh

from datasets.errors import DataError
from datasets.meshes import normalization_for
from renderer.cameras import Camera
from renderer.shading import linear_to_srgb, srgb_to_linear, to_uint8

__all__ = [
    "load_textured_mesh", "make_textured_views", "sphere_cameras", "spot_blender_dataset",
    "write_blender_dataset",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "meshes"


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return srgb_to_linear(torch.from_numpy(np.asarray(c, np.float64))).numpy()


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return linear_to_srgb(torch.from_numpy(np.asarray(c, np.float64))).numpy()


def load_textured_mesh(mesh_path: Path, texture_path: Path) -> tuple[trimesh.Trimesh, np.ndarray]:
    """A mesh with per-vertex UVs (vertices split along seams) and its sRGB texture in [0, 1]."""
    try:
        mesh = trimesh.load(mesh_path, force="mesh", process=False)
    except Exception as exc:
        raise DataError(mesh_path, f"could not load the mesh ({exc})") from None
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise DataError(mesh_path, "mesh has no per-vertex texture coordinates")
    import imageio.v2 as imageio

    try:
        tex = np.asarray(imageio.imread(texture_path), dtype=np.float32)[..., :3] / 255.0
    except Exception as exc:
        raise DataError(texture_path, f"could not read the texture ({exc})") from None
    return mesh, tex


def sphere_cameras(n: int, size: int, radius: float = 4.0, camera_angle_x: float = 0.6911,
                   min_elevation_deg: float = -20.0, seed: int = 0) -> list[Camera]:
    """``n`` cameras on a sphere looking at the origin, elevations in ``[min, 80]`` degrees,
    azimuths and elevations drawn uniformly over the sphere's area (seeded)."""
    rng = np.random.default_rng(seed)
    lo, hi = math.sin(math.radians(min_elevation_deg)), math.sin(math.radians(80.0))
    cams = []
    for _ in range(n):
        el = math.degrees(math.asin(rng.uniform(lo, hi)))
        az = rng.uniform(0.0, 360.0)
        cams.append(Camera.orbit(az, el, radius, width=size, height=size,
                                 fov_y_deg=math.degrees(camera_angle_x)))
    return cams


def make_textured_views(
    mesh: trimesh.Trimesh,
    texture: np.ndarray,
    cameras: list[Camera],
    *,
    supersample: int = 2,
    light_dir: tuple[float, float, float] = (0.4, 0.8, 0.45),
    ambient: float = 0.35,
) -> np.ndarray:
    """Render RGBA images ``[N, H, W, 4]`` (float32, straight alpha) of a textured mesh.

    ``mesh`` carries per-vertex ``visual.uv``; ``texture`` is ``[h, w, 3]`` sRGB in [0, 1]
    (row 0 at v = 1). Colour = sRGB(albedo_lin · (ambient + (1 − ambient)·max(0, n·l))) with
    ``n`` the barycentrically interpolated vertex normal turned towards the viewer, so it does
    not depend on the view direction.

    Example:
        >>> quad = trimesh.Trimesh([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]],
        ...                        [[0, 1, 2], [0, 2, 3]], process=False)
        >>> quad.visual = trimesh.visual.TextureVisuals(uv=[[0, 0], [1, 0], [1, 1], [0, 1]])
        >>> cam = Camera.look_at((0, 0, 3), (0, 0, 0), width=8, height=8)
        >>> make_textured_views(quad, np.full((2, 2, 3), 0.5), [cam]).shape
        (1, 8, 8, 4)
    """
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise ValueError("mesh has no per-vertex texture coordinates (visual.uv)")
    tex = np.asarray(texture, np.float64)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    faces = np.asarray(mesh.faces)
    uv = np.asarray(uv, np.float64)
    vnormals = _welded_vertex_normals(mesh)
    tex_lin = _srgb_to_linear(tex)
    th, tw = tex.shape[:2]
    light = np.asarray(light_dir, np.float64)
    light /= np.linalg.norm(light)
    out = []
    for cam in cameras:
        ss = supersample
        big = cam.scaled(ss)
        rays_o, rays_d = big.rays()
        rays = np.concatenate([rays_o.numpy(), rays_d.numpy()], axis=1).astype(np.float32)
        hit = scene.cast_rays(o3d.core.Tensor(rays))
        t = hit["t_hit"].numpy()
        mask = np.isfinite(t)
        rgb = np.zeros((len(t), 3), np.float64)
        if mask.any():
            prim = hit["primitive_ids"].numpy()[mask].astype(np.int64)
            bary = hit["primitive_uvs"].numpy()[mask].astype(np.float64)
            w = np.stack([1.0 - bary[:, 0] - bary[:, 1], bary[:, 0], bary[:, 1]], axis=1)
            tri = faces[prim]
            tuv = (uv[tri] * w[:, :, None]).sum(1)
            n = (vnormals[tri] * w[:, :, None]).sum(1)
            n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
            d = rays[mask, 3:].astype(np.float64)
            n = np.where(((n * d).sum(1) > 0)[:, None], -n, n)  # two-sided, face the viewer
            x = np.clip(tuv[:, 0], 0.0, 1.0) * (tw - 1)
            y = (1.0 - np.clip(tuv[:, 1], 0.0, 1.0)) * (th - 1)
            albedo = _bilinear(tex_lin, x, y)
            shade = ambient + (1.0 - ambient) * np.clip(n @ light, 0.0, None)
            rgb[mask] = albedo * shade[:, None]
        h, w_ = cam.height, cam.width
        rgb = rgb.reshape(h, ss, w_, ss, 3)
        alpha = mask.astype(np.float64).reshape(h, ss, w_, ss).mean(axis=(1, 3))
        col = rgb.sum(axis=(1, 3)) / np.maximum(mask.reshape(h, ss, w_, ss).sum(axis=(1, 3)),
                                                1)[..., None]
        out.append(np.concatenate([_linear_to_srgb(col), alpha[..., None]], -1))
    return np.stack(out).astype(np.float32)


def _welded_vertex_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """Area-weighted vertex normals shared by all copies of a position (meshes with UVs split
    their vertices along texture seams; per-copy normals would show the seams in the shading)."""
    _, key = np.unique(np.round(np.asarray(mesh.vertices), 6), axis=0, return_inverse=True)
    key = key.reshape(-1)
    weighted = mesh.face_normals * mesh.area_faces[:, None]
    acc = np.zeros((key.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, key[mesh.faces[:, k]], weighted)
    n = acc[key]
    return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    x0 = np.clip(np.floor(x).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, h - 1)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bot * fy


def write_blender_dataset(root: str | Path, splits: dict[str, tuple[list[Camera], np.ndarray]],
                          camera_angle_x: float) -> Path:
    """Write ``transforms_{split}.json`` and ``{split}/r_{i}.png`` (RGBA) under ``root``."""
    import imageio.v2 as imageio

    root = Path(root)
    for split, (cams, images) in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i, (cam, img) in enumerate(zip(cams, images)):
            imageio.imwrite(root / split / f"r_{i}.png", to_uint8(torch.from_numpy(img)).numpy())
            frames.append({"file_path": f"./{split}/r_{i}",
                           "transform_matrix": cam.c2w.tolist()})
        data = {"camera_angle_x": camera_angle_x, "frames": frames}
        (root / f"transforms_{split}.json").write_text(json.dumps(data, indent=1))
    return root


def spot_blender_dataset(root: str | Path, *, n_train: int = 100, n_test: int = 10,
                         size: int = 100, seed: int = 0) -> Path:
    """The spot multi-view dataset (Blender layout) under ``root``, rendered on first use.

    Deterministic for given arguments; a ``dataset.json`` stamp records them, and a folder
    with a different stamp is rendered again.
    """
    root = Path(root)
    stamp = {"n_train": n_train, "n_test": n_test, "size": size, "seed": seed, "version": 1}
    stamp_file = root / "dataset.json"
    if stamp_file.is_file():
        try:
            if json.loads(stamp_file.read_text()) == stamp:
                return root
        except json.JSONDecodeError:
            pass
    angle = 0.6911
    mesh, texture = load_textured_mesh(ASSETS / "spot.obj", ASSETS / "spot_texture.png")
    mesh.apply_transform(normalization_for(mesh).matrix())
    splits = {}
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        cams = sphere_cameras(n, size, radius=3.2, camera_angle_x=angle, seed=s)
        splits[split] = (cams, make_textured_views(mesh, texture, cams))
    splits["val"] = splits["test"]
    write_blender_dataset(root, splits, angle)
    stamp_file.write_text(json.dumps(stamp))
    return root

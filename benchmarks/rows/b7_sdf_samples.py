"""B7 — mesh → SDF samples (../shared/BENCHMARKS.md).

Meshes: icospheres of radius 0.9 with 5 and 6 subdivisions (20,480 and 81,920 faces: the
"~20k" and "~100k" sizes), whose analytic SDF ``|p| − 0.9`` gives the error. An icosphere is
convex with its vertices on the sphere, so its exact SDF differs from the analytic one by at
most the faceting error ``r (1 − h)`` (``h`` its inscribed radius over ``r``): that bound plus
float32 rounding is the correctness gate of every row.

Query points: one fixed draw of ``sample_sdf`` (¼ surface, ½ near-surface at σ = 0.01/0.001,
¼ uniform in ``[-1, 1]³``), 10⁵ points, the distribution an SDF task trains on.

Rows per mesh (metric: M points/s, higher is better):

* ``sample_sdf`` end to end (surface sampling, offsets, signed distances) vs the same pipeline
  written directly: ``trimesh.sample.sample_surface`` + numpy offsets + open3d
  ``compute_signed_distance`` on every point.
* ``MeshDistance.signed_distance`` (3 sign rays, chunked, torch in/out) vs a direct open3d
  ``RaycastingScene.compute_signed_distance`` call (1 sign ray, numpy in/out).
* ``MeshDistance.signed_distance`` vs ``trimesh.proximity.signed_distance`` (rtree + embree
  when installed). trimesh manages ~10³ points/s here, so it runs on every k-th query point
  (``TRIMESH_POINTS`` of them, the same mix of sample kinds) and its rate is that subset's; its
  sign is flipped (trimesh: positive inside).

Run standalone: ``python -m benchmarks.rows.b7_sdf_samples [--quick]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import open3d as o3d
import torch
import trimesh

from benchmarks.timing import Row, time_fn
from datasets.sdf_samples import MeshDistance, sample_sdf

__all__ = ["run"]

RADIUS = 0.9
N_POINTS = 100_000
TRIMESH_POINTS = 1_000
F32_SLACK = 1e-5  # float32 rounding of distances on a unit-sized mesh
SIGMAS = (0.01, 0.001)


def faceting_error(mesh: trimesh.Trimesh) -> float:
    """``r − min_f n_f·v_f``: bound on |sdf_mesh − (|p| − r)| for an origin-centred icosphere."""
    plane_distance = np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles[:, 0])
    return float(RADIUS - plane_distance.min())


def errors(
    points: torch.Tensor | np.ndarray, sdf: torch.Tensor | np.ndarray
) -> tuple[float, float]:
    """(max, mean) of |sdf − (|p| − r)|, in float64."""
    p = np.asarray(points, dtype=np.float64)
    err = np.abs(np.asarray(sdf, dtype=np.float64) - (np.linalg.norm(p, axis=1) - RADIUS))
    return float(err.max()), float(err.mean())


def direct_pipeline(
    mesh: trimesh.Trimesh, scene: o3d.t.geometry.RaycastingScene, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The peer of ``sample_sdf``: the same sample mix, written with trimesh + numpy + open3d."""
    rng = np.random.default_rng(seed)
    n_surface, n_near = n // 4, n // 2
    surface, _ = trimesh.sample.sample_surface(mesh, n_surface + n_near, seed=seed)
    sigma = np.repeat(SIGMAS, [n_near - n_near // 2, n_near // 2])[:, None]
    near = surface[n_surface:] + sigma * rng.standard_normal((n_near, 3))
    uniform = rng.uniform(-1.0, 1.0, (n - n_surface - n_near, 3))
    points = np.clip(np.concatenate([surface[:n_surface], near, uniform]), -1.0, 1.0)
    points = points.astype(np.float32)
    return points, scene.compute_signed_distance(o3d.core.Tensor(points)).numpy()


def rows_for_mesh(subdivisions: int, n: int, n_trimesh: int, repeats: int) -> list[Row]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=RADIUS)
    faces = len(mesh.faces)
    bound = faceting_error(mesh) + F32_SLACK
    distance = MeshDistance(mesh)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    counts = dict(n_surface=n // 4, n_near=n // 2, n_uniform=n - n // 4 - n // 2)
    rows = []

    # 1. sample_sdf end to end vs the direct pipeline.
    samples = sample_sdf(mesh, **counts, sigmas=SIGMAS, seed=0, distance=distance)
    peer_points, peer_sdf = direct_pipeline(mesh, scene, n, seed=0)
    err_ours, err_peer = errors(samples.points, samples.sdf), errors(peer_points, peer_sdf)
    t_ours = time_fn(lambda: sample_sdf(mesh, **counts, seed=0, distance=distance), repeats)
    t_peer = time_fn(lambda: direct_pipeline(mesh, scene, n, seed=0), repeats)
    rows.append(
        Row(
            benchmark=f"B7 mesh→SDF samples (sample_sdf), {n:,} pts, {faces:,} faces",
            unit="M pts/s",
            ours=n / t_ours.median_s / 1e6,
            peer=n / t_peer.median_s / 1e6,
            peer_name="trimesh sample_surface + numpy + open3d compute_signed_distance",
            valid=err_ours[0] <= bound and err_peer[0] <= bound,
            notes=(
                f"error vs |p|−{RADIUS}: ours max {err_ours[0]:.2e} mean {err_ours[1]:.2e}; "
                f"peer max {err_peer[0]:.2e}; gate ≤ {bound:.2e} (faceting + float32)"
            ),
            extra=dict(
                faces=faces,
                points=n,
                error_max_ours=err_ours[0],
                error_mean_ours=err_ours[1],
                error_max_peer=err_peer[0],
                error_mean_peer=err_peer[1],
                gate=bound,
                spread_ours=t_ours.spread,
                spread_peer=t_peer.spread,
            ),
        )
    )

    # 2. signed-distance queries on the same points: ours vs open3d directly.
    x = samples.points
    x_np = x.numpy()
    ours_sdf = distance.signed_distance(x)
    o3d_sdf = scene.compute_signed_distance(o3d.core.Tensor(x_np)).numpy()
    err_ours, err_peer = errors(x, ours_sdf), errors(x, o3d_sdf)
    agree = float(np.abs(ours_sdf.numpy() - o3d_sdf).max())
    t_ours = t_query = time_fn(lambda: distance.signed_distance(x), repeats)
    t_peer = time_fn(lambda: scene.compute_signed_distance(o3d.core.Tensor(x_np)), repeats)
    rows.append(
        Row(
            benchmark=f"B7 signed distance (MeshDistance), {n:,} pts, {faces:,} faces",
            unit="M pts/s",
            ours=n / t_ours.median_s / 1e6,
            peer=n / t_peer.median_s / 1e6,
            peer_name="open3d RaycastingScene.compute_signed_distance (direct, 1 sign ray)",
            valid=err_ours[0] <= bound and err_peer[0] <= bound and agree <= F32_SLACK,
            notes=(
                f"ours uses 3 sign rays; max |ours − open3d| {agree:.1e}; error vs analytic max "
                f"{err_ours[0]:.2e} mean {err_ours[1]:.2e} (gate ≤ {bound:.2e})"
            ),
            extra=dict(
                faces=faces,
                points=n,
                error_max_ours=err_ours[0],
                error_mean_ours=err_ours[1],
                error_max_peer=err_peer[0],
                error_mean_peer=err_peer[1],
                max_abs_diff=agree,
                gate=bound,
                spread_ours=t_ours.spread,
                spread_peer=t_peer.spread,
            ),
        )
    )

    # 3. ours vs trimesh on a subset (trimesh is ~10³ pts/s).
    x_small = x[:: len(x) // n_trimesh][:n_trimesh]  # strided: the same mix of sample kinds
    x_small_np = x_small.numpy().astype(np.float64)
    trimesh_sdf = -trimesh.proximity.signed_distance(mesh, x_small_np)  # trimesh: + inside
    err_peer = errors(x_small_np, trimesh_sdf)
    t_ours = t_query  # the same call on the same points as row 2
    t_peer = time_fn(lambda: trimesh.proximity.signed_distance(mesh, x_small_np), repeats)
    accel = "embree" if "embree" in type(mesh.ray).__module__ else "no embree"
    rows.append(
        Row(
            benchmark=f"B7 signed distance vs trimesh, {faces:,} faces",
            unit="M pts/s",
            ours=n / t_ours.median_s / 1e6,
            peer=n_trimesh / t_peer.median_s / 1e6,
            peer_name=f"trimesh.proximity.signed_distance (rtree, {accel})",
            valid=errors(x, ours_sdf)[0] <= bound and err_peer[0] <= bound,
            notes=(
                f"ours on {n:,} pts, trimesh on every {n // n_trimesh}th ({n_trimesh:,}); trimesh "
                f"error max {err_peer[0]:.2e} mean {err_peer[1]:.2e} (gate ≤ {bound:.2e})"
            ),
            extra=dict(
                faces=faces,
                points_ours=n,
                points_peer=n_trimesh,
                error_max_peer=err_peer[0],
                error_mean_peer=err_peer[1],
                gate=bound,
                spread_ours=t_ours.spread,
                spread_peer=t_peer.spread,
            ),
        )
    )
    return rows


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    """B7 on 20k- and 80k-face icospheres, 10⁵ points (quick: 2·10⁴ points, 200 for trimesh)."""
    del device  # open3d's RaycastingScene runs on the CPU only
    torch.set_num_threads(2)
    n = 20_000 if quick else N_POINTS
    n_trimesh = 200 if quick else TRIMESH_POINTS
    repeats = 5
    return [row for sub in (5, 6) for row in rows_for_mesh(sub, n, n_trimesh, repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2·10⁴ points instead of 10⁵")
    args = parser.parse_args()
    for row in run(quick=args.quick):
        print(
            f"{row.benchmark} | ours {row.ours:.3f} {row.unit} | peer {row.peer:.4f} {row.unit} "
            f"({row.peer_name}) | ratio {row.ratio:.2f}× | valid {row.valid}\n  {row.notes}\n  "
            f"spread ours {row.extra['spread_ours']:.2f}, peer {row.extra['spread_peer']:.2f}"
        )


if __name__ == "__main__":
    main()

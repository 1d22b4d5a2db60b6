"""B5 — trace a mesh's SDF: a 256² view of spot (128² with ``quick``).

Ours: :func:`renderer.sphere_trace.sphere_trace` (Hart 1996) over open3d's exact signed distance
to the mesh (``RaycastingScene.compute_signed_distance``), normals by central differences —
and, as a second row, over the unsigned distance (``compute_distance``, ``unsigned=True``).
Peer and ground truth: open3d ``RaycastingScene.cast_rays`` (BVH ray casting, Embree) on the same
rays. The correctness gate (hit IoU ≥ 0.98 and depth MAE ≤ 0.01 on pixels both hit) runs before
timing; a row that fails it is ``valid=False``.

``ceiling`` for our speed is what the tracer would reach with zero overhead of its own: the
distance queries per second that open3d answers on exactly the points the trace evaluates,
divided by the evaluations spent per ray (normals included).

Run standalone: ``python -m benchmarks.rows.b5_trace_mesh [--quick]``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.timing import Row, time_fn
from renderer.cameras import Camera
from renderer.sphere_trace import sphere_trace

MESH = Path(__file__).resolve().parents[2] / "assets" / "meshes" / "spot.obj"
AABB = (-1.05, -1.05, -1.05, 1.05, 1.05, 1.05)  # spot is normalised to [-1, 1] on its long side
PEER = "open3d RaycastingScene.cast_rays"


def _spot_scene():
    """spot, normalised by the project's loader (longest side 2, centred), in a bare open3d
    scene: the peer, and the exact distance queries our tracer steps with."""
    import open3d as o3d

    from datasets.meshes import load_mesh, normalize_mesh

    mesh, _ = normalize_mesh(load_mesh(MESH))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return scene, len(mesh.faces)


def _distance_fn(scene, signed: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    import open3d as o3d

    query = scene.compute_signed_distance if signed else scene.compute_distance

    def distance(x: torch.Tensor) -> torch.Tensor:
        pts = o3d.core.Tensor.from_numpy(np.ascontiguousarray(x.detach().cpu().numpy()))
        return torch.from_numpy(query(pts).numpy()).to(x.device)

    return distance


class _Recorder:
    """Wraps a distance function and keeps every point it is asked about (untimed runs only)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn, self.points = fn, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.points.append(x.detach().cpu())
        return self.fn(x)


def _trace_rows(scene, rays_o, rays_d, gt_depth, gt_hit, label, signed, peer_mrays, peer_timing,
                size) -> list[Row]:
    n_rays = rays_o.shape[0]
    distance = _distance_fn(scene, signed)
    recorder = _Recorder(distance)

    def trace(fn=distance):
        return sphere_trace(fn, rays_o, rays_d, aabb=AABB, unsigned=not signed)

    # Correctness gate (and the evaluated points for the ceiling), before any timing.
    out = trace(recorder)
    hit = out.hit.cpu().numpy()
    depth = out.depth.cpu().numpy()
    union = (hit | gt_hit).sum()
    iou = float((hit & gt_hit).sum() / union) if union else 1.0
    both = hit & gt_hit
    mae = float(np.abs(depth[both] - gt_depth[both]).mean()) if both.any() else float("inf")
    valid = iou >= 0.98 and mae <= 0.01

    points = torch.cat(recorder.points)
    query = time_fn(lambda: distance(points), repeats=3)
    query_rate = points.shape[0] / query.median_s
    evals_per_ray = points.shape[0] / n_rays
    ceiling = query_rate / evals_per_ray / 1e6

    timing = time_fn(trace, repeats=5)
    ours = n_rays / timing.median_s / 1e6
    name = f"B5 trace mesh {label} {size}x{size}"
    gate = f"IoU {iou:.4f}, depth MAE {mae:.2e} (gate: IoU ≥ 0.98, MAE ≤ 0.01)"
    extra = {
        "rays": n_rays,
        "hit_iou": iou,
        "depth_mae": mae,
        "depth_max_abs_error": float(np.abs(depth[both] - gt_depth[both]).max()),
        "steps_per_ray_mean": float(out.steps.float().mean()),
        "steps_per_ray_max": int(out.steps.max()),
        "evaluations_per_ray_incl_normals": evals_per_ray,
        "distance_queries_M_per_s": query_rate / 1e6,
        "ours_median_s": timing.median_s,
        "ours_spread": timing.spread,
        "peer_median_s": peer_timing.median_s,
        "peer_spread": peer_timing.spread,
    }
    return [
        Row(f"{name} speed", "M rays/s", ours, peer_mrays, PEER, higher_is_better=True,
            ceiling=ceiling, valid=valid, notes=gate, extra=extra),
        Row(f"{name} hit IoU", "IoU", iou, 1.0, f"{PEER} (ground truth)", higher_is_better=True,
            valid=valid, notes="peer is the ground truth"),
        Row(f"{name} depth MAE", "depth MAE", mae, 0.0, f"{PEER} (ground truth)",
            higher_is_better=False, valid=valid, notes="peer is the ground truth"),
    ]


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    """B5 rows: speed (M rays/s), hit IoU and depth MAE, for the signed and the unsigned trace.

    open3d-cpu answers distance queries on the CPU only: on another ``device`` the rays live
    there and each query round-trips through host memory (counted in our time).
    """
    import open3d as o3d

    if device == "cpu":
        torch.set_num_threads(2)
    size = 128 if quick else 256
    scene, n_faces = _spot_scene()
    camera = Camera.orbit(35.0, 20.0, 3.2, width=size, height=size, fov_y_deg=40.0)
    rays_o, rays_d = camera.rays()
    rays = o3d.core.Tensor(torch.cat([rays_o, rays_d], dim=1).numpy())
    rays_o, rays_d = rays_o.to(device), rays_d.to(device)

    gt_depth = scene.cast_rays(rays)["t_hit"].numpy()  # also builds the BVH, before timing
    gt_hit = np.isfinite(gt_depth)
    peer_timing = time_fn(lambda: scene.cast_rays(rays), repeats=5)
    peer = rays_o.shape[0] / peer_timing.median_s / 1e6

    rows = []
    for label, signed in (("SDF", True), ("UDF", False)):
        rows += _trace_rows(scene, rays_o, rays_d, gt_depth, gt_hit, label, signed, peer,
                            peer_timing, size)
    load = os.getloadavg()[0]  # these machines are shared; a loaded one slows 2-thread torch most
    for row in rows:
        row.extra.setdefault("mesh", f"spot, {n_faces} faces")
        row.extra["load_avg_1min"] = load
    return rows


if __name__ == "__main__":
    t0 = time.perf_counter()
    for r in run(quick="--quick" in sys.argv):
        ratio = f"{r.ratio:.3g}" if r.ratio is not None else "—"
        pct = f"{r.pct_of_ceiling:.0f}%" if r.pct_of_ceiling is not None else "—"
        print(f"{r.benchmark:<34} {r.unit:<9} ours {r.ours:<10.4g} peer {r.peer:<10.4g} "
              f"ratio {ratio:<7} % of ceiling {pct:<5} valid {r.valid}")
        print("   ", json.dumps(r.to_dict()))
    print(f"({time.perf_counter() - t0:.1f} s)")

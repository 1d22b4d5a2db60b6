"""Measure the foundation issue's acceptance numbers on a trained SDF run.

    python -m benchmarks.acceptance outputs/spot-sdf [--reference assets/meshes/spot.obj]

Prints JSON with:
- sphere tracing of the fitted field vs open3d ray casting of the reference mesh (4 views at
  256²): hit-mask IoU and depth MAE;
- coarse-to-fine vs dense marching cubes of the fitted field at 256³: fraction of field
  evaluations, Chamfer-L1 between the two meshes, seconds of each.
"""

from __future__ import annotations

import argparse
import json

import torch

from app.metrics import chamfer_l1
from app.run import load_run
from datasets.meshes import load_mesh
from datasets.sdf_samples import MeshDistance
from renderer.cameras import Camera


def trace_vs_open3d(run, reference: str, size: int = 256) -> list[dict]:
    mesh = run.task.normalization.apply_mesh(load_mesh(reference))
    md = MeshDistance(mesh)
    rows = []
    for az, el in ((30.0, 20.0), (120.0, 35.0), (210.0, -15.0), (300.0, 5.0)):
        cam = Camera.orbit(az, el, 3.2, width=size, height=size, fov_y_deg=40.0)
        out = run.task.render_frame(cam, "depth")
        depth_ref, hit_ref, _ = md.cast_rays(*cam.rays())
        hit = out.hit.reshape(-1)
        both = hit & hit_ref
        rows.append({
            "azimuth": az, "elevation": el,
            "hit_iou": round((both.sum() / (hit | hit_ref).sum()).item(), 5),
            "depth_mae": round(
                (out.depth.reshape(-1)[both] - depth_ref[both]).abs().mean().item(), 6),
            "mean_steps": round(out.steps.float().mean().item(), 2),
        })
    return rows


def coarse_vs_dense(run, resolution: int = 256) -> dict:
    c2f = run.task.extract(resolution=resolution, method="coarse_to_fine")
    dense = run.task.extract(resolution=resolution, method="dense")
    return {
        "resolution": resolution,
        "evaluation_fraction": round(c2f.evaluation_fraction, 4),
        "chamfer_l1_vs_dense": chamfer_l1(c2f.mesh, dense.mesh, n=100_000),
        "seconds_coarse_to_fine": round(c2f.seconds, 2),
        "seconds_dense": round(dense.seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--reference", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    run = load_run(args.run_dir)
    reference = args.reference or run.task.source_path
    print(json.dumps({"run_dir": args.run_dir, "reference": reference,
                      "trace_vs_open3d_256": trace_vs_open3d(run, reference),
                      "meshing_256": coarse_vs_dense(run)}, indent=2))


if __name__ == "__main__":
    main()

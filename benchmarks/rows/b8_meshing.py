"""B8 — mesh extraction of a neural SDF (../shared/BENCHMARKS.md).

Ours: ``renderer.meshing.extract_mesh(method="coarse_to_fine")``, which evaluates the field only
near the surface. Peer: the textbook pipeline — evaluate the field at every point of the dense
grid (same field, same chunk size, ``torch.no_grad()``), then ``skimage.measure.marching_cubes``.
Metric: seconds (lower is better). Correctness gate: Chamfer-L1 between the two meshes
≤ 1e-3 (½(mean_a d(a, B) + mean_b d(b, A)) over area-uniform samples, point-to-triangle
distances), else the row is invalid. The number of field evaluations saved is reported beside it.

Without a field, a neural stand-in is used: ``‖x‖ − 0.6 + 0.05·mlp(x)`` with a 3→64→64→1
softplus MLP (the width and activation of common SDF networks), so each evaluation costs what a
small neural SDF costs while the field still has a closed surface.

Run standalone: ``python -m benchmarks.rows.b8_meshing [--quick]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import open3d as o3d
import torch
import trimesh
from skimage import measure
from torch import Tensor, nn

from benchmarks.timing import Row, time_fn
from renderer.meshing import MeshResult, extract_mesh

__all__ = ["run"]

AABB = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
CHUNK_SIZE = 1 << 16
CHAMFER_GATE = 1e-3
CHAMFER_SAMPLES = 100_000


class NeuralStandIn(nn.Module):
    """``f(x) = ‖x‖ − 0.6 + 0.05 · mlp(x)``: a sphere perturbed by a random softplus MLP."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():  # torch's default init, seeded, without touching global RNG
            torch.manual_seed(seed)
            self.mlp = nn.Sequential(
                nn.Linear(3, 64), nn.Softplus(beta=100), nn.Linear(64, 64), nn.Softplus(beta=100),
                nn.Linear(64, 1),
            )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x.norm(dim=-1) - 0.6 + 0.05 * self.mlp(x).squeeze(-1)


def dense_peer(
    sdf_fn: Callable[[Tensor], Tensor], resolution: int, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """The peer: every grid point through the field in chunks, then skimage marching cubes."""
    lo, hi = np.array(AABB[:3]), np.array(AABB[3:])
    axes = [torch.linspace(lo[d], hi[d], resolution) for d in range(3)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    values = torch.empty(len(grid))
    with torch.no_grad():
        for start in range(0, len(grid), CHUNK_SIZE):
            x = grid[start : start + CHUNK_SIZE].to(device)
            values[start : start + len(x)] = sdf_fn(x).reshape(-1).float().cpu()
    volume = values.reshape(resolution, resolution, resolution).numpy()
    spacing = (hi - lo) / (resolution - 1)
    verts, faces, _, _ = measure.marching_cubes(volume, 0.0, spacing=tuple(spacing))
    return verts + lo, faces


def chamfer_l1(a: trimesh.Trimesh, b: trimesh.Trimesh, samples: int = CHAMFER_SAMPLES) -> float:
    """½(mean_{p∈A} d(p, B) + mean_{q∈B} d(q, A)), area-uniform samples, point-to-triangle d."""

    def one_way(src: trimesh.Trimesh, dst: trimesh.Trimesh, seed: int) -> float:
        points, _ = trimesh.sample.sample_surface(src, samples, seed=seed)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(
            o3d.core.Tensor(np.asarray(dst.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.asarray(dst.faces, dtype=np.uint32)),
        )
        query = o3d.core.Tensor(points.astype(np.float32))
        return float(scene.compute_distance(query).numpy().mean())

    return 0.5 * (one_way(a, b, seed=0) + one_way(b, a, seed=1))


def run(
    quick: bool = False, device: str = "cpu", sdf_fn: Callable[[Tensor], Tensor] | None = None
) -> list[Row]:
    """B8 at 256³ (quick: 128³): coarse-to-fine vs dense evaluation + skimage, in seconds."""
    if device == "cpu":
        torch.set_num_threads(2)
    resolution = 128 if quick else 256
    field = sdf_fn if sdf_fn is not None else NeuralStandIn().to(device).eval()
    name = "the neural stand-in ‖x‖−0.6+0.05·mlp(x), 3→64→64→1" if sdf_fn is None else "sdf_fn"

    def ours() -> MeshResult:
        return extract_mesh(
            field, resolution=resolution, aabb=AABB, method="coarse_to_fine",
            chunk_size=CHUNK_SIZE, device=device,
        )  # fmt: skip

    # Correctness gate first (one run each), then timing.
    result = ours()
    peer_verts, peer_faces = dense_peer(field, resolution, device)
    peer_mesh = trimesh.Trimesh(peer_verts, peer_faces, process=False)
    chamfer = chamfer_l1(result.mesh, peer_mesh)
    valid = chamfer <= CHAMFER_GATE

    t_ours = time_fn(ours)
    t_peer = time_fn(lambda: dense_peer(field, resolution, device))
    return [
        Row(
            benchmark=f"B8 mesh extraction of a neural SDF, {resolution}³",
            unit="s",
            ours=t_ours.median_s,
            peer=t_peer.median_s,
            peer_name="dense-grid evaluation + skimage marching_cubes",
            higher_is_better=False,
            valid=valid,
            notes=(
                f"field: {name}; ours evaluates {result.num_evaluations:,} of "
                f"{result.dense_evaluations:,} points ({100 * result.evaluation_fraction:.1f}%); "
                f"Chamfer-L1 vs dense {chamfer:.2e} (gate ≤ {CHAMFER_GATE:g})"
            ),
            extra={
                "resolution": resolution,
                "device": device,
                "evaluations_ours": result.num_evaluations,
                "evaluations_peer": resolution**3,
                "evaluation_fraction": result.evaluation_fraction,
                "evaluations_saved": resolution**3 - result.num_evaluations,
                "chamfer_l1": chamfer,
                "faces_ours": len(result.mesh.faces),
                "faces_peer": len(peer_faces),
                "spread_ours": t_ours.spread,
                "spread_peer": t_peer.spread,
            },
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128³ instead of 256³")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for row in run(quick=args.quick, device=args.device):
        ratio = row.ratio
        print(
            f"{row.benchmark} | ours {row.ours:.3f} {row.unit} | peer {row.peer:.3f} {row.unit} "
            f"({row.peer_name}) | ratio {ratio:.2f}× | valid {row.valid}\n  {row.notes}\n  "
            f"spread ours {row.extra['spread_ours']:.2f}, peer {row.extra['spread_peer']:.2f}"
        )


if __name__ == "__main__":
    main()

"""Frame time of a scene of 1, 4 and 16 neural SDFs: per-object culled tracing (ours) against
the naive union ``min_i f_i`` traced as one field (issue 11's scaling question).

    python -m benchmarks.scene_scaling --json docs/img/scene_scaling.json

A spot SDF is fitted once (the ``spot-sdf`` preset, ``--steps`` steps) and placed N times on a
square lattice filling the same view (scale 1/√N, so every layout covers about the same pixels);
the camera frames the scene's bounds. Per N, the median of ``--repeats`` frames at ``--size``²:

* ours: :meth:`renderer.scene.Scene.render` (``"depth"``: tracing only) — each object traces
  only the rays that meet its box, in its own frame;
* naive: one :func:`renderer.sphere_trace.sphere_trace` of ``f(x) = min_i s_i·f_i(x_i)`` over the
  scene's box — every object evaluated at every step of every ray.

Both hit masks are compared (IoU) as the correctness gate. Field evaluations per ray (all
objects summed) are recorded for both.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def build(task, n: int):
    from renderer.scene import Scene

    side = int(math.isqrt(n))
    if side * side != n:
        raise ValueError(f"object counts must be squares, got {n}")
    scene = Scene()
    scale = 1.0 / side
    for i in range(side):
        for j in range(side):
            x = (2 * i - side + 1) * scale * 1.05
            y = (2 * j - side + 1) * scale * 1.05
            scene.add(task, translate=(x, y, 0.0), scale=scale * 0.95)
    return scene


def naive_union(scene):
    """``min_i s_i·f_i(R_iᵀ(x − t_i)/s_i)`` and a counter of per-object evaluations."""
    count = [0]

    def f(x):
        best = None
        for obj in scene.objects:
            tr = obj.transform
            d = tr.scale * obj.source.distance(tr.points_to_local(x)).reshape(-1)
            count[0] += len(x)
            best = d if best is None else torch.minimum(best, d)
        return best

    return f, count


def measure(task, n: int, args) -> dict:
    """Frame times and evaluations of the N-object scene, ours against the naive union."""
    from renderer.cameras import Camera
    from renderer.sphere_trace import sphere_trace

    scene = build(task, n)
    box = scene.bounds()
    cam = Camera.orbit(0.0, 0.0, 3.4, width=args.size, height=args.size, fov_y_deg=40.0)
    rays_o, rays_d = cam.rays()
    f, count = naive_union(scene)

    def ours():
        return scene.render(cam, "depth")

    def naive():
        with torch.no_grad():
            return sphere_trace(f, rays_o, rays_d, aabb=box, max_steps=128)

    img = ours()
    ref = naive()
    count[0] = 0
    naive()
    naive_evals = count[0] / rays_o.shape[0]
    _, _, _, evals = scene.trace(rays_o, rays_d)
    hit_ref = ref.hit.reshape(args.size, args.size).numpy()
    union = (img.hit | hit_ref).sum()
    iou = float((img.hit & hit_ref).sum() / union) if union else 1.0
    times = {}
    for name, fn in (("ours", ours), ("naive", naive)):
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        times[name] = statistics.median(ts)
    return {"objects": n, "size": args.size, "ours_ms": round(1e3 * times["ours"], 1),
            "naive_ms": round(1e3 * times["naive"], 1),
            "ours_evals_per_ray": round(float(evals.float().mean()), 2),
            "naive_evals_per_ray": round(naive_evals, 2), "hit_iou": round(iou, 4),
            "hit_fraction": round(float(img.hit.mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="1,4,16")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=600, help="fit steps of the spot SDF")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from app.presets import get_preset
    from benchmarks.studies import fitted_task

    cfg = get_preset("spot-sdf")
    cfg.trainer.checkpoint_every = cfg.trainer.log_every = 10**9
    task, fit = fitted_task(cfg, steps=args.steps)
    task.model.eval()
    rows = []
    for n in (int(v) for v in args.counts.split(",")):
        rows.append(measure(task, n, args))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "fit": fit, "args": vars(args)},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

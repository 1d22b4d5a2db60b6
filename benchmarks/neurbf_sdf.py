"""NeuRBF vs the hash grid on an SDF at equal parameters and steps: IoU and normal angular error.

    python -m benchmarks.neurbf_sdf --mesh ../shared/data/meshes/closed/bunny_ponq.obj \\
        --steps 2000 --json docs/img/neurbf_bunny.json

Both start from the ``spot-sdf`` preset (same sample pool, batch, seed and schedule); ``rbf`` is
NeuRBF sized to the hash-grid field's parameter count (``SDFRBFConfig``). Metrics from
``fields-app eval`` at 256³: volumetric IoU, normal angular error (paper supp. Eq. 12), Chamfer-L1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.studies import record


def run_one(encoding: str, mesh: str, steps: int, resolution: int) -> dict:
    from app.presets import get_preset
    from benchmarks.studies import fitted_task

    cfg = get_preset("spot-sdf")
    cfg.data.path = mesh
    cfg.model.encoding_type = encoding
    cfg.trainer.steps = steps
    task, times = fitted_task(cfg)
    m = task.evaluate(resolution=resolution)
    params = (task.model.num_parameters() if hasattr(task.model, "num_parameters")
              else sum(p.numel() for p in task.model.parameters()))
    return {"encoding": encoding, "mesh": Path(mesh).name, "parameters": params, **times,
            **{k: round(float(v), 5) for k, v in m.items()
               if k in ("volumetric_iou", "normal_angle_deg", "chamfer_l1", "normal_consistency",
                        "fscore@1%")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", default="../shared/data/meshes/closed/bunny_ponq.obj")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--encodings", default="hashgrid,rbf")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    rows: list[dict] = []
    for enc in args.encodings.split(","):
        record(rows, run_one(enc, args.mesh, args.steps, args.resolution), args.json, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CQ-NIR on ``spot-neus``: Chamfer with and without coordinate quantisation, several seeds.

    python -m benchmarks.cq_nir_study --resolutions 0,25600 --seeds 0,1,2 \\
        --out docs/img/cq_nir_spot.json

Every run trains the ``spot-neus`` preset for the same number of steps (``--steps``, default the
preset's) with ``--quantize R`` (0 = off) and ``--trainer.seed s``, then extracts the mesh at the
preset's export resolution and scores it against the spot mesh (Chamfer-L1, normal consistency,
F-score@1 %, IoU; app.metrics) plus held-out PSNR. Each finished run is appended to the JSON at
once, so an interrupted study resumes where it stopped. A Markdown table is printed at the end.
Runs live under ``outputs/cq-nir/R{R}-s{seed}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from app.presets import get_preset
from app.run import train


def _table(rows: list[dict]) -> str:
    by_r: dict[int, list[dict]] = {}
    for r in rows:
        by_r.setdefault(r["quantize"], []).append(r)
    lines = ["| R (Δ) | seeds | Chamfer-L1 per seed | mean ± sd | NC mean | PSNR mean "
             "| train s mean |", "|---|---|---|---|---|---|---|"]
    for q, rs in sorted(by_r.items()):
        ch = [x["chamfer_l1"] for x in rs]
        sd = statistics.stdev(ch) if len(ch) > 1 else 0.0
        delta = "off" if q == 0 else f"{q} (Δ = {rs[0]['cell_size']:.3g})"
        lines.append(
            f"| {delta} | {len(rs)} | {', '.join(f'{c:.5f}' for c in ch)} | "
            f"{statistics.mean(ch):.5f} ± {sd:.5f} | "
            f"{statistics.mean(x['normal_consistency'] for x in rs):.4f} | "
            f"{statistics.mean(x['psnr'] for x in rs):.2f} | "
            f"{statistics.mean(x['train_seconds'] for x in rs):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--resolutions", default="0,25600", help="comma-separated R (0 = off)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="docs/img/cq_nir_spot.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done: list[dict] = json.loads(out.read_text())["runs"] if out.is_file() else []
    for seed in (int(s) for s in args.seeds.split(",")):
        for q in (int(r) for r in args.resolutions.split(",")):
            if any(r["quantize"] == q and r["seed"] == seed for r in done):
                continue
            cfg = get_preset("spot-neus")
            cfg.model.quantize = q
            cfg.trainer.seed = seed
            cfg.trainer.num_threads = args.threads
            if args.steps:
                cfg.trainer.steps = args.steps
            run_dir = Path("outputs/cq-nir") / f"R{q}-s{seed}"
            t0 = time.perf_counter()
            task, result = train(cfg, run_dir, restart=True, progress=False, log=lambda m: None)
            metrics = task.evaluate(n_samples=100_000)
            row = {"quantize": q, "seed": seed, "steps": result.step,
                   "cell_size": task.properties()["quantizer_cell_size"],
                   "train_seconds": round(result.seconds, 1),
                   "wall_seconds": round(time.perf_counter() - t0, 1),
                   **{k: metrics[k] for k in ("chamfer_l1", "normal_consistency", "fscore@1%",
                                              "volumetric_iou", "psnr", "ssim")}}
            done.append(row)
            print(json.dumps(row), flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"preset": "spot-neus", "runs": done}, indent=1))
    print(_table(done))


if __name__ == "__main__":
    main()

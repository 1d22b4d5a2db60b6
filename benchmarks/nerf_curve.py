"""Held-out PSNR versus training time for a nerf preset (the volume-rendering issue's curve).

    python -m benchmarks.nerf_curve lego-nerf --steps 3000 --every 10 --out docs/img/lego_psnr.png

Trains with the preset's task and the project's Trainer; every ``--every`` seconds of training
(evaluation pauses excluded) renders all held-out views and records mean PSNR. Writes the curve
as JSON next to the PNG.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from app.presets import get_preset
from app.run import build_task
from app.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("preset")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--out", default="docs/img/psnr_curve.png")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = get_preset(args.preset)
    cfg.trainer.steps = args.steps
    task = build_task(cfg)
    task.setup_data()
    trainer = Trainer(task, cfg.trainer, Path("/nonexistent"), progress=False)
    trained, next_eval, curve = 0.0, args.every, []
    while trainer.step < args.steps:
        t0 = time.perf_counter()
        trainer.train_step()
        trained += time.perf_counter() - t0
        if trained >= next_eval or trainer.step == args.steps:
            m = task.evaluate()
            curve.append({"seconds": round(trained, 1), "step": trainer.step,
                          "psnr": round(m["psnr"], 3), "ssim": round(m["ssim"], 4)})
            print(curve[-1], flush=True)
            next_eval += args.every
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(
        {"preset": args.preset, "steps": args.steps, "split": m["split"], "views": m["views"],
         "curve": curve}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    ax.plot([c["seconds"] for c in curve], [c["psnr"] for c in curve], marker="o", ms=3)
    ax.set_xlabel("training time on 2 CPU cores (s)")
    ax.set_ylabel(f"held-out PSNR (dB), {m['views']} views")
    ax.set_title(f"{args.preset}: PSNR vs time")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()

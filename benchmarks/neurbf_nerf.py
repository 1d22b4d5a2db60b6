"""NeuRBF vs the hash grid on tiny lego at equal training time: held-out PSNR.

    python -m benchmarks.neurbf_nerf --seconds 60 --json docs/img/neurbf_lego.json

Both from the ``lego-nerf`` preset (same rays, batch, seed, schedule); ``rbf`` adds NeuRBF
appearance kernels (``NeRFRBFConfig``: 4096 ``ivq_a`` kernels, k = 5, F = 32, placed after a
300-step grid-only warm-up). Each trains for ``--seconds`` of wall-clock training (evaluation
excluded), then is scored on the held-out frames 100–105.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.studies import record


def run_one(encoding: str, seconds: float) -> dict:
    from app.presets import get_preset
    from benchmarks.studies import fitted_task

    cfg = get_preset("lego-nerf")
    cfg.model.encoding_type = encoding
    task, times = fitted_task(cfg, seconds=seconds)
    m = task.evaluate()
    params = sum(p.numel() for p in task.field.parameters())
    if task.field.appearance is not None:  # count the frozen centres and shapes too
        params = params - task.field.appearance.features.numel() + (
            task.field.appearance.num_parameters())
    return {"encoding": encoding, "seconds": times["train_seconds"], "steps": times["steps"],
            "psnr": round(m["psnr"], 3), "ssim": round(m["ssim"], 4), "split": m["split"],
            "views": m["views"], "parameters": params}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--encodings", default="hashgrid,rbf")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    rows: list[dict] = []
    for enc in args.encodings.split(","):
        record(rows, run_one(enc, args.seconds), args.json, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""NeuRBF vs the hash grid on images at equal parameters and steps, with ablations.

    python -m benchmarks.neurbf_study --images assets/images/astronaut.png --steps 2000 \\
        --variants hashgrid,rbf,rbf-no-msc,rbf-lattice --json docs/img/neurbf_astronaut.json
    python -m benchmarks.neurbf_study --kodak --crop 256 --steps 1000 --variants hashgrid,rbf

Variants (all from the ``astronaut-image`` preset's config, same seed, batch, lr schedule):

- ``hashgrid``: the paper's Instant-NGP image reference — 16 levels × 2 features from 16 to
  half the image's longer side, 2^24 rows (no collisions) → ReLU MLP 64×2 — the budget;
- ``rbf``: NeuRBF sized to that budget (``n_kernels = 0``): dense grid (16², (side/2)²) +
  ``ivq_a`` RBFs from gradient-weighted k-means (α = 1), k = 4, F = 32, MSC [2⁻³, 2¹²], the
  preset's feature MSC;
- ``rbf-no-msc``: no sinusoidal composition anywhere (m = 1, no sine; paper Table 5 "w/o MSC");
- ``rbf-no-rbf-msc`` / ``rbf-no-feature-msc``: only one of the two compositions removed;
- ``rbf-lattice``: kernels on a regular lattice instead of k-means ("w/o adaptive RBF" init);
- ``rbf-wrandom``: centres drawn by gradient-weighted sampling without Lloyd iterations;
- ``fourier`` / ``siren``: the other encodings of the image task, at their own sizes.

Each run reports PSNR / SSIM on the image's own pixel lattice, parameter count (frozen RBF centres
and shapes included) and training seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.studies import record

VARIANTS = ("hashgrid", "rbf", "rbf-no-msc", "rbf-no-rbf-msc", "rbf-no-feature-msc",
            "rbf-lattice", "rbf-wrandom", "fourier", "siren")


def configure(variant: str, image: str, steps: int, crop: int):
    from app.presets import get_preset

    cfg = get_preset("astronaut-image")
    cfg.data.path = image
    cfg.trainer.steps = steps
    cfg.data.crop = crop
    cfg.model.encoding = "hashgrid" if variant == "hashgrid" else variant.split("-")[0]
    if variant in ("rbf-no-msc", "rbf-no-rbf-msc"):
        cfg.model.rbf.msc = (0.0, 0.0)
    if variant in ("rbf-no-msc", "rbf-no-feature-msc"):
        cfg.model.rbf.feature_msc = (0.0, 0.0)
    if variant == "rbf-wrandom":
        cfg.model.rbf.kmeans_iters = 0
    if variant == "rbf-lattice":
        cfg.model.rbf.adaptive = False
    return cfg


def run_one(variant: str, image: str, steps: int, crop: int) -> dict:
    from app.tasks.image import count_parameters
    from benchmarks.studies import fitted_task

    cfg = configure(variant, image, steps, crop)
    task, times = fitted_task(cfg)
    m = task.evaluate()
    return {"variant": variant, "image": Path(image).name, "steps": steps,
            "psnr": round(m["psnr"], 3), "ssim": round(m["ssim"], 4),
            "parameters": count_parameters(task.model), "train_seconds": times["train_seconds"],
            "size": m["size"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="assets/images/astronaut.png",
                    help="comma-separated image files")
    ap.add_argument("--kodak", action="store_true", help="../shared Kodak 01–12 instead")
    ap.add_argument("--crop", type=int, default=0, help="centre crop to this size (0: none)")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--variants", default="hashgrid,rbf")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = ([f"../shared/data/images/kodak/kodim{i:02d}.png" for i in range(1, 13)]
              if args.kodak else args.images.split(","))
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v}; known: {', '.join(VARIANTS)}")
    rows: list[dict] = []
    for image in images:
        for v in variants:
            record(rows, run_one(v, image, args.steps, args.crop), args.json, args)
    for v in variants:
        ps = [r["psnr"] for r in rows if r["variant"] == v]
        print(f"{v}: mean PSNR {sum(ps) / len(ps):.2f} dB over {len(ps)} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

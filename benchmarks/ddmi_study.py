"""DDMI's numbers and pictures for docs/ddmi.md, from trained runs.

    python -m benchmarks.ddmi_study RUN_DIR [--generated 256] [--json F] [--figure F.png]

Evaluates the run (``DDMITask.evaluate``: reconstruction IoU at the input and 4× resolution,
resolution consistency, MMD/COV against held-out shapes for diffusion samples and for the VAE
prior; disc checks; 3-D watertightness and nearest-training-shape IoU) and draws a figure: a
gallery of samples next to prior decodes and held-out data (2-D), or sample meshes and the
histogram of nearest-training-shape IoU (3-D).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def _gallery(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    from app.imaging import contact_sheet

    return contact_sheet([np.pad(t, ((1, 1), (1, 1), (0, 0)), constant_values=1.0)
                          for t in tiles], columns=cols)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--generated", type=int, default=256)
    p.add_argument("--json")
    p.add_argument("--figure")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from app.run import load_run

    task = load_run(args.run_dir).task
    task.setup_data()
    metrics = task.evaluate(generated=args.generated)
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, list)}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1))
    if not args.figure:
        return 0
    if task.dim == 2:
        samples = task.sample_fields(16, seed=0)
        prior = task.sample_fields(16, seed=0, prior=True)
        data = task.fields_of(task.test_index[:16])
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.6))
        for ax, fs, title in ((axes[0], samples, "diffusion samples (128², seed 0)"),
                              (axes[1], prior, "decoded z ~ N(0, I) (VAE prior)"),
                              (axes[2], data, "held-out shapes (VAE reconstructions)")):
            ax.imshow(_gallery([task.image_of(f, 128, 128).numpy() for f in fs], 4))
            ax.set_title(title, fontsize=10)
            ax.axis("off")
        fig.suptitle(f"MMD {metrics.get('mmd_ldm', float('nan')):.3f} / COV "
                     f"{metrics.get('cov_ldm', float('nan')):.2f} (diffusion) vs MMD "
                     f"{metrics.get('mmd_prior', float('nan')):.3f} / COV "
                     f"{metrics.get('cov_prior', float('nan')):.2f} (prior)", fontsize=10)
    else:
        samples = task.sample_fields(8, seed=0)
        cam = task.default_camera(160, 160)
        tiles = [task.render_mesh(task.mesh_of(f, 96), cam) for f in samples]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.2),
                                 gridspec_kw={"width_ratios": [2.2, 1]})
        axes[0].imshow(_gallery(tiles, 4))
        axes[0].set_title("diffusion samples (marching cubes 96³, seed 0)", fontsize=10)
        axes[0].axis("off")
        ious = metrics.get("nearest_train_iou", [])
        axes[1].hist(ious, bins=np.linspace(0, 1, 21), color="#4a78c2")
        axes[1].set_xlabel("IoU with the nearest training shape (32³ voxels)")
        axes[1].set_ylabel("samples")
        axes[1].set_title(f"{len(ious)} samples; watertight "
                          f"{metrics.get('watertight_fraction', 0):.0%}", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.figure, dpi=90)
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""DDMI's acceptance numbers for a trained :class:`app.tasks.ddmi.DDMITask` (spec
``ddmi.md``, checks 6–9; the paper's 3-D protocol: MMD/COV by Chamfer distance).

- **Continuity** (2-D): held-out shapes reconstructed (posterior mean) and compared with their
  analytic occupancy at the input resolution ``R`` and at ``4R`` — a grid the model never saw.
- **Resolution consistency**: generated samples rendered at ``4R`` and average-pooled to ``R``,
  against the same samples rendered at ``R``: MAE of occupancy probabilities; a ``37×53``
  render is checked to work.
- **Distribution**: MMD and COV (Achlioptas et al.) of boundary point sets (2-D) or surface
  point clouds (3-D) of generated shapes against held-out shapes, with the Chamfer distance;
  the same for latents drawn from the VAE prior ``N(0, I)`` (the negative control).
- **Discs**: the share of samples whose moment-fitted disc has IoU > 0.8, and a two-sample KS
  test of the fitted radii against the training radii.
- **3-D**: watertightness of sample meshes, voxel IoU of each sample with its nearest training
  shape (the histogram shows memorisation against novelty).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from app.tasks.ddmi import DDMITask

__all__ = ["evaluate_ddmi"]


def _grid_truth(task: DDMITask, index: torch.Tensor, res: int) -> torch.Tensor:
    from fields.ddmi.planes import grid_coords

    xy = grid_coords(res, res)
    return torch.stack([(task.shapes.sdf([int(i)], xy)[0] < 0).reshape(res, res)
                        for i in index])


def _probabilities(task: DDMITask, fields_: list, res: int) -> torch.Tensor:
    return torch.stack([task.probability(f, res, res) for f in fields_])


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    from datasets.shape_metrics import iou

    return float(iou(a, b, per_item=True).mean())


def evaluate_ddmi(task: DDMITask, n: int = 256) -> dict[str, Any]:
    """Every applicable number for the task's data (module docstring); ``n`` samples."""
    out: dict[str, Any] = {"train_shapes": len(task.train_index),
                           "test_shapes": len(task.test_index)}
    if task.dim == 2:
        out.update(_evaluate_2d(task, n))
    else:
        out.update(_evaluate_3d(task, min(n, 64)))
    return out


def _evaluate_2d(task: DDMITask, n: int) -> dict[str, Any]:
    from datasets.shape_metrics import boundary_points_2d, fit_disc, mmd_cov

    r = task.config.data.resolution
    out: dict[str, Any] = {}
    test = task.test_index[:n]
    recon = task.fields_of(test)
    if task.shapes is not None:
        for res in (r, 4 * r):
            pred = _probabilities(task, recon, res) > 0.5
            out[f"recon_iou_{res}"] = _iou(pred, _grid_truth(task, test, res))
    else:  # images: L1 of intensities at the input resolution and 2× (the fine targets)
        out[f"recon_l1_{r}"] = float((_probabilities(task, recon, r)
                                      - task.rasters[test, 0]).abs().mean())
        out[f"recon_l1_{2 * r}"] = float((_probabilities(task, recon, 2 * r)
                                          - task.images_fine[test, 0]).abs().mean())
    if float(task.model["stats"].latent_std) == 0.0:
        out["note"] = "stage 1 only: no diffusion model to sample yet"
        return out
    samples = task.sample_fields(n, seed=0)
    fine = _probabilities(task, samples, 4 * r)
    base = _probabilities(task, samples, r)
    out["resolution_mae"] = float((F.avg_pool2d(fine[:, None], 4)[:, 0] - base).abs().mean())
    odd = task.probability(samples[0], 37, 53)
    out["render_37x53"] = list(odd.shape)
    if task.shapes is None:
        return out
    ref = task.shapes.boundary_points(test, n=128, res=4 * r)
    gen = boundary_points_2d(fine, n=128)
    out.update({f"{k}_ldm": v for k, v in mmd_cov(gen, ref).items()})
    prior = _probabilities(task, task.sample_fields(n, seed=0, prior=True), 4 * r)
    out.update({f"{k}_prior": v for k, v in mmd_cov(boundary_points_2d(prior, n=128),
                                                    ref).items()})
    # Same-size reference: another draw of held-out-like shapes (the training set) scored the
    # same way, an upper bound on what a perfect generator reaches with this many samples.
    train = task.train_index[:len(test)]
    out.update({f"{k}_train_vs_test": v for k, v in mmd_cov(
        task.shapes.boundary_points(train, n=128, res=4 * r), ref).items()})
    if task.config.data.source == "discs":
        from scipy.stats import ks_2samp

        disc_res = 64
        fitted = fit_disc(_probabilities(task, samples, disc_res) > 0.5)
        is_disc = fitted.iou > 0.8
        out["disc_fraction"] = float(is_disc.float().mean())
        radii = task.shapes.radius[task.train_index].numpy()
        ks = ks_2samp(fitted.radius[is_disc].numpy(), radii)
        out["radius_ks_statistic"], out["radius_ks_pvalue"] = float(ks.statistic), float(
            ks.pvalue)
        out["sample_radii"] = [round(float(v), 4) for v in fitted.radius[is_disc]]
        prior_fit = fit_disc(prior > 0.5)
        out["disc_fraction_prior"] = float((prior_fit.iou > 0.8).float().mean())
    return out


def _evaluate_3d(task: DDMITask, n: int) -> dict[str, Any]:
    import trimesh

    from datasets.procshapes import grid_points
    from datasets.shape_metrics import iou, mmd_cov

    out: dict[str, Any] = {}
    res = 32
    pts = grid_points(res, 3)
    test = task.test_index[:n]

    def voxels(fields_: list) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([(f(pts)[:, 0] > 0).reshape(res, res, res) for f in fields_])

    if task.shapes is not None:
        truth = task.shapes.voxels(res, test)
        out["recon_iou_32"] = float(iou(voxels(task.fields_of(test)), truth,
                                        per_item=True).mean())
    if float(task.model["stats"].latent_std) == 0.0:
        out["note"] = "stage 1 only: no diffusion model to sample yet"
        return out
    samples = task.sample_fields(n, seed=0)
    meshes = [task.mesh_of(f, 64) for f in samples]
    nonempty = [m for m in meshes if len(m.faces)]
    out["samples"] = n
    out["nonempty_fraction"] = len(nonempty) / n
    out["watertight_fraction"] = float(np.mean([m.is_watertight for m in nonempty])) \
        if nonempty else 0.0
    if task.shapes is not None:
        train_vox = task.shapes.voxels(res, task.train_index)
        gen_vox = voxels(samples)
        nearest = []
        for v in gen_vox:
            inter = (train_vox & v).flatten(1).sum(1).float()
            union = (train_vox | v).flatten(1).sum(1).float().clamp_min(1)
            nearest.append(float((inter / union).max()))
        out["nearest_train_iou"] = [round(v, 4) for v in nearest]
        out["nearest_train_iou_mean"] = float(np.mean(nearest))

    def clouds(ms: list) -> torch.Tensor:
        got = []
        for m in ms:
            if len(m.faces) == 0:
                got.append(torch.zeros(1024, 3))
            else:
                pts_, _ = trimesh.sample.sample_surface(m, 1024, seed=0)
                got.append(torch.from_numpy(np.asarray(pts_)).float())
        return torch.stack(got)

    ref = task.point_pool[test][:, :1024]
    out.update({f"{k}_ldm": v for k, v in mmd_cov(clouds(meshes), ref).items()})
    prior = [task.mesh_of(f, 64) for f in task.sample_fields(n, seed=0, prior=True)]
    out.update({f"{k}_prior": v for k, v in mmd_cov(clouds(prior), ref).items()})
    return out

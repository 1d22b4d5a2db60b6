"""``--encoding rbf`` on the sdf task: NeuRBF at the hash grid's parameter count."""

from __future__ import annotations

import numpy as np
import torch
import trimesh

from app.presets import get_preset
from app.run import build_task, load_run, train
from renderer.cameras import Camera


def _torus_cfg(tmp_path, encoding: str, steps: int = 200):
    path = tmp_path / "torus.obj"
    trimesh.creation.torus(0.6, 0.25, major_sections=48, minor_sections=24).export(path)
    cfg = get_preset("spot-sdf")
    cfg.data.path = str(path)
    cfg.data.n_surface, cfg.data.n_near, cfg.data.n_uniform = 20_000, 30_000, 10_000
    cfg.data.batch_size = 2048
    cfg.model.encoding_type = encoding
    cfg.model.encoding = type(cfg.model.encoding)(num_levels=8, features_per_level=2,
                                                  log2_hashmap_size=12, base_resolution=8,
                                                  max_resolution=128)
    cfg.model.rbf.grid = type(cfg.model.encoding)(num_levels=4, features_per_level=1,
                                                  log2_hashmap_size=10, base_resolution=8,
                                                  max_resolution=64)
    cfg.model.rbf.kmeans_points = 20_000
    cfg.export.resolution = 64
    cfg.trainer.steps = steps
    return cfg


def test_rbf_sdf_budget_placement_fit_and_reload(tmp_path):
    hg = build_task(_torus_cfg(tmp_path, "hashgrid"), torch.device("cpu"))
    budget = sum(p.numel() for p in hg.model.parameters())
    cfg = _torus_cfg(tmp_path, "rbf")
    torch.manual_seed(0)
    task, _ = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    model = task.model
    assert budget - 20 < model.num_parameters() <= budget  # 20 parameters per nlin_s kernel
    # 1/|sdf| weights put the kernels on the surface: far closer to it than the pool is.
    from datasets.sdf_samples import MeshDistance

    ref = trimesh.load(cfg.data.path, force="mesh")
    centres = model.rbf.centres.detach()
    d_centres = MeshDistance(task.normalization.apply_mesh(ref)).signed_distance(centres).abs()
    pool = float(task.samples.sdf.abs().mean())
    assert float(d_centres.median()) < min(0.02, 0.25 * pool), (d_centres.median(), pool)
    metrics = task.evaluate(resolution=64, n_samples=20_000)
    assert metrics["volumetric_iou"] > 0.95 and metrics["chamfer_l1"] < 0.01, metrics
    assert metrics["normal_angle_deg"] < 15.0
    cam = Camera.orbit(30, 30, 3.0, width=24, height=20)
    img = task.render(cam, "normals")
    assert img.shape == (20, 24, 3) and (img.min(-1) < 0.99).mean() > 0.1
    run = load_run(tmp_path / "run")  # centres and shapes are restored with the weights
    assert torch.equal(run.task.model.rbf.centres, model.rbf.centres)
    assert np.allclose(run.render(cam, "normals"), img, atol=1e-5)

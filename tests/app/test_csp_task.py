"""The csp task end to end on a small open surface: trains, renders (rays past the boundary
miss), exports one open layer, evaluates, reloads."""

from __future__ import annotations

import numpy as np
import torch

from app.presets import get_preset
from app.run import load_run, train
from datasets.csp_samples import AnalyticPatch
from renderer.cameras import Camera
from renderer.open_meshing import boundary_loops


def test_csp_task_on_an_open_patch(tmp_path):
    path = tmp_path / "patch.obj"
    AnalyticPatch(0.5).to_mesh(24).export(path)
    cfg = get_preset("tshirt-csp")
    cfg.data.path = str(path)
    cfg.data.n_surface, cfg.data.n_near, cfg.data.n_uniform = 20_000, 40_000, 4_000
    cfg.data.batch_size = 2048
    cfg.trainer.steps = 400
    cfg.export.resolution = 64
    task, result = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert result.last_loss < 1e-3
    # The patch is normalised to span 2: z = 0, |x|, |y| ≤ 1. Straight down through it hits,
    # straight down past its edge misses.
    cam = Camera.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), width=33, height=33, fov_y_deg=60.0)
    out = task.render_frame(cam, "depth")
    o, d = cam.rays()
    t = -o[:, 2] / d[:, 2]
    xy = (o + t[:, None] * d)[:, :2]
    inside = (xy.abs() < 0.85).all(1)
    outside = (xy.abs() > 1.15).any(1)
    hit = out.hit.reshape(-1).cpu()
    assert hit[inside].float().mean() > 0.99 and hit[outside].float().mean() < 0.01
    info = task.export(tmp_path / "mesh.ply")
    assert info["boundary_loops"] >= 1 and info["sides_kept"] == 1
    metrics = task.evaluate(resolution=64, n_samples=20_000)
    assert metrics["chamfer_l1"] < 0.02
    assert 0.8 < metrics["area"] / metrics["reference_area"] < 1.25  # one layer, not two
    run = load_run(tmp_path / "run")
    assert np.allclose(run.render(cam, "depth"), task.render(cam, "depth"), atol=1e-5)
    assert len(boundary_loops(task.extract(64).mesh)) >= 1
    assert torch.isfinite(task.udf(torch.zeros(4, 3))).all()

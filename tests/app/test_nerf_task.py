"""The nerf task end to end on a tiny synthetic spot dataset (seconds on 2 cores)."""

from __future__ import annotations

import numpy as np

from app.presets import get_preset
from app.run import load_run, train
from datasets.synthetic import spot_blender_dataset
from renderer.cameras import Camera


def test_tiny_nerf_learns_renders_and_reloads(tmp_path):
    root = spot_blender_dataset(tmp_path / "spot", n_train=6, n_test=2, size=24)
    cfg = get_preset("spot-nerf")
    cfg.data.path = str(root)
    cfg.data.batch_rays = 512
    cfg.model.encoding = type(cfg.model.encoding)(num_levels=6, log2_hashmap_size=12,
                                                  base_resolution=8, max_resolution=64)
    cfg.render.samples_per_ray = 64
    cfg.render.occupancy_res = 16
    cfg.trainer.steps = 150
    cfg.trainer.log_every = 25
    task, result = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert result.step == 150
    import json

    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["loss"] < 0.2 * lines[0]["loss"]  # it learns
    metrics = task.evaluate()
    assert metrics["split"] == "test" and metrics["views"] == 2
    assert metrics["psnr"] > 15.0  # far above a blank image against spot on white (~11 dB)
    run = load_run(tmp_path / "run")
    cam = Camera.orbit(20, 20, 3.2, width=20, height=16)
    for mode in ("rgb", "depth", "normals", "opacity"):
        img = run.render(cam, mode)
        assert img.shape == (16, 20, 3) and np.isfinite(img).all()
    # The reloaded run renders what the trained task renders.
    assert np.allclose(run.render(cam, "rgb"), task.render(cam, "rgb"), atol=1e-5)


def test_nerf_cli_train_render_eval_and_export_error(tmp_path, capsys):
    import json

    from app.cli import main

    root = spot_blender_dataset(tmp_path / "spot", n_train=4, n_test=2, size=16)
    run_dir = tmp_path / "cli-run"
    tiny = ["--data.batch-rays", "256", "--model.encoding.num-levels", "4",
            "--model.encoding.log2-hashmap-size", "10", "--render.samples-per-ray", "32",
            "--render.occupancy-res", "8"]
    assert main(["train", "spot-nerf", "--steps", "20", "--data", str(root), "--out",
                 str(run_dir), "--no-progress", *tiny]) == 0
    capsys.readouterr()
    assert main(["render", str(run_dir), "--out", str(tmp_path / "v.png"), "--size",
                 "24x20"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "rgb"  # the task's first mode
    assert main(["eval", str(run_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["views"] == 2 and np.isfinite(metrics["psnr"])
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m.ply")]) == 2
    assert "no mesh export" in capsys.readouterr().err


def test_nerf_quantize_snaps_the_encoding_input():
    import torch

    from fields.encodings.quantized import QuantizedEncoding

    cfg = get_preset("spot-nerf")
    cfg.model.quantize = 11  # Δ = 0.5 over ±2.5: coarse enough to see
    from app.run import build_task

    task = build_task(cfg)
    enc = task.field.encoding
    assert isinstance(enc, QuantizedEncoding) and enc.quantizer.cell_size == 0.5
    x = torch.tensor([[0.1, 0.2, -0.1], [0.2, 0.05, -0.2]])  # the same cell
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    sigma, _ = task.field(x, d)
    assert sigma[0] == sigma[1]


class _SoftBall(__import__("torch").nn.Module):
    """σ = 50·sigmoid((0.5 − ‖x‖)/0.02), white: a ball whose outward normal is x/‖x‖."""

    encoding = None  # no quantiser

    def density(self, x):
        import torch

        return 50.0 * torch.sigmoid((0.5 - x.norm(dim=-1)) / 0.02)

    def forward(self, x, d):
        return self.density(x), x.new_ones(x.shape[0], 3)


def test_nerf_normals_of_a_density_ball_point_outwards():
    import torch

    from app.run import build_task

    task = build_task(get_preset("spot-nerf"))
    task.model["field"] = _SoftBall()
    cam = Camera.orbit(30.0, 20.0, 3.2, width=24, height=24, fov_y_deg=25.0)
    views = task.render_views(cam, normals=True)
    o, d = cam.rays()
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 0.25)
    inner = (disc > 0.05).reshape(24, 24)  # well inside the silhouette
    t = (-b - disc.clamp_min(0).sqrt()).reshape(24, 24)
    p = o.reshape(24, 24, 3) + t[..., None] * d.reshape(24, 24, 3)
    n_true = torch.nn.functional.normalize(p, dim=-1)
    cos = (views["normals"] * n_true).sum(-1)[inner]
    assert inner.sum() > 50 and cos.min() > 0.95
    assert (views["opacity"][inner] > 0.99).all()


def test_scene_up_from_the_views_cameras():
    import math

    import torch

    from app.tasks.views import scene_up
    from datasets.multiview import MultiViewDataset

    def views(ups):
        c2w = torch.eye(4).repeat(len(ups), 1, 1)
        for i, u in enumerate(ups):
            c2w[i, :3, :3] = Camera.look_at((0, 0, 0), (1, 0, 0) if u[0] == 0 else (0, 1, 0),
                                            up=u).c2w[:3, :3]
        n = len(ups)
        return MultiViewDataset(images=torch.zeros(n, 2, 2, 3), c2w=c2w, fx=torch.ones(n),
                                fy=torch.ones(n), cx=torch.ones(n), cy=torch.ones(n),
                                names=[f"{i}.png" for i in range(n)])

    assert scene_up(views([(0.0, 0.0, 1.0)] * 3)) == (0.0, 0.0, 1.0)  # Blender: z up
    tilt = (0.0, math.sin(0.5), math.cos(0.5))  # 29° off z: kept as measured
    assert np.allclose(scene_up(views([tilt] * 2)), tilt, atol=1e-5)
    assert scene_up(views([(0.0, 0.0, 1.0), (0.0, 0.0, -1.0)])) == (0.0, 1.0, 0.0)  # no consensus


def test_nerf_rbf_places_kernels_on_the_object_after_warmup(tmp_path):
    import torch

    root = spot_blender_dataset(tmp_path / "spot", n_train=6, n_test=1, size=24)
    cfg = get_preset("spot-nerf")
    cfg.data.path = str(root)
    cfg.data.batch_rays = 512
    cfg.model.encoding = type(cfg.model.encoding)(num_levels=6, log2_hashmap_size=12,
                                                  base_resolution=8, max_resolution=64)
    cfg.model.encoding_type = "rbf"
    cfg.model.rbf.n_kernels, cfg.model.rbf.warmup_steps = 64, 60
    cfg.model.rbf.placement_resolution = 24
    cfg.render.samples_per_ray, cfg.render.occupancy_res = 64, 16
    cfg.trainer.steps = 90
    torch.manual_seed(0)
    from app.run import build_task

    placeholder = build_task(cfg, torch.device("cpu")).field.appearance.centres.clone()
    task, _ = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    app = task.field.appearance
    assert not torch.equal(app.centres, placeholder)  # placed at step 60
    # Kernels sit where the field has density (the object), not in the empty box.
    with torch.no_grad():
        at_centres = task.field.density(app.centres).mean()
        anywhere = task.field.density(torch.rand(4096, 3) * 3.0 - 1.5).mean()
    assert float(at_centres) > 5.0 * float(anywhere)
    assert float(app.features.detach().abs().max()) > 1e-3  # and they learn
    run = load_run(tmp_path / "run")
    cam = Camera.orbit(20, 20, 3.2, width=16, height=12)
    assert torch.equal(run.task.field.appearance.centres, app.centres)
    assert np.allclose(run.render(cam, "rgb"), task.render(cam, "rgb"), atol=1e-5)

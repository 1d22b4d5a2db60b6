"""The neus task: its renderer against an analytic sphere, CQ-NIR placement, training end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from app.presets import get_preset
from app.run import build_task, load_run, train
from datasets.meshes import load_mesh, normalize_mesh
from datasets.synthetic import spot_blender_dataset
from fields.encodings.hashgrid import HashGridConfig
from renderer.cameras import Camera
from tests.conftest import SPOT

RADIUS = 0.5


class AnalyticSphere(nn.Module):
    """The exact SDF ``‖x‖ − r`` with the NeuSField interface; colour = (n + 1)/2."""

    quantizer = None

    def sdf_and_features(self, x):
        return x.norm(dim=-1) - RADIUS, x.new_zeros(x.shape[0], 1)

    def sdf_chunked(self, x):
        return x.norm(dim=-1) - RADIUS

    def gradient(self, x):
        return torch.nn.functional.normalize(x, dim=-1)

    def rgb(self, x, normals, dirs, features):
        return (normals + 1.0) * 0.5


def _sphere_task(inv_s_log: float = 1.0):
    cfg = get_preset("spot-neus")
    task = build_task(cfg)
    task.model["field"] = AnalyticSphere()
    with torch.no_grad():
        task.variance.variance.fill_(inv_s_log)  # s = exp(10 v)
    return task


def _ray_sphere_depth(o, d, r=RADIUS):
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - r * r)
    return torch.where(disc > 0, -b - disc.clamp_min(0).sqrt(), torch.full_like(b, float("inf")))


def test_surface_band_grid_keeps_only_cells_near_the_surface():
    task = _sphere_task()
    for k in range(3):
        task.update_grid(k)
    occ = task.grid.occupied
    lo, hi = torch.tensor(task.aabb[:3]), torch.tensor(task.aabb[3:])
    r = task.grid.res
    idx = torch.stack(torch.meshgrid(*[torch.arange(r)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = lo + (idx + 0.5) / r * (hi - lo)
    dist = (centres.norm(dim=-1) - RADIUS).abs().reshape(r, r, r)
    band = 1.5 * task.cell_diag + 5.0 / task.variance.item()
    # Every cell the surface passes through is kept; cells far from it (centre beyond the band
    # plus a cell diagonal) are all empty, including the sphere's interior.
    assert occ[dist < 0.5 * task.cell_diag].all()
    assert not occ[dist > band + task.cell_diag].any()
    assert occ.float().mean() < 0.2


def test_render_of_an_analytic_sphere_matches_ray_casting():
    """NeuS α on the band-occupancy samples: with a sharp s the image is the sphere's."""
    task = _sphere_task(inv_s_log=1.0)  # s ≈ 22026
    for k in range(3):
        task.update_grid(k)
    cam = Camera.orbit(30.0, 20.0, 3.2, width=48, height=40, fov_y_deg=30.0)
    views = task.render_views(cam)
    o, d = cam.rays()
    true_depth = _ray_sphere_depth(o, d).reshape(40, 48)
    hit = torch.isfinite(true_depth)
    # Grazing rays (within a sample step of the silhouette) are partial; judge the others.
    b = (o * d).sum(-1)
    miss_dist = ((o * o).sum(-1) - b * b).clamp_min(0).sqrt().reshape(40, 48)
    inner = miss_dist < RADIUS - 0.05
    outer = miss_dist > RADIUS + 0.05
    assert hit[inner].all() and views["opacity"][inner].min() > 0.99
    assert views["opacity"][outer].max() < 1e-3
    # Depth: α concentrates in the interval holding the crossing, so the error is ≤ a step.
    err = (views["depth"][inner] - true_depth[inner]).abs()
    assert err.max() < task.step_size
    o2 = o.reshape(40, 48, 3)[inner]
    d2 = d.reshape(40, 48, 3)[inner]
    p = o2 + true_depth[inner][:, None] * d2
    n_true = p / p.norm(dim=-1, keepdim=True)
    cos = (views["normals"][inner] * n_true).sum(-1)
    assert cos.min() > 0.99
    # Colour is the analytic (n + 1)/2 composited: same as shading the true normals.
    rgb_err = (views["rgb"][inner] - (n_true + 1) * 0.5).abs().max()
    assert rgb_err < 0.05


def test_rays_that_miss_the_box_render_background():
    task = build_task(get_preset("spot-neus"))  # a real NeuSField: empty batches must pass
    o = torch.tensor([[0.0, 5.0, -3.0], [5.0, 5.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    out = task.render_rays(o, d)
    assert out.num_samples == 0 and out.opacity.tolist() == [0.0, 0.0]
    assert out.rgb.abs().max() == 0.0


def test_render_of_a_soft_sphere_is_translucent_at_low_s():
    sharp = _sphere_task(1.0)
    soft = _sphere_task(0.2)  # s ≈ 7.4: the logistic density is wide
    for t in (sharp, soft):
        for k in range(3):
            t.update_grid(k)
    cam = Camera.orbit(0.0, 0.0, 3.2, width=8, height=8, fov_y_deg=10.0)
    a = sharp.render_views(cam)["opacity"]
    b = soft.render_views(cam)["opacity"]
    assert (a > 0.99).all() and (b < a).all()  # negative control: the sharpness matters


def _tiny_cfg(root, steps=120, quantize=0):
    cfg = get_preset("spot-neus")
    cfg.data.path = str(root)
    cfg.data.batch_rays = 256
    cfg.model.encoding = HashGridConfig(num_levels=6, log2_hashmap_size=12, base_resolution=8,
                                        max_resolution=64)
    cfg.model.quantize = quantize
    cfg.render.occupancy_res = 24
    cfg.render.samples_per_ray = 96
    cfg.loss.cos_anneal_steps = 50
    cfg.trainer.steps = steps
    cfg.trainer.log_every = 20
    return cfg


def test_quantizer_changes_network_inputs_not_samples(tmp_path):
    """CQ-NIR placement: same grid and seed → bitwise-equal samples, different SDF values."""
    cfg_plain = _tiny_cfg(tmp_path, quantize=0)
    cfg_q = _tiny_cfg(tmp_path, quantize=97)  # coarse: Δ = 5/96 ≈ 0.052
    plain, quant = build_task(cfg_plain), build_task(cfg_q)
    quant.model.load_state_dict(plain.model.state_dict())
    o = torch.tensor([[0.0, 0.1, -3.0], [0.2, -0.1, -3.0]])
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0], [-0.05, 0.02, 1.0]]), dim=-1)
    samples = []
    for t in (plain, quant):
        torch.manual_seed(3)
        ri, t0, t1 = t.grid.sample(o, d, 0.0, float("inf"), t.step_size, stratified=True)
        samples.append((ri, t0, t1))
    for a, b in zip(*samples):
        assert torch.equal(a, b)
    torch.manual_seed(3)
    out_p = plain.render_rays(o, d, stratified=True)
    torch.manual_seed(3)
    out_q = quant.render_rays(o, d, stratified=True)
    assert torch.equal(out_p.samples, out_q.samples)  # the sampler never sees q(x)
    sdf_p = plain.field.sdf(out_p.samples)
    sdf_q = quant.field.sdf(out_q.samples)
    assert not torch.allclose(sdf_p, sdf_q)
    assert quant.properties()["quantizer_cell_size"] == pytest.approx(5.0 / 96)


def test_quantize_must_cover_the_box():
    cfg = get_preset("spot-neus")
    cfg.model.quantize = 100
    cfg.model.quantize_domain = 1.0
    with pytest.raises(ValueError, match="cover"):
        build_task(cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("neus")
    root = spot_blender_dataset(tmp / "spot", n_train=12, n_test=2, size=32)
    cfg = _tiny_cfg(root, steps=300)
    task, result = train(cfg, tmp / "run", progress=False, log=lambda m: None)
    return task, result, tmp


@torch.no_grad()
def _silhouette_and_colour_error(task):
    """Mean BCE of opacity against coverage and L1 of colour over every training ray."""
    rays_o, rays_d, rgb = task._rays
    bce, l1 = [], []
    for o, d, c, a in zip(rays_o.split(2048), rays_d.split(2048), rgb.split(2048),
                          task._coverage.split(2048)):
        out = task.render_rays(o, d)
        bce.append(torch.nn.functional.binary_cross_entropy(
            out.opacity.clamp(1e-3, 1 - 1e-3), a[:, 0], reduction="sum"))
        l1.append((out.rgb - c).abs().sum())
    n = rays_o.shape[0]
    return float(sum(bce)) / n, float(sum(l1)) / n


def test_training_learns_the_silhouette_and_the_shape(trained):
    task, result, tmp = trained
    assert result.step == 300
    fresh = build_task(_tiny_cfg(tmp))
    fresh._rays, fresh._coverage = task._rays, task._coverage
    for k in range(3):
        fresh.update_grid(k)
    bce, l1 = _silhouette_and_colour_error(task)
    bce0, l1_0 = _silhouette_and_colour_error(fresh)
    assert bce < 0.5 * bce0 and l1 < 0.5 * l1_0
    assert task.variance.item() > 2.0 * fresh.variance.item()  # the surface sharpens
    # The extracted surface is closer to spot than the initial sphere is (negative control).
    from app.metrics import evaluate_meshes

    ref, _ = normalize_mesh(load_mesh(SPOT))
    fitted = evaluate_meshes(task.extract(resolution=64).mesh, ref, n=5000)
    init = evaluate_meshes(fresh.extract(resolution=64).mesh, ref, n=5000)
    assert fitted["chamfer_l1"] < 0.7 * init["chamfer_l1"]
    assert fitted["volumetric_iou"] > init["volumetric_iou"]


def test_trained_run_reloads_renders_and_exports(trained, tmp_path):
    task, _, tmp = trained
    run = load_run(tmp / "run")
    cam = Camera.orbit(20, 20, 3.2, width=20, height=16)
    for mode in run.task.render_modes:
        img = run.render(cam, mode)
        assert img.shape == (16, 20, 3) and np.isfinite(img).all()
    assert np.allclose(run.render(cam, "rgb"), task.render(cam, "rgb"), atol=1e-5)
    info = run.export(tmp_path / "mesh.ply", resolution=48)
    assert info["faces"] > 100
    m = run.evaluate(max_views=1)
    assert m["split"] == "test" and np.isfinite(m["psnr"]) and m["reference"] is None


def test_neus_cli_with_quantize_and_reference(tmp_path, capsys):
    from app.cli import main

    root = spot_blender_dataset(tmp_path / "spot", n_train=4, n_test=1, size=16)
    run_dir = tmp_path / "cli-run"
    tiny = ["--data.batch-rays", "128", "--model.encoding.num-levels", "4",
            "--model.encoding.log2-hashmap-size", "10", "--render.samples-per-ray", "48",
            "--render.occupancy-res", "8"]
    assert main(["train", "spot-neus", "--steps", "10", "--quantize", "25600", "--data",
                 str(root), "--out", str(run_dir), "--no-progress", *tiny]) == 0
    capsys.readouterr()
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["model"]["quantize"] == 25600
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m.ply"),
                 "--resolution", "32"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--reference", str(SPOT), "--samples", "2000",
                 "--resolution", "32"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert np.isfinite(metrics["chamfer_l1"]) and np.isfinite(metrics["psnr"])
    # --quantize is refused where the task has no quantiser.
    assert main(["train", "spot-sdf", "--steps", "1", "--quantize", "100", "--out",
                 str(tmp_path / "sdf")]) == 2
    assert "quantize" in capsys.readouterr().err


def test_formats_without_a_held_out_split_evaluate_on_training_views(tmp_path):
    """A NeuS/DTU folder has no test split: eval must say "train", not pass them as held out."""
    from app.tasks.views import load_views
    from tests.datasets.test_multiview import _write_neus

    _write_neus(tmp_path, [0, 1, 2])
    train_set, test_set = load_views(tmp_path, 1, (0.0, 0.0, 0.0))
    assert test_set is None and len(train_set) > 0

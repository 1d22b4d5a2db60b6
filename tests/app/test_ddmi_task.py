"""The ddmi task end to end on the under-a-minute variant (spec ``ddmi.md``, checks 6–9 on
single discs: 1×4×4 latents, an MLP denoiser), the ``sample`` command, and the 3-D path on a
handful of primitives."""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from app.presets import get_preset
from app.run import load_run, train


def _discs_config():
    cfg = get_preset("discs-ddmi")  # as shipped: 600 discs, 400 + 4000 steps
    cfg.trainer.checkpoint_every = 10_000
    return cfg


@cache
def _trained(root: str):
    t0 = time.perf_counter()
    task, _ = train(_discs_config(), Path(root) / "run", progress=False, log=lambda m: None)
    return task, Path(root) / "run", time.perf_counter() - t0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _trained(str(tmp_path_factory.mktemp("ddmi")))


def test_discs_checks_6_to_9(trained):
    task, _, seconds = trained
    m = task.evaluate(generated=128)
    radii = m.pop("sample_radii")
    print(f"\n[ddmi discs: {seconds:.0f} s to train; {m}; {len(radii)} disc radii]", end="")
    # 6: continuity — the 4× grid (never an input) scores like the input grid.
    assert m["recon_iou_32"] > 0.85
    assert abs(m["recon_iou_128"] - m["recon_iou_32"]) < 0.05
    # 7: resolution consistency of generated samples; odd sizes render.
    assert m["resolution_mae"] < 0.05
    assert m["render_37x53"] == [37, 53]
    # 8: the diffusion model beats decoding the VAE prior N(0, I) (the negative control).
    assert m["mmd_ldm"] < 0.7 * m["mmd_prior"]
    assert m["cov_ldm"] > m["cov_prior"]
    # 9: samples are discs with the data's radius distribution.
    assert m["disc_fraction"] >= 0.8
    assert m["disc_fraction_prior"] < 0.5
    assert m["radius_ks_pvalue"] > 0.01


def test_sampling_is_deterministic_and_queries_are_pointwise(trained):
    task, _, _ = trained
    a, b = task.sample_latents(4, seed=3), task.sample_latents(4, seed=3)
    assert torch.equal(a, b)
    assert not torch.allclose(a, task.sample_latents(4, seed=4))
    f = task.fields_from_latents(a[:1])[0]
    x = torch.rand(500, 2) * 2 - 1
    together = f(x)
    alone = torch.cat([f(x[i:i + 1]) for i in range(0, 500, 97)])
    assert torch.allclose(together[::97], alone, atol=1e-6)


def test_run_reopens_and_samples_from_the_cli(trained, tmp_path, capsys):
    from app.cli import main

    task, run_dir, _ = trained
    run = load_run(run_dir)
    assert float(run.task.model["stats"].latent_std) == pytest.approx(
        float(task.model["stats"].latent_std))
    assert torch.equal(run.task.sample_latents(2, seed=1), task.sample_latents(2, seed=1))
    out = tmp_path / "samples"
    assert main(["sample", str(run_dir), "--n", "3", "--resolution", "37x53",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["written"]) == 4
    import imageio.v3 as iio

    img = iio.imread(out / "sample_000.png")
    assert img.shape[:2] == (53, 37)
    assert 0 < (img[..., 0] > 127).mean() < 0.9  # a disc: some inside, mostly not
    from tests.conftest import tiny_sdf_config

    sdf_dir = tmp_path / "sdf"
    train(tiny_sdf_config(steps=2), sdf_dir, progress=False, log=lambda m: None)
    with pytest.raises(SystemExit, match="sampling needs a ddmi run"):
        main(["sample", str(sdf_dir), "--out", str(out)])


def test_renders_for_the_viewer(trained):
    from renderer.cameras import Camera

    task, _, _ = trained
    cam = Camera.orbit(0.0, 0.0, 3.0, width=64, height=64)
    gallery = task.render(cam, "samples")
    assert gallery.shape == (64, 64, 3) and 0.02 < gallery.mean() < 0.9
    task.set_slider("sample", 2)
    one = task.render(cam, "sample")
    assert one.shape == (64, 64, 3) and not np.allclose(one, gallery)
    assert task.render(cam, "data").std() > 0.1
    with pytest.raises(Exception, match="unknown render mode"):
        task.render(cam, "nope")


def test_stages_and_config_errors(tmp_path):
    from app.errors import ConfigError
    from app.tasks.ddmi import DDMITask

    cfg = _discs_config()
    task = DDMITask(cfg, torch.device("cpu"))
    v = cfg.model.vae_steps
    assert task.lr_scales(0) == [1.0, 0.0] and task.lr_scales(v)[0] == 0.0
    assert task.lr_scales(v)[1] == pytest.approx(1.0) and task.lr_scales(v - 1)[1] == 0.0
    with pytest.raises(Exception, match="not reached its diffusion stage"):
        task.sample_latents(1)
    cfg.model.vae_steps = cfg.trainer.steps
    with pytest.raises(ConfigError, match="vae_steps"):
        DDMITask(cfg, torch.device("cpu"))
    bad = _discs_config()
    bad.data.source = str(tmp_path / "nothing-here")
    from app.errors import FieldsAppError

    with pytest.raises(FieldsAppError, match="nothing-here"):
        DDMITask(bad, torch.device("cpu")).setup_data()


def test_3d_primitives_path(tmp_path, capsys):
    """The tri-plane path runs end to end on a few primitives (a smoke run: a few steps of each
    stage); sample meshes are written and evaluation reports the 3-D numbers."""
    from app.cli import main

    cfg = get_preset("shapes3d-ddmi")
    cfg.data.n_train, cfg.data.n_test, cfg.data.batch_size = 12, 4, 4
    cfg.data.n_points, cfg.data.n_queries = 256, 512
    cfg.model.vae_steps, cfg.trainer.steps = 6, 12
    task, _ = train(cfg, tmp_path / "run", progress=False, log=lambda m: None)
    assert task.latent_shape == (12, 8, 8)
    m = task.evaluate(generated=2)
    assert 0.0 <= m["recon_iou_32"] <= 1.0 and m["samples"] == 2
    assert {"mmd_ldm", "cov_ldm", "mmd_prior", "nearest_train_iou_mean"} <= set(m)
    assert main(["sample", str(tmp_path / "run"), "--n", "2", "--resolution", "24",
                 "--out", str(tmp_path / "s")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (tmp_path / "s" / "samples.png").is_file() and len(report["details"]) == 2


def test_folders_of_images_and_meshes(tmp_path):
    """User data: a folder of images (RGB fields, L1) and a folder of watertight meshes
    (point clouds → tri-planes) train end to end (a few steps of each stage) and sample."""
    import imageio.v3 as iio
    import trimesh

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for k in range(8):
        img = np.zeros((40, 40, 3), np.uint8)
        x, y = rng.integers(5, 25, size=2)
        img[y:y + 12, x:x + 12] = rng.integers(60, 255, size=3)
        iio.imwrite(images / f"im{k}.png", img)
    cfg = get_preset("shapes-ddmi")
    cfg.data.source, cfg.data.batch_size, cfg.data.resolution = str(images), 4, 16
    cfg.model.vae_steps, cfg.trainer.steps = 4, 8
    task, _ = train(cfg, tmp_path / "img-run", progress=False, log=lambda m: None)
    assert task.in_channels == 3 and len(task.train_index) == 6 and len(task.test_index) == 2
    m = task.evaluate(generated=2)
    assert 0.0 <= m["recon_l1_16"] <= 1.0 and m["render_37x53"] == [37, 53]
    assert task.image_of(task.sample_fields(1)[0], 20, 30).shape == (20, 30, 3)
    from renderer.cameras import Camera

    shown = task.render(Camera.orbit(0.0, 0.0, 3.0, width=64, height=64), "data")
    assert shown.shape == (64, 64, 3)
    assert np.abs(shown[..., 0] - shown[..., 2]).max() > 0.05  # the pictures, in colour

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    for k in range(4):
        shape = (trimesh.creation.icosphere(subdivisions=2, radius=0.5 + 0.1 * k) if k % 2
                 else trimesh.creation.box(extents=[0.8, 0.6 + 0.1 * k, 0.5]))
        shape.export(meshes / f"m{k}.obj")
    cfg = get_preset("shapes3d-ddmi")
    cfg.data.source, cfg.data.batch_size = str(meshes), 2
    cfg.data.n_points, cfg.data.n_queries = 128, 256
    cfg.model.vae_steps, cfg.trainer.steps = 3, 6
    task, _ = train(cfg, tmp_path / "mesh-run", progress=False, log=lambda m: None)
    assert task.dim == 3 and len(task.train_index) == 3 and len(task.test_index) == 1
    m = task.evaluate(generated=2)
    assert m["samples"] == 2 and {"mmd_ldm", "mmd_prior"} <= set(m)

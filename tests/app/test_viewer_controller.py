"""The viewer's controller and camera, driven without a display (the window only reads and
writes this state)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import trimesh

from app.presets import get_preset
from app.viewer import OrbitCamera, ViewerController
from app.viewer.controller import LEVELS
from datasets.synthetic import spot_blender_dataset
from renderer.cameras import Camera
from renderer.surface import default_light_dir
from tests.conftest import tiny_sdf_config


def _tiny_sdf():
    return tiny_sdf_config(steps=40, batch_size=1024)


@pytest.fixture
def ctl(tmp_path):
    c = ViewerController("spot-sdf", config=_tiny_sdf(), out=tmp_path / "run", view_size=(48, 40))
    c.render.render_scale = 1.0
    yield c
    c.close(save=False)


# -- the orbit camera -------------------------------------------------------------------------
def test_orbit_camera_round_trips_and_gestures():
    cam = Camera.orbit(37.0, -12.0, 2.5, target=(0.1, 0.2, -0.3), width=8, height=8)
    oc = OrbitCamera.from_camera(cam, target=np.array([0.1, 0.2, -0.3]))
    assert (oc.azimuth, oc.elevation, oc.radius) == pytest.approx((37.0, -12.0, 2.5), abs=1e-4)
    assert np.allclose(oc.camera(8, 8).c2w, cam.c2w, atol=1e-5)
    # Orbit turns about the target at a fixed distance; elevation is clamped below the pole.
    eye0 = oc.camera(8, 8).c2w[:3, 3].numpy()
    oc.orbit(50.0, 1000.0)
    eye1 = oc.camera(8, 8).c2w[:3, 3].numpy()
    assert oc.elevation == 89.0 and not np.allclose(eye0, eye1)
    assert np.linalg.norm(eye1 - oc.target) == pytest.approx(2.5, rel=1e-5)
    # Pan by the view height in pixels slides the target by the visible height at its depth.
    oc = OrbitCamera.from_camera(cam, target=np.array([0.1, 0.2, -0.3]))
    right = oc.camera(8, 8).c2w[:3, 0].numpy()
    before = oc.target.copy()
    oc.pan(-100.0, 0.0, view_height=100)
    visible = 2 * 2.5 * math.tan(math.radians(oc.fov_y_deg) / 2)
    assert np.allclose(oc.target - before, visible * right, atol=1e-6)
    oc.zoom(2.0)
    assert oc.radius == pytest.approx(2.5 * 0.81)


def test_light_direction_matches_the_default_key_light():
    oc = OrbitCamera()
    cam = oc.camera(8, 8)
    key = default_light_dir(cam).numpy()
    az = math.degrees(math.atan2(key @ cam.c2w[:3, 0].numpy(), key @ cam.c2w[:3, 2].numpy()))
    el = math.degrees(math.asin(key @ cam.c2w[:3, 1].numpy()))
    assert np.allclose(oc.light_direction(az, el), key, atol=1e-6)
    assert oc.light_direction(0.0, 0.0) == pytest.approx(tuple(cam.c2w[:3, 2].tolist()),
                                                          abs=1e-6)  # 0/0: from the eye


# -- rendering ------------------------------------------------------------------------------
def _train(ctl, steps):
    for _ in range(steps):
        ctl.step_once()


def test_orbit_changes_the_render_and_a_still_camera_does_not(ctl):
    _train(ctl, 40)
    first = ctl.render_frame(1).image.copy()
    assert first.shape == (40, 48, 3) and np.isfinite(first).all()
    assert (first.min(-1) < 0.9).mean() > 0.05  # the shape is in view
    assert np.array_equal(ctl.render_frame(1).image, first)  # negative control
    ctl.orbit(60.0, 10.0)
    turned = ctl.render_frame(1).image
    assert np.abs(turned - first).mean() > 1e-3


def test_adaptive_level_and_progressive_refinement(ctl):
    ctl.rest_seconds = 0.0
    sizes = []
    for _ in range(10):
        if not ctl.work():
            break
        sizes.append(ctl.frame.image.shape[:2])
    # First frame at the coarsest level (no timings yet), then one level finer per frame.
    assert [s[1] for s in sizes] == [round(48 / d) for d in LEVELS]
    assert ctl.frame.divisor == 1 and not ctl.work()  # nothing left to do: idle
    # The cost model now predicts; a tight budget picks a coarse level, a loose one full size.
    ctl.render.budget_ms = 1e-6
    assert ctl._interactive_divisor() == LEVELS[0]
    ctl.render.budget_ms = 1e6
    assert ctl._interactive_divisor() == 1
    assert ctl.predicted_ms(48 * 40) > 0


def test_render_settings_change_the_image(ctl):
    _train(ctl, 20)
    base = ctl.render_frame(1).image.copy()
    ctl.update_render(background=(0.0, 0.0, 0.0))
    dark = ctl.render_frame(1).image
    corner = (0, 0)  # a background pixel
    assert np.allclose(base[corner], 1.0) and np.allclose(dark[corner], 0.0)
    ctl.update_render(mode="slice")
    assert ctl.render_frame(1).mode == "slice"
    ctl.update_render(mode="no-such-mode")  # refused with a message, not an exception
    assert ctl.render.mode == "slice" and "no-such-mode" in ctl.messages[-1]


def test_every_task_opens_and_renders_its_modes(tmp_path):
    root = spot_blender_dataset(tmp_path / "spot", n_train=2, n_test=1, size=12)
    for preset in ("spot-sdf", "spot-nerf", "spot-neus", "astronaut-image", "tshirt-csp",
                   "olat-relight", "starman2d-naisr", "starman-naisr", "discs-ddmi",
                   "shapes3d-ddmi"):
        cfg = _tiny_sdf() if preset == "spot-sdf" else get_preset(preset)
        if preset.endswith("naisr"):
            cfg.model.template_hidden = cfg.model.deform_hidden = 16
        elif preset.endswith("ddmi"):
            cfg.data.n_train, cfg.data.n_test, cfg.data.n_points = 8, 16, 128
        elif preset == "olat-relight":
            cfg.data.n_lights, cfg.data.n_views, cfg.data.size = 8, 2, 16
        elif preset == "tshirt-csp":  # the shipped open cloth
            cfg.data.n_surface, cfg.data.n_near, cfg.data.n_uniform = 2000, 4000, 400
            cfg.model.encoding = type(cfg.model.encoding)(num_levels=4, log2_hashmap_size=10,
                                                          base_resolution=8, max_resolution=32)
        elif preset == "astronaut-image":
            cfg.model.hashgrid = type(cfg.model.hashgrid)(num_levels=4, log2_hashmap_size=8,
                                                          base_resolution=4, max_resolution=16)
        elif preset != "spot-sdf":
            cfg.data.path = str(root)
            cfg.model.encoding = type(cfg.model.encoding)(num_levels=4, log2_hashmap_size=10,
                                                          base_resolution=8, max_resolution=32)
            cfg.render.occupancy_res = 8
        c = ViewerController(preset, config=cfg, out=tmp_path / preset, view_size=(20, 16))
        c.render.render_scale = 1.0
        for mode in c.task.render_modes:
            c.update_render(mode=mode)
            img = c.render_frame(1).image
            assert img.shape == (16, 20, 3), (preset, mode)
            assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
        assert any(k.startswith("field.") for k, _ in c.properties())
        c.close(save=False)


# -- training, errors, checkpoints -----------------------------------------------------------
def test_step_reset_and_training_errors_are_reported(ctl):
    ctl.step_once()
    assert ctl.step == 1 and ctl.history.steps == [1.0]
    w0 = ctl.task.model.encoding.params.detach().clone()
    ctl.step_once()
    assert not torch.equal(w0, ctl.task.model.encoding.params)
    ctl.set_lr(-1.0)
    assert ctl.lr == pytest.approx(1e-2) and "learning rate" in ctl.messages[-1]

    def broken(step):
        raise RuntimeError("boom")
    ctl.task.training_loss = broken
    ctl.start()
    assert ctl.training
    for _ in range(3):  # a frame may be due first; then the failing step
        ctl.work()  # caught, shown, training paused
    assert not ctl.training and "boom" in ctl.messages[-1] and "error" in ctl.status
    ctl.reset()
    assert ctl.step == 0 and ctl.trainer is None


def test_threaded_engine_trains_beside_the_caller_and_saves_on_close(tmp_path):
    c = ViewerController("spot-sdf", config=_tiny_sdf(), out=tmp_path / "run",
                         view_size=(24, 24))
    c.start_engine()
    c.start()
    deadline = time.time() + 120
    while c.step < 10 and time.time() < deadline:
        c.orbit(5.0, 0.0)  # the caller (UI thread) keeps moving the camera meanwhile
        time.sleep(0.02)
    assert c.step >= 10 and c.frame is not None
    c.pause()
    c.close(save=True)
    from app.run import load_run

    run = load_run(tmp_path / "run")
    assert run.step == c.step  # what was trained is on disk


def test_export_button_writes_what_the_cli_writes(ctl, tmp_path, capsys):
    from app.cli import main

    _train(ctl, 30)
    ctl.save_checkpoint()
    ctl.export_settings.resolution = 40
    ctl.export_settings.path = str(tmp_path / "viewer.ply")
    ctl.export_mesh()
    assert ctl.last_export is not None and ctl.last_export["path"].endswith("viewer.ply")
    assert main(["export", str(ctl.run_dir), "--out", str(tmp_path / "cli.ply"),
                 "--resolution", "40"]) == 0
    capsys.readouterr()
    a = trimesh.load(tmp_path / "viewer.ply", process=False)
    b = trimesh.load(tmp_path / "cli.ply", process=False)
    assert len(a.faces) > 100
    assert np.array_equal(a.faces, b.faces) and np.array_equal(a.vertices, b.vertices)
    # Another iso level is another mesh (the setting is honoured, not ignored).
    ctl.export_settings.level = 0.05
    ctl.export_settings.path = str(tmp_path / "outer.obj")
    ctl.export_mesh()
    c = trimesh.load(tmp_path / "outer.obj", process=False)
    assert c.area > a.area


def test_export_errors_stay_in_the_window(ctl, tmp_path):
    ctl.export_settings.resolution = 24
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ctl.export_settings.path = str(blocker / "sub" / "mesh.ply")  # parent is a file
    ctl.export_mesh()
    assert ctl.last_export is None and "export failed" in ctl.messages[-1]


def test_open_saved_run_and_snap_without_views(ctl, tmp_path):
    ctl.config.trainer.log_every = 2
    _train(ctl, 5)
    ctl.save_checkpoint()
    opened = ViewerController(run_dir=ctl.run_dir, view_size=(24, 24))
    opened.render.render_scale = 1.0
    ctl.set_view_size(24, 24)
    assert opened.step == 5 and opened.preset == "spot-sdf"
    assert opened.history.steps == [2.0, 4.0]  # the plots show the run's logged steps
    # The reopened run renders the field that was saved.
    assert np.allclose(opened.render_frame(1).image, ctl.render_frame(1).image, atol=1e-5)
    opened.snap_to_view(0)  # an sdf task has no dataset views: a message, no exception
    assert "no dataset views" in opened.messages[-1]
    opened.close(save=False)
    # The Open-run action switches a running viewer to the saved run (a bad path: a message).
    other = ViewerController("spot-sdf", config=_tiny_sdf(), out=tmp_path / "other",
                             view_size=(24, 24))
    other.open_run(str(tmp_path / "nowhere"))
    assert "open run failed" in other.messages[-1]
    other.open_run(str(ctl.run_dir))
    assert other.run_dir == ctl.run_dir and other.step == 5 and other.history.steps == [2.0, 4.0]
    other.close(save=False)


# -- FreSh spectra -----------------------------------------------------------------------------
def _fresh_image(tmp_path):
    """An ``astronaut-image`` config that runs a small FreSh search (SIREN ω₀, 2 inits, S = 8)
    on a 32×32 picture when its data loads; returns the config."""
    from tests.app.test_fresh import write_picture

    path = write_picture(tmp_path / "pic.png")
    cfg = get_preset("astronaut-image")
    cfg.data.path = str(path)
    cfg.model.encoding, cfg.model.fresh = "siren", True
    cfg.model.fresh_inits, cfg.model.fresh_size = 2, 8
    cfg.model.siren_hidden, cfg.model.siren_layers = 32, 2
    cfg.trainer.lr, cfg.trainer.steps, cfg.trainer.checkpoint_every = 1e-4, 10, 1000
    return cfg


def test_fresh_spectra_live_and_after_reopening_the_run(tmp_path, capsys):
    from app.run import load_run
    from app.tasks.image import FRESH_RECORD_KEYS, make_fresh_record
    from fields.fresh import SIREN_OMEGA0_CANDIDATES

    c = ViewerController("astronaut-image", config=_fresh_image(tmp_path), out=tmp_path / "run",
                         view_size=(16, 16))
    assert c.fresh_spectra() is None  # the search runs when the data loads (first step)
    c.step_once()
    result = c.task.fresh_result
    data = c.fresh_spectra()
    assert result is not None and data is not None
    assert data["hyperparameter"] == "siren_omega0" and data["size"] == 8 and data["inits"] == 2
    assert data["chosen"] == result.chosen == c.config.model.siren_omega0
    assert data["bins"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    for key in ("target", "model"):
        assert len(data[key]) == 8 and sum(data[key]) == pytest.approx(1.0, abs=1e-12)
        assert min(data[key]) >= 0.0
    assert data["target"] == pytest.approx(result.target_spectrum.tolist(), abs=1e-12)
    assert data["model"] == pytest.approx(result.model_spectrum.tolist(), abs=1e-12)
    assert data["rows"] == [tuple(r) for r in result.rows()]
    assert [r[0] for r in data["rows"]] == list(SIREN_OMEGA0_CANDIDATES)
    assert data["rows"][data["chosen_index"]][0] == data["chosen"]
    c.save_checkpoint()
    c.close(save=False)
    # The checkpoint's meta carries the compact record; a reloaded task exposes it as it was.
    run = load_run(tmp_path / "run")
    assert run.task.fresh_result is None
    assert run.task.fresh_record == make_fresh_record(result)
    assert set(run.task.fresh_record) == set(FRESH_RECORD_KEYS)
    assert run.task.meta()["fresh"] == run.task.fresh_record  # re-saved with the run
    opened = ViewerController(run_dir=tmp_path / "run", view_size=(16, 16))
    assert opened.fresh_spectra() == data
    opened.close(save=False)
    # A broken record costs the plot (with a warning), not the run.
    meta = dict(run.task.meta())
    meta["fresh"] = {**meta["fresh"], "model_spectrum": [0.5]}
    capsys.readouterr()
    run.task.load_meta(meta)
    assert run.task.fresh_record is None and "model_spectrum has 1 entries" in (
        capsys.readouterr().err)


def test_fresh_spectra_are_none_without_a_search(ctl, tmp_path):
    assert ctl.fresh_spectra() is None  # an sdf task has no FreSh
    cfg = _fresh_image(tmp_path)
    cfg.model.fresh = False
    c = ViewerController("astronaut-image", config=cfg, out=tmp_path / "plain",
                         view_size=(16, 16))
    c.step_once()
    assert c.task.image is not None and c.fresh_spectra() is None
    c.close(save=False)

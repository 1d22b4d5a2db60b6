"""Scenes of trained runs: Scene.add(run), scene files, `fields-app render scene.toml`, and the
validation of runs as they load."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main
from app.errors import CheckpointError, ConfigError, FieldsAppError
from app.presets import get_preset
from app.run import load_run, train
from app.scene_file import load_scene
from renderer.cameras import Camera
from renderer.scene import Scene, sphere
from tests.conftest import tiny_sdf_config

ROOT = Path(__file__).resolve().parents[2]


@cache
def _runs(root: str) -> dict[str, Path]:
    """A tiny spot SDF and a tiny CSP fit of the shipped cloth, trained once per session."""
    root_p = Path(root)
    sdf = tiny_sdf_config(steps=150, batch_size=2048)
    csp = get_preset("tshirt-csp")
    csp.data.n_surface, csp.data.n_near, csp.data.n_uniform = 8000, 16000, 2000
    csp.data.batch_size = 2048
    csp.model.encoding = type(csp.model.encoding)(num_levels=6, log2_hashmap_size=12,
                                                  base_resolution=8, max_resolution=64)
    csp.trainer.steps = 150
    out = {}
    for name, cfg in (("spot-sdf", sdf), ("cloth-csp", csp)):
        train(cfg, root_p / name, progress=False, log=lambda m: None)
        out[name] = root_p / name
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return _runs(str(tmp_path_factory.mktemp("scene_runs")))


def test_runs_compose_render_and_export_in_place(runs, tmp_path):
    scene = Scene()
    spot = scene.add(load_run(runs["spot-sdf"]), translate=(1.2, 0.0, 0.0), scale=0.8,
                     material="clay")
    cloth = scene.add(load_run(runs["cloth-csp"]), translate=(-1.2, 0.0, 0.0), scale=0.8)
    scene.lights.sun(direction=(1.0, 1.0, 1.0))
    cam = Camera.orbit(0.0, 10.0, 6.0, width=64, height=40, fov_y_deg=40.0)
    img = scene.render(cam, "objects")
    ids = img.object_id[img.hit]
    assert {0, 1} <= set(np.unique(ids).tolist())
    # Spot is on the right of the image, the cloth on the left (camera looks down −z at 0°).
    cols = np.nonzero(img.object_id == 0)[1]
    assert cols.mean() > 32 and np.nonzero(img.object_id == 1)[1].mean() < 32
    # Each object renders in its place exactly as alone.
    alone = Scene()
    alone.add(load_run(runs["spot-sdf"]), translate=(1.2, 0.0, 0.0), scale=0.8)
    solo = alone.render(cam, "depth")
    mine = img.object_id == 0
    assert np.allclose(img.depth[mine], solo.depth[mine], atol=1e-5)
    shaded = scene.render(cam).array
    assert np.isfinite(shaded).all() and shaded[img.hit].std() > 0.02
    mesh = scene.export_mesh(tmp_path / "scene.ply", resolution=64)
    v = np.asarray(mesh.vertices)
    assert (v[:, 0] > 0.3).sum() > 100 and (v[:, 0] < -0.3).sum() > 100
    assert np.abs(v[:, 0]).max() < 1.2 + 0.8 * 1.1
    del spot, cloth


def test_scene_file_renders_from_the_cli(runs, tmp_path, capsys):
    scene_file = tmp_path / "scene.toml"
    scene_file.write_text(f"""
background = "black"
[camera]
elevation = 15.0
[[objects]]
run = "{runs['spot-sdf']}"
translate = [0.9, 0.0, 0.0]
material = "clay"
[[objects]]
shape = "sphere"
radius = 0.4
translate = [-0.9, 0.0, 0.0]
material = [0.2, 0.4, 0.9]
[[lights]]
type = "sun"
direction = [1.0, 1.0, 1.0]
[[lights]]
type = "ambient"
value = 0.05
""")
    scene, cam = load_scene(scene_file)
    assert len(scene) == 2 and cam == {"elevation": 15.0} and scene.background == (0, 0, 0)
    out = tmp_path / "scene.png"
    assert main(["render", str(scene_file), "--out", str(out), "--size", "48x32"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.is_file() and report["mode"] == "shaded" and report["mean_intensity"] > 0.02
    assert main(["render", str(scene_file), "--out", str(tmp_path / "t.png"), "--size",
                 "24x16", "--frames", "3", "--mode", "objects"]) == 0


@pytest.mark.parametrize("text, match", [
    ("[[objects]]\nshape = 'cube'\n", "unknown shape"),
    ("[[objects]]\nshape = 'sphere'\nradius = 0.3\ncolour = 'red'\n", "unknown key"),
    ("[[objects]]\nrun = 'nowhere/run'\n", "not found"),
    ("[[objects]]\nshape = 'sphere'\nrun = 'x'\n", "exactly one"),
    ("[[objects]]\nshape = 'sphere'\nmaterial = 'velvet'\n", "material"),
    ("[[objects]]\nshape = 'sphere'\n[[lights]]\ntype = 'laser'\n", "type"),
    ("[[objects]]\nshape = 'sphere'\n[[lights]]\ntype = 'point'\n", "position"),
    ("background = 'white'\n", "at least one"),
    ("[[objects]\nshape = 'sphere'\n", "not valid TOML"),
])
def test_scene_file_errors_name_the_file_and_the_entry(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_scene(path)
    assert str(path) in str(info.value)


def test_json_scene_files_and_cli_errors(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"objects": [{"shape": "torus", "major": 0.5, "minor": 0.2}]}))
    scene, _ = load_scene(path)
    assert scene.objects[0].source.name.startswith("torus")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"objects": [{"shape": "sphere", "scale": -1}]}))
    assert main(["render", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "scale" in err


def test_loading_a_run_with_non_finite_weights_fails_clearly(runs, tmp_path):
    """A diverged run (NaN weights, written by the checkpoint writer itself) is refused with the
    checkpoint's path and the tensor's name, not rendered as an empty picture."""
    import shutil

    from app.checkpoint import save_checkpoint

    broken = tmp_path / "broken"
    shutil.copytree(runs["spot-sdf"], broken)
    run = load_run(broken)
    with torch.no_grad():
        next(p for p in run.task.model.parameters() if p.is_floating_point()).view(-1)[0] = \
            math.nan
    save_checkpoint(broken, run.step + 1, run.task.model, None, run.task.meta())
    with pytest.raises(CheckpointError, match="non-finite") as info:
        load_run(broken)
    assert "step-" in str(info.value)


def test_tasks_without_a_3d_field_refuse_to_join_a_scene(tmp_path):
    from app.run import build_task

    cfg = get_preset("astronaut-image")
    task = build_task(cfg, torch.device("cpu"))
    with pytest.raises(FieldsAppError, match="cannot be placed in a scene"):
        Scene().add(task)
    assert isinstance(sphere(0.3), object)


def test_the_viewer_opens_a_scene_file(runs, tmp_path):
    from app.viewer import ViewerController

    path = tmp_path / "view.toml"
    path.write_text(f"""
[camera]
elevation = 30.0
[[objects]]
run = "{runs['spot-sdf']}"
[[objects]]
shape = "box"
size = [2.0, 0.05, 2.0]
translate = [0.0, -0.7, 0.0]
""")
    ctl = ViewerController(scene=path, view_size=(32, 24))
    ctl.render.render_scale = 1.0
    assert ctl.task.kind == "scene" and ctl.task.render_modes[0] == "shaded"
    images = {}
    for mode in ctl.task.render_modes:
        ctl.update_render(mode=mode)
        images[mode] = ctl.render_frame(1).image
        assert images[mode].shape == (24, 32, 3) and np.isfinite(images[mode]).all()
    assert np.abs(images["shaded"] - images["normals"]).mean() > 0.01
    # Nothing to train: Start and Step say so instead of failing.
    ctl.start()
    assert not ctl.training and "nothing to train" in ctl.messages[-1]
    ctl.messages.clear()
    ctl.step_once()
    assert "nothing to train" in ctl.messages[-1] and ctl.trainer is None
    info = ctl.task.export(tmp_path / "scene.ply", resolution=48)
    assert info["objects"] == 2 and (tmp_path / "scene.ply").is_file()
    assert dict(ctl.properties())["task"] == "scene"
    ctl.close(save=False)

"""End-to-end CLI: train → export → render → eval on a tiny config, resume, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from app.cli import main
from tests.conftest import ROOT, SPOT

# A tiny spot-sdf: small pool, small grid, few steps — seconds on 2 cores.
TINY = [
    "--data.n-surface", "4000", "--data.n-near", "8000", "--data.n-uniform", "4000",
    "--data.batch-size", "2048", "--model.encoding.num-levels", "6",
    "--model.encoding.log2-hashmap-size", "12", "--model.encoding.max-resolution", "64",
    "--model.hidden-dim", "32", "--trainer.log-every", "5", "--trainer.checkpoint-every", "10",
]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "spot"
    code = main(["train", "spot-sdf", "--steps", "40", "--out", str(run_dir), "--no-progress",
                 *TINY])
    assert code == 0
    return run_dir


def test_train_writes_run_directory(trained):
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["config"]["task"] == "sdf" and cfg["config"]["trainer"]["steps"] == 40
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(5, 41, 5))
    assert all(np.isfinite(r["loss"]) and r["steps_per_s"] > 0 for r in lines)
    assert lines[-1]["loss"] < lines[0]["loss"]  # it learns
    latest = (trained / "checkpoints" / "latest").read_text().strip()
    assert latest == "step-0000040"
    assert (trained / "checkpoints" / latest / "weights.safetensors").is_file()


def test_export_ply_and_obj(trained, tmp_path, capsys):
    for ext in ("ply", "obj"):
        out = tmp_path / f"mesh.{ext}"
        code, stdout, _ = run_cli(capsys, "export", str(trained), "--out", str(out),
                                  "--resolution", "48")
        assert code == 0, stdout
        info = json.loads(stdout)
        mesh = trimesh.load(out, force="mesh", process=False)
        assert len(mesh.faces) == info["faces"] > 100
        # Exported in the source mesh's units: its bounding box matches spot's roughly.
        ref = trimesh.load(SPOT, force="mesh")
        assert np.allclose(mesh.bounds, ref.bounds, atol=0.25 * np.ptp(ref.bounds, axis=0).max())


def test_render_png_and_mp4(trained, tmp_path, capsys):
    png = tmp_path / "view.png"
    code, stdout, _ = run_cli(capsys, "render", str(trained), "--out", str(png), "--size", "48x40")
    assert code == 0
    import imageio.v2 as imageio

    img = imageio.imread(png)
    assert img.shape == (40, 48, 3)
    assert 0 < (img < 250).mean() < 0.9  # some object pixels, some background
    mp4 = tmp_path / "turn.mp4"
    code, stdout, _ = run_cli(capsys, "render", str(trained), "--out", str(mp4), "--size", "32x32",
                              "--frames", "3", "--mode", "normals")
    assert code == 0 and mp4.stat().st_size > 0
    assert len(list((tmp_path / "turn_frames").glob("*.png"))) == 3


def test_eval_prints_metrics(trained, capsys):
    code, stdout, _ = run_cli(capsys, "eval", str(trained), "--resolution", "48",
                              "--samples", "5000")
    assert code == 0
    m = json.loads(stdout)
    for key in ("chamfer_l1", "normal_consistency", "fscore@1%", "volumetric_iou"):
        assert key in m
    assert 0 < m["chamfer_l1"] < 0.2  # a 40-step toy fit is coarse but clearly spot-like


def test_presets_lists_default(capsys):
    code, stdout, _ = run_cli(capsys, "presets")
    assert code == 0 and "spot-sdf" in stdout and "(default)" in stdout


def test_resume_and_restart(tmp_path, capsys):
    run_dir = tmp_path / "r"
    assert main(["train", "spot-sdf", "--steps", "10", "--out", str(run_dir), "--no-progress",
                 *TINY]) == 0
    capsys.readouterr()
    code, stdout, err = run_cli(capsys, "train", "spot-sdf", "--steps", "20", "--out",
                                str(run_dir), "--no-progress", *TINY)
    assert code == 0
    assert "resuming" in err and "step 10" in err
    assert json.loads(stdout.splitlines()[0])["resumed_from"] == 10
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10, 15, 20]
    code, stdout, err = run_cli(capsys, "train", "spot-sdf", "--steps", "10", "--out",
                                str(run_dir), "--no-progress", "--restart", *TINY)
    assert code == 0 and "resuming" not in err
    assert json.loads(stdout.splitlines()[0])["resumed_from"] is None


# -- bad input: one line naming the file and the problem, non-zero exit, no traceback -----------

def _assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = [x for x in err.strip().splitlines() if x.startswith("fields-app: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("missing.obj", None, "not found"),
        ("garbage.obj", b"\x00\xff\x13garbage" * 50, ""),
        ("garbage.ply", os.urandom(300), ""),
        ("empty.obj", b"# nothing here\n", ""),
        ("nan.obj", b"v 0 0 0\nv 1 0 0\nv nan 1 0\nf 1 2 3\n", ""),
    ],
)
def test_bad_mesh_inputs(tmp_path, capsys, name, content, problem):
    path = tmp_path / name
    if content is not None:
        _write(path, content)
    code, _, err = run_cli(capsys, "train", "spot-sdf", "--steps", "2", "--data", str(path),
                           "--out", str(tmp_path / "run"), "--no-progress", *TINY)
    _assert_one_line_error(code, err, str(path), problem)


def test_open_mesh_warns_and_points_to_csp(tmp_path, capsys):
    sphere = trimesh.creation.icosphere(subdivisions=3)
    keep = sphere.triangles_center[:, 2] < 0.6  # cut a cap off: an open surface
    open_mesh = trimesh.Trimesh(sphere.vertices, sphere.faces[keep])
    path = tmp_path / "open.ply"
    open_mesh.export(path)
    code, _, err = run_cli(capsys, "train", "spot-sdf", "--steps", "2", "--data", str(path),
                           "--out", str(tmp_path / "run"), "--no-progress", *TINY)
    assert code == 0
    assert "not watertight" in err and "csp" in err and str(path) in err


def test_unknown_preset(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "no-such-preset", "--out", str(tmp_path / "x"))
    _assert_one_line_error(code, err, "no-such-preset", "spot-sdf")


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = _write(tmp_path / "a_file", b"x")
    out = blocker / "run"
    code, _, err = run_cli(capsys, "train", "spot-sdf", "--steps", "2", "--out", str(out),
                           "--no-progress", *TINY)
    _assert_one_line_error(code, err, str(out))


def test_unwritable_export_path(trained, tmp_path, capsys):
    blocker = _write(tmp_path / "a_file", b"x")
    code, _, err = run_cli(capsys, "export", str(trained), "--out", str(blocker / "m.ply"),
                           "--resolution", "32")
    _assert_one_line_error(code, err, "m.ply")


def test_truncated_checkpoint(trained, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    latest = (run / "checkpoints" / "latest").read_text().strip()
    weights = run / "checkpoints" / latest / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, _, err = run_cli(capsys, "export", str(run), "--out", str(tmp_path / "m.ply"))
    _assert_one_line_error(code, err, str(weights), "truncated")


def test_missing_run_directory(tmp_path, capsys):
    code, _, err = run_cli(capsys, "render", str(tmp_path / "nope"), "--out",
                           str(tmp_path / "x.png"))
    _assert_one_line_error(code, err, "nope")


def test_debug_shows_traceback(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "spot-sdf", "--data", str(tmp_path / "m.obj"),
                           "--out", str(tmp_path / "r"), "--debug", *TINY)
    assert code != 0 and "Traceback" in err


# -- process-level robustness: SIGKILL resumes, SIGINT saves and exits cleanly ----------------

def _spawn_train(run_dir: Path, steps: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "train", "spot-sdf", "--steps", str(steps), "--out",
         str(run_dir), "--no-progress", *TINY, "--trainer.checkpoint-every", "5"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_checkpoint(run_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if latest.is_file() and latest.read_text().strip():
            return int(latest.read_text().strip().split("-")[1])
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


def test_sigkill_then_resume(tmp_path, capsys):
    run_dir = tmp_path / "killed"
    proc = _spawn_train(run_dir, steps=100_000)
    _wait_for_checkpoint(run_dir, proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = int((run_dir / "checkpoints" / "latest").read_text().strip().split("-")[1])
    assert saved >= 5
    code, stdout, err = run_cli(capsys, "train", "spot-sdf", "--steps", str(saved + 5), "--out",
                                str(run_dir), "--no-progress", *TINY)
    assert code == 0, err
    assert f"resuming {run_dir} from step {saved}" in err
    assert json.loads(stdout.splitlines()[0])["steps"] == saved + 5


def test_sigint_saves_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = _spawn_train(run_dir, steps=100_000)
    _wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "Traceback" not in err
    result = json.loads(out.splitlines()[0])
    assert result["interrupted"] is True
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert int(latest.split("-")[1]) == result["steps"]


def test_python_api_matches_the_readme(trained, tmp_path):
    from app import load_run
    from renderer.cameras import Camera

    run = load_run(trained)
    assert run.step == 40 and run.config.preset == "spot-sdf"
    image = run.render(Camera.orbit(azimuth_deg=30, elevation_deg=20, radius=3.2, width=40,
                                    height=32), mode="normals")
    assert image.shape == (32, 40, 3) and 0.0 <= image.min() and image.max() <= 1.0
    info = run.export(tmp_path / "api.obj", resolution=40)
    assert info["faces"] > 0 and (tmp_path / "api.obj").is_file()
    with pytest.raises(ValueError, match="render mode"):
        run.render(mode="x-ray")

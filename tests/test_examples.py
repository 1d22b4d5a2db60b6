"""The scripts in examples/ run from a fresh clone (quick mode: tiny fits and images) and write
what they say they write."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--quick", "--out",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _image(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path).astype(float) / 255.0


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("examples")


def test_01_shapes(out):
    _run("01_shapes.py", out)
    img = _image(out / "01_shapes.png")
    assert img.shape == (72, 96, 3) and img.std() > 0.05  # a lit scene, not a blank frame
    ids = _image(out / "01_shapes_objects.png")
    assert len(np.unique(ids.reshape(-1, 3), axis=0)) >= 5  # four objects + background
    assert (out / "01_shapes.ply").stat().st_size > 10_000


def test_02_trained_fields_then_04_scene_file(out):
    text = _run("02_trained_fields.py", out)
    assert "mesh:" in text and (out / "spot-sdf" / "config.json").is_file()
    assert len(list((out / "02_turntable").glob("*.png"))) == 3
    assert _image(out / "02_trained_fields.png").std() > 0.05
    _run("04_scene_file.py", out)
    assert (out / "04_scene.toml").is_file() and _image(out / "04_scene.png").std() > 0.05
    assert (out / "04_scene_turntable.png").is_file()


def test_03_fog_and_surfaces(out):
    _run("03_fog_and_surfaces.py", out)
    img = _image(out / "03_fog_and_surfaces.png")
    # Orange smoke (red > blue) shows somewhere, and the green wall behind it.
    assert ((img[..., 0] - img[..., 2]) > 0.3).any() and (img[..., 1] > img[..., 0] + 0.1).any()

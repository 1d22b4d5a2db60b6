"""FreSh in the app: ``fields-app fresh`` prints the table and the choice, ``train --fresh``
stores the choice in the run's config and trains the field it picked; clear errors elsewhere."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from app.cli import main
from app.presets import get_preset
from app.run import build_task, load_run
from app.tasks.image import FRESH_HYPERPARAMETERS, frequency_model, with_fresh_value
from fields.fresh import FOURIER_SIGMA_CANDIDATES, SIREN_OMEGA0_CANDIDATES


def write_picture(path):
    """Write a 32×32 colour picture with a soft disc and a fine stripe pattern to ``path``."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    disc = 1.0 / (1.0 + np.exp((np.hypot(xx - 0.5, yy - 0.45) - 0.3) * 40.0))
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * 6 * (xx + 0.5 * yy))
    img = np.stack([0.3 + 0.5 * disc, 0.2 + 0.6 * stripes * disc, 0.6 * xx], -1)
    iio.imwrite(path, (img * 255).round().astype(np.uint8))
    return path


@pytest.fixture
def picture(tmp_path):
    return write_picture(tmp_path / "pic.png")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("encoding", ["siren", "fourier", "hashgrid"])
def test_fresh_command_prints_table_and_choice(picture, tmp_path, capsys, encoding):
    out_json = tmp_path / "fresh.json"
    code, out, err = run_cli(capsys, "fresh", "astronaut-image", "--data", str(picture),
                             "--encoding", encoding, "--inits", "2", "--size", "8",
                             "--json", str(out_json))
    assert code == 0, err
    lines = out.strip().splitlines()
    name = FRESH_HYPERPARAMETERS[encoding]
    assert lines[-1].startswith(f"chosen {name} = ")
    rows = [line.split() for line in lines[:-1]]
    values = [float(r[0]) for r in rows]
    expected = {"siren": SIREN_OMEGA0_CANDIDATES, "fourier": FOURIER_SIGMA_CANDIDATES,
                "hashgrid": (32.0, 45.0, 64.0)}[encoding]
    assert tuple(values) == expected
    assert all(len(r) == 3 and float(r[1]) >= 0 and float(r[2]) >= 0 for r in rows)
    chosen = float(lines[-1].split("=")[1])
    means = [float(r[1]) for r in rows]
    assert chosen == values[int(np.argmin(means))]
    saved = json.loads(out_json.read_text())
    assert saved["chosen"] == chosen and saved["hyperparameter"] == name
    assert saved["size"] == 8 and saved["inits"] == 2 and saved["encoding"] == encoding
    assert len(saved["target_spectrum"]) == len(saved["model_spectrum"]) == 8
    assert "32×32" in err


def test_fresh_command_errors(picture, capsys):
    code, _, err = run_cli(capsys, "fresh", "spot-sdf")
    assert code == 2 and "image presets only" in err
    code, _, err = run_cli(capsys, "fresh", "astronaut-image", "--data", str(picture),
                           "--size", "64", "--inits", "1")
    assert code == 2 and "S=64" in err and "S must be in 1..16" in err
    with pytest.raises(SystemExit):  # argparse: rbf has no frequency hyper-parameter
        main(["fresh", "astronaut-image", "--encoding", "rbf"])
    capsys.readouterr()


def test_train_fresh_saves_the_choice_and_trains_it(picture, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "astronaut-image", "--data", str(picture),
                             "--encoding", "fourier", "--fresh", "--steps", "3", "--out",
                             str(run_dir), "--no-progress", "--model.fresh-inits", "2",
                             "--model.fresh-size", "8", "--model.fourier-features", "32")
    assert code == 0, err
    line = [x for x in err.splitlines() if x.startswith("fresh: chosen fourier_scale = ")]
    assert len(line) == 1, err
    chosen = float(line[0].split("=")[1].split()[0])
    assert chosen in FOURIER_SIGMA_CANDIDATES
    assert sum(x.startswith("fresh: fourier_scale = ") for x in err.splitlines()) == 20
    cfg = json.loads((run_dir / "config.json").read_text())["config"]
    assert cfg["model"]["fourier_scale"] == chosen and cfg["model"]["fresh"] is True
    run = load_run(run_dir)
    assert run.config.model.fourier_scale == chosen
    assert float(run.task.model.encoding.B.std()) == pytest.approx(chosen, rel=0.5)
    # A reopened run carries its search: loading the data again must not search (or rebuild).
    import app.tasks.image as image_module

    def no_search(*args, **kwargs):
        raise AssertionError("the reopened run searched again")

    before = {k: v.clone() for k, v in run.task.model.state_dict().items()}
    monkeypatch.setattr(image_module, "image_fresh_search", no_search)
    run.task.setup_data()
    assert run.task.fresh_record["chosen"] == chosen
    assert all(torch.equal(v, before[k]) for k, v in run.task.model.state_dict().items())


def test_fresh_field_is_the_one_a_run_with_that_value_builds(picture):
    cfg = get_preset("astronaut-image")
    cfg.data.path = str(picture)
    cfg.model.encoding, cfg.model.fresh = "fourier", True
    cfg.model.fresh_inits, cfg.model.fresh_size, cfg.model.fourier_features = 2, 8, 16
    torch.manual_seed(cfg.trainer.seed)
    task = build_task(cfg, torch.device("cpu"))
    task.setup_data()
    result = task.fresh_result
    assert result is not None and cfg.model.fourier_scale == result.chosen
    assert "fresh" in task.properties()
    torch.manual_seed(cfg.trainer.seed)
    ref = frequency_model(with_fresh_value(cfg.model, result.chosen), 3, cfg.trainer.seed)
    for (k, a), (_, b) in zip(task.model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k


def test_train_fresh_errors(picture, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "spot-sdf", "--fresh", "--out", str(tmp_path / "a"))
    assert code == 2 and "--fresh: the sdf task has no FreSh search" in err
    code, _, err = run_cli(capsys, "train", "astronaut-image", "--data", str(picture),
                           "--encoding", "rbf", "--fresh", "--out", str(tmp_path / "b"))
    assert code == 2 and "model.encoding 'rbf' has no frequency hyper-parameter" in err

"""Trainer, checkpoints and configs: schedule closed form, NaN guard, atomic writes, round trips."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from app.checkpoint import latest_checkpoint, load_checkpoint, load_latest, save_checkpoint
from app.config import TrainerConfig, config_from_dict, config_to_dict
from app.errors import CheckpointError, ConfigError
from app.tasks.sdf import SDFExperiment
from app.trainer import NonFiniteLossError, Trainer, lr_factor


def test_lr_schedule_closed_form():
    cfg = TrainerConfig(steps=100, warmup_steps=10, decay_start=0.5, final_lr_factor=0.01)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(50, cfg) == pytest.approx(1.0)
    assert lr_factor(75, cfg) == pytest.approx(0.1)  # halfway through the decay: √0.01
    assert lr_factor(100, cfg) == pytest.approx(0.01)


class ToyTask:
    """Fits y = 3x with a scalar; the loss can be made NaN on demand."""

    kind = "toy"

    def __init__(self, nan_after: int | None = None):
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1, bias=False)
        self.device = torch.device("cpu")
        self.nan_after = nan_after

    def parameter_groups(self):
        return [{"params": list(self.model.parameters())}]

    def training_loss(self, step):
        x = torch.randn(64, 1)
        loss = ((self.model(x) - 3 * x) ** 2).mean()
        if self.nan_after is not None and step >= self.nan_after:
            loss = loss * float("nan")
        return loss, {}

    def meta(self):
        return {"hello": "world"}

    def load_meta(self, meta):
        self.loaded_meta = meta


def test_trainer_converges_and_checkpoints(tmp_path):
    task = ToyTask()
    cfg = TrainerConfig(steps=400, lr=0.05, log_every=50, checkpoint_every=100)
    result = Trainer(task, cfg, tmp_path, progress=False, log=lambda m: None).fit()
    assert result.step == 400 and not result.interrupted
    assert task.model.weight.item() == pytest.approx(3.0, abs=1e-2)
    ckpt = load_latest(tmp_path)
    assert ckpt.step == 400 and ckpt.meta == {"hello": "world"}
    assert torch.equal(ckpt.weights["weight"], task.model.weight.detach())


def test_nonfinite_guard_skips_then_aborts_keeping_checkpoint(tmp_path):
    task = ToyTask(nan_after=30)
    cfg = TrainerConfig(steps=200, lr=0.05, checkpoint_every=20, max_nonfinite_steps=5)
    trainer = Trainer(task, cfg, tmp_path, progress=False, log=lambda m: None)
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        trainer.fit()
    w = task.model.weight.detach().clone()
    assert torch.isfinite(w).all()  # skipped steps never touched the weights
    ckpt = load_latest(tmp_path)
    assert ckpt.step == 20 and torch.isfinite(ckpt.weights["weight"]).all()


def test_resume_restores_optimizer_and_step(tmp_path):
    a = ToyTask()
    cfg = TrainerConfig(steps=50, lr=0.01, checkpoint_every=1000)
    Trainer(a, cfg, tmp_path, progress=False, log=lambda m: None).fit()
    b = ToyTask()
    tb = Trainer(b, TrainerConfig(steps=60, lr=0.01), tmp_path, progress=False, log=lambda m: None)
    assert tb.resume() == 50
    assert torch.equal(a.model.weight, b.model.weight)
    sa = Trainer(a, cfg, tmp_path / "x", progress=False).optimizer  # fresh, for structure only
    assert sa is not None
    state = tb.optimizer.state_dict()["state"]
    assert state and all("exp_avg" in s for s in state.values())


def test_failed_save_leaves_previous_checkpoint(tmp_path, monkeypatch):
    task = ToyTask()
    model_opt = torch.optim.Adam(task.model.parameters())
    save_checkpoint(tmp_path, 10, task.model, model_opt, {"a": 1})
    import app.checkpoint as ck

    real = ck.save_file
    calls = {"n": 0}

    def flaky(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 2:  # die while writing the second file of the new checkpoint
            raise OSError(28, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ck, "save_file", flaky)
    with torch.no_grad():
        task.model.weight.fill_(123.0)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 20, task.model, model_opt, {"a": 2})
    assert latest_checkpoint(tmp_path).name == "step-0000010"
    ckpt = load_latest(tmp_path)
    assert ckpt.step == 10 and ckpt.weights["weight"].item() != 123.0
    assert not list((tmp_path / "checkpoints").glob(".step-*"))  # no temp leftovers


def test_corrupt_state_json_is_named(tmp_path):
    task = ToyTask()
    path = save_checkpoint(tmp_path, 1, task.model, None, {})
    (path / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="state.json"):
        load_checkpoint(path)


def test_fallback_to_older_checkpoint(tmp_path):
    task = ToyTask()
    save_checkpoint(tmp_path, 1, task.model, None, {}, keep=3)
    newest = save_checkpoint(tmp_path, 2, task.model, None, {}, keep=3)
    (newest / "weights.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="truncated"):
        load_latest(tmp_path)
    assert load_latest(tmp_path, fallback=True).step == 1


def test_config_round_trip_and_errors():
    cfg = SDFExperiment()
    cfg.trainer.steps = 7
    cfg.data.sigmas = (0.02, 0.003)
    back = config_from_dict(SDFExperiment, config_to_dict(cfg))
    assert back == cfg
    d = config_to_dict(cfg)
    d["trainer"]["stepz"] = 1
    with pytest.raises(ConfigError, match="stepz"):
        config_from_dict(SDFExperiment, d)
    d = config_to_dict(cfg)
    d["trainer"]["steps"] = "many"
    with pytest.raises(ConfigError, match="trainer.steps"):
        config_from_dict(SDFExperiment, d)
    assert math.isfinite(back.trainer.lr)


def test_batch_without_gradient_skips_the_update(tmp_path):
    """A task may return a constant loss (no samples hit anything): the step is counted, the
    weights stay."""

    class Constant(ToyTask):
        def training_loss(self, step):
            return torch.tensor(0.25), {}

    task = Constant()
    before = task.model.weight.detach().clone()
    result = Trainer(task, TrainerConfig(steps=5), tmp_path, progress=False,
                     log=lambda m: None).fit()
    assert result.step == 5 and torch.equal(task.model.weight, before)

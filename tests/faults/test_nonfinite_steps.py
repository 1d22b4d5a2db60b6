"""Non-finite losses: a transient one skips its update (weights and Adam state untouched) and is
reported in ``metrics.jsonl``; a run of them stops training, the checkpoints holding good weights.

Complements tests/app/test_trainer.py::test_nonfinite_guard_skips_then_aborts_keeping_checkpoint
with a skip that training recovers from, and with what the checkpoints around skips contain.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from app.checkpoint import load_checkpoint, load_latest
from app.config import TrainerConfig
from app.trainer import NonFiniteLossError, Trainer


class FlakyTask:
    """Fits y = 3x with one weight; ``training_loss`` is NaN at the steps in ``bad``."""

    kind = "toy"

    def __init__(self, bad: set[int] | range) -> None:
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1, bias=False)
        self.device = torch.device("cpu")
        self.bad = bad

    def parameter_groups(self):
        return [{"params": list(self.model.parameters())}]

    def lr_scales(self, step):
        return None

    def training_loss(self, step):
        x = torch.randn(64, 1)
        loss = ((self.model(x) - 3 * x) ** 2).mean()
        return (loss * math.nan if step in self.bad else loss), {}

    def meta(self):
        return {}

    def load_meta(self, meta):
        pass


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_transient_nonfinite_loss_is_skipped_reported_and_recovered(tmp_path):
    cfg = TrainerConfig(steps=20, lr=0.05, log_every=1, checkpoint_every=1, keep_checkpoints=30,
                        max_nonfinite_steps=3)
    result = Trainer(FlakyTask(bad={7, 8}), cfg, tmp_path, progress=False,
                     log=lambda m: None).fit()
    assert result.step == 20 and math.isfinite(result.last_loss)
    lines = _metrics(tmp_path)
    assert [r["step"] for r in lines] == list(range(1, 21))
    skipped = [r["step"] for r in lines if r.get("skipped")]
    assert skipped == [8, 9]  # training_loss(step) feeds the update that makes step + 1
    # Reported: a non-finite loss is written as JSON null (strict JSON), and every line from
    # the first skip on counts the skipped steps so far.
    assert all(lines[s - 1]["loss"] is None for s in skipped)
    assert all(math.isfinite(r["loss"]) for r in lines if r["step"] not in skipped)
    assert [r.get("skipped_steps", 0) for r in lines][6:10] == [0, 1, 2, 2]
    # The skipped updates changed nothing: weights and Adam moments at 7, 8 and 9 are equal.
    ckpts = [load_checkpoint(tmp_path / "checkpoints" / f"step-{s:07d}") for s in (7, 8, 9, 10)]
    for a in ckpts[1:3]:
        assert torch.equal(a.weights["weight"], ckpts[0].weights["weight"])
        assert all(torch.equal(a.optimizer["state"][0][k], ckpts[0].optimizer["state"][0][k])
                   for k in ("exp_avg", "exp_avg_sq"))
    assert not torch.equal(ckpts[3].weights["weight"], ckpts[0].weights["weight"])  # it resumes


def test_repeated_nonfinite_losses_stop_with_good_weights_on_disk(tmp_path):
    cfg = TrainerConfig(steps=200, lr=0.05, log_every=1, checkpoint_every=1,
                        max_nonfinite_steps=4)
    task = FlakyTask(bad=range(30, 200))
    with pytest.raises(NonFiniteLossError, match="4 non-finite losses in a row") as info:
        Trainer(task, cfg, tmp_path, progress=False, log=lambda m: None).fit()
    assert "checkpoint is intact" in str(info.value)
    good = task.model.weight.detach().clone()
    assert torch.isfinite(good).all()
    ckpt = load_latest(tmp_path)  # the pointer itself, no fallback
    assert torch.equal(ckpt.weights["weight"], good)  # the weights of the last good step
    assert [r["step"] for r in _metrics(tmp_path) if r.get("skipped")] == [31, 32, 33]

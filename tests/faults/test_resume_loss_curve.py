"""A run killed with SIGKILL and resumed continues the loss curve of the uninterrupted run.

The checkpoint holds the weights, Adam's moments and torch's RNG state, and the trainer drops
``metrics.jsonl`` lines newer than the checkpoint it resumes from, so killed + resumed logs every
step once with the same losses as one uninterrupted run (up to float round-off).
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.faults.train_proc import (
    latest_step,
    metric_lines,
    run_train,
    spawn_train,
    wait_for_new_checkpoint,
)

STEPS = 40
KILL_AFTER = 5  # SIGKILL once a checkpoint of at least this step exists


@pytest.mark.slow
def test_resume_after_sigkill_continues_loss_curve(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = spawn_train(straight, STEPS)  # runs alongside the killed one
    proc = spawn_train(killed, STEPS)
    try:
        wait_for_new_checkpoint(killed, proc, after=KILL_AFTER - 1)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        out, err = reference.communicate(timeout=300)
        assert reference.returncode == 0, err
    finally:
        for p in (proc, reference):
            if p.poll() is None:
                p.kill()
                p.communicate()
    k = latest_step(killed)
    assert k is not None and KILL_AFTER <= k < STEPS
    result = run_train(killed, STEPS)
    assert result["resumed_from"] == k and result["steps"] == STEPS

    a, b = metric_lines(straight), metric_lines(killed)
    assert [r["step"] for r in a] == list(range(1, STEPS + 1))
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # each step once
    loss_a = np.array([r["loss"] for r in a])
    loss_b = np.array([r["loss"] for r in b])
    assert np.isfinite(loss_a).all() and loss_a[-1] < loss_a[0]  # it learns
    diff = np.abs(loss_a - loss_b)
    print(f"\nkilled after step {k}; max |Δloss| {diff.max():.3g} "
          f"(relative {(diff / np.abs(loss_a)).max():.3g}) over steps {k + 1}…{STEPS}")
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-4, atol=0)

"""SIGKILL at random moments of a run that checkpoints every step never corrupts ``latest``.

Two run directories are trained side by side (one starts up while the other trains, to fit more
kills into the time). Each incarnation is killed with SIGKILL a pseudo-random delay after it wrote
its first new checkpoint, then resumed in the same directory, so later kills land in writes of
larger steps. With ``--trainer.checkpoint-every 1`` a step is dominated by the checkpoint write
(three files, four fsyncs), so most kills land inside one; a kill caught mid-write shows as a
leftover temporary (``.step-*`` directory or ``.latest.*.tmp`` file), as a renamed checkpoint
that ``latest`` does not name yet, or as an old checkpoint not yet pruned.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from app.checkpoint import latest_checkpoint, load_latest
from tests.faults.train_proc import (
    metric_lines,
    run_train,
    spawn_train,
    wait_for_new_checkpoint,
)

NUM_KILLS = 14
NUM_LANES = 2
MAX_DELAY_S = 0.3


@dataclass
class Lane:
    run_dir: Path
    proc: subprocess.Popen | None = None
    step: int | None = None  # the step `latest` named at the last check
    seen: set[str] = field(default_factory=set)  # temporaries left by earlier kills
    log: list[str] = field(default_factory=list)

    def spawn(self) -> None:
        self.proc = spawn_train(self.run_dir, 100_000)


def _finite(tensors: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def _check_after_kill(lane: Lane, stderr: str) -> bool:
    """Everything a reader of the run directory relies on; True when the kill hit a write."""
    root = lane.run_dir / "checkpoints"
    text = (root / "latest").read_text()
    assert re.fullmatch(r"step-\d{7}\n", text), f"latest holds {text!r}"
    step = int(text[5:12])
    target = root / text.strip()
    assert target.is_dir()
    # The pointer itself (no fallback) loads a complete, finite checkpoint of its step.
    ckpt = load_latest(lane.run_dir)
    assert ckpt.path == target and ckpt.step == step
    assert ckpt.rng_state is not None and ckpt.optimizer is not None
    assert ckpt.weights and _finite(ckpt.weights)
    assert all(_finite(slots) for slots in ckpt.optimizer["state"].values())
    assert latest_checkpoint(lane.run_dir) == target
    # Temporaries are never what `latest` names, and are never taken for checkpoints.
    temps = [p for p in root.iterdir() if p.name.startswith(".")]
    assert all(p.name.startswith((".step-", ".latest.")) for p in temps), temps
    assert target not in temps and not target.name.startswith(".")
    # A resumed incarnation continued from exactly the checkpoint `latest` named before.
    if lane.step is not None:
        assert f"resuming {lane.run_dir} from step {lane.step}" in stderr, stderr
        assert step > lane.step
    # Metrics: steps 1…M once each, M the checkpoint's step or the one being saved after it.
    steps = [r["step"] for r in metric_lines(lane.run_dir)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) - step in (0, 1), steps
    # Caught inside save_checkpoint: writing the files (a temporary directory left), renamed but
    # not yet named by `latest`, writing `latest` (its temporary left), or pruning (an old
    # checkpoint beyond `keep_checkpoints` = 2 left, maybe half deleted).
    new_temps = sorted(p.name for p in temps if p.name not in lane.seen)
    lane.seen |= set(new_temps)
    dirs = sorted(p.name for p in root.glob("step-*"))
    newer = [d for d in dirs if int(d[5:]) > step]
    pruning = [f"{d}(old)" for d in dirs if int(d[5:]) < step][:-1]
    lane.log.append(f"{step}: {' '.join(new_temps + newer + pruning) or '-'}")
    return bool(new_temps or newer or pruning)


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes(tmp_path):
    rng = random.Random(20240611)
    lanes = [Lane(tmp_path / f"run{i}") for i in range(NUM_LANES)]
    for lane in lanes:
        lane.spawn()
    kills = mid_write = 0
    leftover_latest_tmps = 0
    t0 = time.monotonic()
    try:
        while kills < NUM_KILLS:
            lane = lanes[kills % NUM_LANES]
            assert lane.proc is not None
            wait_for_new_checkpoint(lane.run_dir, lane.proc, after=lane.step)
            time.sleep(rng.uniform(0.0, MAX_DELAY_S))
            lane.proc.send_signal(signal.SIGKILL)
            _, err = lane.proc.communicate(timeout=60)
            assert lane.proc.returncode == -signal.SIGKILL, err
            kills += 1
            mid_write += _check_after_kill(lane, err)
            lane.step = load_latest(lane.run_dir).step
            if kills + NUM_LANES <= NUM_KILLS:
                lane.spawn()
    finally:
        for lane in lanes:
            if lane.proc is not None and lane.proc.poll() is None:
                lane.proc.kill()
                lane.proc.communicate()
    for lane in lanes:
        leftover_latest_tmps += len(list((lane.run_dir / "checkpoints").glob(".latest.*")))
    print(f"\nkills: {kills}, of which {mid_write} mid-write "
          f"({time.monotonic() - t0:.0f} s; leftover .latest tmp files: {leftover_latest_tmps})")
    for lane in lanes:
        print(f"{lane.run_dir.name}: " + "; ".join(lane.log))
    # A last resume runs to completion from what the kills left behind.
    lane = lanes[0]
    assert lane.step is not None
    result = run_train(lane.run_dir, lane.step + 2)
    assert result["resumed_from"] == lane.step and result["steps"] == lane.step + 2
    steps = [r["step"] for r in metric_lines(lane.run_dir)]
    assert steps == list(range(1, lane.step + 3))
    assert not list((lane.run_dir / "checkpoints").glob(".step-*"))  # pruned by the next save

"""Spawning ``fields-app train`` in a child process for the fault tests (kill it, resume it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

# A very small spot-sdf (tiny pools, tiny hash grid, one thread): start-up dominates, a step takes
# milliseconds, and with ``checkpoint-every 1`` most of the wall time is spent writing checkpoints.
SMALL = [
    "--data.n-surface", "1000", "--data.n-near", "1000", "--data.n-uniform", "1000",
    "--data.batch-size", "512", "--model.encoding.num-levels", "4",
    "--model.encoding.log2-hashmap-size", "10", "--model.encoding.max-resolution", "32",
    "--model.hidden-dim", "16", "--trainer.num-threads", "1", "--trainer.log-every", "1",
    "--trainer.checkpoint-every", "1",
]


def train_argv(run_dir: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", "train", "spot-sdf", "--steps", str(steps), "--out",
            str(run_dir), "--no-progress", *SMALL, *extra]


def spawn_train(run_dir: Path, steps: int, *extra: str) -> subprocess.Popen:
    """Start training in the background (stdout/stderr captured; read them after it ends)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen(train_argv(run_dir, steps, *extra), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_train(run_dir: Path, steps: int, *extra: str, timeout: float = 300) -> dict:
    """Train to ``steps`` in the foreground; the CLI's JSON result line."""
    proc = spawn_train(run_dir, steps, *extra)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.splitlines()[0])


def latest_step(run_dir: Path) -> int | None:
    """The step named by ``checkpoints/latest`` (None while there is none)."""
    try:
        name = (run_dir / "checkpoints" / "latest").read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(name.split("-")[1]) if name.startswith("step-") else None


def wait_for_new_checkpoint(run_dir: Path, proc: subprocess.Popen, after: int | None,
                            timeout: float = 120) -> int:
    """Block until ``latest`` names a step newer than ``after``; return that step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = latest_step(run_dir)
        if step is not None and (after is None or step > after):
            return step
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"training exited with {proc.returncode} before a checkpoint:"
                                 f"\n{err}")
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    raise AssertionError(f"no new checkpoint in {run_dir} within {timeout} s")


def metric_lines(run_dir: Path) -> list[dict]:
    """The parseable lines of ``metrics.jsonl`` (a line cut by a kill is skipped)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out

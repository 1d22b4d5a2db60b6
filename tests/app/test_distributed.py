"""Data-parallel training on CPU (torch.distributed, gloo, 2 processes under ``torchrun``):
the loss curve matches single-process training at the same global batch, for an SDF and for a
population task; checkpoints written by 2 processes resume in 1 (and the reverse), continuing
the run; ``fields-app train --nproc 2`` launches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(nproc: int, kind: str, out: Path, steps: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc == 1:
        cmd = [sys.executable, "-m", "tests.app.ddp_worker", kind, str(out), str(steps)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "tests.app.ddp_worker", kind, str(out),
               str(steps)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _losses(run: Path) -> np.ndarray:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return np.array([r["loss"] for r in rows]), [r["step"] for r in rows]


@pytest.mark.parametrize("kind", ["sdf", "naisr", "naisr-nojitter"])
def test_two_processes_match_one(tmp_path, kind):
    steps = 16
    _run(1, kind, tmp_path / "one", steps)
    _run(2, kind, tmp_path / "two", steps)
    a, sa = _losses(tmp_path / "one")
    b, sb = _losses(tmp_path / "two")
    assert sa == sb == list(range(1, steps + 1))  # rank 0 alone writes the metrics
    rel = np.abs(a - b) / np.abs(a)
    print(f"\n[{kind}: max relative loss difference 1 vs 2 processes {rel.max():.2e}]", end="")
    # Same global batch, same draws: equal up to reduction order. NAISR's training amplifies
    # last-bit differences (its ω₀ = 30 SIRENs, codes at 30× the learning rate): measured 1e-7
    # at step 1 growing to 4e-4 … 2e-2 by step 16 depending on thread counts, so its early
    # steps are held to reduction order and the whole curve to a looser bound. The reference
    # jitter (N(0, 1e-3²) noise on the reference covariate) is drawn per process for its own
    # rows, so with it the draws differ from one process's from the first step.
    if kind == "sdf":
        assert rel.max() < 1e-4  # measured 1e-7 … 5e-6
    elif kind == "naisr-nojitter":
        assert rel[:8].max() < 1e-4 and rel.max() < 5e-2
    else:
        assert rel.max() < 5e-2
    assert a[-4:].mean() < a[:4].mean()  # and it trains


def test_resume_across_rank_counts(tmp_path):
    """2 processes to step 10 (a checkpoint), then 1 process to 20; and 1 → 2. The metrics
    continue from the checkpoint, and the continued curve matches an uninterrupted run."""
    full = tmp_path / "full"
    _run(1, "sdf", full, 20)
    ref, _ = _losses(full)
    for first, second in ((2, 1), (1, 2)):
        run = tmp_path / f"r{first}{second}"
        _run(first, "sdf", run, 10)
        assert (run / "checkpoints" / "latest").is_file()
        _run(second, "sdf", run, 20)
        got, steps = _losses(run)
        assert steps == list(range(1, 21))
        rel = np.abs(got - ref) / np.abs(ref)
        assert rel.max() < 1e-4, (first, second, rel.max())


def test_nproc_launcher(tmp_path):
    from tests.conftest import SPOT

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "app.cli", "train", "spot-sdf", "--nproc", "2", "--out",
           str(out), "--data", str(SPOT), "--steps", "4", "--no-progress",
           "--data.n-surface", "2000", "--data.n-near", "2000", "--data.n-uniform", "500",
           "--data.batch-size", "512"]
    proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching 2 processes" in proc.stderr
    report = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(report) == 1 and report[0]["steps"] == 4  # rank 0 reports, once

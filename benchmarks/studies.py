"""What the method studies (``neurbf_*``, ``cq_nir_study``…) share: a task built from a
config and trained for a number of steps or seconds, and rows written as they come."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["fitted_task", "record"]


def fitted_task(cfg, steps: int | None = None, seconds: float | None = None,
                prepare=None) -> tuple[Any, dict[str, float]]:
    """Build ``cfg``'s task on the CPU (seed 0), load its data (``prepare(task)`` after, e.g. a
    crop), train for ``steps`` (default: the config's) or until ``seconds`` of training; returns
    the task and ``{"setup_seconds", "train_seconds", "steps"}``."""
    from app.run import build_task
    from app.trainer import Trainer

    torch.manual_seed(0)
    task = build_task(cfg, torch.device("cpu"))
    t0 = time.perf_counter()
    task.setup_data()
    if prepare is not None:
        prepare(task)
    setup = time.perf_counter() - t0
    trainer = Trainer(task, cfg.trainer, "/nonexistent-unused", progress=False,
                      log=lambda m: None)
    limit = cfg.trainer.steps if steps is None else steps
    t0 = time.perf_counter()
    while trainer.step < limit and (seconds is None or time.perf_counter() - t0 < seconds):
        trainer.train_step()
    return task, {"setup_seconds": round(setup, 1),
                  "train_seconds": round(time.perf_counter() - t0, 1), "steps": trainer.step}


def record(rows: list[dict], row: dict, json_path: str | None, args) -> None:
    """Append ``row``, print it, and rewrite ``json_path`` with every row so far."""
    rows.append(row)
    print(json.dumps(row), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=1))

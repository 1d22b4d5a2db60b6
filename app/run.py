"""The Python API: train a preset, load a run, render a camera, export a mesh.

Example (after ``make demo``)::

    from app import load_run
    from renderer.cameras import Camera

    run = load_run("outputs/spot-sdf")
    image = run.render(Camera.orbit(30, 20, 3.2, width=256, height=256), mode="shaded")  # [H, W, 3]
    run.export("spot.ply", resolution=256)
    print(run.evaluate())     # Chamfer-L1, normal consistency, F-score, IoU vs the training mesh
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.checkpoint import load_latest
from app.config import (
    ExperimentConfig,
    config_from_dict,
    config_to_dict,
    load_json,
    save_json_atomic,
)
from app.errors import CheckpointError, ConfigError
from app.tasks import Task, task_class
from app.trainer import Trainer, TrainResult
from renderer.cameras import Camera

__all__ = ["Run", "load_run", "train", "build_task", "resolve_device", "save_run_config"]

CONFIG_FILE = "config.json"


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda[:i]`` or ``auto``; a clear error when CUDA is asked for but absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r}: not a device (use cpu, cuda or auto)") from None


def build_task(config: ExperimentConfig, device: torch.device | None = None) -> Task:
    """Instantiate the task (model only, no data) for ``config``."""
    cls = task_class(config.task)
    if not isinstance(config, cls.config_cls):
        raise ConfigError(f"config for task {config.task!r} must be a {cls.config_cls.__name__}")
    return cls(config, device or resolve_device(config.device))


def _check_writable(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{run_dir}: cannot create the output directory ({exc.strerror})"
        ) from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"{run_dir}: output directory is not writable")


def save_run_config(config: ExperimentConfig, run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/config.json`` atomically (what :func:`load_run` reads back)."""
    run_dir = Path(run_dir)
    _check_writable(run_dir)
    path = run_dir / CONFIG_FILE
    save_json_atomic(path, {"config": config_to_dict(config), "format": 1})
    return path


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    *,
    restart: bool = False,
    progress: bool = True,
    log=None,
) -> tuple[Task, TrainResult]:
    """Fit ``config`` into ``run_dir``, resuming from its last checkpoint unless ``restart``."""
    run_dir = Path(run_dir)
    _check_writable(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.is_file() and not restart and (run_dir / "checkpoints").is_dir():
        saved = _read_config(cfg_path)
        if saved.task != config.task:
            raise ConfigError(
                f"{cfg_path}: this run is a {saved.task!r} task, not {config.task!r}; "
                "choose another --out or pass --restart"
            )
    if config.trainer.num_threads > 0 and not torch.cuda.is_available():
        torch.set_num_threads(config.trainer.num_threads)
    torch.manual_seed(config.trainer.seed)
    task = build_task(config)
    task.setup_data()
    save_run_config(config, run_dir)
    trainer = Trainer(task, config.trainer, run_dir, restart=restart, progress=progress, log=log)
    if restart and trainer.is_main and (run_dir / "checkpoints").is_dir():
        import shutil

        # Rank 0 only (the others never resume when restarting, and write nothing).
        shutil.rmtree(run_dir / "checkpoints")
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    result = trainer.fit()
    return task, result


def _read_config(path: Path) -> ExperimentConfig:
    data = load_json(path)
    if not isinstance(data, dict) or "config" not in data or not isinstance(data["config"], dict):
        raise ConfigError(f"{path}: not a fields-app run config (no 'config' object)")
    kind = data["config"].get("task")
    if not isinstance(kind, str):
        raise ConfigError(f"{path}: config.task must be a task name, got {kind!r}")
    try:
        cls = task_class(kind).config_cls
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return config_from_dict(cls, data["config"], where=str(path))


@dataclass
class Run:
    """A trained run loaded from its directory."""

    run_dir: Path
    config: ExperimentConfig
    task: Task
    step: int

    def render(self, camera: Camera | None = None, mode: str = "shaded") -> np.ndarray:
        """Render a camera (in the field's normalised frame) to an ``[H, W, 3]`` float image."""
        return self.task.render(camera or self.task.default_camera(), mode)

    def export(self, path: str | Path, **options: Any) -> dict[str, Any]:
        """Export the field's geometry (e.g. ``.ply`` / ``.obj``), see the task's ``export``."""
        return self.task.export(Path(path), **options)

    def evaluate(self, **options: Any) -> dict[str, Any]:
        """Quality metrics, see the task's ``evaluate``."""
        return self.task.evaluate(**options)

    def scene_source(self):
        """The field as a :mod:`renderer.scene` source, so ``Scene.add(run)`` works."""
        return self.task.scene_source()


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Load ``run_dir``'s config and newest checkpoint (clear errors if anything is broken)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: run directory not found")
    config = _read_config(run_dir / CONFIG_FILE)
    dev = resolve_device(device)
    config.device = str(dev)
    try:
        task = build_task(config, dev)
    except (ValueError, TypeError, RuntimeError, ArithmeticError) as exc:
        # Model constructors reject bad sizes and names with these (torch: negative
        # dimensions; math: domain errors); config.json holds the values.
        first = (str(exc).splitlines() or [""])[0]
        raise ConfigError(
            f"{run_dir / CONFIG_FILE}: cannot build the {config.task} model from this config "
            f"({type(exc).__name__}: {first})"
        ) from None
    ckpt = load_latest(run_dir, map_location="cpu")
    bad = [name for name, t in ckpt.weights.items()
           if torch.is_tensor(t) and t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{ckpt.path}: non-finite weights in {', '.join(bad[:5])}"
                              f"{' …' if len(bad) > 5 else ''} (the run diverged; resume from an "
                              "earlier checkpoint or retrain)")
    try:
        if hasattr(task, "prepare_from_meta"):  # models whose shape depends on the data
            task.prepare_from_meta(ckpt.meta)
    except _META_ERRORS as exc:
        raise CheckpointError(f"{ckpt.path / 'state.json'}: bad task metadata ({exc})") from None
    try:
        task.model.load_state_dict(ckpt.weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{ckpt.path}: weights do not match the config ({first})") from None
    task.model.to(dev)
    try:
        task.load_meta(ckpt.meta)
    except _META_ERRORS as exc:
        raise CheckpointError(f"{ckpt.path / 'state.json'}: bad task metadata ({exc})") from None
    return Run(run_dir, config, task, ckpt.step)


# What a task's ``load_meta`` / ``prepare_from_meta`` raise on metadata of the wrong shape or type
# (e.g. ``Normalization.from_dict``'s ValueError): the checkpoint's state.json is to blame.
_META_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError)

"""Typed experiment configuration: dataclasses all the way down, JSON in and out.

An experiment is one dataclass per task kind (e.g. :class:`app.tasks.sdf.SDFExperiment`) that
extends :class:`ExperimentConfig` with the task's ``data`` and ``model`` sections. Presets are
plain instances of those dataclasses (``app/presets.py``); the CLI overrides any field with
``--section.field value`` (tyro), and runs save the resolved config as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ConfigError

__all__ = ["TrainerConfig", "ExperimentConfig", "config_to_dict", "config_from_dict"]


@dataclass
class TrainerConfig:
    """How the one training loop runs (any task)."""

    steps: int = 1500
    """Total optimisation steps."""
    lr: float = 1e-2
    """Peak learning rate of Adam (per-group multipliers come from the task)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up from 0 over this many steps."""
    decay_start: float = 0.5
    """Fraction of ``steps`` after which the learning rate decays exponentially..."""
    final_lr_factor: float = 0.1
    """...down to ``lr * final_lr_factor`` at the last step."""
    log_every: int = 25
    """Steps between lines of ``metrics.jsonl``."""
    checkpoint_every: int = 250
    """Steps between checkpoints (a checkpoint is also written at the end and on Ctrl-C)."""
    checkpoint_seconds: float = 60.0
    """Also checkpoint when this many seconds passed since the last one."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep on disk."""
    max_nonfinite_steps: int = 20
    """Abort after this many consecutive non-finite losses (each one skips its update)."""
    seed: int = 0
    """Seed for sampling and initialisation."""
    num_threads: int = 0
    """CPU threads for torch (0: all cores)."""


@dataclass
class ExperimentConfig:
    """Fields shared by every experiment; task configs subclass this."""

    preset: str = "custom"
    """The preset this configuration started from."""
    task: str = "sdf"
    """The task kind (``sdf``, …)."""
    device: str = "cpu"
    """``cpu``, ``cuda`` or ``auto`` (CUDA when available)."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def config_to_dict(cfg: Any) -> Any:
    """Dataclass → plain JSON types (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def config_from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from plain data, checking keys and types; errors say where."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], f"{where}.{f.name}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return config_from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def save_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` atomically (temp file + fsync + rename)."""
    from app.checkpoint import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def load_json(path: Path) -> Any:
    """Read a JSON file; a clear :class:`ConfigError` names the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None

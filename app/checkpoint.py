"""Checkpoints: safetensors + JSON, written atomically, never unpickled.

Layout of a run directory::

    RUN_DIR/config.json                  the resolved experiment config
    RUN_DIR/metrics.jsonl                one JSON object per logged step
    RUN_DIR/checkpoints/latest           name of the newest complete checkpoint
    RUN_DIR/checkpoints/step-0001500/
        weights.safetensors              model parameters and buffers
        optimizer.safetensors            optimiser moments (+ RNG state)
        state.json                       step, task metadata, optimiser groups, file sizes

A checkpoint directory is written under a temporary name and renamed into place only when all its
files are on disk (fsync'd), and ``latest`` is replaced atomically afterwards, so a process killed
at any instant leaves the previous checkpoint intact. Loading checks sizes and parses every file;
a truncated or corrupt file gives a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from app.errors import CheckpointError

__all__ = [
    "atomic_write_bytes", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "Checkpoint",
]

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    from renderer.files import write_atomically

    write_atomically(path, data)
    _fsync_dir(Path(path).parent)


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns."""

    path: Path
    step: int
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    rng_state: torch.Tensor | None
    meta: dict[str, Any]
    trainer: dict[str, Any]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors: dict[str, torch.Tensor] = {}
    for pid, slots in state["state"].items():
        for name, value in slots.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{pid}.{name}"] = t.detach().cpu().contiguous()
    groups = []
    for g in state["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, groups


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("state."):
            continue
        _, pid, name = key.split(".", 2) if key.count(".") >= 2 else ("", "", "")
        if not (pid.isdecimal() and pid.isascii() and name):
            raise ValueError(f"optimizer tensor {key!r} is not named state.<index>.<name>")
        state.setdefault(int(pid), {})[name] = value
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
    trainer: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``RUN_DIR/checkpoints/step-XXXXXXX`` atomically and point ``latest`` at it."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final = ckpt_root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ckpt_root))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS), metadata={"step": str(step)})
        groups: list[dict] = []
        opt_tensors: dict[str, torch.Tensor] = {"rng_state": torch.get_rng_state()}
        if optimizer is not None:
            flat, groups = _flatten_optimizer(optimizer.state_dict())
            opt_tensors.update(flat)
        save_file(opt_tensors, str(tmp / OPTIMIZER), metadata={"step": str(step)})
        state = {
            "format": FORMAT_VERSION,
            "step": step,
            "meta": meta,
            "trainer": trainer or {},
            "optimizer_groups": groups,
            "files": {f: (tmp / f).stat().st_size for f in (WEIGHTS, OPTIMIZER)},
        }
        (tmp / STATE).write_text(json.dumps(state, indent=2))
        for f in (WEIGHTS, OPTIMIZER, STATE):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(ckpt_root / "latest", (name + "\n").encode())
    _prune(ckpt_root, keep=max(1, keep), current=name)
    return final


def _prune(ckpt_root: Path, keep: int, current: str) -> None:
    names = sorted(p.name for p in ckpt_root.glob("step-*") if p.is_dir())
    for old in names[:-keep]:
        if old != current:
            shutil.rmtree(ckpt_root / old, ignore_errors=True)
    for stale in ckpt_root.glob(".step-*"):  # temp dirs of killed writers
        shutil.rmtree(stale, ignore_errors=True)
    for stale in ckpt_root.glob(".latest.*.tmp"):  # pointer temp files of killed writers
        stale.unlink(missing_ok=True)


def _candidates(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    out: list[Path] = []
    latest = root / "latest"
    if latest.is_file():
        try:
            name = latest.read_bytes().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            name = ""  # unreadable: fall back to the newest step-* directory
        # Only a checkpoint directory inside checkpoints/ (no "..", no absolute path).
        if name and name == Path(name).name and name not in (".", "..") and (
            root / name
        ).is_dir():
            out.append(root / name)
    for p in sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True):
        if p not in out:
            out.append(p)
    return out


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint directory of a run (following ``latest``), or None."""
    c = _candidates(run_dir)
    return c[0] if c else None


def load_checkpoint(path: Path, map_location: str = "cpu") -> Checkpoint:
    """Load and validate one checkpoint directory; errors name the broken file."""
    path = Path(path)
    state_path = path / STATE
    if not state_path.is_file():
        raise CheckpointError(f"{state_path}: missing (incomplete checkpoint)")
    try:
        state = json.loads(state_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{state_path}: corrupt checkpoint state ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{state_path}: cannot read ({exc.strerror})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{state_path}: unsupported checkpoint format")
    _check_state(state, state_path)
    for fname, size in state.get("files", {}).items():
        f = path / fname
        if not f.is_file():
            raise CheckpointError(f"{f}: missing")
        if f.stat().st_size != size:
            raise CheckpointError(
                f"{f}: truncated or modified ({f.stat().st_size} bytes, expected {size})"
            )
    tensors = {}
    for fname in (WEIGHTS, OPTIMIZER):
        try:
            tensors[fname] = load_file(str(path / fname), device=map_location)
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path / fname}: unreadable safetensors file ({exc})") from None
    opt = tensors[OPTIMIZER]
    rng = opt.pop("rng_state", None)
    if rng is not None and rng.dtype != torch.uint8:
        raise CheckpointError(f"{path / OPTIMIZER}: rng_state is {rng.dtype}, expected uint8")
    groups = state.get("optimizer_groups", [])
    try:
        optimizer = _unflatten_optimizer(opt, groups) if opt or groups else None
    except ValueError as exc:
        raise CheckpointError(f"{path / OPTIMIZER}: {exc}") from None
    return Checkpoint(
        path=path, step=state["step"], weights=tensors[WEIGHTS], optimizer=optimizer,
        rng_state=rng, meta=state.get("meta", {}), trainer=state.get("trainer", {}),
    )


def _check_state(state: dict[str, Any], state_path: Path) -> None:
    """The types of ``state.json``'s entries, or a CheckpointError naming the bad one."""
    problem = None
    step, files = state.get("step"), state.get("files", {})
    groups = state.get("optimizer_groups", [])
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        problem = f"'step' must be a non-negative integer, got {step!r}"
    elif not isinstance(files, dict) or not all(
        isinstance(k, str) and k == Path(k).name and k not in ("", ".", "..")
        and isinstance(v, int) and not isinstance(v, bool) for k, v in files.items()
    ):
        problem = "'files' must map file names to sizes in bytes"
    elif not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        problem = "'optimizer_groups' must be a list of objects"
    else:
        for key in ("meta", "trainer"):
            if not isinstance(state.get(key, {}), dict):
                problem = f"'{key}' must be an object, got {type(state[key]).__name__}"
    if problem is not None:
        raise CheckpointError(f"{state_path}: corrupt checkpoint state ({problem})")


def load_latest(run_dir: Path, map_location: str = "cpu", fallback: bool = False) -> Checkpoint:
    """Load the newest checkpoint; with ``fallback`` try older ones if the newest is broken."""
    cands = _candidates(run_dir)
    if not cands:
        raise CheckpointError(f"{Path(run_dir) / 'checkpoints'}: no checkpoint found")
    first_error: CheckpointError | None = None
    for c in cands if fallback else cands[:1]:
        try:
            return load_checkpoint(c, map_location)
        except CheckpointError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error

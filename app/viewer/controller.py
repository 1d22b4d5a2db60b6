"""The viewer's state and actions, without any GUI: the Dear PyGui window only reads and writes it.

One *engine* owns the model: every piece of torch work (training steps, renders, exports,
checkpoints, loading) runs on it, one thing at a time, so training and rendering never fight over
the model or over the CPU's threads. The UI thread only edits plain state (camera, render
settings) and posts actions; it never waits for torch. With :meth:`ViewerController.start_engine`
the engine is a background thread; without it (tests, scripts) every action runs at once in the
caller's thread and :meth:`ViewerController.work` advances the engine by hand.

Frames (see :meth:`ViewerController.work`):

* the render size is the view's size × ``render_scale``, divided by a *level* ``d ∈ {8, 4, 2, 1}``;
* after a camera or setting change the engine renders at once at the finest level whose predicted
  time (a running ms-per-pixel estimate per mode) fits ``budget_ms``;
* while the camera rests and the field does not change, it refines one level at a time up to
  full size (progressive refinement);
* while training, the field changes every step: the frame is refreshed at the interactive level,
  but renders may take only ``render_duty`` of the wall-clock time (``interact_duty`` while the
  camera moves), so training keeps most of the machine.

Errors raised by training, rendering or export are caught, shown in :attr:`messages` and pause
training; the viewer keeps running.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.config import ExperimentConfig
from app.errors import FieldsAppError
from app.viewer.camera import OrbitCamera

__all__ = ["ViewerController", "Frame", "RenderSettings", "ExportSettings", "LEVELS"]

LEVELS = (8, 4, 2, 1)
"""Render-size divisors, coarse to fine."""


@dataclass
class Frame:
    """A finished render."""

    image: np.ndarray
    """``[h, w, 3]`` float32 in ``[0, 1]``."""
    version: int
    divisor: int
    ms: float
    step: int
    mode: str


@dataclass
class RenderSettings:
    """What the Render panel edits."""

    mode: str = "shaded"
    render_scale: float = 0.5
    """Render resolution as a fraction of the view's size (before the adaptive level)."""
    light_azimuth: float = -30.0
    """Key light, degrees to the right of the viewing direction (shaded modes)."""
    light_elevation: float = 37.0
    """Key light, degrees above the viewing direction."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    budget_ms: float = 80.0
    """Time budget of an interactive frame."""


@dataclass
class ExportSettings:
    """What the Export panel edits."""

    resolution: int = 256
    level: float = 0.0
    format: str = "ply"
    path: str = ""
    """Output file; empty means ``RUN_DIR/mesh.<format>``."""
    method: str = "coarse_to_fine"


@dataclass
class History:
    """Training curves for the plots (decimated to at most ``capacity`` points)."""

    capacity: int = 2000
    steps: list[float] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    _stride: int = 1
    _count: int = 0

    def add(self, step: int, scalars: dict[str, float]) -> None:
        self._count += 1
        if self._count % self._stride:
            return
        self.steps.append(float(step))
        for k, v in scalars.items():
            if k in ("lr", "skipped"):
                continue
            s = self.series.setdefault(k, [math.nan] * (len(self.steps) - 1))
            s.append(float(v))
        for s in self.series.values():
            while len(s) < len(self.steps):
                s.append(math.nan)
        if len(self.steps) > self.capacity:  # keep every other point and sample half as often
            self.steps = self.steps[::2]
            for k in self.series:
                self.series[k] = self.series[k][::2]
            self._stride *= 2

    def clear(self) -> None:
        self.steps.clear()
        self.series.clear()
        self._stride, self._count = 1, 0


def _sum_to_one(values: list[float]) -> list[float]:
    """``values`` scaled to sum 1 (as they are when the sum is not positive)."""
    total = float(sum(values))
    return [float(v) / total for v in values] if total > 0 else [float(v) for v in values]


def _rss_mb() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class ViewerController:
    """All state and actions of the viewer.

    Args:
        preset: start from this preset (a fresh field), or
        run_dir: open this saved run (weights and config from its newest checkpoint).
        out: run directory for a preset's checkpoints (default ``outputs/viewer/PRESET``).
        device: ``cpu``, ``cuda`` or ``auto``.
        view_size: the render view's size in pixels ``(width, height)``.
        config: use this config instead of the preset's (tests shrink presets this way).
    """

    def __init__(
        self,
        preset: str | None = None,
        *,
        run_dir: str | Path | None = None,
        scene: str | Path | None = None,
        out: str | Path | None = None,
        device: str = "cpu",
        view_size: tuple[int, int] = (512, 512),
        config: ExperimentConfig | None = None,
    ) -> None:
        from app.presets import PRESETS

        self.presets = list(PRESETS)
        self.device = device
        self.render = RenderSettings()
        self.export_settings = ExportSettings()
        self.history = History()
        self.messages: list[str] = []
        self.status = "ready"
        self.frame: Frame | None = None
        self.last_export: dict[str, Any] | None = None
        self.export_progress: float | None = None
        self.stats: dict[str, float] = {"render_ms": 0.0, "train_ms": 0.0, "steps_per_s": 0.0,
                                         "memory_mb": 0.0}
        self.render_duty = 0.1
        self.interact_duty = 0.3
        self.rest_seconds = 0.25
        self.training = False
        self.view_size = (int(view_size[0]), int(view_size[1]))
        self._lock = threading.RLock()  # guards the plain state shared with the UI thread
        self._queue: queue.Queue[tuple[str, Callable[[], None]]] = queue.Queue()
        self._pending = 0
        self._ui_busy = False
        self._torch_threads = torch.get_num_threads()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._view_version = 0
        self._field_version = 0
        self._frame_key: tuple[int, int] | None = None  # (view, field) versions of self.frame
        self._frame_counter = 0
        self._last_move = 0.0
        self._next_render = 0.0
        self._timings: dict[str, list[tuple[int, float]]] = {}  # mode → (pixels, ms) of renders
        self._rate_window: tuple[float, int] = (time.perf_counter(), 0)
        self._metrics_file = None
        self.task = None
        self.task_kind: str | None = None
        self.trainer = None
        self.config: ExperimentConfig | None = None
        self.run_dir: Path | None = None
        self.preset: str | None = None
        self.camera = OrbitCamera()
        if scene is not None:
            self._open_scene(Path(scene))
        elif run_dir is not None:
            self._open_run(Path(run_dir))
        else:
            self._load_preset(preset or "spot-sdf", out=out, config=config)

    # ======================================================================================
    # the engine
    def start_engine(self) -> None:
        """Run the engine on a background thread (the GUI does this)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._engine_loop, name="fields-app-engine",
                                            daemon=True)
            self._thread.start()

    def close(self, save: bool = True) -> None:
        """Stop the engine (saving a checkpoint of unsaved training when ``save``)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None
        while True:  # actions posted before closing still run (an export, a save…)
            try:
                name, fn = self._queue.get_nowait()
            except queue.Empty:
                break
            self._guard(name, fn)
            with self._lock:
                self._pending -= 1
        if save and self.trainer is not None and self._unsaved_steps():
            self._guard("save checkpoint", self._save)
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None

    def set_ui_busy(self, busy: bool) -> None:
        """The window draws at full rate (``busy``) or idles. While it is busy the engine leaves
        one core to it: on a 2-core machine with software OpenGL the UI needs most of a core, and
        torch's OpenMP threads stall badly when one of them is descheduled (B12)."""
        self._ui_busy = busy

    def _apply_threads(self) -> None:
        want = max(1, self._torch_threads - 1) if self._ui_busy else self._torch_threads
        if want != torch.get_num_threads():  # per thread for OpenMP: set it in the engine
            torch.set_num_threads(want)

    def _engine_loop(self) -> None:
        self._torch_threads = torch.get_num_threads()
        while not self._closing:
            self._apply_threads()
            if not self.work():
                self._wake.wait(0.02)
                self._wake.clear()

    def work(self) -> bool:
        """One unit of engine work: a queued action, else a frame if one is due, else a training
        step if training. Returns whether anything was done."""
        try:
            name, fn = self._queue.get_nowait()
        except queue.Empty:
            pass
        else:
            try:
                self._guard(name, fn)
            finally:
                with self._lock:
                    self._pending -= 1
            return True
        if self._guard("render", self._maybe_render):
            return True
        if self.training:
            self._guard("training", self._train_step)
            return True
        return False

    def _submit(self, name: str, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the engine (now, when there is no engine thread)."""
        if self._thread is None:
            self._guard(name, fn)
        else:
            with self._lock:
                self._pending += 1
            self._queue.put((name, fn))
            self._wake.set()

    def _guard(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # shown in the window; the viewer keeps running
            self.training = False
            text = str(exc) if isinstance(exc, (FieldsAppError, ValueError, OSError)) else (
                f"{type(exc).__name__}: {exc}")
            self._message(f"{name} failed: {text}", error=True)
            if not isinstance(exc, (FieldsAppError, ValueError, OSError)):
                traceback.print_exc()
            return None

    def _message(self, text: str, error: bool = False) -> None:
        with self._lock:
            stamp = time.strftime("%H:%M:%S")
            self.messages.append(f"[{stamp}] {'error: ' if error else ''}{text}")
            del self.messages[:-50]
            self.status = ("error: " if error else "") + text

    # ======================================================================================
    # loading
    def _load_preset(self, preset: str, *, out: str | Path | None = None,
                     config: ExperimentConfig | None = None, data: str | None = None) -> None:
        from app.presets import get_preset
        from app.run import build_task, resolve_device

        cfg = config if config is not None else get_preset(preset)
        if data:
            if not hasattr(getattr(cfg, "data", None), "path"):
                raise FieldsAppError(f"preset {preset!r} takes no data path")
            cfg.data.path = data
        dev = resolve_device(self.device)
        cfg.device = str(dev)
        torch.manual_seed(cfg.trainer.seed)
        task = build_task(cfg, dev)
        self._install(task, cfg, Path(out) if out else Path("outputs/viewer") / preset, preset,
                      fresh=True)

    def _open_run(self, run_dir: Path) -> None:
        from app.run import load_run

        run = load_run(run_dir, device=self.device)
        self._install(run.task, run.config, run_dir, run.config.preset or run.config.task,
                      fresh=False, step=run.step)
        self._load_history(run_dir / "metrics.jsonl", run.step)

    def _open_scene(self, path: Path) -> None:
        """A scene file: its objects and lights, rendered and exported; nothing to train."""
        from app.tasks.scene import SceneTask

        task = SceneTask(path, device=self.device)
        self._install(task, task.config, path.parent, path.name, fresh=False)

    def _trainable(self) -> bool:
        if getattr(self.task, "trainable", True):
            return True
        self._message(f"{self.preset}: a scene has nothing to train (render, orbit and export "
                      "work)")
        return False

    def _load_history(self, path: Path, up_to: int) -> None:
        """Fill the plots with a saved run's logged steps (lines a crash cut are skipped)."""
        if not path.is_file():
            return
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            step = record.get("step")
            if not isinstance(step, int) or step > up_to:
                continue
            scalars = {k: v for k, v in record.items() if isinstance(v, (int, float))
                       and k not in ("step", "elapsed_s", "steps_per_s")}
            self.history.add(step, scalars)

    def _install(self, task, cfg: ExperimentConfig, run_dir: Path, preset: str, *, fresh: bool,
                 step: int = 0) -> None:
        self.training = False
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None
        self.task, self.config, self.run_dir, self.preset = task, cfg, run_dir, preset
        self.trainer = None
        self._fresh = fresh
        self._loaded_step = step
        self._saved_step = step
        self.history.clear()
        self.last_scalars: dict[str, float] = {}
        if self.task_kind != task.kind:  # a new kind of task: its own first mode and background
            self.render.mode = task.render_modes[0]
            data = getattr(cfg, "data", None)
            self.render.background = tuple(getattr(data, "background", (1.0, 1.0, 1.0)))
        self.task_kind = task.kind
        self.camera = self._home_camera()
        self.export_settings.resolution = int(getattr(getattr(cfg, "export", None), "resolution",
                                                      256))
        self._field_changed()
        self._view_changed()
        what = "loaded preset" if fresh else "opened scene" if task.kind == "scene" else \
            "opened run"
        self._message(f"{what} {preset} → {run_dir}")

    def _ensure_trainer(self) -> None:
        """Load the training data and build the trainer (resuming an opened run)."""
        if self.trainer is not None:
            return
        from app.run import save_run_config
        from app.trainer import Trainer

        self.status = "loading data…"
        t0 = time.perf_counter()
        self.task.setup_data()
        save_run_config(self.config, self.run_dir)
        trainer = Trainer(self.task, self.config.trainer, self.run_dir, restart=self._fresh,
                          progress=False, log=lambda m: self._message(m))
        if not self._fresh:
            trainer.resume()
        self.trainer = trainer
        up = getattr(self.task, "up", None)
        if up is not None and not np.allclose(up, self.camera.up):  # the views told us the up
            with self._lock:
                self.camera = self._home_camera()
            self._view_changed()
        self._metrics_file = open(self.run_dir / "metrics.jsonl", "w" if self._fresh else "a")
        self._message(f"data ready in {time.perf_counter() - t0:.1f} s; step {trainer.step}")

    # ======================================================================================
    # training actions
    @property
    def step(self) -> int:
        return self.trainer.step if self.trainer is not None else self._loaded_step

    @property
    def total_steps(self) -> int:
        return int(self.config.trainer.steps)

    @property
    def lr(self) -> float:
        return float(self.config.trainer.lr)

    def set_lr(self, value: float) -> None:
        """The base learning rate (the schedule still applies); effective from the next step."""
        if not (math.isfinite(value) and value > 0):
            self._message(f"learning rate must be positive, got {value}", error=True)
            return
        self.config.trainer.lr = float(value)

    def start(self) -> None:
        """Start (or resume) training; steps past the preset's count continue at the final lr."""
        def go() -> None:
            if not self._trainable():
                return
            self._ensure_trainer()
            self.training = True
            self.status = "training"
            self._rate_window = (time.perf_counter(), self.trainer.step)
        self._submit("start", go)

    def pause(self) -> None:
        self.training = False
        self.status = "paused"
        self._wake.set()

    def step_once(self) -> None:
        """One training step (pauses training first)."""
        self.training = False

        def one() -> None:
            if not self._trainable():
                return
            self._ensure_trainer()
            self._train_step()
            self.status = f"stepped to {self.trainer.step}"
        self._submit("step", one)

    def reset(self) -> None:
        """A fresh field (same preset, config and data path); the run directory starts over."""
        self.training = False
        if not getattr(self.task, "trainable", True):
            self._submit("reset", self._trainable)
            return
        cfg, preset, run_dir = self.config, self.preset, self.run_dir
        self._submit("reset", lambda: self._load_preset(preset, out=run_dir, config=cfg))

    def load(self, preset: str, data: str | None = None, out: str | None = None) -> None:
        """Switch to ``preset`` (optionally with another data path) — a fresh field."""
        self.training = False
        self._submit("load preset", lambda: self._load_preset(preset, data=data or None,
                                                              out=out or None))

    def open_run(self, run_dir: str) -> None:
        self.training = False
        self._submit("open run", lambda: self._open_run(Path(run_dir)))

    def _train_step(self) -> None:
        trainer = self.trainer
        t0 = time.perf_counter()
        scalars = trainer.train_step()
        dt = time.perf_counter() - t0
        self.stats["train_ms"] = 0.9 * self.stats["train_ms"] + 0.1 * dt * 1e3 if (
            self.stats["train_ms"]) else dt * 1e3
        trainer.elapsed += dt
        self.history.add(trainer.step, scalars)
        self.last_scalars = scalars
        self._field_changed()
        cfg = self.config.trainer
        now = time.perf_counter()
        t_w, s_w = self._rate_window
        if now - t_w > 1.0:
            self.stats["steps_per_s"] = (trainer.step - s_w) / (now - t_w)
            self._rate_window = (now, trainer.step)
        if trainer.step % cfg.log_every == 0 and self._metrics_file is not None:
            record = {"step": trainer.step, "elapsed_s": round(trainer.elapsed, 3),
                      "steps_per_s": round(self.stats["steps_per_s"], 2), **scalars}
            self._metrics_file.write(json.dumps(record) + "\n")
            self._metrics_file.flush()
        if trainer.step % cfg.checkpoint_every == 0:
            self._save()
        if trainer.step == cfg.steps and self.training:
            self.training = False
            self._save()
            self._message(f"trained {cfg.steps} steps (Start continues at the final lr)")

    # ======================================================================================
    # checkpoints
    def _unsaved_steps(self) -> bool:
        return self.trainer is not None and self.trainer.step != self._saved_step

    def _save(self) -> None:
        from app.run import save_run_config

        if self.trainer is None:  # nothing trained here since loading: nothing new to save
            self._message("nothing to save: the field has not been trained in this session")
            return
        save_run_config(self.config, self.run_dir)
        path = self.trainer.save()
        self._saved_step = self.trainer.step
        self._message(f"saved {path}")

    def save_checkpoint(self) -> None:
        """Write a checkpoint of the current field to the run directory (atomic)."""
        def save() -> None:
            self._save()
        self._submit("save checkpoint", save)

    def load_checkpoint(self) -> None:
        """Reload the run directory's newest checkpoint (weights, optimiser, step)."""
        def load() -> None:
            from app.checkpoint import load_latest

            if self.trainer is None:
                ckpt = load_latest(self.run_dir)
                self.task.model.load_state_dict(ckpt.weights)
                self.task.load_meta(ckpt.meta)
                self._loaded_step = ckpt.step
            else:
                self.trainer.restart = False
                step = self.trainer.resume()
                if step is None:
                    raise FieldsAppError(f"{self.run_dir}: no checkpoint to load")
            self._saved_step = self.step
            self._field_changed()
            self._message(f"loaded checkpoint at step {self.step}")
        self.training = False
        self._submit("load checkpoint", load)

    # ======================================================================================
    # export
    def export_path(self) -> Path:
        s = self.export_settings
        if s.path:
            return Path(s.path)
        return self.run_dir / f"mesh.{s.format}"

    def export_mesh(self) -> None:
        """Export the field's level set with :attr:`export_settings` (the Export button)."""
        s = self.export_settings
        path = self.export_path()
        if path.suffix.lower() not in (".ply", ".obj"):
            path = path.with_suffix(f".{s.format}")
        was_training = self.training
        self.training = False

        def run() -> None:
            self.export_progress = 0.0
            self.status = f"exporting {path}…"

            def progress(done: int, total: int) -> None:
                self.export_progress = done / max(total, 1)
            try:
                info = self.task.export(path, resolution=int(s.resolution), method=s.method,
                                        level=float(s.level), progress=progress)
            finally:
                self.export_progress = None
            self.last_export = info
            self._message(f"exported {info['path']}: {info['vertices']} vertices, "
                          f"{info['faces']} faces ({info['seconds']} s)")
            self.training = was_training
        self._submit("export", run)

    # ======================================================================================
    # camera and render settings (UI thread; cheap)
    def _view_changed(self) -> None:
        with self._lock:
            self._view_version += 1
            self._last_move = time.perf_counter()
        self._wake.set()

    def _field_changed(self) -> None:
        self._field_version += 1

    def orbit(self, dx: float, dy: float) -> None:
        with self._lock:
            self.camera.orbit(dx, dy)
        self._view_changed()

    def pan(self, dx: float, dy: float) -> None:
        with self._lock:
            self.camera.pan(dx, dy, self.view_size[1])
        self._view_changed()

    def zoom(self, ticks: float) -> None:
        with self._lock:
            self.camera.zoom(ticks)
        self._view_changed()

    def set_fov(self, fov_y_deg: float) -> None:
        with self._lock:
            self.camera.fov_y_deg = float(np.clip(fov_y_deg, 5.0, 150.0))
        self._view_changed()

    def reset_camera(self) -> None:
        with self._lock:
            self.camera = self._home_camera()
        self._view_changed()

    def _home_camera(self) -> OrbitCamera:
        """The task's default view, 30 % further back: a resizable view must frame the whole
        field at any aspect, where the task's default is made for square renders."""
        up = getattr(self.task, "up", None)
        cam = OrbitCamera.from_camera(self.task.default_camera(),
                                      up=None if up is None else np.asarray(up, dtype=float))
        cam.radius *= 1.3
        return cam

    def dataset_view_count(self) -> int:
        return len(self.task.dataset_cameras()) if self.task is not None else 0

    def snap_to_view(self, index: int) -> None:
        """Look through training view ``index`` (its eye and axis; the orbit keeps its up)."""
        cams = self.task.dataset_cameras()
        if not cams:
            self._message("no dataset views (start training once to load the data)", error=True)
            return
        cam = cams[int(np.clip(index, 0, len(cams) - 1))]
        with self._lock:
            self.camera = OrbitCamera.from_camera(cam, target=self.camera.target,
                                                  up=self.camera.up)
            self.camera.fov_y_deg = cam.fov_y_deg
        self._view_changed()

    def set_view_size(self, width: int, height: int) -> None:
        size = (max(int(width), 8), max(int(height), 8))
        if size != self.view_size:
            self.view_size = size
            self._view_changed()

    def update_render(self, **changes: Any) -> None:
        """Change render settings (``mode``, ``render_scale``, ``light_azimuth``, …)."""
        mode = changes.get("mode")
        if mode is not None and mode not in self.task.render_modes:
            self._message(f"the {self.task.kind} task renders {self.task.render_modes}, "
                          f"not {mode!r}", error=True)
            return
        with self._lock:
            for k, v in changes.items():
                if not hasattr(self.render, k):
                    raise AttributeError(f"no render setting {k!r}")
                setattr(self.render, k, v)
        self._view_changed()

    # ======================================================================================
    # rendering
    def render_size(self, divisor: int = 1) -> tuple[int, int]:
        w, h = self.view_size
        s = float(np.clip(self.render.render_scale, 0.05, 1.0))
        return max(1, round(w * s / divisor)), max(1, round(h * s / divisor))

    def predicted_ms(self, pixels: float, mode: str | None = None) -> float | None:
        """Predicted render time of ``pixels`` in ``mode``: a least-squares fit
        ``ms ≈ a + b·pixels`` (``a, b ≥ 0``) to this session's recent renders of that mode."""
        samples = self._timings.get(mode or self.render.mode)
        if not samples:
            return None
        px = np.array([p for p, _ in samples], dtype=float)
        ms = np.array([m for _, m in samples], dtype=float)
        if np.ptp(px) < 1.0:  # one size seen: assume the time scales with pixels
            return float(ms.mean() / px.mean() * pixels)
        b, a = np.polyfit(px, ms, 1)
        if b <= 0:
            return float(ms.max())
        return float(max(a, 0.0) + b * pixels)

    def _interactive_divisor(self) -> int:
        w, h = self.render_size()
        sizes = {p for p, _ in self._timings.get(self.render.mode, [])}
        if len(sizes) == 1:  # one size timed: fixed overhead unknown — try the next finer once
            seen = next(iter(sizes))
            finer = [d for d in LEVELS if (w / d) * (h / d) >= 1.5 * seen]
            if finer:
                d = finer[0]
                if self.predicted_ms((w / d) * (h / d)) <= 4.0 * self.render.budget_ms:
                    return d
        for d in reversed(LEVELS):  # finest first
            predicted = self.predicted_ms((w / d) * (h / d))
            if predicted is None:
                return LEVELS[0]
            if predicted <= self.render.budget_ms:
                return d
        return LEVELS[0]

    def _maybe_render(self) -> bool:
        """Render a frame if one is due (see the module docstring); returns whether it did."""
        if self.task is None or self.view_size[0] < 8:
            return False
        now = time.perf_counter()
        with self._lock:
            view_v, field_v = self._view_version, self._field_version
        moved = self._frame_key is None or self._frame_key[0] != view_v
        changed = self._frame_key is not None and self._frame_key[1] != field_v
        resting = now - self._last_move > self.rest_seconds
        if moved:
            if self.training and now < self._next_render:
                return False
            divisor = self._interactive_divisor()
        elif changed:
            if self.training and now < self._next_render:
                return False
            divisor = self._interactive_divisor()
        elif resting and not self.training and self.frame is not None and self.frame.divisor > 1:
            divisor = LEVELS[LEVELS.index(self.frame.divisor) + 1]
        else:
            return False
        self.render_frame(divisor)
        duty = self.interact_duty if not resting else self.render_duty
        spent = self.frame.ms / 1e3
        # A slow render still refreshes the view every few seconds.
        self._next_render = time.perf_counter() + min(spent * (1.0 / duty - 1.0), 3.0)
        self._frame_key = (view_v, field_v)
        return True

    def refresh(self) -> None:
        """Render the current field as soon as the engine is free (no duty-cycle wait)."""
        self._next_render = 0.0
        self._frame_key = None
        self._wake.set()

    def render_frame(self, divisor: int = 1) -> Frame:
        """Render the current view at ``render_size(divisor)`` now (engine thread or no thread)
        and make it :attr:`frame`."""
        with self._lock:
            cam_state = self.camera.copy()
            settings = RenderSettings(**vars(self.render))
        w, h = self.render_size(divisor)
        camera = cam_state.camera(w, h)
        light = cam_state.light_direction(settings.light_azimuth, settings.light_elevation)
        t0 = time.perf_counter()
        image = self.task.render(camera, settings.mode, background=settings.background,
                                 light_dir=light)
        ms = (time.perf_counter() - t0) * 1e3
        samples = self._timings.setdefault(settings.mode, [])
        samples.append((w * h, ms))
        del samples[:-12]
        self._frame_counter += 1
        self.frame = Frame(np.ascontiguousarray(image, dtype=np.float32), self._frame_counter,
                           divisor, ms, self.step, settings.mode)
        self.stats["render_ms"] = ms
        self.stats["memory_mb"] = _rss_mb()
        if torch.cuda.is_available():
            self.stats["cuda_mb"] = torch.cuda.memory_allocated() / 2**20
        return self.frame

    # ======================================================================================
    # what the panels show
    def properties(self) -> list[tuple[str, str]]:
        """``(name, value)`` rows of the task's and field's :meth:`properties` plus the run's;
        the Properties panel shows them as they are (no task-specific widgets)."""
        rows = [("preset", str(self.preset)), ("run_dir", str(self.run_dir)),
                ("step", f"{self.step} / {self.total_steps}")]
        props = self.task.properties() if self.task is not None else {}
        for k, v in props.items():
            if isinstance(v, float):
                v = f"{v:.6g}"
            elif isinstance(v, (list, tuple)):
                v = ", ".join(str(x) for x in v)
            rows.append((k, str(v)))
        return rows

    def task_sliders(self) -> list[tuple[str, float, float, float]]:
        """``(name, value, low, high)`` of the current task's own sliders (e.g. a naisr atlas's
        covariates); empty for tasks without any."""
        sliders = getattr(self.task, "sliders", None)
        if sliders is None:
            return []
        try:
            return list(sliders())
        except Exception:  # noqa: BLE001 - e.g. an atlas not built yet: no sliders to show
            return []

    def set_task_slider(self, name: str, value: float) -> None:
        """Move one of the task's sliders; the view re-renders (on the engine thread)."""
        def go() -> None:
            self.task.set_slider(name, float(value))
            self._field_changed()
        self._submit("slider", go)

    def fresh_spectra(self) -> dict[str, Any] | None:
        """What the "FreSh spectra" panel plots, or None when the current task ran no FreSh
        search (it is not an image task, ``model.fresh`` is off, or the data — and with it the
        search — is not loaded yet; a saved run brings its search in its checkpoint).

        Returns:
            ``hyperparameter``, ``chosen``, ``chosen_index``, ``size`` (S), ``inits``,
            ``seconds``; ``bins`` = ``[1, …, S]``; ``target`` (the image's spectrum) and
            ``model`` (the chosen value's untrained fields, averaged over the inits), each
            normalised to sum 1; ``rows`` = ``(value, mean W1, standard error)`` per candidate.
        """
        record = getattr(self.task, "fresh_record", None)
        if record is None:
            return None
        means = [float(v) for v in record["mean_w1"]]
        return {
            "hyperparameter": str(record["hyperparameter"]), "chosen": float(record["chosen"]),
            "chosen_index": min(range(len(means)), key=means.__getitem__),
            "size": int(record["size"]), "inits": int(record["inits"]),
            "seconds": float(record["seconds"]),
            "bins": [float(k) for k in range(1, int(record["size"]) + 1)],
            "target": _sum_to_one(record["target_spectrum"]),
            "model": _sum_to_one(record["model_spectrum"]),
            "rows": [(float(v), m, float(se)) for v, m, se in zip(
                record["candidates"], means, record["std_error"])],
        }

    @property
    def busy(self) -> bool:
        """Whether posted actions are still queued or running."""
        return self._pending > 0

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every posted action has run (threaded mode); False on timeout."""
        end = time.perf_counter() + timeout
        while self._pending > 0:
            if time.perf_counter() > end:
                return False
            time.sleep(0.01)
        return True

"""The one training loop: Adam + schedule, progress bar, metrics, checkpoints, resume, NaN guard.

Recipe (every task): ``loss = task.training_loss(step)`` → backward → (skip if non-finite) →
Adam step → schedule. Every ``log_every`` steps a line goes to ``RUN_DIR/metrics.jsonl``; every
``checkpoint_every`` steps (or ``checkpoint_seconds``) a checkpoint is written atomically (see
:mod:`app.checkpoint`). Running again with the same run directory resumes from the last
checkpoint; SIGINT/SIGTERM save a checkpoint and stop cleanly.

Data parallel (launched by ``torchrun``, ``WORLD_SIZE > 1``): torch.distributed (gloo on CPU,
nccl on CUDA) and ``DistributedDataParallel`` around the task's loss. Every rank draws the same
global batch (each step's random stream is seeded by ``(seed, step)``) and trains on its slice
(:meth:`Task.shard`); DDP averages the gradients, so a step equals the single-process step on
the whole batch up to floating-point reduction order. Losses and logged scalars are averaged
over ranks; rank 0 alone logs, writes metrics and checkpoints (which hold no rank-specific
state, so any rank count resumes them).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from app.checkpoint import atomic_write_bytes, load_latest, save_checkpoint
from app.config import TrainerConfig
from app.errors import CheckpointError, FieldsAppError
from app.tasks.base import Task

__all__ = ["Trainer", "TrainResult", "NonFiniteLossError", "lr_factor", "distributed_context"]


class NonFiniteLossError(FieldsAppError):
    """Training produced too many non-finite losses in a row."""


def lr_factor(step: int, cfg: TrainerConfig) -> float:
    """Learning-rate multiplier: linear warm-up, flat, then exponential decay to the final factor.

    ``f(s) = min(1, s / warmup)`` before ``decay_start·steps``, then
    ``final^((s − s₀) / (steps − s₀))``.
    """
    f = 1.0
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        f = (step + 1) / cfg.warmup_steps
    s0 = cfg.decay_start * cfg.steps
    if step > s0 and cfg.steps > s0:
        f *= cfg.final_lr_factor ** ((step - s0) / (cfg.steps - s0))
    return f


def distributed_context(device: torch.device | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: joins the process group when launched by ``torchrun``
    (``WORLD_SIZE > 1``; gloo on CPU, nccl on CUDA), else ``(0, 1)``."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


class _TaskLoss(torch.nn.Module):
    """The task's loss as a module, so ``DistributedDataParallel`` can wrap it: its forward is
    ``task.training_loss(step)`` and its parameters are the task's."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.model = task.model
        self._task = [task]  # not a submodule

    def forward(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self._task[0].training_loss(step)


@dataclass
class TrainResult:
    step: int
    seconds: float
    last_loss: float
    interrupted: bool
    resumed_from: int | None


class Trainer:
    """Fit ``task`` into ``run_dir``.

    Args:
        task: the task (model built, data set up by :meth:`fit`).
        config: the trainer section of the experiment config.
        run_dir: where config, metrics and checkpoints go.
        save_config: callable writing ``config.json`` (done once per fresh run).
        restart: ignore existing checkpoints and start over.
        progress: show a tqdm progress bar.
        log: where human messages go (default: stderr).
    """

    def __init__(
        self,
        task: Task,
        config: TrainerConfig,
        run_dir: Path,
        *,
        restart: bool = False,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.task = task
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.restart = restart
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        groups = task.parameter_groups()
        for g in groups:
            g["lr_factor"] = g.get("lr_factor", 1.0)
            g["lr"] = config.lr * g["lr_factor"]
        # instant-ngp's Adam settings (β₂ = 0.99, ε = 1e-15) suit sparse hash-table updates.
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, betas=(0.9, 0.99), eps=1e-15)
        self.step = 0
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._nonfinite = 0
        self.last_loss = math.nan
        self._saved_step: int | None = None
        self._skipped = 0
        self.rank, self.world = distributed_context(task.device)
        task.shard_rank, task.shard_world = self.rank, self.world
        self._ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self._ddp = DistributedDataParallel(
                _TaskLoss(task), find_unused_parameters=type(task).ddp_unused_parameters)
            if self.rank != 0:
                self.progress = False
                self.log = lambda msg: None

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): logs, metrics and checkpoints."""
        return self.rank == 0

    # -- state ------------------------------------------------------------------------------
    def resume(self) -> int | None:
        """Restore the newest loadable checkpoint of ``run_dir``; return its step or None."""
        if self.restart or not (self.run_dir / "checkpoints").is_dir():
            return None
        try:
            ckpt = load_latest(self.run_dir, map_location="cpu", fallback=True)
        except CheckpointError as exc:
            if "no checkpoint found" in str(exc):
                return None
            raise
        self.task.model.load_state_dict(ckpt.weights)
        self.task.load_meta(ckpt.meta)
        if ckpt.optimizer is not None:
            self.optimizer.load_state_dict(ckpt.optimizer)
        if ckpt.rng_state is not None:
            torch.set_rng_state(ckpt.rng_state)
        self.step = ckpt.step
        self._saved_step = ckpt.step
        self.elapsed = float(ckpt.trainer.get("elapsed_s", 0.0))
        if self.is_main:
            self._truncate_metrics(self.step)
        return ckpt.step

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0; not again for a step already saved —
        rewriting it would briefly remove the checkpoint ``latest`` names)."""
        if not self.is_main or self._saved_step == self.step:
            return None
        path = save_checkpoint(
            self.run_dir, self.step, self.task.model, self.optimizer, self.task.meta(),
            trainer={"elapsed_s": self.elapsed, "last_loss": self.last_loss},
            keep=self.cfg.keep_checkpoints,
        )
        self._saved_step = self.step
        return path

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines newer than the checkpoint we resume from (written before a crash)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        atomic_write_bytes(path, ("\n".join(kept) + "\n").encode() if kept else b"")

    # -- one step ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns the logged scalars (``loss``, ``lr``, …)."""
        f = lr_factor(self.step, self.cfg)
        lr_scales = getattr(self.task, "lr_scales", None)
        scales = lr_scales(self.step) if lr_scales is not None else None
        for i, g in enumerate(self.optimizer.param_groups):
            g["lr"] = self.cfg.lr * g["lr_factor"] * f * (1.0 if scales is None else scales[i])
        # Logged: the trainer's rate at this step, times the task's largest stage scale.
        lr_now = self.cfg.lr * f * (max(scales) if scales else 1.0)
        self.task.model.train()
        # Step s draws from its own stream, seeded by (seed, s): every data-parallel rank draws
        # the same global batch whatever the others consumed before, a resumed run draws what an
        # uninterrupted one would, and one process matches many.
        torch.manual_seed((self.cfg.seed << 32) | self.step)
        if self._ddp is not None:
            loss, extras = self._ddp(self.step)
            value, extras = self._average(loss, extras)
        else:
            loss, extras = self.task.training_loss(self.step)
            value = float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(value):
            if self._ddp is not None and loss.requires_grad:
                # Every rank skips together (the averaged loss is non-finite on all of them);
                # DDP still needs its gradient reduction to finish before the next forward.
                (loss * 0.0).backward()
                self.optimizer.zero_grad(set_to_none=True)
            self._nonfinite += 1
            self._skipped += 1
            if self._nonfinite == 1:
                self.log(f"step {self.step + 1}: non-finite loss ({value}); update skipped")
            if self._nonfinite >= self.cfg.max_nonfinite_steps:
                raise NonFiniteLossError(
                    f"{self._nonfinite} non-finite losses in a row at step {self.step}; the last "
                    f"checkpoint is intact — try a lower learning rate (--trainer.lr)"
                )
            self.step += 1
            return {"loss": value, "skipped": 1.0, "lr": lr_now}
        self._nonfinite = 0
        if loss.requires_grad:  # a batch with nothing to learn from (e.g. no samples) skips
            loss.backward()
            self.optimizer.step()
        self.step += 1
        self.last_loss = value
        return {"loss": value, "lr": lr_now, **extras}

    def _average(self, loss: torch.Tensor, extras: dict[str, float]
                 ) -> tuple[float, dict[str, float]]:
        """The loss and the logged scalars averaged over ranks (one all-reduce)."""
        import torch.distributed as dist

        keys = sorted(extras)
        v = torch.tensor([float(loss.detach())] + [float(extras[k]) for k in keys],
                         dtype=torch.float64)
        dist.all_reduce(v)
        v /= self.world
        return float(v[0]), {k: float(x) for k, x in zip(keys, v[1:].tolist())}

    def _stop_requested(self) -> bool:
        """Any rank's stop request stops every rank at the same step."""
        if self._ddp is None:
            return self._stop.is_set()
        import torch.distributed as dist

        flag = torch.tensor([1.0 if self._stop.is_set() else 0.0])
        dist.all_reduce(flag)
        return bool(flag.item() > 0)

    # -- the loop -----------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to save and stop after the current step (thread-safe)."""
        self._stop.set()

    def fit(self) -> TrainResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.resume()
        if resumed is None and self.is_main:
            self._truncate_metrics(0)  # lines of a run killed before its first checkpoint
        if resumed is not None:
            if resumed >= self.cfg.steps:
                self.log(f"{self.run_dir}: already trained to step {resumed} "
                         f"(of {self.cfg.steps}); use --restart to train again")
            else:
                self.log(f"resuming {self.run_dir} from step {resumed} "
                         "(use --restart to start over)")
        handlers = self._install_signal_handlers()
        metrics_file = (open(self.run_dir / "metrics.jsonl", "a") if self.is_main
                        else open(os.devnull, "w"))
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not self.progress,
                   desc=f"train {self.task.kind}", unit="step", dynamic_ncols=True, file=sys.stderr,
                   mininterval=0.2 if sys.stderr.isatty() else 10.0)
        interrupted = False
        last_ckpt_time = time.perf_counter()
        t_start = time.perf_counter() - self.elapsed
        window_t, window_s = time.perf_counter(), self.step
        try:
            while self.step < self.cfg.steps:
                if self._stop_requested():
                    interrupted = True
                    break
                scalars = self.train_step()
                self.elapsed = time.perf_counter() - t_start
                bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    now = time.perf_counter()
                    sps = (self.step - window_s) / max(now - window_t, 1e-9)
                    window_t, window_s = now, self.step
                    record = {"step": self.step, "elapsed_s": round(self.elapsed, 3),
                              "steps_per_s": round(sps, 2), **scalars}
                    # Strict JSON: a non-finite value is written as null; skipped steps so far
                    # are counted on every line once there are any.
                    record = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                              for k, v in record.items()}
                    if self._skipped:
                        record["skipped_steps"] = self._skipped
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    bar.set_postfix(loss=f"{scalars['loss']:.4g}", refresh=False)
                due = self.step % self.cfg.checkpoint_every == 0 or (
                    time.perf_counter() - last_ckpt_time > self.cfg.checkpoint_seconds)
                if due and self.step < self.cfg.steps:
                    self.save()
                    last_ckpt_time = time.perf_counter()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            metrics_file.close()
            self._restore_signal_handlers(handlers)
        self.save()
        if self._ddp is not None:
            import torch.distributed as dist

            dist.barrier()  # the last checkpoint is on disk before any rank returns
        if interrupted:
            self.log(f"stopped at step {self.step}; checkpoint saved in {self.run_dir} "
                     f"(run the same command to resume)")
        return TrainResult(self.step, self.elapsed, self.last_loss, interrupted, resumed)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}

        def handler(signum, frame):  # first signal: stop after this step; second: hard stop
            if self._stop.is_set():
                raise KeyboardInterrupt
            self._stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

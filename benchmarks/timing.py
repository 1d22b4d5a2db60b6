"""Timing helpers shared by every benchmark row (../shared/BENCHMARKS.md rules).

One warm-up, then the median of at least five repeats with the spread; threads pinned to 2 on CPU.
Peak memory is read in a fresh subprocess by the harness (``resource.getrusage``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["Timing", "Row", "time_fn", "sync"]


def sync() -> None:
    """Wait for queued device work so that wall-clock times are real."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class Timing:
    median_s: float
    min_s: float
    max_s: float
    repeats: int

    @property
    def spread(self) -> float:
        """(max − min) / median: how noisy the repeats were."""
        return (self.max_s - self.min_s) / self.median_s if self.median_s > 0 else 0.0


def time_fn(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> Timing:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), min(times), max(times), repeats)


@dataclass
class Row:
    """One line of the benchmark table.

    ``ours`` and ``peer`` are in ``unit``; ``higher_is_better`` fixes what ``ratio`` means
    (always ours-better-than-peer when > 1). ``valid`` is the correctness gate's verdict.
    """

    benchmark: str
    unit: str
    ours: float | None
    peer: float | None
    peer_name: str
    higher_is_better: bool = True
    ceiling: float | None = None
    valid: bool = True
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.peer is None or self.ours == 0 or self.peer == 0:
            return None
        return self.ours / self.peer if self.higher_is_better else self.peer / self.ours

    @property
    def pct_of_ceiling(self) -> float | None:
        if self.ceiling is None or self.ours is None or not self.higher_is_better:
            return None
        return 100.0 * self.ours / self.ceiling

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["pct_of_ceiling"] = self.pct_of_ceiling
        return d

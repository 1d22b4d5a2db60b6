"""Shared test helpers: paths to shipped and shared data, CPU threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
SHARED_DATA = ROOT.parent / "shared" / "data"
SPOT = ASSETS / "meshes" / "spot.obj"

torch.set_num_threads(2)


def shared_path(rel: str) -> Path:
    """A file under ../shared/data, or skip the test with a clear reason when it is absent."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"needs ../shared/data/{rel} (not present in this checkout)")
    return p


def tiny_sdf_config(steps: int = 40, batch_size: int = 1024):
    """The ``spot-sdf`` preset shrunk to train in seconds (small pools and hash grid) — shared by
    tests that need a trained SDF run rather than a good one."""
    from app.presets import get_preset

    cfg = get_preset("spot-sdf")
    cfg.data.path = str(SPOT)
    cfg.data.n_surface, cfg.data.n_near, cfg.data.n_uniform = 4000, 8000, 2000
    cfg.data.batch_size = batch_size
    cfg.model.encoding = type(cfg.model.encoding)(num_levels=6, log2_hashmap_size=12,
                                                  base_resolution=8, max_resolution=64)
    cfg.trainer.steps = steps
    cfg.trainer.checkpoint_every = 1000
    return cfg

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

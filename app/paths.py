"""Resolving input paths: relative to the working directory first, then to the project root
(so ``assets/meshes/spot.obj`` works from anywhere in an editable install)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROJECT_ROOT", "resolve_input"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resolve_input(path: str | Path) -> Path:
    """``path`` as given if it exists, else under the project root if it exists there; else
    ``path`` unchanged (the loader then reports it missing, naming the path the user gave)."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    alt = PROJECT_ROOT / p
    return alt if alt.exists() else p

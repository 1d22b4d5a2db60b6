"""The one seam for optional GPU acceleration (tiny-cuda-nn).

tiny-cuda-nn (``tinycudann``) is not on PyPI and cannot build without CUDA, so it is detected once,
at import, and never required. Everything that can use it has a pure-torch path that always exists
and is parity-tested; the tcnn path is chosen with ``backend="auto"`` when it is importable *and*
the module lives on a CUDA device, or forced with ``backend="tcnn"``.

Example:
    >>> from fields import accel
    >>> isinstance(accel.HAS_TCNN, bool)
    True
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["HAS_TCNN", "TCNN_IMPORT_ERROR", "require_tcnn", "resolve_backend"]


def _probe() -> tuple[ModuleType | None, str | None]:
    try:
        return importlib.import_module("tinycudann"), None
    except Exception as exc:  # ImportError, or an OSError from a CUDA library mismatch
        return None, f"{type(exc).__name__}: {exc}"


_TCNN, TCNN_IMPORT_ERROR = _probe()
HAS_TCNN: bool = _TCNN is not None


def require_tcnn() -> ModuleType:
    """Return the ``tinycudann`` module or raise a clear error saying how to get it."""
    if _TCNN is None:
        raise RuntimeError(
            "backend='tcnn' was requested but tinycudann is not importable "
            f"({TCNN_IMPORT_ERROR}). It needs CUDA and is built from source: "
            "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch "
            "(see README, 'CUDA'). Use backend='torch' or 'auto' to run without it."
        )
    return _TCNN


def resolve_backend(backend: str, device: str | None = None) -> str:
    """Map ``"auto" | "torch" | "tcnn"`` to the backend that will actually run.

    ``auto`` picks tcnn only when it is importable and the target device is CUDA.
    """
    if backend not in ("auto", "torch", "tcnn"):
        raise ValueError(f"unknown backend {backend!r}; expected 'auto', 'torch' or 'tcnn'")
    if backend == "tcnn":
        require_tcnn()
        return "tcnn"
    if backend == "auto" and HAS_TCNN and device is not None and str(device).startswith("cuda"):
        return "tcnn"
    return "torch"

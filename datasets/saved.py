"""Saved data as a pair of files: tensors in ``NAME.safetensors`` and a JSON sidecar
``NAME.json`` (never pickles)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from datasets.errors import DataError

__all__ = ["read_sidecar"]


def read_sidecar(path: str | os.PathLike[str], what: str) -> tuple[Path, Any]:
    """``(tensor file, parsed sidecar)`` of a saved pair named by ``path`` (with or without
    ``.safetensors``); ``what`` names the kind of data in the errors.

    Raises:
        DataError: a missing file, or a sidecar that is not valid JSON (the message names it).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    side_path = path.with_suffix(".json")
    for p in (path, side_path):
        if not p.is_file():
            raise DataError(p, f"file not found (a saved {what} is .safetensors + .json)")
    try:
        sidecar = json.loads(side_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(side_path, f"not valid JSON ({exc})") from None
    return path, sidecar

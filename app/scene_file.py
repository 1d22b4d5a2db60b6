"""Scene files: a TOML (or JSON) description of a :class:`renderer.scene.Scene` that references
trained runs, so that ``fields-app render scene.toml --out turntable.mp4`` works.

Format (every table optional except ``objects``)::

    background = "white"                 # white | black | grey | [r, g, b] in [0, 1]

    [camera]                             # defaults for `fields-app render`
    radius = 3.5                         # (default: frames the scene's bounds)
    elevation = 20.0
    azimuth = 30.0
    fov = 40.0
    target = [0.0, 0.0, 0.0]             # (default: the scene's centre)

    [[objects]]
    run = "../outputs/spot-sdf"          # a run directory, relative to this file
    translate = [0.8, 0.0, 0.0]
    rotate = [0.0, 30.0, 0.0]            # Euler angles in degrees, x then y then z
    scale = 1.0
    material = "clay"                    # a name, or [r, g, b]

    [[objects]]
    shape = "sphere"                     # sphere (radius) | box (size) | torus (major, minor)
    radius = 0.3

    [[lights]]
    type = "sun"                         # sun (direction) | point (position) |
    direction = [1.0, 1.0, 1.0]          # environment (path) | ambient (value)
    intensity = 1.0

Relative paths are resolved against the scene file's folder, then the working directory.
Every mistake raises :class:`app.errors.ConfigError` naming the file, the entry and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.errors import ConfigError

try:  # Python ≥ 3.11
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10: JSON scene files only
    tomllib = None  # type: ignore[assignment]

__all__ = ["load_scene", "SCENE_SUFFIXES"]

SCENE_SUFFIXES = (".toml", ".json")
_OBJECT_KEYS = {"run", "shape", "radius", "size", "major", "minor", "translate", "rotate",
                "scale", "material", "name", "visible"}
_LIGHT_KEYS = {"sun": {"direction", "intensity", "color"},
               "point": {"position", "intensity", "color"},
               "environment": {"path", "intensity"},
               "ambient": {"value"}}
_CAMERA_KEYS = {"radius", "elevation", "azimuth", "fov", "target"}


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: scene file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the scene file ({exc})") from None
    if path.suffix.lower() != ".json" and tomllib is None:
        raise ConfigError(f"{path}: TOML scene files need Python 3.11 or newer; use JSON")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the scene must be a table/object at the top level")
    return data


def _resolve(path: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {where}: expected a path string, got {value!r}")
    p = Path(value)
    for candidate in ((p,) if p.is_absolute() else (path.parent / p, p)):
        if candidate.exists():
            return candidate
    raise ConfigError(f"{path}: {where}: {value!r} not found (relative paths are tried against "
                      f"{path.parent} and the working directory)")


def _check_keys(path: Path, entry: dict, allowed: set[str], where: str) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where}: expected a table, got {type(entry).__name__}")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown key(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(sorted(allowed))}")


def load_scene(path: str | Path, device: str = "cpu"):
    """Build the scene described by ``path``; returns ``(scene, camera)`` where ``camera`` holds
    the file's camera defaults (possibly empty)."""
    from app.run import load_run
    from renderer.scene import Scene, SceneError, box, sphere, torus

    path = Path(path)
    data = _read(path)
    _check_keys(path, data, {"background", "camera", "objects", "lights"}, "top level")
    objects = data.get("objects")
    if not isinstance(objects, list) or not objects:
        raise ConfigError(f"{path}: needs at least one [[objects]] entry")
    # Values of the wrong type or shape meet float()/torch.as_tensor() in the scene builders:
    # TypeError, ValueError, OverflowError (an integer beyond the float range).
    bad_value = (SceneError, TypeError, ValueError, OverflowError)
    try:
        scene = Scene(background=data.get("background", "white"))
    except bad_value as exc:
        raise ConfigError(f"{path}: background: {exc}") from None
    shapes = {"sphere": (sphere, ("radius",)), "box": (box, ("size",)),
              "torus": (torus, ("major", "minor"))}
    for i, entry in enumerate(objects):
        where = f"objects[{i}]"
        _check_keys(path, entry, _OBJECT_KEYS, where)
        try:
            if ("run" in entry) == ("shape" in entry):
                raise ConfigError("give exactly one of `run` (a run directory) or `shape`")
            if "run" in entry:
                source: Any = load_run(_resolve(path, entry["run"], f"{where}.run"), device=device)
            else:
                kind = entry["shape"]
                if kind not in shapes:
                    raise ConfigError(f"unknown shape {kind!r}; use one of {', '.join(shapes)}")
                make, params = shapes[kind]
                source = make(**{k: entry[k] for k in params if k in entry})
            scene.add(source, translate=entry.get("translate"), rotate=entry.get("rotate"),
                      scale=entry.get("scale", 1.0), material=entry.get("material"),
                      name=entry.get("name"))
            scene.objects[-1].visible = bool(entry.get("visible", True))
        except bad_value as exc:
            raise ConfigError(f"{path}: {where}: {exc}") from None
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {where}: {msg}") \
                from None
    lights = data.get("lights", [])
    if not isinstance(lights, list):
        raise ConfigError(f"{path}: `lights` must be an array of [[lights]] tables")
    for i, entry in enumerate(lights):
        where = f"lights[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str) or \
                entry["type"] not in _LIGHT_KEYS:
            raise ConfigError(f"{path}: {where}: `type` must be one of {', '.join(_LIGHT_KEYS)}")
        kind = entry["type"]
        _check_keys(path, entry, _LIGHT_KEYS[kind] | {"type"}, where)
        args = {k: v for k, v in entry.items() if k != "type"}
        try:
            if kind == "sun":
                scene.lights.sun(**args)
            elif kind == "point":
                if "position" not in args:
                    raise ConfigError("a point light needs `position`")
                scene.lights.point(**args)
            elif kind == "environment":
                scene.lights.environment(_resolve(path, args.get("path"), f"{where}.path"),
                                         intensity=args.get("intensity", 1.0))
            else:
                scene.lights.ambient = float(args.get("value", 0.08))
        except (ConfigError, *bad_value) as exc:
            msg = str(exc)
            raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: {where}: {msg}") \
                from None
    camera = data.get("camera", {})
    _check_keys(path, camera, _CAMERA_KEYS, "camera")
    return scene, dict(camera)

"""A scene file as a viewer task: renders and exports a :class:`renderer.scene.Scene`, trains
nothing. ``fields-app view scene.toml`` opens one (see ``app/scene_file.py`` for the format)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.errors import FieldsAppError
from app.tasks.base import Task
from renderer.cameras import Camera

__all__ = ["SceneTask"]


class SceneTask(Task):
    """The objects, lights and camera defaults of a scene file, behind the task interface the
    viewer drives (render modes, export, properties). ``trainable`` is ``False``: the viewer
    disables training for it."""

    kind = "scene"
    config_cls = ExperimentConfig
    render_modes = ("shaded", "normals", "depth", "objects")
    trainable = False

    def __init__(self, path: str | Path, device: torch.device | str = "cpu") -> None:
        from app.scene_file import load_scene

        self.path = Path(path)
        super().__init__(ExperimentConfig(preset=self.path.name, task="scene"),
                         torch.device(device))
        self.scene, self.camera_defaults = load_scene(self.path, device=str(device))
        self.model = nn.Module()  # nothing to train

    def setup_data(self) -> None:
        """Nothing to load: the runs were loaded with the scene."""

    def parameter_groups(self) -> list[dict[str, Any]]:
        return []

    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        raise FieldsAppError(f"{self.path}: a scene has nothing to train")

    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        c = self.camera_defaults
        return self.scene.turntable(1, radius=c.get("radius"), elevation=c.get("elevation", 20.0),
                                    azimuth=c.get("azimuth", 30.0), width=width, height=height,
                                    fov_y_deg=c.get("fov", 40.0), target=c.get("target"))[0]

    def render(self, camera: Camera, mode: str = "shaded", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        """The scene from ``camera``; ``background`` overrides the file's, ``light_dir`` lights a
        scene that has no lights of its own (the viewer's light controls)."""
        scene = self.scene
        saved_bg = scene.background
        added = scene.lights.empty and light_dir is not None
        try:
            if background is not None:
                scene.background = tuple(float(v) for v in background)
            if added:
                scene.lights.sun(direction=tuple(float(v) for v in light_dir))
            return scene.render(camera, mode, device=self.device).array
        finally:
            scene.background = saved_bg
            if added:
                scene.lights.suns.pop()

    def export(self, path: Path, resolution: int | None = None,
               progress: bool | Callable[[int, int], None] = False,
               **_: Any) -> dict[str, Any]:
        """One mesh of every visible object, in place."""
        mesh = self.scene.export_mesh(path, resolution=resolution or 256)
        return {"path": str(path), "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                "objects": sum(o.visible for o in self.scene.objects)}

    def properties(self) -> dict[str, Any]:
        lights = self.scene.lights
        return {"task": self.kind, "scene file": str(self.path),
                "objects": ", ".join(o.name for o in self.scene.objects),
                "suns": len(lights.suns), "point lights": len(lights.points),
                "environment map": lights.environment_map is not None,
                "device": str(self.device)}

"""Task kinds by name. A task binds dataset + field + loss + render for one job kind."""

from __future__ import annotations

from app.errors import ConfigError
from app.tasks.base import Task
from app.tasks.csp import CSPExperiment, CSPTask
from app.tasks.ddmi import DDMIExperiment, DDMITask
from app.tasks.image import ImageExperiment, ImageTask
from app.tasks.naisr import NAISRExperiment, NAISRTask
from app.tasks.nerf import NeRFExperiment, NeRFTask
from app.tasks.neus import NeuSExperiment, NeuSTask
from app.tasks.relight import RelightExperiment, RelightTask
from app.tasks.sdf import SDFExperiment, SDFTask

__all__ = ["Task", "TASKS", "task_class"]

TASKS: dict[str, type[Task]] = {SDFTask.kind: SDFTask, NeRFTask.kind: NeRFTask,
                                 NeuSTask.kind: NeuSTask, ImageTask.kind: ImageTask,
                                 CSPTask.kind: CSPTask, RelightTask.kind: RelightTask,
                                 NAISRTask.kind: NAISRTask, DDMITask.kind: DDMITask}


def task_class(kind: str) -> type[Task]:
    """The task class registered under ``kind``."""
    try:
        return TASKS[kind]
    except KeyError:
        raise ConfigError(f"unknown task kind {kind!r}; known: {sorted(TASKS)}") from None


__all__ += ["CSPExperiment", "CSPTask", "DDMIExperiment", "DDMITask", "ImageExperiment",
            "ImageTask", "NAISRExperiment", "NAISRTask", "NeRFExperiment", "NeRFTask",
            "NeuSExperiment", "NeuSTask", "RelightExperiment", "RelightTask", "SDFExperiment",
            "SDFTask"]

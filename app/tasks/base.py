"""The task protocol: what is trained and how, for one kind of job.

A task binds a dataset, a field, a loss and a renderer. The :class:`app.trainer.Trainer` only
talks to this protocol, the viewer only reads :meth:`Task.properties` and calls
:meth:`Task.render`, and the CLI calls :meth:`Task.export` / :meth:`Task.evaluate`.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from app.config import ExperimentConfig
from app.errors import FieldsAppError
from renderer.cameras import Camera

__all__ = ["Task"]


class Task(abc.ABC):
    """One kind of job (``sdf``, …): data + field + loss + rendering + export.

    Construction builds the model only; :meth:`setup_data` loads and prepares training data
    (not needed to render or export a trained run).
    """

    kind: ClassVar[str]
    config_cls: ClassVar[type[ExperimentConfig]]
    render_modes: ClassVar[tuple[str, ...]]
    shard_rank: int = 0
    """This process's rank in data-parallel training (set by the trainer)."""
    shard_world: int = 1
    """The number of data-parallel processes."""
    ddp_unused_parameters: ClassVar[bool] = False
    """Whether some parameters may get no gradient in a step (e.g. a task trained in stages);
    DDP then searches the graph for them each step."""

    def __init__(self, config: ExperimentConfig, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.model: nn.Module

    # -- training -------------------------------------------------------------------------
    @abc.abstractmethod
    def setup_data(self) -> None:
        """Load and prepare the training data (may be slow; validates input files)."""

    @abc.abstractmethod
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups; each may carry ``lr_factor`` (× the trainer's lr)."""

    @abc.abstractmethod
    def training_loss(self, step: int) -> tuple[Tensor, dict[str, float]]:
        """Sample a batch, return the scalar loss and extra scalars to log."""

    def shard(self, batch: Tensor) -> Tensor:
        """This process's part of a batch that every rank drew identically (data-parallel
        training: same seed, same random stream): equal contiguous slices along dimension 0;
        the whole batch in a single process. The global batch must divide evenly."""
        w = self.shard_world
        if w == 1:
            return batch
        n = batch.shape[0]
        if n % w:
            raise FieldsAppError(f"the {self.kind} batch ({n}) does not divide among {w} "
                                 "processes; choose a batch size that is a multiple of --nproc")
        k = n // w
        return batch[self.shard_rank * k:(self.shard_rank + 1) * k]

    def lr_scales(self, step: int) -> list[float] | None:
        """Extra per-group learning-rate multipliers at ``step`` (e.g. a task trained in
        stages); None: none."""
        return None

    # -- state beyond the weights -----------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """JSON-able state saved with checkpoints (e.g. the mesh normalisation)."""
        return {}

    def load_meta(self, meta: dict[str, Any]) -> None:
        """Restore what :meth:`meta` saved."""

    # -- using a trained field ---------------------------------------------------------------
    @abc.abstractmethod
    def default_camera(self, width: int = 256, height: int = 256) -> Camera:
        """A camera that frames the field."""

    @abc.abstractmethod
    def render(self, camera: Camera, mode: str = "shaded", *,
               background: tuple[float, float, float] | None = None,
               light_dir: tuple[float, float, float] | None = None) -> np.ndarray:
        """Render ``camera`` as an ``[H, W, 3]`` float image in ``[0, 1]``.

        ``background`` (display RGB) replaces the task's background colour; ``light_dir``
        (world, towards the light) replaces the default key light of shaded modes.
        """

    def dataset_cameras(self) -> list[Camera]:
        """The training views' cameras (the viewer snaps to them); empty when there are none or
        the data is not loaded."""
        return []

    def export(self, path: Path, **options: Any) -> dict[str, Any]:
        """Write the field's geometry to ``path``; return facts about what was written."""
        raise FieldsAppError(f"the {self.kind} task has no mesh export (sdf and neus tasks do)")

    def scene_source(self):
        """The trained field as a source for a :class:`renderer.scene.Scene` (in the field's
        own normalised frame); tasks whose fields cannot be placed in 3-D say so."""
        raise FieldsAppError(f"the {self.kind} task's field cannot be placed in a scene (sdf, "
                             "csp, neus and nerf runs can)")

    def evaluate(self, **options: Any) -> dict[str, float]:
        """Quality metrics of the trained field."""
        raise FieldsAppError(f"the {self.kind} task has no evaluation")

    def properties(self) -> dict[str, Any]:
        """Read-only facts shown by the viewer and ``fields-app`` (plain types)."""
        n = sum(p.numel() for p in self.model.parameters())
        props: dict[str, Any] = {"task": self.kind, "parameters": n, "device": str(self.device)}
        props.update(describe_modules(self.model))
        return props


def describe_modules(model: nn.Module, prefix: str = "field.") -> dict[str, str]:
    """One line per part of ``model`` that is ours (not a bare torch layer): the outermost
    module with a description (``extra_repr``) or without parts of ours, e.g.
    ``field.encoding: HashGridEncoding(in_dim=3, L=12, …) · 678,896 params``."""
    out: dict[str, str] = {}

    def ours(m: nn.Module) -> bool:
        return not type(m).__module__.startswith("torch.")

    def visit(path: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            if not ours(child):
                continue
            key = f"{path}{name}"
            text = child.extra_repr()
            inner = [c for c in child.children() if ours(c)]
            if text or not inner:
                count = sum(p.numel() for p in child.parameters())
                out[key] = f"{type(child).__name__}({text}) · {count:,} params"
            else:
                visit(key + ".", child)

    visit(prefix, model)
    return out

"""Launched by ``torchrun`` from tests/app/test_distributed.py: train a tiny preset into a run
directory (one process or several; the trainer joins the process group itself).

    python -m torch.distributed.run --standalone --nproc_per_node N -m tests.app.ddp_worker \
        KIND OUT STEPS
"""

from __future__ import annotations

import sys

import torch


def config(kind: str, steps: int):
    if kind == "sdf":
        from tests.conftest import tiny_sdf_config

        cfg = tiny_sdf_config(steps=steps, batch_size=2048)
    elif kind in ("naisr", "naisr-nojitter"):
        from app.presets import get_preset

        cfg = get_preset("starman2d-naisr")
        cfg.data.n_subjects, cfg.data.held_out_subjects = 24, 4
        cfg.data.shapes_per_step = 8
        cfg.model.template_hidden = cfg.model.deform_hidden = 32
        cfg.trainer.steps = steps
        if kind == "naisr-nojitter":
            cfg.model.reference_jitter = 0.0
    else:
        raise SystemExit(f"unknown kind {kind}")
    cfg.trainer.checkpoint_every = 10
    cfg.trainer.log_every = 1
    cfg.trainer.decay_start = 1.0  # a constant rate: a run stopped early matches a longer one
    return cfg


def main() -> None:
    from app.run import train

    kind, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)
    train(config(kind, steps), out, progress=False, log=lambda m: None)


if __name__ == "__main__":
    main()

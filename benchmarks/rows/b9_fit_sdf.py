"""B9 — fit an SDF: seconds to a Chamfer-L1 target, ours vs the same loop with nerfstudio's
torch ``HashEncoding`` and ``MLP`` in place of our hash grid and MLP.

Both sides run the ``spot-sdf`` preset's task (same samples, loss, optimiser, schedule and step
count); the peer's field is nerfstudio's encoding (same L, F, T, resolutions) feeding nerfstudio's
MLP (same widths, its own initialisation). Training time excludes evaluation pauses: every
``eval_every`` seconds of training the field is meshed (coarse-to-fine marching cubes at 256³) and
scored against spot by Chamfer-L1 (point-to-triangle, 100k samples).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from app.metrics import chamfer_l1
from app.presets import get_preset
from app.run import build_task
from benchmarks.timing import Row
from datasets.meshes import load_mesh, normalize_mesh
from tests.conftest import SPOT

TARGET = 0.003
TARGETS = (0.003, 0.0005)
EVAL_EVERY = 2.5
PEER = "same loop, nerfstudio HashEncoding + MLP (torch)"


class NerfstudioHash(nn.Module):
    """nerfstudio's torch HashEncoding behind our encoding protocol (world box → [0, 1])."""

    def __init__(self, cfg, bound: float) -> None:
        super().__init__()
        from nerfstudio.field_components.encodings import HashEncoding

        self.enc = HashEncoding(num_levels=cfg.num_levels, min_res=cfg.base_resolution,
                                max_res=cfg.max_resolution,
                                log2_hashmap_size=cfg.log2_hashmap_size,
                                features_per_level=cfg.features_per_level, implementation="torch")
        self.bound = bound
        self.in_dim, self.out_dim = 3, cfg.num_levels * cfg.features_per_level

    def forward(self, x):
        return self.enc(((x + self.bound) / (2 * self.bound)).clamp(0, 1))


class NerfstudioMLP(nn.Module):
    """nerfstudio's torch MLP with our MLP's widths."""

    def __init__(self, in_dim: int, hidden: int, hidden_layers: int) -> None:
        super().__init__()
        from nerfstudio.field_components.mlp import MLP

        self.net = MLP(in_dim=in_dim, num_layers=hidden_layers + 1, layer_width=hidden, out_dim=1,
                       implementation="torch")

    def forward(self, x):
        return self.net(x)


def _fit(task, ref_mesh, budget_s: float, eval_every: float, resolution: int, n_samples: int,
         steps_total: int):
    from app.trainer import Trainer

    cfg = task.config.trainer
    cfg.steps = steps_total
    trainer = Trainer(task, cfg, run_dir="/nonexistent-unused", progress=False, log=lambda m: None)
    trained, next_eval, curve = 0.0, eval_every, []
    while trained < budget_s and trainer.step < steps_total:
        t0 = time.perf_counter()
        trainer.train_step()
        trained += time.perf_counter() - t0
        if trained >= next_eval or trainer.step == steps_total:
            mesh = task.extract(resolution=resolution).mesh
            cd = chamfer_l1(mesh, ref_mesh, n=n_samples)
            curve.append((round(trained, 1), trainer.step, cd))
            next_eval += eval_every
    return curve


def _time_to_target(curve, target=TARGET):
    for t, _, cd in curve:
        if cd <= target:
            return t
    return None


def _at(curve, t_query):
    best = None
    for t, _, cd in curve:
        if t <= t_query + 1e-6:
            best = cd
    return best


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    ref, _ = normalize_mesh(load_mesh(SPOT))
    budget = 60.0 if quick else 240.0
    res, n = (128, 20_000) if quick else (256, 100_000)
    curves = {}
    for side in ("ours", "peer"):
        torch.manual_seed(0)
        cfg = get_preset("spot-sdf")
        cfg.device = device
        task = build_task(cfg)
        if side == "peer":
            task.model.encoding = NerfstudioHash(cfg.model.encoding, task.bound).to(device)
            task.model.mlp = NerfstudioMLP(task.model.encoding.out_dim + 3,
                                           cfg.model.hidden_dim,
                                           cfg.model.num_hidden_layers).to(device)
        task.setup_data()
        curves[side] = _fit(task, ref, budget, EVAL_EVERY, res, n,
                            steps_total=cfg.trainer.steps)
    note = f"curves (train s, step, chamfer): ours {curves['ours']}; peer {curves['peer']}"
    rows = []
    for target in TARGETS:
        t_o = _time_to_target(curves["ours"], target)
        t_p = _time_to_target(curves["peer"], target)
        rows.append(Row(
            benchmark=f"B9 fit spot SDF: seconds to Chamfer {target}", unit="s", ours=t_o,
            peer=t_p, peer_name=PEER, higher_is_better=False, valid=t_o is not None,
            notes=("peer did not reach the target within the budget; " if t_p is None else "")
            + f"evaluated every {EVAL_EVERY} s of training"))
    rows.append(Row(benchmark="B9 fit spot SDF: Chamfer-L1 at 60 s", unit="chamfer",
                    ours=_at(curves["ours"], 60), peer=_at(curves["peer"], 60), peer_name=PEER,
                    higher_is_better=False, notes=note))
    return rows


if __name__ == "__main__":
    torch.set_num_threads(2)
    for r in run():
        print(r.to_dict())

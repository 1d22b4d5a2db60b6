"""B2 — MLP inference throughput: our chunked evaluation vs ``nn.Sequential`` in one batch.

Workload (BENCHMARKS.md): 2¹⁸ points through 32→64→64→16 (ReLU). Same weights on both sides;
the gate requires identical outputs. Ceiling: ~11 M pts/s at 160 GFLOP/s (2·(32·64 + 64·64 +
64·16) FLOP per point).
"""

from __future__ import annotations

import torch

from benchmarks.timing import Row, time_fn
from fields.networks import MLP

FLOP_PER_POINT = 2 * (32 * 64 + 64 * 64 + 64 * 16)
CEILING = 160e9 / FLOP_PER_POINT / 1e6


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    n = 1 << (16 if quick else 18)
    torch.manual_seed(0)
    x = torch.randn(n, 32, device=device)
    ours = MLP(32, 16, hidden_dim=64, num_hidden_layers=2).to(device).eval()
    peer = ours.net  # the very same nn.Sequential, called on the whole batch
    chunk = 1 << 13

    @torch.no_grad()
    def run_ours():
        return torch.cat([ours(c) for c in x.split(chunk)])

    @torch.no_grad()
    def run_peer():
        return peer(x)

    valid = bool(torch.allclose(run_ours(), run_peer(), atol=1e-5, rtol=1e-5))
    t_o, t_p = time_fn(run_ours), time_fn(run_peer)
    return [Row(benchmark="B2 MLP fwd 32→64→64→16", unit="M pts/s", ours=n / t_o.median_s / 1e6,
                peer=n / t_p.median_s / 1e6, peer_name="nn.Sequential, one batch",
                ceiling=CEILING, valid=valid,
                notes=f"ours in {chunk}-point chunks; spread {t_o.spread:.0%}/{t_p.spread:.0%}")]


if __name__ == "__main__":
    torch.set_num_threads(2)
    for r in run():
        print(r.to_dict())

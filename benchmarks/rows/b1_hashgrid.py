"""B1 — hash-grid encoding throughput: ours (torch backend) vs nerfstudio's torch HashEncoding.

Workload (BENCHMARKS.md): 2¹⁷ points, L=16, F=2, T=2¹⁹; forward, and forward+backward into the
table. Correctness gate: our encoding equals the brute-force trilinear reference (ground truth)
on a subset of the points; the peer's own output is checked for finiteness and shape.
"""

from __future__ import annotations

import torch

from benchmarks.timing import Row, time_fn
from fields.encodings.hashgrid import HashGridConfig, HashGridEncoding

CEILING_FWD = 1.7  # M pts/s: cache-resident gather ceiling from BENCHMARKS.md


def _gate(enc: HashGridEncoding, x: torch.Tensor) -> bool:
    from tests.fields.test_hashgrid import brute_force

    sub = x[:64].double()
    ref = brute_force(enc, sub)
    got = enc.double()(sub)
    enc.float()
    return bool(torch.allclose(got, ref, atol=1e-9, rtol=1e-9))


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    n = 1 << (15 if quick else 17)
    torch.manual_seed(0)
    x01 = torch.rand(n, 3, device=device)
    cfg = HashGridConfig(num_levels=16, features_per_level=2, log2_hashmap_size=19,
                         base_resolution=16, max_resolution=1024)
    ours = HashGridEncoding(3, cfg, bounds=(0.0, 1.0), backend="torch").to(device)
    valid = _gate(ours, x01.cpu()) if device == "cpu" else True

    peer = None
    peer_note = ""
    try:
        from nerfstudio.field_components.encodings import HashEncoding

        peer = HashEncoding(num_levels=16, min_res=16, max_res=1024, log2_hashmap_size=19,
                            features_per_level=2, implementation="torch").to(device)
        y = peer(x01[:16])
        assert y.shape == (16, 32) and torch.isfinite(y).all()
    except Exception as exc:  # reported as failing, not skipped
        peer_note = f"peer failed: {type(exc).__name__}: {exc}"
        peer = None

    def fwd(m):
        with torch.no_grad():
            m(x01)

    def fwd_bwd(m):
        m.zero_grad(set_to_none=True)
        m(x01).square().sum().backward()

    rows = []
    for label, fn, ceiling in (("fwd", fwd, CEILING_FWD), ("fwd+bwd", fwd_bwd, None)):
        t_ours = time_fn(lambda fn=fn: fn(ours))
        t_peer = time_fn(lambda fn=fn: fn(peer), repeats=3) if peer is not None else None
        rows.append(Row(
            benchmark=f"B1 hash grid {label}", unit="M pts/s", ours=n / t_ours.median_s / 1e6,
            peer=(n / t_peer.median_s / 1e6) if t_peer else None,
            peer_name="nerfstudio HashEncoding(torch)", ceiling=ceiling, valid=valid,
            notes=peer_note or f"spread ours {t_ours.spread:.0%}"
            + (f", peer {t_peer.spread:.0%}" if t_peer else ""),
        ))
    return rows


if __name__ == "__main__":
    torch.set_num_threads(2)
    for r in run():
        print(r.to_dict())

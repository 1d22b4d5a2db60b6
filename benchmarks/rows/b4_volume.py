"""B4 — volume-render weights + compositing: ours vs nerfacc 0.5.3's batched functions.

Workload: 4096 rays × 256 samples (batched), random densities, colours and sorted intervals;
weights (``w, T, α`` from densities) then rgb, depth and opacity per ray. A ragged case packs a
random prefix of each ray (≈ half the samples): ours runs the packed path, nerfacc (whose packed
kernels are CUDA-only) the batched functions on the zero-padded ``[R, S]`` layout, which is what
a CPU user of nerfacc would do. A third case times the NeuS path alone: weights and transmittance
from opacities (``weights_from_alpha``, packed) against nerfacc's ``render_weight_from_alpha`` on
the zero-padded layout (padding α = 0). Gate: outputs equal within 1e-5. Unit: M samples/s
(samples that carry data: R·S batched, M packed).
"""

from __future__ import annotations

import torch

from benchmarks.timing import Row, time_fn
from renderer.volume import composite, weights_from_alpha, weights_from_density

ATOL = 1e-5


def _inputs(r: int, s: int, device: str):
    g = torch.Generator(device="cpu").manual_seed(0)
    edges = (torch.rand(r, s + 1, generator=g) * 4.0).sort(dim=-1).values.to(device)
    sigma = (torch.rand(r, s, generator=g) * 2.0).to(device)
    rgb = torch.rand(r, s, 3, generator=g).to(device)
    lengths = torch.randint(0, s + 1, (r,), generator=g).to(device)
    return edges[:, :-1].contiguous(), edges[:, 1:].contiguous(), sigma, rgb, lengths


def _close(a: tuple, b: tuple) -> bool:
    return all(bool(torch.allclose(x, y, atol=ATOL, rtol=0)) for x, y in zip(a, b))


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    from nerfacc.volrend import (
        accumulate_along_rays,
        render_weight_from_alpha,
        render_weight_from_density,
    )

    r, s = (1024 if quick else 4096), 256
    t0, t1, sigma, rgb, lengths = _inputs(r, s, device)
    t_mid = (t0 + t1) * 0.5

    @torch.no_grad()
    def peer_batched(t0=t0, t1=t1, sigma=sigma, rgb=rgb, t_mid=t_mid):
        w, trans, alpha = render_weight_from_density(t0, t1, sigma)
        color = accumulate_along_rays(w, rgb)
        depth = accumulate_along_rays(w, t_mid[..., None])[:, 0]
        opacity = accumulate_along_rays(w, None)[:, 0]
        return color, depth, opacity, w

    @torch.no_grad()
    def ours_batched():
        w, trans, alpha = weights_from_density(sigma, t0, t1)
        color, depth, opacity = composite(w, rgb, t_mid)
        return color, depth, opacity, w

    rows = []
    valid = _close(ours_batched(), peer_batched())
    t_o, t_p = time_fn(ours_batched), time_fn(peer_batched)
    n = r * s
    rows.append(Row(benchmark=f"B4 volume weights+composite {r}×{s} batched", unit="M samples/s",
                    ours=n / t_o.median_s / 1e6, peer=n / t_p.median_s / 1e6,
                    peer_name="nerfacc 0.5.3 batched (CPU)", valid=valid,
                    notes=f"spread {t_o.spread:.0%}/{t_p.spread:.0%}"))

    # Ragged: a random-length prefix of each ray, packed for ours, zero-padded for nerfacc.
    keep = torch.arange(s, device=device)[None, :] < lengths[:, None]
    ray_indices = torch.arange(r, device=device).repeat_interleave(lengths)
    p_t0, p_t1, p_sigma, p_rgb, p_mid = t0[keep], t1[keep], sigma[keep], rgb[keep], t_mid[keep]
    pad_sigma = sigma * keep  # padding: zero density, so it adds nothing to any ray

    @torch.no_grad()
    def ours_packed():
        w, trans, alpha = weights_from_density(p_sigma, p_t0, p_t1, ray_indices, r)
        color, depth, opacity = composite(w, p_rgb, p_mid, None, ray_indices, r)
        return color, depth, opacity, w

    def peer_padded():
        return peer_batched(sigma=pad_sigma)

    o, p = ours_packed(), peer_padded()
    valid = _close(o[:3], p[:3]) and _close((o[3],), (p[3][keep],))
    t_o, t_p = time_fn(ours_packed), time_fn(peer_padded)
    m = int(keep.sum())
    rows.append(Row(benchmark=f"B4 volume weights+composite {r} rays ragged (M={m}) packed",
                    unit="M samples/s", ours=m / t_o.median_s / 1e6, peer=m / t_p.median_s / 1e6,
                    peer_name="nerfacc 0.5.3 batched on zero-padded [R, S] (packed is CUDA-only)",
                    valid=valid, notes=f"spread {t_o.spread:.0%}/{t_p.spread:.0%}"))

    # NeuS: weights from opacities on the same ragged rays (α of the densities above).
    pad_alpha = -torch.expm1(-pad_sigma * (t1 - t0))  # zero on the padding
    p_alpha = pad_alpha[keep].contiguous()

    @torch.no_grad()
    def ours_alpha():
        w, trans, _ = weights_from_alpha(p_alpha, ray_indices, r)
        return w, trans

    @torch.no_grad()
    def peer_alpha():
        return render_weight_from_alpha(pad_alpha)

    o, p = ours_alpha(), peer_alpha()
    valid = _close(o, (p[0][keep], p[1][keep]))
    t_o, t_p = time_fn(ours_alpha), time_fn(peer_alpha)
    rows.append(Row(benchmark=f"B4 volume weights from alpha (NeuS) {r} rays ragged (M={m}) packed",
                    unit="M samples/s", ours=m / t_o.median_s / 1e6, peer=m / t_p.median_s / 1e6,
                    peer_name="nerfacc 0.5.3 render_weight_from_alpha on zero-padded [R, S]",
                    valid=valid, notes=f"spread {t_o.spread:.0%}/{t_p.spread:.0%}"))
    return rows


if __name__ == "__main__":
    torch.set_num_threads(2)
    for row in run():
        print(row.to_dict())

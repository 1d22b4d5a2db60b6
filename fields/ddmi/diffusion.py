"""DDMI's latent diffusion and training schedules (Park et al., "DDMI: Domain-Agnostic Latent
Diffusion Models for Synthesizing High-Quality Implicit Neural Representations", ICLR 2024,
arXiv 2401.12517).

- :func:`ddmi_betas`: ``β_t = (linspace(√0.0015, √0.0195, T))²`` (float64).
- :func:`kl_weight`: the first-stage KL weight β_t, 0 for the first 0.01 % of steps, then a
  linear ramp from ``start`` to ``beta_max`` ending at 90 % of the steps, then constant.
- :func:`spectral_weight`: ``λ(β) = exp((1 − β) ln 5 + β ln 0.1)``.
- :class:`MixedPrediction`: ``ε̂ = (1 − σ(m)) √(1 − ᾱ_t) x_t + σ(m) ε_θ(x_t, t)`` with a learnable
  per-channel logit ``m`` initialised at −6 — training starts at the analytic prediction for
  Gaussian data.
- :class:`GaussianDiffusion`: ``q_sample``, the ε-prediction MSE loss and DDIM sampling
  (η = 0 is deterministic: the same initial noise gives a bitwise-identical sample on CPU).
- :class:`EMA`: an exponential moving average of a module's weights for sampling.

Timesteps are indices ``t ∈ {0, …, T − 1}`` with ``ᾱ_t = Π_{s ≤ t} (1 − β_s)``.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

__all__ = ["ddmi_betas", "kl_weight", "spectral_weight", "MixedPrediction", "GaussianDiffusion",
           "EMA"]


def ddmi_betas(T: int = 1000) -> Float[Tensor, " T"]:
    """``(linspace(√0.0015, √0.0195, T))²`` in float64."""
    return torch.linspace(math.sqrt(0.0015), math.sqrt(0.0195), T, dtype=torch.float64) ** 2


def kl_weight(step: int, total: int, beta_max: float, start: float = 1e-4) -> float:
    """β at ``step`` of ``total``: 0 before 0.01 % of the steps, then linear from ``start`` to
    ``beta_max`` at 90 % of the steps, constant after."""
    begin, end = 1e-4 * total, 0.9 * total
    if step < begin:
        return 0.0
    frac = min(max((step - begin) / max(end - begin, 1e-12), 0.0), 1.0)
    return start + frac * (beta_max - start)


def spectral_weight(beta: float) -> float:
    """λ = exp((1 − β)·ln 5 + β·ln 0.1): 5 at β = 0, 0.1 at β = 1."""
    return math.exp((1.0 - beta) * math.log(5.0) + beta * math.log(0.1))


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(like)


class MixedPrediction(nn.Module):
    """Wraps a denoiser ``net(x_t, t) → ε_θ`` into the mixed ε̂ of DDMI / LSGM.

    Args:
        net: the denoiser (any ``[B, C, …]`` latent).
        channels: ``C``; ``m`` has one logit per channel (dimension 1).
        alphas_cumprod: ``ᾱ`` of the schedule ``[T]``.
        init_logit: −6 (σ(−6) ≈ 0.0025).
    """

    def __init__(self, net: nn.Module, channels: int, alphas_cumprod: Tensor,
                 init_logit: float = -6.0) -> None:
        super().__init__()
        self.net = net
        self.logit = nn.Parameter(torch.full((channels,), float(init_logit)))
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().clone().double())

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        eps = self.net(x_t, t)
        w = torch.sigmoid(self.logit).reshape(1, -1, *([1] * (x_t.dim() - 2)))
        gauss = _bcast(torch.sqrt(1.0 - self.alphas_cumprod[t.long()]), x_t) * x_t
        return (1.0 - w) * gauss + w * eps


class GaussianDiffusion:
    """DDPM forward process and ε-prediction objective, with a DDIM sampler.

    Args:
        betas: ``[T]`` (float64 recommended), e.g. :func:`ddmi_betas`.
    """

    def __init__(self, betas: Tensor) -> None:
        self.betas = betas.detach().double().cpu()
        self.T = int(self.betas.shape[0])
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``√ᾱ_t x0 + √(1 − ᾱ_t) ε``."""
        ab = self.alphas_cumprod[t.long().cpu()]
        return _bcast(ab.sqrt(), x0) * x0 + _bcast((1.0 - ab).sqrt(), x0) * noise

    def loss(self, model: nn.Module, x0: Tensor, t: Tensor | None = None,
             noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Mean squared error between ε and ``model(x_t, t)`` at uniform random ``t``."""
        b = x0.shape[0]
        if t is None:
            t = torch.randint(0, self.T, (b,), generator=generator).to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x_t = self.q_sample(x0, t, noise)
        return F.mse_loss(model(x_t, t), noise)

    def ddim_timesteps(self, steps: int) -> list[int]:
        """``steps`` evenly spaced indices from ``T − 1`` down to 0."""
        ts = torch.linspace(self.T - 1, 0, steps, dtype=torch.float64).round().long().tolist()
        return list(dict.fromkeys(ts))

    @torch.no_grad()
    def ddim_sample(self, model: nn.Module, shape: tuple[int, ...] | torch.Size | None = None,
                    steps: int = 50, eta: float = 0.0, generator: torch.Generator | None = None,
                    noise: Tensor | None = None, device: str | torch.device = "cpu") -> Tensor:
        """DDIM from ``noise`` (or fresh noise of ``shape``): deterministic when ``eta = 0``.

        ``x_{prev} = √ᾱ_prev x̂0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z`` with
        ``σ = η √((1 − ᾱ_prev)/(1 − ᾱ)) √(1 − ᾱ/ᾱ_prev)``; the last step returns ``x̂0``.
        """
        if noise is None:
            if shape is None:
                raise ValueError("give shape or noise")
            noise = torch.randn(tuple(shape), generator=generator).to(device)
        was_training = model.training
        model.eval()
        x = noise.clone()
        ts = self.ddim_timesteps(steps)
        for i, t in enumerate(ts):
            ab = float(self.alphas_cumprod[t])
            ab_prev = float(self.alphas_cumprod[ts[i + 1]]) if i + 1 < len(ts) else 1.0
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            eps = model(x, tt)
            x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
            sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab)) * math.sqrt(1.0 - ab / ab_prev)
            x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0)) * eps
            if sigma > 0:
                z = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                x = x + sigma * z
        model.train(was_training)
        return x


class EMA:
    """Exponential moving average of a module's floating-point parameters (buffers copied).

    ``update()`` after optimiser steps; ``copy_to(module)`` writes the averages into a module
    (e.g. a copy used for sampling); ``state_dict()`` / ``load_state_dict()`` for checkpoints.
    """

    def __init__(self, module: nn.Module, decay: float = 0.9999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.module, self.decay = module, decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.num_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        for k, v in self.module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1.0 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: nn.Module | None = None) -> nn.Module:
        """Load the averages into ``module`` (default: the tracked module) and return it."""
        target = self.module if module is None else module
        target.load_state_dict(self.shadow)
        return target

    def averaged(self) -> nn.Module:
        """A deep copy of the tracked module holding the averaged weights."""
        return self.copy_to(copy.deepcopy(self.module))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates,
                "shadow": {k: v.clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        self.shadow = {k: v.clone() for k, v in state["shadow"].items()}

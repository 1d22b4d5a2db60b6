"""Coordinate networks: a plain MLP (torch, or tiny-cuda-nn's fully fused MLP), SIREN, and the
geometric initialisation of SDF networks.

Vocabulary: ``x`` are inputs ``[N, in_dim]``; every network returns ``[N, out_dim]``.

- Geometric initialisation (Atzmon & Lipman, "SAL: Sign Agnostic Learning of Shapes from Raw
  Data", CVPR 2020): weights chosen so that the untrained network approximates the SDF of a
  sphere, ``f(x) ≈ ‖x‖ − r``, which keeps early sphere tracing and marching cubes meaningful.
- SIREN (Sitzmann et al., "Implicit Neural Representations with Periodic Activation Functions",
  NeurIPS 2020): ``sin(ω₀ (Wx + b))`` layers with the uniform init that keeps activations
  distributed as arcsine through depth.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from fields import accel

__all__ = ["MLP", "Siren", "geometric_init_"]

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "softplus": lambda: nn.Softplus(beta=100.0),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


def _activation(name: str | None) -> nn.Module:
    if name is None or name == "none":
        return nn.Identity()
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class MLP(nn.Module):
    """A fully connected network ``in_dim → hidden_dim × num_hidden_layers → out_dim``.

    Args:
        in_dim: input width.
        out_dim: output width.
        hidden_dim: width of every hidden layer.
        num_hidden_layers: number of hidden layers (0 gives a single linear map).
        activation: hidden activation, ``"relu"`` or ``"softplus"`` (β = 100, smooth for SDFs).
        output_activation: ``None`` or one of the activations.
        backend: ``"torch"``, ``"tcnn"`` (FullyFusedMLP, ReLU only, widths 16–128) or ``"auto"``.
        device: the device the network will live on (decides ``"auto"``).

    Example:
        >>> mlp = MLP(3, 1, hidden_dim=16, num_hidden_layers=2)
        >>> mlp(torch.zeros(4, 3)).shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 64,
        num_hidden_layers: int = 2,
        activation: str = "relu",
        output_activation: str | None = None,
        backend: str = "torch",
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.hidden_dim, self.num_hidden_layers = hidden_dim, num_hidden_layers
        self.backend = accel.resolve_backend(backend, str(device) if device is not None else None)
        if self.backend == "tcnn" and (activation != "relu" or hidden_dim not in (16, 32, 64, 128)):
            self.backend = "torch"  # FullyFusedMLP's limits; the torch path is always valid
        if self.backend == "tcnn":
            tcnn = accel.require_tcnn()
            self.net = tcnn.Network(
                in_dim, out_dim,
                {
                    "otype": "FullyFusedMLP", "activation": "ReLU",
                    "output_activation": "None", "n_neurons": hidden_dim,
                    "n_hidden_layers": num_hidden_layers,
                },
            )
            self.out_act = _activation(output_activation)
            return
        dims = [in_dim] + [hidden_dim] * num_hidden_layers + [out_dim]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                layers.append(_activation(activation))
        self.net = nn.Sequential(*layers)
        self.out_act = _activation(output_activation)

    def extra_repr(self) -> str:
        return (f"{self.in_dim}→{self.hidden_dim}×{self.num_hidden_layers}→{self.out_dim}, "
                f"backend={self.backend!r}")

    @property
    def linears(self) -> list[nn.Linear]:
        """The linear layers in order (torch backend)."""
        return [m for m in self.net.modules() if isinstance(m, nn.Linear)]

    def forward(self, x: Float[Tensor, "N I"]) -> Float[Tensor, "N O"]:
        y = self.net(x)
        if self.backend == "tcnn":
            y = y.to(x.dtype)
        return self.out_act(y)


@torch.no_grad()
def geometric_init_(mlp: MLP, radius: float = 0.5, num_coord_inputs: int | None = None) -> MLP:
    """Initialise ``mlp`` so that ``mlp(x) ≈ ‖x‖ − radius`` (SAL geometric initialisation).

    Hidden layers get ``W ~ N(0, 2/fan_out)`` and zero biases; the last layer gets
    ``W ~ N(√π/√fan_in, 1e-4)`` and bias ``−radius``. When the input is ``[x, features]`` only the
    first ``num_coord_inputs`` columns of the first layer are random; the feature columns start at
    zero, so the untrained field is the sphere whatever the encoding outputs.

    Example:
        >>> torch.manual_seed(0)
        >>> mlp = geometric_init_(MLP(3, 1, 256, 2), radius=0.5)
        >>> bool(mlp(torch.zeros(1, 3)) < 0), bool(mlp(torch.full((1, 3), 2.0)) > 0)
        (True, True)
    """
    if mlp.backend != "torch":
        raise ValueError("geometric_init_ needs the torch MLP backend")
    linears = mlp.linears
    for i, lin in enumerate(linears):
        if i == len(linears) - 1:
            mean = math.sqrt(math.pi) / math.sqrt(lin.in_features)
            nn.init.normal_(lin.weight, mean=mean, std=1e-4)
            nn.init.constant_(lin.bias, -radius)
        else:
            nn.init.normal_(lin.weight, 0.0, math.sqrt(2.0) / math.sqrt(lin.out_features))
            nn.init.zeros_(lin.bias)
            if i == 0 and num_coord_inputs is not None:
                lin.weight[:, num_coord_inputs:] = 0.0
    return mlp


class Siren(nn.Module):
    """SIREN: sine-activated MLP with Sitzmann et al.'s initialisation.

    First layer ``W ~ U(−1/in, 1/in)``; later layers ``W ~ U(−√(6/in)/ω₀, √(6/in)/ω₀)``; each
    hidden layer computes ``sin(ω₀ (Wx + b))``; the last layer is linear.

    Args:
        in_dim, out_dim: input and output widths.
        hidden_dim, num_hidden_layers: width and number of the sine layers.
        omega0: ω of the hidden sine layers (also in their init bound); 30 in the paper.
        omega0_first: ω₀ of the first layer only (default ``omega0``): the frequency knob
            FreSh tunes (Kania et al., ICLR 2025; see ``fields.fresh``). The first layer's init
            does not depend on it, so it only scales the input frequencies.
        first_init: ``"siren"`` (``U(±1/in)``, the SIREN paper) or ``"hidden"`` (the hidden
            layers' ``U(±√(6/in)/ω₀)`` for the first layer too — NAISR's released template,
            much smoother at ω₀ = 30).

    Example:
        >>> net = Siren(2, 3, hidden_dim=32, num_hidden_layers=2)
        >>> net(torch.rand(5, 2)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden_dim: int = 256, num_hidden_layers: int = 3,
        omega0: float = 30.0, omega0_first: float | None = None, first_init: str = "siren",
    ) -> None:
        super().__init__()
        if first_init not in ("siren", "hidden"):
            raise ValueError(f"first_init must be 'siren' or 'hidden', got {first_init!r}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.omega0 = omega0
        self.omega0_first = omega0 if omega0_first is None else omega0_first
        dims = [in_dim] + [hidden_dim] * num_hidden_layers + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))
        with torch.no_grad():
            for i, lin in enumerate(self.layers):
                fan_in = lin.in_features
                first = i == 0 and first_init == "siren"
                bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / omega0
                lin.weight.uniform_(-bound, bound)

    def forward(self, x: Float[Tensor, "N I"]) -> Float[Tensor, "N O"]:
        h = x
        for i, lin in enumerate(self.layers[:-1]):
            h = torch.sin((self.omega0_first if i == 0 else self.omega0) * lin(h))
        return self.layers[-1](h)

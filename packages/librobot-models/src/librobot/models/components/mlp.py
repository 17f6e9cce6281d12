"""MLPs and feed-forward blocks: plain (GELU/ReLU/SiLU) and gated (SwiGLU, GeGLU; Shazeer 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import ConfigError

ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu", "mish", "tanh")
GATED = ("swiglu", "geglu")


def build_activation(name: str) -> nn.Module:
    key = name.lower()
    table = {
        "gelu": lambda: nn.GELU(),
        "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
        "relu": lambda: nn.ReLU(),
        "silu": lambda: nn.SiLU(),
        "swish": lambda: nn.SiLU(),
        "mish": lambda: nn.Mish(),
        "tanh": lambda: nn.Tanh(),
    }
    if key not in table:
        raise ConfigError(f"unknown activation '{name}'; choose one of {', '.join(ACTIVATIONS)}")
    return table[key]()


class SwiGLU(nn.Module):
    """Gated activation on a doubled input: split [..., 2h] into (a, b) → silu(a) · b."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=-1)
        return F.silu(a) * b


class GeGLU(nn.Module):
    """Gated activation on a doubled input: split [..., 2h] into (a, b) → gelu(a) · b."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=-1)
        return F.gelu(a) * b


class MLP(nn.Module):
    """Linear → act (→ norm) (→ dropout) stacks: in_dim → hidden_dims… → out_dim (no act on the output)."""

    def __init__(
        self,
        in_dim: int,
        hidden_dims: int | Sequence[int],
        out_dim: int,
        *,
        activation: str = "gelu",
        dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        hidden = [int(hidden_dims)] if isinstance(hidden_dims, int) else [int(h) for h in hidden_dims]
        layers: list[nn.Module] = []
        prev = int(in_dim)
        for h in hidden:
            layers.append(nn.Linear(prev, h))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(build_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = h
        layers.append(nn.Linear(prev, int(out_dim)))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GatedFeedForward(nn.Module):
    """W_down(act(W_gate x) · W_up x), with the gate and up projections fused into one matmul."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        *,
        kind: str = "swiglu",
        out_dim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in GATED:
            raise ConfigError(f"unknown gated feed-forward '{kind}'; choose one of {', '.join(GATED)}")
        self.up = nn.Linear(dim, 2 * hidden_dim, bias=bias)
        self.act = SwiGLU() if kind == "swiglu" else GeGLU()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.down = nn.Linear(hidden_dim, out_dim or dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.drop(self.act(self.up(x))))


def FeedForward(
    dim: int,
    hidden_dim: int | None = None,
    *,
    kind: str = "gelu",
    mult: float = 4.0,
    out_dim: int | None = None,
    bias: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    """The transformer feed-forward by name: "gelu", "gelu_tanh", "relu", "silu", "swiglu", "geglu".

    Without ``hidden_dim``, plain kinds use ``mult · dim``; gated kinds use ⅔ of that rounded up to a
    multiple of 8, which keeps the parameter count of the plain block (the Llama/PaLM convention).
    """
    key = kind.lower()
    if key in GATED:
        hidden = hidden_dim or 8 * -(-int(2 * mult * dim / 3) // 8)
        return GatedFeedForward(dim, hidden, kind=key, out_dim=out_dim, bias=bias, dropout=dropout)
    if key not in ACTIVATIONS:
        raise ConfigError(f"unknown feed-forward kind '{kind}'; choose one of {', '.join(ACTIVATIONS + GATED)}")
    hidden = hidden_dim or int(mult * dim)
    layers: list[nn.Module] = [nn.Linear(dim, hidden, bias=bias), build_activation(key)]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, out_dim or dim, bias=bias))
    return nn.Sequential(*layers)

"""Feature-wise conditioning: FiLM (Perez et al. 2018) and DiT's adaptive LayerNorm modulation.

Both start as the identity (zero-initialised projections), so adding conditioning to a network
does not perturb it at initialisation (DiT's "adaLN-Zero").
"""

from __future__ import annotations

from torch import Tensor, nn

from librobot.core.errors import SpecError


def _broadcast(params: Tensor, x: Tensor) -> Tensor:
    """[B, D] → [B, 1, …, 1, D] to match x [B, …, D]; [B, L, D] is used as is."""
    while params.dim() < x.dim():
        params = params.unsqueeze(1)
    return params


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x · (1 + scale) + shift, broadcasting per-sample [B, D] parameters over positions."""
    return x * (1 + _broadcast(scale, x)) + _broadcast(shift, x)


class FiLM(nn.Module):
    """y = (1 + γ(c)) · x + β(c) with γ, β linear in the conditioning vector c [B, cond_dim]."""

    def __init__(self, cond_dim: int, dim: int) -> None:
        super().__init__()
        self.cond_dim, self.dim = int(cond_dim), int(dim)
        self.proj = nn.Linear(cond_dim, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if cond.shape[-1] != self.cond_dim or x.shape[-1] != self.dim:
            raise SpecError(
                f"FiLM(cond_dim={self.cond_dim}, dim={self.dim}) got x {list(x.shape)} and cond {list(cond.shape)}"
            )
        scale, shift = self.proj(cond).chunk(2, dim=-1)
        return modulate(x, shift, scale)


class AdaLNModulation(nn.Module):
    """SiLU → Linear(cond_dim, n·dim), zero-initialised; returns n tensors [B, (L,) dim]."""

    def __init__(self, cond_dim: int, dim: int, n: int) -> None:
        super().__init__()
        self.cond_dim, self.n = int(cond_dim), int(n)
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, n * dim))
        nn.init.zeros_(self.proj[1].weight)
        nn.init.zeros_(self.proj[1].bias)

    def forward(self, cond: Tensor) -> tuple[Tensor, ...]:
        if cond.shape[-1] != self.cond_dim:
            raise SpecError(f"adaLN conditioning expects last dim {self.cond_dim}, got {list(cond.shape)}")
        return self.proj(cond).chunk(self.n, dim=-1)

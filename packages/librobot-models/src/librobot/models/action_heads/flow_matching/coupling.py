"""Minibatch optimal-transport coupling for OT-CFM (Tong et al. 2024; Pooladian et al. 2023).

Given B data chunks and B noise draws, re-pair them to (approximately) minimise the total squared
distance, which straightens the learned flow. For conditional generation the cost also charges
pairing data i with noise j "drawn for" a different conditioning c_j: noise draws are exchangeable,
so a coupling that permutes only among (near-)equal conditionings keeps the noise given c standard
normal, which is what sampling assumes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from librobot.core.extras import require


def coupling_cost(
    x: Tensor, noise: Tensor, cond: Tensor | None = None, valid: Tensor | None = None, cond_weight: float = 0.0
) -> Tensor:
    """C[i, j] = mean over i's valid coordinates of (x_i − n_j)², plus cond_weight · ‖c_i − c_j‖² /
    mean_{i≠j} ‖c_i − c_j‖² (scale-free). x, noise [B, d]; valid [B, d] in {0, 1}; cond [B, k]."""
    x, n = x.double(), noise.double()
    if valid is None:
        cost = torch.cdist(x, n).pow(2) / x.shape[1]
    else:
        v = valid.double()
        count = v.sum(1, keepdim=True).clamp_min(1.0)
        cost = ((v * x * x).sum(1, keepdim=True) - 2 * (v * x) @ n.T + v @ (n * n).T) / count
    if cond is not None and cond_weight > 0 and cond.shape[0] > 1:
        d = torch.cdist(cond.double(), cond.double()).pow(2)
        off = d.sum() / (d.shape[0] * (d.shape[0] - 1))
        if off > 0:
            cost = cost + cond_weight * d / off
    return cost


def exact_assignment(cost: Tensor) -> Tensor:
    """The permutation j(i) minimising Σ_i C[i, j(i)] (Hungarian / Jonker–Volgenant, via scipy)."""
    optimize = require(
        "scipy.optimize", extra="librobot-models[ot]", purpose="the exact OT-CFM coupling (or set ot_method='sinkhorn')"
    )
    rows, cols = optimize.linear_sum_assignment(cost.detach().cpu().numpy())
    perm = torch.empty(cost.shape[0], dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm.to(cost.device)


def sinkhorn_plan(cost: Tensor, reg: float = 0.05, iters: int = 100) -> Tensor:
    """Entropic OT plan with uniform marginals (log-domain Sinkhorn); ``reg`` is relative to the
    mean cost, so it means the same thing whatever the scale of the actions."""
    c = cost.double()
    eps = reg * c.mean().clamp_min(1e-12)
    n, m = c.shape
    log_a = torch.full(
        (n,), -torch.log(torch.tensor(float(n), dtype=torch.float64)), dtype=torch.float64, device=c.device
    )
    log_b = torch.full(
        (m,), -torch.log(torch.tensor(float(m), dtype=torch.float64)), dtype=torch.float64, device=c.device
    )
    f = torch.zeros(n, dtype=torch.float64, device=c.device)
    g = torch.zeros(m, dtype=torch.float64, device=c.device)
    for _ in range(iters):
        f = eps * (log_a - torch.logsumexp((g[None, :] - c) / eps, dim=1))
        g = eps * (log_b - torch.logsumexp((f[:, None] - c) / eps, dim=0))
    return torch.exp((f[:, None] + g[None, :] - c) / eps)


def ot_pairing(
    x: Tensor,
    noise: Tensor,
    *,
    cond: Tensor | None = None,
    valid: Tensor | None = None,
    cond_weight: float = 0.0,
    method: str = "exact",
    reg: float = 0.05,
    iters: int = 100,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Indices j(i) into ``noise`` pairing each data row i with a noise row (a permutation for
    "exact"; draws from the plan's rows for "sinkhorn", as POT-based OT-CFM does)."""
    with torch.no_grad():
        cost = coupling_cost(
            x.flatten(1), noise.flatten(1), cond, None if valid is None else valid.flatten(1), cond_weight
        )
        if method == "exact":
            return exact_assignment(cost)
        plan = sinkhorn_plan(cost, reg, iters)
        rows = plan / plan.sum(1, keepdim=True)
        return torch.multinomial(rows.float().cpu(), 1, generator=generator).squeeze(1).to(x.device)

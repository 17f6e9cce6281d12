"""Synthetic conditional chunk tasks and a distribution distance, to check that heads learn what
they claim (tests, benchmarks, and anyone comparing heads).

``ChunkTask``: K conditionings (fixed random vectors); for each, the action chunk is one smooth
trajectory (unimodal) or one of two distinct trajectories with probability ½ each (bimodal, like
passing an obstacle on the left or the right), plus small Gaussian noise. Values stay in [-1, 1].

``energy_distance``: E(X, Y) = 2·E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (Székely & Rizzo), zero iff the
distributions agree. For the bimodal task with modes at distance d, any predictor that puts its
samples on the modes with weights (p, 1 − p) scores ≈ d/2 · (2p − 1)², and one that outputs the
mode average scores ≈ d/2; see ``reference_distances``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ChunkTask:
    cond_dim: int = 16
    horizon: int = 8
    action_dim: int = 2
    num_conditions: int = 4
    bimodal: bool = True
    noise_std: float = 0.02
    mode_offset: float = 0.45
    gripper_last: bool = False  # last coordinate is an open/close command (±1, noise-free)
    seed: int = 0

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.seed)
        k, h, a = self.num_conditions, self.horizon, self.action_dim
        self.conds = torch.randn(k, self.cond_dim, generator=g)
        steps = torch.linspace(0, 1, h)
        freq = 0.5 + torch.rand(k, 1, a, generator=g)
        phase = 2 * math.pi * torch.rand(k, 1, a, generator=g)
        base = 0.3 * torch.sin(2 * math.pi * freq * steps[None, :, None] + phase)  # [K, H, A]
        signs = torch.where(torch.rand(k, 1, a, generator=g) < 0.5, -1.0, 1.0)
        bend = self.mode_offset * signs * (0.5 + 0.5 * torch.sin(math.pi * steps))[None, :, None]
        self.modes = torch.stack([base + bend, base - bend], 1) if self.bimodal else base.unsqueeze(1)  # [K, M, H, A]
        if self.gripper_last:
            self.modes[..., -1] = torch.where(self.modes[..., -1] >= 0, 1.0, -1.0)

    def sample(
        self, n: int, generator: torch.Generator, condition: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(cond [n, cond_dim], actions [n, H, A], condition index [n], mode index [n])."""
        if condition is None:
            idx = torch.randint(0, self.num_conditions, (n,), generator=generator)
        else:
            idx = torch.full((n,), condition, dtype=torch.long)
        mode = torch.randint(0, self.modes.shape[1], (n,), generator=generator)
        noise = self.noise_std * torch.randn(n, self.horizon, self.action_dim, generator=generator)
        if self.gripper_last:
            noise[..., -1] = 0.0
        actions = self.modes[idx, mode] + noise
        return self.conds[idx], actions, idx, mode

    def mode_distance(self, condition: int) -> float:
        m = self.modes[condition]
        return float((m[0] - m[-1]).norm())

    def nearest_mode(self, chunks: Tensor, condition: int) -> Tensor:
        """Index of the mode closest to each chunk [n, H, A]."""
        d = (chunks.unsqueeze(1) - self.modes[condition].unsqueeze(0)).flatten(2).norm(dim=-1)
        return d.argmin(dim=1)


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Energy distance between samples x [n, ...] and y [m, ...] (flattened), with the unbiased
    within-sample terms (diagonal excluded)."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    n, m = x.shape[0], y.shape[0]
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (n * (n - 1))
    yy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * xy - xx - yy)


def reference_distances(task: ChunkTask, condition: int, n: int, generator: torch.Generator) -> dict[str, float]:
    """Energy distances to held-out samples of: fresh true samples ("true", ≈ 0 up to sampling
    noise), the mode average ("average"), and always the first mode ("one_mode")."""
    _, held_out, _, _ = task.sample(n, generator, condition)
    _, fresh, _, _ = task.sample(n, generator, condition)
    mean = task.modes[condition].mean(0).expand(n, -1, -1)
    first = task.modes[condition][0].expand(n, -1, -1)
    return {
        "true": energy_distance(fresh, held_out),
        "average": energy_distance(mean + 1e-9 * torch.randn(mean.shape, generator=generator), held_out),
        "one_mode": energy_distance(first + 1e-9 * torch.randn(first.shape, generator=generator), held_out),
    }


def fit(
    head: torch.nn.Module,
    task: ChunkTask,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    weight_decay: float = 0.0,
) -> list[float]:
    """Train ``head`` on fresh task samples with AdamW (cosine-decayed lr); returns the loss per step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.05)
    head.train()
    losses = []
    for _ in range(steps):
        cond, actions, _, _ = task.sample(batch_size, g)
        loss = head(cond, actions, generator=g)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    head.eval()
    return losses

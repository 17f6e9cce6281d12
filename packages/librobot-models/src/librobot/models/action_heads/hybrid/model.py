"""Hybrid head: a categorical over K prototype chunks (coarse, discrete: captures which mode)
plus a per-bin continuous offset (fine): Behavior Transformers' action factorisation
(Shafiullah et al. 2022) applied to whole chunks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models.action_heads.autoregressive.model import sample_token
from librobot.models.action_heads.base import ActionHeadBase, masked_mean
from librobot.models.action_heads.hybrid.config import HybridConfig


def _distances(x: Tensor, centers: Tensor, w: Tensor) -> Tensor:
    """Squared distances [N, K] between chunks x [N, H, A] and centres [K, H, A] over valid steps w [N, H]."""
    diff = (x.unsqueeze(1) - centers.unsqueeze(0)).pow(2).sum(-1)  # [N, K, H]
    return (diff * w.unsqueeze(1)).sum(-1)


def kmeans_plus_plus(x: Tensor, w: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """k-means++ seeding: each next centre drawn with probability ∝ squared distance to the chosen ones."""
    n = x.shape[0]
    first = int(torch.randint(0, n, (1,), generator=generator))
    centers = [x[first]]
    d2 = _distances(x, x[first : first + 1], w)[:, 0]
    for _ in range(1, k):
        probs = (d2 + 1e-12) / (d2 + 1e-12).sum()
        idx = int(torch.multinomial(probs.cpu().float(), 1, generator=generator))
        centers.append(x[idx])
        d2 = torch.minimum(d2, _distances(x, x[idx : idx + 1], w)[:, 0])
    return torch.stack(centers)


class HybridHead(ActionHeadBase):
    config_class = HybridConfig
    config: HybridConfig

    def __init__(self, config: HybridConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        c = self.config
        layers: list[nn.Module] = []
        width = c.cond_dim
        for _ in range(c.num_layers):
            layers += [nn.Linear(width, c.hidden_dim), nn.GELU(), nn.Dropout(c.dropout)]
            width = c.hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.logits = nn.Linear(width, c.num_bins)
        self.offsets = nn.Linear(width, c.num_bins * c.horizon * c.action_dim)
        # k-means state is part of the model: saved with the weights
        self.register_buffer("centers", torch.zeros(c.num_bins, c.horizon, c.action_dim))
        self.register_buffer("counts", torch.zeros(c.num_bins, c.horizon))
        self.register_buffer("centers_ready", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit_centers(
        self,
        actions: Tensor,
        *,
        action_is_pad: Tensor | None = None,
        iters: int = 25,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Lloyd's k-means on a sample of training chunks [N, H, A] (N ≥ num_bins); returns the centres."""
        self.check_actions(actions, actions.shape[0])
        w = self.valid_steps(action_is_pad, actions.shape[0])
        w = torch.ones(actions.shape[:2], device=actions.device) if w is None else w
        if actions.shape[0] < self.config.num_bins:
            raise SpecError(
                f"fit_centers needs at least num_bins={self.config.num_bins} chunks, got {actions.shape[0]}"
            )
        centers = kmeans_plus_plus(actions, w, self.config.num_bins, generator)
        for _ in range(iters):
            assign = _distances(actions, centers, w).argmin(1)
            onehot = F.one_hot(assign, self.config.num_bins).to(actions.dtype)  # [N, K]
            den = onehot.T @ w  # [K, H]
            num = torch.einsum("nk,nh,nha->kha", onehot, w, actions)
            centers = torch.where(den.unsqueeze(-1) > 0, num / den.clamp_min(1e-12).unsqueeze(-1), centers)
        self.centers.copy_(centers)
        self.counts.copy_(den)
        self.centers_ready.fill_(True)
        return centers

    @torch.no_grad()
    def _update_centers(self, x: Tensor, w: Tensor, assign: Tensor) -> None:
        """One minibatch k-means step: each centre moves to its running mean (learning rate 1/count)."""
        onehot = F.one_hot(assign, self.config.num_bins).to(x.dtype)
        den = onehot.T @ w
        num = torch.einsum("nk,nh,nha->kha", onehot, w, x)
        self.counts.add_(den)
        self.centers.add_((num - den.unsqueeze(-1) * self.centers) / self.counts.clamp_min(1.0).unsqueeze(-1))

    def forward(
        self,
        cond: Tensor,
        actions: Tensor,
        *,
        cond_mask: Tensor | None = None,
        action_is_pad: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        c, valid = self._prep(cond, cond_mask, actions, action_is_pad)
        w = (
            torch.ones(actions.shape[:2], device=actions.device, dtype=actions.dtype)
            if valid is None
            else valid.to(actions.dtype)
        )
        if not bool(self.centers_ready):
            if actions.shape[0] < self.config.num_bins:
                raise SpecError(
                    f"the first training batch ({actions.shape[0]} chunks) is smaller than num_bins={self.config.num_bins}: "
                    "call head.fit_centers(sample_of_chunks) first, or use a larger batch"
                )
            with torch.no_grad():
                self.centers.copy_(kmeans_plus_plus(actions.detach(), w, self.config.num_bins, generator))
                self.centers_ready.fill_(True)
        with torch.no_grad():
            assign = _distances(actions.detach(), self.centers, w).argmin(1)
            if self.training and self.config.online_kmeans:
                self._update_centers(actions.detach(), w, assign)
        h = self.trunk(c.pooled)
        ce = F.cross_entropy(self.logits(h), assign)
        offsets = self.offsets(h).view(-1, self.config.num_bins, self.horizon, self.action_dim)
        chosen = offsets[torch.arange(offsets.shape[0], device=offsets.device), assign]
        target = actions - self.centers[assign]
        err = (chosen - target).abs() if self.config.offset_loss == "l1" else (chosen - target).pow(2)
        offset = masked_mean(err, valid)
        return {"loss": ce + self.config.offset_weight * offset, "bin_ce": ce.detach(), "offset": offset.detach()}

    @torch.no_grad()
    def predict(
        self,
        cond: Tensor,
        *,
        cond_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise=None,
        temperature: float | None = None,
    ) -> Tensor:
        """Sample a bin (``temperature``, draws from ``generator``; 0 = most likely) and add its offset."""
        if noise is not None:
            raise SpecError("the hybrid head takes no noise; its randomness is the bin draw (pass generator=)")
        c = self.condition(cond, cond_mask)
        h = self.trunk(c.pooled)
        temp = self.config.temperature if temperature is None else temperature
        bins = sample_token(self.logits(h), temp, 0, generator)
        offsets = self.offsets(h).view(-1, self.config.num_bins, self.horizon, self.action_dim)
        return self.centers[bins] + offsets[torch.arange(offsets.shape[0], device=offsets.device), bins]

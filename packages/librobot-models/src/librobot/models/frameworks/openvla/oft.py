"""OpenVLA-OFT-style policy (Kim et al. 2025, "Fine-Tuning Vision-Language-Action Models"):
parallel decoding with continuous actions.

After the prompt come [proprio token] + N action embeddings (N = H·A, or H with
``action_tokens="per_step"``), all in the *same* VLM pass: no tokens, no autoregression, one
forward per chunk in training and inference. The action positions' final hidden states go
through a residual MLP (OFT's MLPResNet) that regresses each step's A values, trained with L1.

Deviations, and why:
- OFT feeds empty (zero) embeddings at the action positions and tells them apart by position;
  here each slot has a learned embedding, which keeps slots distinct on any backbone (a zero input
  gives zero queries after a bias-free pre-norm projection, on every position scheme).
- OFT makes the action positions attend to each other bidirectionally inside the LLM. The backbone
  contract (``vlm(images, text, suffix_embeds=...)``) makes suffix attention causal, so each action
  position sees the prompt and the earlier action positions inside the VLM, and ``mixer_depth``
  bidirectional transformer layers over the action hidden states then let every position see every
  other (0 disables them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models.action_heads.base import masked_mean
from librobot.models.components.positional import sinusoidal_embedding
from librobot.models.components.transformer import Transformer
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.inputs import VLAInputs
from librobot.models.frameworks.openvla.config import OpenVLAOFTConfig


class _ResidualBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class OpenVLAOFT(AbstractVLA):
    config_class = OpenVLAOFTConfig
    registry_name = "openvla-oft"

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c: OpenVLAOFTConfig = self.config
        dim = self.vlm.get_embedding_dim()
        per_step = 1 if c.action_tokens == "per_step" else c.action_dim
        self.num_slots = c.horizon * per_step
        # distinct from the first step: sinusoidal start, scaled like token embeddings
        start = sinusoidal_embedding(torch.arange(self.num_slots, dtype=torch.float32), dim) * 0.02
        self.action_slots = nn.Parameter(start.unsqueeze(0))
        self.state_proj = (
            nn.Sequential(nn.Linear(c.state_dim, dim), nn.GELU(), nn.Linear(dim, dim)) if c.state_dim else None
        )
        heads = c.mixer_heads if dim % c.mixer_heads == 0 else 1
        self.mixer = Transformer(dim, c.mixer_depth, heads) if c.mixer_depth else None
        self.head = nn.Sequential(
            nn.LayerNorm(per_step * dim),
            nn.Linear(per_step * dim, c.head_hidden_dim),
            *[_ResidualBlock(c.head_hidden_dim) for _ in range(c.head_blocks)],
            nn.LayerNorm(c.head_hidden_dim),
            nn.Linear(c.head_hidden_dim, c.action_dim),
        )
        # the chunk starts at 0 (the normalised mean): no random offsets to unlearn first
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self._finish_init()

    def chunk(self, inputs: VLAInputs) -> Tensor:
        """One VLM pass → the whole normalised chunk [B, H, A]."""
        b = inputs.batch_size
        suffix = [self.action_slots.expand(b, -1, -1)]
        if self.state_proj is not None:
            suffix.insert(0, self.state_proj(inputs.current_state).unsqueeze(1))
        out = self.vlm(inputs.current_views, inputs.text, suffix_embeds=torch.cat(suffix, dim=1))
        hidden = out.hidden_states[:, -self.num_slots :].to(self.action_slots.dtype)
        if self.mixer is not None:
            hidden = self.mixer(hidden)
        c = self.config
        return self.head(hidden.reshape(b, c.horizon, -1))

    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        pred = self.chunk(inputs)
        diff = pred - inputs.actions
        err = diff.abs() if self.config.loss == "l1" else diff.pow(2)
        loss = masked_mean(err, (~inputs.action_is_pad).float())
        return {"loss": loss, self.config.loss: loss.detach()}

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        if noise is not None:
            raise SpecError("OpenVLA-OFT regresses the chunk deterministically and takes no noise")
        return self.chunk(inputs)

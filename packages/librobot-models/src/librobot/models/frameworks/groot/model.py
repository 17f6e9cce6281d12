"""GR00T-style policy.

The VLM (frozen by default) turns images + instruction into tokens, read at ``select_layer`` with
the layers above it dropped (``layers.py``); proprioception goes through its own encoder, bypassing
the VLM, and joins them as one more token. A DiT head cross-attends to these tokens while adaptive
norm conditions it on the flow time, and predicts the action chunk by flow matching with GR00T's
time sampling and step count (``config.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from librobot.models import create_action_head, create_encoder
from librobot.models.frameworks.base import AbstractVLA, run_vlm
from librobot.models.frameworks.groot.config import GR00TConfig
from librobot.models.frameworks.groot.layers import keep_language_layers
from librobot.models.frameworks.inputs import VLAInputs


class GR00TStyle(AbstractVLA):
    config_class = GR00TConfig
    registry_name = "groot"

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c: GR00TConfig = self.config
        keep_language_layers(self.vlm, c.select_layer)  # before freezing: the dropped layers are gone, not frozen
        width = self.vlm.get_embedding_dim()
        self.vlm_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, c.hidden_dim))
        self.state_encoder = (
            create_encoder(c.state_encoder, state_dim=c.state_dim, output_dim=c.hidden_dim) if c.state_dim else None
        )
        self.head = create_action_head(
            c.head_type,
            **{
                "action_dim": c.action_dim,
                "horizon": c.horizon,
                "cond_dim": c.hidden_dim,
                "cross_attention": True,
                **c.head_options(),
            },
        )
        self._finish_init()

    def conditioning(self, inputs: VLAInputs) -> tuple[Tensor, Tensor]:
        out = run_vlm(self, inputs)
        tokens, mask = self.vlm_proj(out.hidden_states), out.attention_mask
        if self.state_encoder is not None:
            state_token = self.state_encoder(inputs.current_state).unsqueeze(1)
            tokens = torch.cat([tokens, state_token], dim=1)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        return tokens, mask

    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        tokens, mask = self.conditioning(inputs)
        return self.head(tokens, inputs.actions, cond_mask=mask, action_is_pad=inputs.action_is_pad)

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        tokens, mask = self.conditioning(inputs)
        return self.head.predict(tokens, cond_mask=mask, generator=generator, noise=noise)

"""OpenVLA-OFT-style policy (Kim, Finn, Liang 2025, "Fine-Tuning Vision-Language-Action Models:
Optimizing Speed and Success"): parallel decoding with continuous actions.

After the prompt come [proprio token] + N action embeddings (N = H·A, or H with
``action_tokens="per_step"``), all in the *same* VLM pass: no tokens, no autoregression, one
forward per chunk in training and inference. The action positions' final hidden states go
through a residual MLP (OFT's MLPResNet) that regresses each step's A values, trained with L1.

Parallel decoding (``action_attention="bidirectional"``, the default): inside the backbone's
language model the suffix (proprio token and action slots) is one block, so every slot attends to
the whole prompt and to every other slot, later ones included, as OFT replaces the causal mask
over its action positions. The backbone does it (``vlm(..., suffix_attention="bidirectional")``):
block ids in the built-in prefix-LM, a 4-D block mask on the causal transformers families
(Qwen-VL, InternVL, LLaVA, KosMos-2), block ids on PaliGemma, the encoder mask on Florence-2.
``action_attention="causal"`` keeps a causal suffix (each slot sees the earlier ones, the
behaviour before issue 20); only there is the post-hoc mixer on by default (``mixer_depth`` None →
one bidirectional layer over the action hidden states, which lets early slots see later ones after
the backbone). With bidirectional attention it has nothing to make up for, so it is off (any
``mixer_depth`` >= 1 still adds it).

FiLM (OFT+, ``film=True``): the image tokens are modulated by the task before the language model
reads them, x ← (1 + γ(t))·x + β(t), with t the mean input embedding of the prompt's non-image
tokens (``vlm(..., modulate_images=...)``; FiLM from ``components/conditioning.py``, zero-initialised
so it starts as the identity).

Deviations, and why:
- OFT feeds empty (zero) embeddings at the action positions and tells them apart by position;
  here each slot has a learned embedding, which keeps slots distinct on any backbone (a zero input
  gives zero queries after a bias-free pre-norm projection, on every position scheme).
- OFT's patched Llama drops the causal mask over the whole sequence (only padding stays masked),
  so its prompt tokens see the action slots too. Here only the action block is bidirectional: the
  prompt runs with the backbone's own attention (the one it was pretrained with) and never depends
  on the slots.
- OFT+ applies FiLM inside every ViT block of its SigLIP and DINOv2 towers (after the attention,
  before the MLP). Here one FiLM layer modulates the vision tower's output tokens, in the language
  model's width: our backbones' towers differ too much for one in-block wrapper (Qwen-VL flattens
  every image's patches into one sequence, Florence-2's DaViT changes width per stage, each family
  names its blocks differently) and the output tokens are the one place all of them share. The
  tokens the language model reads still depend on the task before any of its attention, but
  through one affine map instead of one per block. Qwen3-VL's deepstack features (added inside the
  first language layers) are not modulated.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError
from librobot.models.action_heads.base import masked_mean
from librobot.models.components.conditioning import FiLM
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
        self._check_backbone()
        dim = self.vlm.get_embedding_dim()
        per_step = 1 if c.action_tokens == "per_step" else c.action_dim
        self.num_slots = c.horizon * per_step
        # distinct from the first step: sinusoidal start, scaled like token embeddings
        start = sinusoidal_embedding(torch.arange(self.num_slots, dtype=torch.float32), dim) * 0.02
        self.action_slots = nn.Parameter(start.unsqueeze(0))
        self.state_proj = (
            nn.Sequential(nn.Linear(c.state_dim, dim), nn.GELU(), nn.Linear(dim, dim)) if c.state_dim else None
        )
        # the image tokens and the prompt embeddings both have the language model's width
        self.film = FiLM(dim, dim) if c.film else None
        heads = c.mixer_heads if dim % c.mixer_heads == 0 else 1
        self.mixer = Transformer(dim, c.mixer_layers, heads) if c.mixer_layers else None
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

    def _check_backbone(self) -> None:
        """The backbone must run what the config asks for (a plugin backbone may not take the options)."""
        c, name = self.config, type(self.vlm).__name__
        if c.action_attention == "bidirectional" and "bidirectional" not in self.suffix_modes():
            raise ConfigError(
                f"OpenVLAOFTConfig.action_attention='bidirectional': the {name} backbone cannot run its suffix as "
                f"one bidirectional block (it has no suffix_attention_modes listing it); set action_attention='causal'"
            )
        if c.film and not getattr(self.vlm, "takes_modulate_images", False):
            raise ConfigError(
                f"OpenVLAOFTConfig.film: the {name} backbone does not take modulate_images (only the built-in "
                f"backbones do); set film=false"
            )

    def suffix_modes(self) -> tuple[str, ...]:
        # getattr, not a base-class default: a wrapped backbone (LoRA) answers through its own lookup
        return tuple(getattr(self.vlm, "suffix_attention_modes", ()))

    def backbone_options(self) -> dict[str, Any]:
        """What the backbone pass is asked for beyond its defaults; none with causal attention and
        no FiLM, so that configuration still runs on a backbone that takes neither option."""
        options: dict[str, Any] = {}
        if self.config.action_attention == "bidirectional":
            options["suffix_attention"] = "bidirectional"
        if self.film is not None:
            options["modulate_images"] = self.film
        return options

    def chunk(self, inputs: VLAInputs) -> Tensor:
        """One VLM pass → the whole normalised chunk [B, H, A]."""
        b = inputs.batch_size
        suffix = [self.action_slots.expand(b, -1, -1)]
        if self.state_proj is not None:
            suffix.insert(0, self.state_proj(inputs.current_state).unsqueeze(1))
        out = self.vlm(
            inputs.current_views, inputs.text, suffix_embeds=torch.cat(suffix, dim=1), **self.backbone_options()
        )
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

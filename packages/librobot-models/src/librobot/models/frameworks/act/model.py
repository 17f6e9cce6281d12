"""ACT policy (Action Chunking with Transformers, Zhao et al. 2023) on a VLM's features.

- Style encoder (training only): a transformer over [CLS, state, a_1 … a_H] (padded steps hidden);
  the CLS output gives q(z | a, s) = N(μ, σ²); z is drawn with the reparameterisation trick.
- Observation: one VLM pass gives its output tokens — the image tokens and the instruction's tokens,
  contextualised by the language model (``features="vlm"``); or ``vlm.encode_image`` alone, ACT's
  language-free setting (``features="vision"``), or ACT's own ResNet-18 over each camera
  (``features="resnet18"``; the VLM is then not run). They are projected to ``hidden_dim``.
- Encoder: a transformer over [z, state, observation tokens] (type embeddings + sinusoidal index).
- Decoder: H learned queries cross-attending to the encoder output → the chunk [B, H, A].
- Loss: L1 over the real steps + β·KL(q ‖ N(0, I)), β = ``kl_weight`` (10).
- Inference: z = 0, the prior mean. Temporal ensembling of the chunks predicted at every step runs
  in the serving runtime (librobot.serve, ``mode="ensemble"``); with ``config.temporal_ensemble``
  the policy recommends it (``execution``), so evaluation, serving and exports run it that way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models.action_heads.base import masked_mean
from librobot.models.components.positional import sinusoidal_embedding
from librobot.models.components.transformer import Transformer
from librobot.models.encoders.image import resnet18
from librobot.models.frameworks.act.config import ACTConfig
from librobot.models.frameworks.base import AbstractVLA, backbone_frozen, run_vlm
from librobot.models.frameworks.inputs import VLAInputs

LATENT, STATE, IMAGE, TEXT = range(4)  # memory token types


class ACTPolicy(AbstractVLA):
    config_class = ACTConfig
    registry_name = "act"

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c: ACTConfig = self.config
        d = c.hidden_dim
        block = dict(mlp="relu", mlp_ratio=c.feedforward_dim / d, dropout=c.dropout)
        # style encoder q(z | actions, state)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.cvae_state = nn.Linear(c.state_dim, d) if c.state_dim else None
        self.cvae_action = nn.Linear(c.action_dim, d)
        n_cvae = c.horizon + 1 + bool(c.state_dim)
        self.cvae_pos = nn.Parameter(sinusoidal_embedding(torch.arange(n_cvae, dtype=torch.float32), d).unsqueeze(0))
        self.cvae = Transformer(d, c.cvae_layers, c.num_heads, **block)
        self.to_latent = nn.Linear(d, 2 * c.latent_dim)
        nn.init.zeros_(self.to_latent.weight)  # q(z | ·) starts at the prior: KL = 0, the loss starts as L1
        nn.init.zeros_(self.to_latent.bias)
        # observation encoder over [z, state, features]
        self.latent_in = nn.Linear(c.latent_dim, d)
        self.state_in = nn.Linear(c.state_dim, d) if c.state_dim else None
        if c.features == "resnet18":  # ACT's backbone: layer-4 feature map → tokens of width d
            self.resnet: nn.Module | None = resnet18(output_dim=d, norm="batch", pool="tokens")
            self.feature_in: nn.Module = nn.Identity()
        else:
            self.resnet = None
            width = self.vlm.get_embedding_dim()
            self.feature_in = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, d))
        self.token_type = nn.Parameter(torch.randn(4, d) * 0.02)
        self.encoder = Transformer(d, c.encoder_layers, c.num_heads, **block)
        # decoder: one learned query per chunk step (sinusoidal start: distinct from the first step)
        self.queries = nn.Parameter(sinusoidal_embedding(torch.arange(c.horizon, dtype=torch.float32), d).unsqueeze(0))
        self.decoder = Transformer(d, c.decoder_layers, c.num_heads, cross_attention=True, **block)
        self.out = nn.Linear(d, c.action_dim)
        nn.init.zeros_(self.out.weight)  # the chunk starts at 0 (the normalised mean)
        nn.init.zeros_(self.out.bias)
        self._finish_init()

    def backbone_probe(self, vlm: nn.Module, image: Tensor) -> list[Tensor]:
        # ACT on its own ResNet never reads the VLM: every backbone parameter stays frozen
        return [] if self.config.features == "resnet18" else super().backbone_probe(vlm, image)

    # ------------------------------------------------------------------ observation
    @property
    def execution(self) -> dict[str, Any]:
        c = self.config
        return {"mode": "ensemble", "ensemble_coeff": float(c.temporal_ensemble_coeff)} if c.temporal_ensemble else {}

    def observation_tokens(self, inputs: VLAInputs) -> tuple[Tensor, Tensor, Tensor]:
        """Projected feature tokens [B, L, d], their mask [B, L] and type ids [B, L]."""
        if self.resnet is not None:
            if inputs.views is None:
                raise SpecError("ACT with features='resnet18' needs images; pass images or use features='vlm'")
            feats = torch.cat([self.resnet(view) for view in inputs.current_views], dim=1)
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
            types = torch.full(feats.shape[:2], IMAGE, dtype=torch.long, device=feats.device)
        elif self.config.features == "vision":
            if inputs.views is None:
                raise SpecError("ACT with features='vision' needs images; pass images or use features='vlm'")
            if backbone_frozen(self.vlm):
                with torch.no_grad():
                    feats = self.vlm.encode_image(inputs.current_views)
            else:
                feats = self.vlm.encode_image(inputs.current_views)
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
            types = torch.full(feats.shape[:2], IMAGE, dtype=torch.long, device=feats.device)
        else:
            out = run_vlm(self, inputs)
            feats, mask = out.hidden_states, out.attention_mask
            types = torch.where(out.image_mask, IMAGE, TEXT)
        tokens = self.feature_in(feats.to(self.queries.dtype))
        return tokens, mask, types

    def memory(self, inputs: VLAInputs, z: Tensor) -> tuple[Tensor, Tensor]:
        feats, mask, types = self.observation_tokens(inputs)
        b = feats.shape[0]
        head = [self.latent_in(z).unsqueeze(1) + self.token_type[LATENT]]
        if self.state_in is not None:
            head.append(self.state_in(inputs.current_state).unsqueeze(1) + self.token_type[STATE])
        # index among the sample's real tokens: left padding (batched or exported prompts of another
        # length) must not shift the positions; without padding this is arange(L)
        index = (mask.long().cumsum(dim=1) - 1).clamp(min=0).to(torch.float32)
        feats = feats + self.token_type[types] + sinusoidal_embedding(index, feats.shape[-1]).to(feats.dtype)
        tokens = torch.cat([*head, feats], dim=1)
        mask = torch.cat([mask.new_ones(b, len(head)), mask], dim=1)
        return self.encoder(tokens, key_padding_mask=mask), mask

    def decode(self, inputs: VLAInputs, z: Tensor) -> Tensor:
        memory, mask = self.memory(inputs, z)
        h = self.decoder(self.queries.expand(z.shape[0], -1, -1), context=memory, context_mask=mask)
        return self.out(h)

    # ------------------------------------------------------------------ CVAE
    def posterior(self, inputs: VLAInputs) -> tuple[Tensor, Tensor]:
        """q(z | actions, state): (μ, log σ²), each [B, latent_dim]."""
        b = inputs.batch_size
        tokens = [self.cls.expand(b, -1, -1)]
        if self.cvae_state is not None:
            tokens.append(self.cvae_state(inputs.current_state).unsqueeze(1))
        tokens.append(self.cvae_action(inputs.actions))
        x = torch.cat(tokens, dim=1) + self.cvae_pos
        keep = torch.cat(
            [torch.ones(b, x.shape[1] - self.config.horizon, dtype=torch.bool, device=x.device), ~inputs.action_is_pad],
            dim=1,
        )
        h = self.cvae(x, key_padding_mask=keep)
        mu, logvar = self.to_latent(h[:, 0]).chunk(2, dim=-1)
        return mu, logvar.clamp(-10, 10)

    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        mu, logvar = self.posterior(inputs)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        pred = self.decode(inputs, z)
        l1 = masked_mean((pred - inputs.actions).abs(), (~inputs.action_is_pad).float())
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        return {"loss": l1 + self.config.kl_weight * kl, "l1": l1.detach(), "kl": kl.detach()}

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        """z = 0 (ACT), or ``noise`` [B, latent_dim] as the latent."""
        shape = (inputs.batch_size, self.config.latent_dim)
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise SpecError(f"ACT's noise is its latent z: expected {list(shape)}, got {list(noise.shape)}")
            z = noise.to(device=self.device, dtype=self.queries.dtype)
        else:
            z = torch.zeros(shape, device=self.device, dtype=self.queries.dtype)
        return self.decode(inputs, z)

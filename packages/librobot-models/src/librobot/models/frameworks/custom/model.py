"""Custom VLA: a registered VLM + optional state / history / image encoders + a fusion + any
registered action head, all named in the config (``config.py``; example files in configs/custom/).

Conditioning the head receives, by fusion:
- ``concat``: [VLM tokens; encoder tokens] with the VLM's padding mask (heads with attention
  attend to all of them, the others pool);
- ``cross_attention``: learned query tokens plus the encoder tokens attend to the VLM tokens
  (``num_queries`` option, default 4) — a fixed-size summary, Perceiver/Q-Former style;
- ``film``: the VLM tokens are modulated by the mean of the encoder tokens (needs an encoder).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError
from librobot.core.registry import get_registry
from librobot.models import create_action_head, create_encoder
from librobot.models.frameworks.base import AbstractVLA, run_vlm
from librobot.models.frameworks.custom.config import CustomConfig
from librobot.models.frameworks.inputs import VLAInputs


class CustomVLA(AbstractVLA):
    config_class = CustomConfig
    registry_name = "custom"
    config: CustomConfig

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c = self.config
        d, w = self.vlm.get_embedding_dim(), c.hidden_dim
        self.vlm_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, w))
        self.state_encoder = self._encoder("state_encoder", state_dim=c.state_dim, output_dim=w)
        self.history_encoder = self._encoder("history_encoder", input_dim=c.state_dim, output_dim=w)
        self.image_encoder = self._encoder("image_encoder", output_dim=w)
        self.camera_embed = (
            nn.Parameter(torch.randn(c.max_cameras, w) * 0.02) if self.image_encoder is not None else None
        )
        # which frame of the window a token comes from (image_history)
        self.frame_embed = nn.Parameter(torch.randn(c.n_obs_steps, 1, w) * 0.02) if c.image_history else None
        fusion = c.component("fusion")
        assert fusion is not None
        self.fusion_kind, fusion_options = fusion[0], dict(fusion[1])
        self.queries = None
        self.fusion: nn.Module | None = None
        has_encoder = any(m is not None for m in (self.state_encoder, self.history_encoder, self.image_encoder))
        if self.fusion_kind == "cross_attention":
            self.queries = nn.Parameter(torch.randn(int(fusion_options.pop("num_queries", 4)), w) * 0.02)
            self.fusion = get_registry("fusion").create("cross_attention", query_dim=w, context_dim=w, **fusion_options)
        elif self.fusion_kind == "film":
            if not has_encoder:
                raise ConfigError(
                    "film fusion modulates the VLM tokens by encoder features; add a state, history or image encoder"
                )
            self.fusion = get_registry("fusion").create("film", feature_dim=w, cond_dim=w, **fusion_options)
        elif fusion_options:
            raise ConfigError(f"concat fusion takes no options, got {sorted(fusion_options)}")
        head = c.component("head")
        assert head is not None
        self.head = create_action_head(
            head[0], **{"action_dim": c.action_dim, "horizon": c.horizon, "cond_dim": w, **head[1], **c.head}
        )
        self._finish_init()

    def backbone_probe(self, vlm: nn.Module, image: Tensor) -> list[Tensor]:
        return [vlm(image, ["a"]).hidden_states]

    def _encoder(self, role: str, **required) -> nn.Module | None:
        spec = self.config.component(role)
        if spec is None:
            return None
        name, options = spec
        clash = sorted(set(options) & set(required))
        if clash:
            raise ConfigError(
                f"components.{role}: {clash} are set by the framework (hidden_dim/state_dim); remove them"
            )
        return create_encoder(name, **required, **options)

    # ------------------------------------------------------------------ conditioning
    def encoder_tokens(self, inputs: VLAInputs) -> list[Tensor]:
        """Tokens [B, n, W] from each configured encoder."""
        out = []
        if self.state_encoder is not None:
            out.append(self.state_encoder(inputs.current_state).unsqueeze(1))
        if self.history_encoder is not None:
            out.append(self.history_encoder(inputs.state[:, -self.config.n_obs_steps :]).unsqueeze(1))
        if self.image_encoder is not None:
            views = inputs.current_views
            if not views:
                raise SpecError("this custom policy has an image encoder; pass images")
            if len(views) > self.config.max_cameras:
                raise SpecError(
                    f"{len(views)} cameras; this policy was built with max_cameras={self.config.max_cameras}"
                )
            assert self.camera_embed is not None
            if self.config.image_history:  # [B, T, C, H, W] → one token per frame (per keypoint set)
                assert inputs.views is not None
                views = [v[:, -self.config.n_obs_steps :] for v in inputs.views]
            for i, view in enumerate(views):
                feats = self.image_encoder(view)
                if self.frame_embed is not None:  # [B, T, W] or [B, T, n, W] → frame-tagged tokens
                    frames = self.frame_embed[-feats.shape[1] :]
                    feats = (feats + frames[:, 0]) if feats.dim() == 3 else (feats + frames).flatten(1, 2)
                out.append((feats.unsqueeze(1) if feats.dim() == 2 else feats) + self.camera_embed[i])
        return out

    def conditioning(self, inputs: VLAInputs) -> tuple[Tensor, Tensor | None]:
        vlm_out = run_vlm(self, replace(inputs, views=None) if self.config.vlm_inputs == "text" else inputs)
        tokens, mask = self.vlm_proj(vlm_out.hidden_states), vlm_out.attention_mask.bool()
        extra = self.encoder_tokens(inputs)
        b = tokens.shape[0]
        if self.fusion_kind == "cross_attention":
            assert self.queries is not None and self.fusion is not None
            queries = torch.cat([self.queries.expand(b, -1, -1), *extra], dim=1)
            return self.fusion(queries, tokens, mask), None
        if self.fusion_kind == "film":
            assert self.fusion is not None
            return self.fusion(tokens, torch.cat(extra, dim=1).mean(dim=1)), mask
        if extra:
            more = torch.cat(extra, dim=1)
            tokens = torch.cat([tokens, more], dim=1)
            mask = torch.cat([mask, mask.new_ones(b, more.shape[1])], dim=1)
        return tokens, mask

    # ------------------------------------------------------------------ framework hooks
    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        tokens, mask = self.conditioning(inputs)
        return self.head(tokens, inputs.actions, cond_mask=mask, action_is_pad=inputs.action_is_pad)

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        tokens, mask = self.conditioning(inputs)
        return self.head.predict(tokens, cond_mask=mask, generator=generator, noise=noise)

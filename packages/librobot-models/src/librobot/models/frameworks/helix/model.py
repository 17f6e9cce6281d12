"""Helix-style policy (Figure AI, 2025): two systems at two rates.

- System 2 (slow, the VLM): images + instruction, plus ``num_latents`` learned query tokens
  appended as suffix embeddings; the VLM's own layers read the scene into them (they attend to
  the whole prefix), and a projection gives the latent [B, K, latent_dim].
- System 1 (fast): its own small image encoder (ResNet-style by default) on the current frames,
  a state token and the latent tokens, one small transformer, and an action head that predicts
  the chunk.

Training is end to end: S1's action loss reaches the latent, the query tokens and the VLM.
``latent_delay`` trains S1 with latents computed from older frames than its own, as happens at
run time. Inference: ``predict_action`` runs both; ``HelixRunner`` (runner.py) runs S2 every k
control steps and S1 at every step with the latest latent (``system2`` / ``system1`` below).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from librobot.core import batch as B
from librobot.core.errors import SpecError
from librobot.models import create_action_head, create_encoder
from librobot.models.components.transformer import Transformer
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.helix.config import HelixConfig
from librobot.models.frameworks.inputs import VLAInputs, canonicalize


class HelixStyle(AbstractVLA):
    config_class = HelixConfig
    registry_name = "helix"
    config: HelixConfig

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c = self.config
        d, w = self.vlm.get_embedding_dim(), c.s1_dim
        # system 2
        self.latent_queries = nn.Parameter(torch.randn(c.num_latents, d) * 0.02)
        self.latent_out = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, c.latent_dim))
        # system 1
        self.image_encoder = create_encoder(c.image_encoder, output_dim=w, **c.image_encoder_options)
        self.camera_embed = nn.Parameter(torch.randn(c.max_cameras, w) * 0.02)
        self.latent_in = nn.Linear(c.latent_dim, w)
        self.latent_pos = nn.Parameter(torch.randn(c.num_latents, w) * 0.02)
        self.state_in = nn.Linear(c.state_dim, w) if c.state_dim else None
        self.s1 = Transformer(w, c.s1_depth, c.s1_heads, mlp="gelu", norm="layernorm")
        self.head = create_action_head(
            c.head_type, **{"action_dim": c.action_dim, "horizon": c.horizon, "cond_dim": w, **c.head}
        )
        self._finish_init()

    def backbone_probe(self, vlm: nn.Module, image: Tensor) -> list[Tensor]:
        queries = torch.zeros(1, self.config.num_latents, vlm.get_embedding_dim(), device=image.device)
        return [vlm(image, ["a"], suffix_embeds=queries.to(vlm.dtype)).suffix_hidden_states]

    # ------------------------------------------------------------------ system 2
    def latent(self, views: list[Tensor] | None, text: list[str]) -> Tensor:
        """S2: frames [B, C, H, W] per camera + instructions → latent [B, num_latents, latent_dim].

        The VLM runs with autograd even when frozen, so the query tokens still learn through it."""
        b = len(text)
        queries = self.latent_queries.unsqueeze(0).expand(b, -1, -1)
        out = self.vlm(views, text, suffix_embeds=queries.to(self.vlm.dtype))
        return self.latent_out(out.suffix_hidden_states.to(queries.dtype))

    def _s2_views(self, inputs: VLAInputs) -> list[Tensor] | None:
        """The frames S2 reads: the latest, or in training with ``latent_delay`` an older one per sample."""
        c = self.config
        if inputs.views is None or not (self.training and c.latent_delay > 0):
            return inputs.current_views
        t = inputs.views[0].shape[1]
        max_delay = min(c.latent_delay, t - 1)
        if max_delay == 0:
            return inputs.current_views
        b = inputs.batch_size
        delay = torch.randint(0, max_delay + 1, (b,)).to(inputs.views[0].device)
        rows = torch.arange(b, device=delay.device)
        return [v[rows, t - 1 - delay] for v in inputs.views]

    # ------------------------------------------------------------------ system 1
    def s1_tokens(self, inputs: VLAInputs, latent: Tensor) -> Tensor:
        """S1's transformer over [latent tokens; state token; image tokens per camera] → [B, L, s1_dim]."""
        c, b = self.config, inputs.batch_size
        if latent.dim() != 3 or tuple(latent.shape) != (b, c.num_latents, c.latent_dim):
            raise SpecError(
                f"latent must be [B, num_latents, latent_dim] = {[b, c.num_latents, c.latent_dim]}, got {list(latent.shape)}"
                f" (was it computed for a different batch?)"
            )
        dtype = self.latent_in.weight.dtype
        parts = [self.latent_in(latent.to(dtype)) + self.latent_pos]
        if self.state_in is not None:
            parts.append(self.state_in(inputs.current_state.to(dtype)).unsqueeze(1))
        views = inputs.current_views or []
        if len(views) > c.max_cameras:
            raise SpecError(f"{len(views)} cameras; this policy was built with max_cameras={c.max_cameras}")
        for i, view in enumerate(views):
            x = view.to(dtype)
            if c.s1_image_size:
                x = F.interpolate(
                    x, size=(c.s1_image_size, c.s1_image_size), mode="bilinear", align_corners=False, antialias=True
                )
            feats = self.image_encoder(x)
            feats = feats.unsqueeze(1) if feats.dim() == 2 else feats  # pooled encoders give one token
            parts.append(feats + self.camera_embed[i])
        return self.s1(torch.cat(parts, dim=1))

    # ------------------------------------------------------------------ framework hooks
    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        latent = self.latent(self._s2_views(inputs), inputs.text)
        out = self.head(self.s1_tokens(inputs, latent), inputs.actions, action_is_pad=inputs.action_is_pad)
        return {**out, "latent_rms": latent.detach().pow(2).mean().sqrt()}

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        latent = self.latent(inputs.current_views, inputs.text)
        return self.act(inputs, latent, generator, noise)

    def act(self, inputs: VLAInputs, latent: Tensor, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        """S1 on prepared inputs → normalised chunk [B, H, A]."""
        return self.head.predict(self.s1_tokens(inputs, latent), generator=generator, noise=noise)

    # ------------------------------------------------------------------ the two systems, public
    def runner(self, s2_every_k: int = 10) -> Any:
        """A ``HelixRunner`` stepping this policy (S2 every ``s2_every_k`` steps, S1 every step)."""
        from librobot.models.frameworks.helix.runner import HelixRunner

        return HelixRunner(self, s2_every_k)

    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def system2(self, images: Any, text: Any = None) -> Tensor:
        """The slow system alone: the latent [B, num_latents, latent_dim] for images + instruction."""
        c = self.config
        inputs = canonicalize(images, text, None, state_dim=0, action_dim=c.action_dim, horizon=c.horizon)
        views = None if inputs.current_views is None else [v.to(self.device) for v in inputs.current_views]
        with self._inference():
            return self.latent(views, inputs.text)

    def system1(
        self,
        images: Any,
        proprioception: Tensor | None,
        latent: Tensor,
        *,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """The fast system alone: an action chunk [B, H, A] (robot units) from the current frames,
        state and a latent from ``system2`` (the latest one; it may be several steps old)."""
        with self._inference():
            inputs = self.prepare(images, None, proprioception)
            if generator is None and noise is None:
                generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
            actions = self.act(inputs, latent.to(self.device), generator, noise)
        return self.normalizer.unnormalize(B.ACTION, actions)

"""Octo-style policy (Octo Model Team, 2024).

One transformer reads, in order, the task tokens, then per frame t of the history window the
observation tokens (each camera's image tokens + a state token) and the readout tokens, under
Octo's block-wise causal mask (``attention.py``): task tokens see the task; frame t's
observations see the task and the observations of frames <= t; frame t's readouts see those and
each other; nothing else attends to a readout, so readouts summarise the observations without
changing them, and padding / future frames never leak backwards.

Training (``supervise_all_steps``, Octo's loss): every frame's readouts condition the diffusion
head on the chunk that starts at that frame (``targets.py`` says which steps the batch holds);
inference reads the last frame's readouts. The head is a DiT that cross-attends to the readout
tokens (default) or Octo's MLP-ResNet on the mean-pooled readouts (``head.py``).

Encoders: task tokens are the VLM's hidden states over the instruction alone (its language model
as Octo's T5 language encoder); image tokens are the VLM's vision path (``encode_image``: vision
tower + projector into the language width) per frame and camera, as Octo's per-frame image
tokenizers. Both are projected to the transformer width and tagged with learned embeddings.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import fields
from typing import Any

import torch
from torch import Tensor, nn

from librobot.core import batch as B
from librobot.core.errors import SpecError
from librobot.models import create_action_head
from librobot.models.components.transformer import Transformer
from librobot.models.frameworks.base import AbstractVLA, backbone_frozen
from librobot.models.frameworks.inputs import VLAInputs
from librobot.models.frameworks.octo.attention import block_transformer
from librobot.models.frameworks.octo.config import OctoConfig
from librobot.models.frameworks.octo.head import MLPResNetDiffusionHead
from librobot.models.frameworks.octo.targets import OctoInputs, split_lead, window_targets


def _window(seq: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """[B, T, ...] → the last ``steps`` frames [B, steps, ...] and validity [B, steps]; a shorter
    history is left-padded with copies of its first frame, marked invalid."""
    b, t = seq.shape[:2]
    if t >= steps:
        return seq[:, t - steps :], torch.ones(b, steps, dtype=torch.bool, device=seq.device)
    pad = steps - t
    padded = torch.cat([seq[:, :1].expand(b, pad, *seq.shape[2:]), seq], dim=1)
    valid = torch.cat([torch.zeros(b, pad, dtype=torch.bool), torch.ones(b, t, dtype=torch.bool)], dim=1)
    return padded, valid.to(seq.device)


class OctoStyle(AbstractVLA):
    config_class = OctoConfig
    registry_name = "octo"
    config: OctoConfig

    def __init__(self, vlm=None, action_dim=None, state_dim=None, config=None, **options) -> None:
        super().__init__(vlm, action_dim, state_dim, config, **options)
        c = self.config
        d, w = self.vlm.get_embedding_dim(), c.hidden_dim
        self.task_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, w))
        self.image_proj = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, w))
        self.state_proj = nn.Linear(c.state_dim, w) if c.state_dim else None
        self.task_embed = nn.Parameter(torch.randn(w) * 0.02)
        self.max_obs_tokens = c.max_obs_tokens or 4 * self.vlm.tokens_per_view() + 1
        self.obs_pos = nn.Parameter(torch.randn(self.max_obs_tokens, w) * 0.02)  # slot within a frame
        self.time_pos = nn.Parameter(torch.randn(c.n_obs_steps, w) * 0.02)  # frame within the window
        self.readouts = nn.Parameter(torch.randn(c.num_readouts, w) * 0.02)
        self.transformer = Transformer(w, c.depth, c.num_heads, mlp="gelu", mlp_ratio=c.mlp_ratio, norm="layernorm")
        head = {"action_dim": c.action_dim, "horizon": c.horizon, "cond_dim": w, **c.head}
        # Octo's MLP-ResNet head lives with this framework; the others are registered heads
        self.head = (
            MLPResNetDiffusionHead(**head) if c.head_type == "mlp_resnet" else create_action_head(c.head_type, **head)
        )
        self._finish_init()

    def backbone_probe(self, vlm: nn.Module, image: Tensor) -> list[Tensor]:
        return [vlm(None, ["a"]).hidden_states, vlm.encode_image([image])]  # task tokens, image tokens

    # ------------------------------------------------------------------ tokens
    def _backbone(self):
        return torch.no_grad() if backbone_frozen(self.vlm) else nullcontext()

    def task_tokens(self, inputs: VLAInputs) -> tuple[Tensor, Tensor]:
        """The instruction through the VLM's language model (no image): [B, Lt, W] and mask."""
        with self._backbone():
            out = self.vlm(None, inputs.text)
        return self.task_proj(out.hidden_states) + self.task_embed, out.attention_mask.bool()

    def observation_tokens(self, inputs: VLAInputs) -> tuple[Tensor, Tensor]:
        """Per-frame observation tokens [B, T, No, W] and their validity [B, T, No]."""
        b, steps = inputs.batch_size, self.config.n_obs_steps
        tokens, masks = [], []
        if inputs.views:
            lengths = {v.shape[1] for v in inputs.views}
            if len(lengths) > 1:
                raise SpecError(f"all cameras need the same number of history frames, got {sorted(lengths)}")
            frames = [_window(v, steps) for v in inputs.views]
            valid = frames[0][1]
            flat = [f.flatten(0, 1) for f, _ in frames]  # per camera [B*T, C, H, W]
            with self._backbone():
                feats = self.vlm.encode_image(flat)  # [B*T, cams * tokens_per_view, D]
            img = self.image_proj(feats).view(b, steps, feats.shape[1], -1)
            tokens.append(img)
            masks.append(valid[:, :, None].expand(-1, -1, img.shape[2]))
        if self.state_proj is not None:
            state, valid = _window(inputs.state, steps)
            tokens.append(self.state_proj(state.to(self.task_embed.dtype)).unsqueeze(2))
            masks.append(valid[:, :, None])
        if not tokens:
            raise SpecError("Octo-style needs observations: images and/or proprioception")
        obs = torch.cat(tokens, dim=2)
        if obs.shape[2] > self.max_obs_tokens:
            raise SpecError(
                f"{obs.shape[2]} observation tokens per frame exceed max_obs_tokens={self.max_obs_tokens}; "
                f"build the policy with max_obs_tokens >= {obs.shape[2]}"
            )
        obs = obs + self.obs_pos[: obs.shape[2]] + self.time_pos[:, None]
        return obs, torch.cat(masks, dim=2)

    def encode(self, inputs: VLAInputs) -> dict[str, Tensor]:
        """The transformer's outputs: ``task`` [B, Lt, W], ``obs`` [B, T, No, W], ``readouts``
        [B, T, R, W], and ``frame_valid`` [B, T] (False: a padded frame of a short history)."""
        task, task_mask = self.task_tokens(inputs)
        obs, obs_mask = self.observation_tokens(inputs)
        b = obs.shape[0]
        readouts = (self.readouts + self.time_pos[:, None]).expand(b, -1, -1, -1)
        task_out, obs_out, readout_out = block_transformer(
            self.transformer, task, task_mask, obs, obs_mask, readouts, readout_attention=self.config.readout_attention
        )
        return {"task": task_out, "obs": obs_out, "readouts": readout_out, "frame_valid": obs_mask.any(dim=2)}

    # ------------------------------------------------------------------ framework hooks
    def prepare(
        self,
        images: Any,
        text: Any = None,
        proprioception: Tensor | None = None,
        actions: Tensor | None = None,
        action_is_pad: Tensor | None = None,
    ) -> VLAInputs:
        """As the base class, and keeps what the every-frame loss reads beyond the contract: the
        actions before the latest frame (``action`` longer than H) and ``observation_is_pad``."""
        c = self.config
        images, actions, action_is_pad, lead, lead_pad, frame_pad = split_lead(
            images, actions, action_is_pad, horizon=c.horizon, n_obs_steps=c.n_obs_steps
        )
        inputs = super().prepare(images, text, proprioception, actions, action_is_pad)
        if lead is None and frame_pad is None:
            return inputs
        extra = {f.name: getattr(inputs, f.name) for f in fields(inputs)}
        if lead is not None:
            # (its width was checked with the rest of the sequence by the base class)
            extra["lead_actions"] = self.normalizer.normalize(
                B.ACTION, lead.to(device=self.device, dtype=torch.float32)
            )
            extra["lead_is_pad"] = lead_pad.to(self.device)
        if frame_pad is not None:
            flags, real = _window(frame_pad.to(self.device).unsqueeze(-1), c.n_obs_steps)
            extra["frame_is_pad"] = flags[..., 0] | ~real
        return OctoInputs(**extra)

    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        enc = self.encode(inputs)
        if not self.config.supervise_all_steps:
            return self.head(enc["readouts"][:, -1], inputs.actions, action_is_pad=inputs.action_is_pad)
        # Octo: every frame's readouts predict the chunk starting at that frame; steps whose
        # target the batch lacks, padded frames and frames before the episode are left out
        targets, pad = window_targets(inputs, self.config.n_obs_steps)  # [B, T, H, A], [B, T, H]
        skip = ~enc["frame_valid"]
        frame_pad = getattr(inputs, "frame_is_pad", None)
        if frame_pad is not None:
            skip = skip | frame_pad
        pad = pad | skip[..., None]
        rows = ~pad.all(dim=2)  # frames with at least one supervised step
        rows[:, -1] = True  # as before: the head always sees every sample (an all-padding one weighs zero)
        return self.head(enc["readouts"][rows], targets[rows], action_is_pad=pad[rows])

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        cond = self.encode(inputs)["readouts"][:, -1]  # Octo acts from the last frame's readouts
        return self.head.predict(cond, generator=generator, noise=noise)

"""Octo-style policy (Octo Model Team, 2024).

One transformer reads, in order, the task tokens, then per frame t of the history window the
observation tokens (each camera's image tokens + a state token) and the readout tokens. Attention
is block-wise causal (``q_blocks``/``kv_blocks``, key j visible to query i iff kv_block[j] <=
q_block[i]):

    tokens         q_block   kv_block
    task           0         0          task sees only task
    obs of t       t + 1     t + 1      task + observations of frames <= t
    readouts of t  t + 1     T + 1      task + observations <= t; T + 1 exceeds every query block,
                                        so no token (not even a readout) attends to a readout

so readouts summarise the observations without changing them, and padding / future frames never
leak backwards. A diffusion head cross-attends to the last frame's readout tokens.

Encoders: task tokens are the VLM's hidden states over the instruction alone (its language model
as Octo's T5 language encoder); image tokens are the VLM's vision path (``encode_image``: vision
tower + projector into the language width) per frame and camera, as Octo's per-frame image
tokenizers. Both are projected to the transformer width and tagged with learned embeddings.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from librobot.core.errors import SpecError
from librobot.models import create_action_head
from librobot.models.components.transformer import Transformer
from librobot.models.frameworks.base import AbstractVLA, backbone_frozen
from librobot.models.frameworks.inputs import VLAInputs
from librobot.models.frameworks.octo.config import OctoConfig


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
        self.head = create_action_head(
            c.head_type, **{"action_dim": c.action_dim, "horizon": c.horizon, "cond_dim": w, **c.head}
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
        """The transformer's outputs: ``task`` [B, Lt, W], ``obs`` [B, T, No, W], ``readouts`` [B, T, R, W]."""
        task, task_mask = self.task_tokens(inputs)
        obs, obs_mask = self.observation_tokens(inputs)
        b, steps, n_obs, w = obs.shape
        r, lt = self.config.num_readouts, task.shape[1]
        readouts = (self.readouts + self.time_pos[:, None]).expand(b, -1, -1, -1)
        frames = torch.cat([obs, readouts], dim=2)  # [B, T, No + R, W]
        x = torch.cat([task, frames.flatten(1, 2)], dim=1)
        dev = x.device
        t_ids = torch.arange(1, steps + 1, device=dev)[:, None]
        q_frames = t_ids.expand(steps, n_obs + r)
        kv_frames = torch.cat([t_ids.expand(steps, n_obs), torch.full((steps, r), steps + 1, device=dev)], dim=1)
        zeros = torch.zeros(lt, dtype=torch.long, device=dev)
        q_blocks = torch.cat([zeros, q_frames.flatten()])
        kv_blocks = torch.cat([zeros, kv_frames.flatten()])
        keep = torch.cat([obs_mask, torch.ones(b, steps, r, dtype=torch.bool, device=dev)], dim=2)
        padding = torch.cat([task_mask, keep.flatten(1)], dim=1)
        h = self.transformer(x, q_blocks=q_blocks, kv_blocks=kv_blocks, key_padding_mask=padding)
        out = h[:, lt:].view(b, steps, n_obs + r, w)
        return {"task": h[:, :lt], "obs": out[:, :, :n_obs], "readouts": out[:, :, n_obs:]}

    # ------------------------------------------------------------------ framework hooks
    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]:
        cond = self.encode(inputs)["readouts"][:, -1]
        return self.head(cond, inputs.actions, action_is_pad=inputs.action_is_pad)

    def sample_actions(self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        cond = self.encode(inputs)["readouts"][:, -1]
        return self.head.predict(cond, generator=generator, noise=noise)

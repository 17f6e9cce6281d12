"""Config of the Octo-style framework."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice, positive
from librobot.models.frameworks.config import VLAConfig

HEADS = ("diffusion", "ddpm", "ddim", "edm", "flow_matching", "mlp_resnet")
READOUT_ATTENTION = ("group", "none")


@dataclass
class OctoConfig(VLAConfig):
    """n_obs_steps: the history window T_obs (Octo uses 2); shorter histories are padded and the
    padded frames masked out. hidden_dim / depth / num_heads / mlp_ratio: the block-wise
    transformer. num_readouts: readout tokens per frame (Octo: 1). max_obs_tokens: size of the
    learned per-slot position table of a frame's observation tokens (cameras × image tokens + 1
    state token must fit); 0 = room for 4 cameras of the backbone's image tokens.

    readout_attention: "group" (Octo) — frame t's readouts attend to the task, the observations
    of frames <= t and the readouts of frame t; "none" — to no readout at all (this framework's
    first layout; policy folders saved before this option load with "group", set "none" to get
    their old outputs back). In both, nothing else attends to a readout.

    supervise_all_steps: True (Octo) — every frame t of the window predicts, from its own
    readouts, the chunk that starts at t, and the loss averages over all of them; False — only
    the last frame's readouts are trained. Inference always reads the last frame's readouts. With
    the batch contract's ``action`` [B, H, A] (the chunk from the latest frame), frame T-1-k has
    only the steps k..H-1 of its chunk in the batch, and only those are supervised; give
    ``action`` [B, T_obs-1+H, A] (the actions from the window's first frame, e.g. the dataset's
    ``delta_timestamps={"action": [(i - T_obs + 1) / fps for i in range(T_obs - 1 + H)]}``) and
    every frame is supervised on its whole chunk, as Octo. Frames before the episode start
    (``observation_is_pad`` in the batch, or a history shorter than T_obs) are not supervised.

    head_type: the diffusion head on the readouts. "diffusion" (the default: a DiT denoiser that
    cross-attends to the readout tokens, DDIM sampling) or "mlp_resnet" (Octo's: an MLP-ResNet on
    the mean-pooled readouts, DDPM with 20 steps; see ``head.py``); also "ddpm", "ddim", "edm",
    "flow_matching" (DiT variants). The DiT stays the default because its deterministic DDIM
    sampler exports to ONNX (Octo's ancestral DDPM draws fresh noise at every step, which the
    export refuses; ``head={"sampler": "ddim"}`` makes "mlp_resnet" exportable), because it learns
    faster in the short CPU budgets this project measures in (head alone on a fixed 4-sample batch,
    Adam 1e-3: ε-MSE 0.97 → 0.40 in 50 steps for the DiT, 1.00 → 0.93 for the MLP-ResNet, which
    needs ~300 steps to reach 0.41), and because the benchmark figures were measured with it.
    ``head`` overrides the head's config (the MLP-ResNet refuses the DiT's depth/num_heads)."""

    n_obs_steps: int = 2
    hidden_dim: int = 128
    depth: int = 3
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_readouts: int = 1
    max_obs_tokens: int = 0
    head_type: str = "diffusion"
    readout_attention: str = "group"
    supervise_all_steps: bool = True

    def validate(self) -> None:
        super().validate()
        name = "OctoConfig"
        positive(
            name,
            hidden_dim=self.hidden_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            num_readouts=self.num_readouts,
        )
        if not isinstance(self.max_obs_tokens, int) or self.max_obs_tokens < 0:
            raise ConfigError(f"{name}.max_obs_tokens must be an int >= 0 (0 = derived from the backbone)")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"{name}.hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})"
            )
        choice(name, "head_type", self.head_type, HEADS)
        choice(name, "readout_attention", self.readout_attention, READOUT_ATTENTION)
        if not isinstance(self.supervise_all_steps, bool):
            raise ConfigError(f"{name}.supervise_all_steps must be true or false, got {self.supervise_all_steps!r}")

"""Configs of the OpenVLA-style framework and its OFT variant."""

from __future__ import annotations

from dataclasses import dataclass

from librobot.core.errors import ConfigError
from librobot.models.action_heads.config import choice
from librobot.models.frameworks.config import VLAConfig

# The text the backbone gets for an instruction (see ``OpenVLAConfig.prompt``).
PROMPTS = {
    "openvla": "In: What action should the robot take to {instruction}?\nOut:",  # instruction lower-cased
    "instruction": "{instruction}",
}


@dataclass
class OpenVLAConfig(VLAConfig):
    """num_bins: uniform bins per action coordinate over [-1, 1] (OpenVLA: 256); the bins take the
    last ``num_bins`` non-special ids of the tokenizer's vocabulary. horizon: OpenVLA predicts one
    step (7 tokens); H > 1 writes the chunk as H·A tokens, time-major. prompt: "openvla" (OpenVLA's
    ``In: What action should the robot take to {instruction.lower()}?\nOut:``) or "instruction"
    (the instruction as given, the behaviour before issue 20). use_kv_cache: decode by extending the
    cached prompt (False: recompute the sequence at every token, the reference)."""

    horizon: int = 1
    num_bins: int = 256
    prompt: str = "openvla"
    use_kv_cache: bool = True

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ConfigError(f"OpenVLAConfig.num_bins must be an int >= 2, got {self.num_bins!r}")
        choice("OpenVLAConfig", "prompt", self.prompt, tuple(PROMPTS))


@dataclass
class OpenVLAOFTConfig(VLAConfig):
    """action_tokens: "per_dim" (H·A empty action embeddings, OFT's default) or "per_step" (H).
    mixer_depth: bidirectional transformer layers over the action positions' hidden states (see the
    model docstring: the backbone's suffix attention is causal). head_hidden_dim/head_blocks: the
    residual MLP (OFT's MLPResNet) regressing each step's A values. loss: "l1" (OFT) or "mse"."""

    horizon: int = 8
    action_tokens: str = "per_dim"
    mixer_depth: int = 1
    mixer_heads: int = 4
    head_hidden_dim: int = 256
    head_blocks: int = 2
    loss: str = "l1"

    def validate(self) -> None:
        super().validate()
        name = "OpenVLAOFTConfig"
        choice(name, "action_tokens", self.action_tokens, ("per_dim", "per_step"))
        choice(name, "loss", self.loss, ("l1", "mse"))
        for key in ("head_hidden_dim", "head_blocks", "mixer_heads"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) <= 0:
                raise ConfigError(f"{name}.{key} must be a positive int, got {getattr(self, key)!r}")
        if not isinstance(self.mixer_depth, int) or self.mixer_depth < 0:
            raise ConfigError(f"{name}.mixer_depth must be an int >= 0, got {self.mixer_depth!r}")

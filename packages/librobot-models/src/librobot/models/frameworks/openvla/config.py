"""Configs of the OpenVLA-style framework and its OFT variant."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


ACTION_ATTENTION = ("bidirectional", "causal")
# The options every OFT policy folder written before action_attention existed holds (save_pretrained
# writes the whole config): such a folder was trained with causal action slots.
SAVED_BEFORE_ACTION_ATTENTION = (
    "action_dim", "state_dim", "horizon", "n_obs_steps", "freeze_vlm", "head", "seed", "cameras",
    "action_tokens", "mixer_depth", "mixer_heads", "head_hidden_dim", "head_blocks", "loss",
)  # fmt: skip


@dataclass
class OpenVLAOFTConfig(VLAConfig):
    """action_tokens: "per_dim" (H·A empty action embeddings, OFT's default) or "per_step" (H).
    action_attention: "bidirectional" (OFT's parallel decoding: inside the backbone's language model
    the action slots form one block, each sees the prompt and every other slot) or "causal" (each
    slot sees the prompt and the earlier slots only; a folder saved before this option loads so).
    mixer_depth: bidirectional transformer layers over the action positions' hidden states after
    the backbone; None (default) = 0 with bidirectional attention (OFT has none, the slots already
    see each other) and 1 with causal attention (there it lets early slots see later ones).
    film: OFT+'s FiLM, the image tokens modulated by the prompt's mean embedding (see the model
    docstring for where). head_hidden_dim/head_blocks: the residual MLP (OFT's MLPResNet)
    regressing each step's A values. loss: "l1" (OFT) or "mse"."""

    horizon: int = 8
    action_tokens: str = "per_dim"
    action_attention: str = "bidirectional"
    mixer_depth: int | None = None
    mixer_heads: int = 4
    head_hidden_dim: int = 256
    head_blocks: int = 2
    loss: str = "l1"
    film: bool = False

    @property
    def mixer_layers(self) -> int:
        """The mixer's depth with ``None`` resolved by the action attention."""
        if self.mixer_depth is not None:
            return self.mixer_depth
        return 0 if self.action_attention == "bidirectional" else 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenVLAOFTConfig:
        """As ``VLAConfig.from_dict``; a saved config from before ``action_attention`` (every old
        option present, that one absent) keeps the causal attention it was trained with."""
        if "action_attention" not in data and all(key in data for key in SAVED_BEFORE_ACTION_ATTENTION):
            data = {**data, "action_attention": "causal"}  # a folder saved before the option: as it was trained
        return super().from_dict(data)

    def validate(self) -> None:
        super().validate()
        name = "OpenVLAOFTConfig"
        choice(name, "action_tokens", self.action_tokens, ("per_dim", "per_step"))
        choice(name, "action_attention", self.action_attention, ACTION_ATTENTION)
        choice(name, "loss", self.loss, ("l1", "mse"))
        for key in ("head_hidden_dim", "head_blocks", "mixer_heads"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) <= 0:
                raise ConfigError(f"{name}.{key} must be a positive int, got {getattr(self, key)!r}")
        depth = self.mixer_depth
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
            raise ConfigError(
                f"{name}.mixer_depth must be an int >= 0, or null to follow action_attention, got {depth!r}"
            )
        if not isinstance(self.film, bool):
            raise ConfigError(f"{name}.film must be true or false (OFT+'s FiLM on the image tokens), got {self.film!r}")

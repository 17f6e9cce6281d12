"""Config of the RT-2-style framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from librobot.core.errors import ConfigError
from librobot.models.frameworks.config import VLAConfig


@dataclass
class RT2Config(VLAConfig):
    """tokenizer: "uniform" (``num_bins`` equal bins per coordinate over [-1, 1], H·A tokens, RT-2's
    scheme) or a registered action tokenizer such as "fast" (DCT + BPE, from librobot-data; variable
    length, ended by an end-of-action token). A fitted tokenizer is passed as ``tokenizer=<object>``
    and kept here as its name + ``tokenizer_state``; ``tokenizer_kwargs`` build an unfitted one.
    max_tokens: longest FAST sequence (default H·A), without the end token.
    reserved_start: first vocabulary id of the action tokens; set when the policy is built (the
    backbone's vocabulary grows by the action tokens) and saved, so loading does not grow it again.
    use_kv_cache: decode by extending the cached prompt (False: recompute, the reference)."""

    horizon: int = 1
    tokenizer: str = "uniform"
    num_bins: int = 256
    tokenizer_state: dict[str, Any] | None = None
    tokenizer_kwargs: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None
    reserved_start: int | None = None
    use_kv_cache: bool = True

    def validate(self) -> None:
        super().validate()
        name = "RT2Config"
        if not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ConfigError(f"{name}.num_bins must be an int >= 2, got {self.num_bins!r}")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens <= 0):
            raise ConfigError(f"{name}.max_tokens must be a positive int or None, got {self.max_tokens!r}")
        if self.reserved_start is not None and (not isinstance(self.reserved_start, int) or self.reserved_start < 0):
            raise ConfigError(f"{name}.reserved_start must be an int >= 0 or None, got {self.reserved_start!r}")
        if not isinstance(self.tokenizer, str) or not self.tokenizer:
            raise ConfigError(
                f"{name}.tokenizer must be 'uniform' or a registered tokenizer name, got {self.tokenizer!r}"
            )
        if not isinstance(self.tokenizer_kwargs, dict) or (
            self.tokenizer_state is not None and not isinstance(self.tokenizer_state, dict)
        ):
            raise ConfigError(
                f"{name}.tokenizer_kwargs and tokenizer_state must be dicts (tokenizer_state may be None)"
            )

"""HelixRunner: the two systems of a Helix-style policy at their two rates.

System 2 (the VLM) runs on the first step and then every ``s2_every_k`` control steps; system 1
runs at every step on the latest latent. Over N steps that is ceil(N / k) S2 calls and N S1 calls;
with k = 1 every step equals ``predict_action``. Synchronous on purpose: the latent a step uses
is fully determined by the step count, so rollouts are reproducible (an asynchronous S2 thread
would make it depend on timing).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from librobot.core.errors import ConfigError
from librobot.models.frameworks.helix.model import HelixStyle


class HelixRunner:
    def __init__(self, policy: HelixStyle, s2_every_k: int = 10) -> None:
        if not isinstance(policy, HelixStyle):
            raise ConfigError(f"HelixRunner drives a Helix-style policy, got {type(policy).__name__}")
        if not isinstance(s2_every_k, int) or isinstance(s2_every_k, bool) or s2_every_k < 1:
            raise ConfigError(
                f"s2_every_k must be a positive int (control steps per system-2 call), got {s2_every_k!r}"
            )
        self.policy, self.s2_every_k = policy, s2_every_k
        self.reset()

    def reset(self) -> None:
        """Start a new episode: the next step runs system 2."""
        self.steps = 0
        self.s2_calls = 0
        self.s1_calls = 0
        self.latent: Tensor | None = None

    def step(
        self,
        images: Any,
        text: Any = None,
        proprioception: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """One control step: an action chunk [B, H, A] in robot units."""
        if self.latent is None or self.steps % self.s2_every_k == 0:
            self.latent = self.policy.system2(images, text)
            self.s2_calls += 1
        actions = self.policy.system1(images, proprioception, self.latent, generator=generator, noise=noise)
        self.s1_calls += 1
        self.steps += 1
        return actions

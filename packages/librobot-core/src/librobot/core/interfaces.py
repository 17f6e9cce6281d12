"""Torch-free contracts for the project's component kinds.

Implementations in librobot-models/data/serve combine these with ``torch.nn.Module`` (e.g.
``class MyVLM(nn.Module, VLMInterface)``); torch types appear only under TYPE_CHECKING, so importing
this module never imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from librobot.core.specs import BoxSpace, FeatureSpec


class VLMInterface(ABC):
    """A vision-language backbone: images + text → token hidden states and their mask."""

    # The parts ``freeze``/``unfreeze`` accept; families name theirs (vision, language, projector).
    parts: tuple[str, ...] = ("vision", "language", "projector")

    @abstractmethod
    def forward(self, images: torch.Tensor | None, text: Sequence[str] | None, **kwargs: Any) -> Any:
        """Return an output with ``hidden_states`` [B, L, D] and ``attention_mask`` [B, L]."""

    @abstractmethod
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Image tokens [B, N, D] in the language model's embedding space."""

    @abstractmethod
    def encode_text(self, text: Sequence[str]) -> torch.Tensor:
        """Text token embeddings [B, L, D]."""

    @abstractmethod
    def get_embedding_dim(self) -> int:
        """D, the width of the hidden states."""

    @abstractmethod
    def freeze(self, *parts: str) -> None:
        """Stop gradients to the named parts (all parts when none are named)."""

    @abstractmethod
    def unfreeze(self, *parts: str) -> None:
        """Let gradients reach the named parts again (all parts when none are named)."""

    @property
    @abstractmethod
    def config(self) -> Mapping[str, Any]:
        """A JSON-able description that rebuilds this backbone."""


class ActionHeadInterface(ABC):
    """Maps a conditioning tensor to an action chunk [B, H, A]."""

    @abstractmethod
    def forward(self, cond: torch.Tensor, actions: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Training: return at least ``{"loss": scalar}``, plus named loss terms."""

    @abstractmethod
    def predict(self, cond: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Inference: an action chunk [B, H, A]."""


class EncoderInterface(ABC):
    """Encodes one modality (state, history, fused features) to ``output_dim`` features."""

    @property
    @abstractmethod
    def output_dim(self) -> int: ...

    @abstractmethod
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor: ...


class VLAInterface(ABC):
    """A complete policy: ``vla(images, text, proprioception, actions)`` → dict with ``loss``."""

    @abstractmethod
    def forward(
        self,
        images: torch.Tensor | Mapping[str, Any] | None,
        text: Sequence[str] | str | None = None,
        proprioception: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def predict_action(
        self,
        images: torch.Tensor | Mapping[str, Any] | None,
        text: Sequence[str] | str | None = None,
        proprioception: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """An action chunk [B, H, A] in the robot's (un-normalised) units."""

    @abstractmethod
    def freeze_backbone(self) -> None: ...

    @abstractmethod
    def unfreeze_backbone(self) -> None: ...

    @abstractmethod
    def get_num_parameters(self, trainable_only: bool = False) -> int: ...

    @abstractmethod
    def save_pretrained(self, directory: str) -> None: ...

    @classmethod
    @abstractmethod
    def from_pretrained(cls, directory: str, **kwargs: Any) -> VLAInterface: ...


class DatasetInterface(ABC):
    """Frames of demonstration episodes, returned as batch-contract dicts (without batch axis)."""

    @property
    @abstractmethod
    def features(self) -> Mapping[str, FeatureSpec]: ...

    @property
    @abstractmethod
    def fps(self) -> float: ...

    @property
    @abstractmethod
    def num_episodes(self) -> int: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]: ...


class RobotInterface(ABC):
    """A robot (real or simulated) with named, bounded action and state spaces."""

    name: str

    @property
    @abstractmethod
    def action_space(self) -> BoxSpace: ...

    @property
    @abstractmethod
    def state_space(self) -> BoxSpace: ...

    @property
    @abstractmethod
    def control_hz(self) -> float: ...

    @property
    def cameras(self) -> Sequence[str]:
        return ()

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None: ...

    @abstractmethod
    def get_observation(self) -> dict[str, np.ndarray]:
        """Latest observation: ``observation.state`` and ``observation.images.<camera>``."""

    @abstractmethod
    def send_action(self, action: np.ndarray) -> None:
        """Command one action (robot units). Callers go through the safety layer first."""

    def safe_action(self) -> np.ndarray:
        """The command that brings the robot to rest (used by watchdogs and e-stops)."""
        import numpy as np

        return np.clip(np.zeros(self.action_space.dim), self.action_space.low_array, self.action_space.high_array)


class PolicyInterface(ABC):
    """What a runtime needs from a policy, wherever it runs (torch, ONNX, a remote server)."""

    @property
    @abstractmethod
    def action_dim(self) -> int: ...

    @property
    @abstractmethod
    def chunk_size(self) -> int: ...

    @property
    def obs_horizon(self) -> int:
        """T_obs: observation frames per request. With T_obs > 1 every ``observation.*`` value of a
        request carries a leading time axis [T_obs, ...], oldest first (a runtime keeps the history)."""
        return 1

    @abstractmethod
    def predict_chunk(self, observation: Mapping[str, Any], task: str | None = None) -> np.ndarray:
        """One action chunk [H, A] for one observation (no batch axis), in robot units."""

    def reset(self) -> None:  # noqa: B027 - optional hook: stateless policies need nothing
        """Forget any internal state between episodes."""


class PolicyRuntimeInterface(ABC):
    """Drives a robot from a policy at a fixed rate (action buffering, chunk execution)."""

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def step(self, observation: Mapping[str, Any]) -> np.ndarray:
        """The next action to command for this control tick."""


class ActionTokenizerInterface(ABC):
    """Continuous action chunks ↔ discrete token ids (uniform bins, FAST DCT+BPE…), numpy only.

    Token ids are in ``[0, vocab_size)``; a model maps them into its own vocabulary with an offset.
    """

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, actions: np.ndarray) -> list[list[int]]:
        """Actions [N, H, A] (normalised to [-1, 1]) → one token list per chunk (lengths may differ)."""

    @abstractmethod
    def decode(self, tokens: Sequence[Sequence[int]], horizon: int, action_dim: int) -> np.ndarray:
        """Token lists → actions [N, horizon, action_dim]; malformed lists decode to a best effort."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (bins, DCT scale, BPE merges…) that ``from_dict`` rebuilds exactly."""

    @classmethod
    @abstractmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ActionTokenizerInterface: ...

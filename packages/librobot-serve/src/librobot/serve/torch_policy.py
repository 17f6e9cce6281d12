"""An in-process torch VLA (librobot-models) behind ``PolicyInterface``.

Observations are single frames without batch axis, as a robot or simulator produces them:
``observation.state`` [S] and ``observation.images.<camera>`` as uint8 [H, W, C] (or [C, H, W]) or
float [C, H, W] in [0, 1]. ``predict_chunks`` takes the same keys stacked on a leading batch axis,
so a server's dynamic batcher or a vectorised evaluator makes one forward pass for many requests.
A policy whose state joins several observation vectors (its config's ``state_parts``) takes them
as separate keys, or ``observation.state`` already joined (``librobot.core.observations``).
torch and librobot-models are imported only when a policy is built (extra: librobot-serve[export]).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from librobot.core import batch as B
from librobot.core.errors import SpecError
from librobot.core.extras import require
from librobot.core.interfaces import PolicyInterface
from librobot.core.observations import StatePart, canonical_observation, parse_state_parts


def _image_batch(torch: Any, frames: np.ndarray, key: str) -> Any:
    """[N, (T,) H, W, C] uint8 / [N, (T,) C, H, W] uint8 or float → float [N, (T,) C, H, W] in [0, 1]."""
    array = np.asarray(frames)
    if array.ndim not in (4, 5):
        raise SpecError(
            f"'{key}': expected one frame ([H, W, C] or [C, H, W]) or a history [T, ...] per request, "
            f"got batch shape {array.shape}"
        )
    if array.shape[-1] in (1, 3) and array.shape[-3] not in (1, 3):
        array = np.moveaxis(array, -1, -3)
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.dtype == torch.uint8:
        return tensor.float().div_(255.0)
    if not tensor.is_floating_point():
        raise SpecError(f"'{key}': images must be uint8 or float in [0, 1], got {array.dtype}")
    return tensor.float()


class TorchPolicy(PolicyInterface):
    """Wraps an ``AbstractVLA``; ``task`` is the default instruction when a request carries none.

    ``precision``: "fp32" (the default in Python: exact and the same on every machine), "bf16"/"fp16", or
    "auto" (bf16 on CPUs with AMX/AVX512-BF16 and on bf16 GPUs, else fp32; ``librobot.core.hardware``).
    A reduced precision stores the model's linear/conv weights in that dtype, in place, and runs
    under autocast (``librobot.models.components.precision``); chunks come back as float32.
    """

    thread_safe = False

    def __init__(
        self, model: Any, *, task: str | None = None, device: str | None = None, precision: str = "fp32"
    ) -> None:
        self.torch = require("torch", extra="librobot-serve[export]", purpose="running torch policies")
        from librobot.models.components.precision import InferencePrecision

        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.precision = InferencePrecision(precision, next(self.model.parameters()).device)
        self.precision.prepare(self.model)
        self.task = task

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        task: str | None = None,
        device: str = "cpu",
        trust_remote_code: bool = False,
        precision: str = "fp32",
    ) -> TorchPolicy:
        """A policy folder as a policy; ``precision="auto"`` runs it the fastest way this machine
        allows (the default of ``librobot serve`` and ``librobot eval``)."""
        require("librobot.models", extra="librobot-serve[export]", purpose="loading torch policies")
        from librobot.models.frameworks.base import AbstractVLA

        model = AbstractVLA.from_pretrained(directory, device=device, trust_remote_code=trust_remote_code)
        return cls(model, task=task, precision=precision)

    @property
    def action_dim(self) -> int:
        return int(self.model.action_dim)

    @property
    def chunk_size(self) -> int:
        return int(self.model.horizon)

    @property
    def execution(self) -> dict[str, Any]:
        """The execution the model recommends (``AbstractVLA.execution``; ACT's temporal ensembling)."""
        return dict(getattr(self.model, "execution", None) or {})

    @property
    def state_parts(self) -> tuple[StatePart, ...]:
        """The observation vectors the model's state joins, in order (``()``: observation.state as sent)."""
        return parse_state_parts(getattr(self.model.config, "state_parts", None), where="policy config state_parts")

    @property
    def obs_horizon(self) -> int:
        """The observation window the model was trained on (requests then carry [T_obs, ...])."""
        return int(getattr(self.model.config, "n_obs_steps", 1) or 1)

    def predict_chunk(
        self, observation: Mapping[str, Any], task: str | None = None, *, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """One chunk [H, A]; ``noise`` [H, A] fixes the sampler's initial draw (as an ONNX export takes it)."""
        observation = canonical_observation(observation, self.state_parts)  # errors then show the sent shapes
        batched = {k: np.asarray(v)[None] for k, v in observation.items() if k.startswith(B.OBS_PREFIX)}
        stacked_noise = None if noise is None else np.asarray(noise)[None]
        return self.predict_chunks(batched, [task] if task is not None else None, noise=stacked_noise)[0]

    def predict_chunks(
        self,
        observations: Mapping[str, Any],
        tasks: Sequence[str | None] | None = None,
        *,
        noise: np.ndarray | None = None,
        **_: Any,
    ) -> np.ndarray:
        """Chunks [N, H, A] for N observations stacked on axis 0 (``noise`` [N, H, A] optional); with
        ``obs_horizon`` > 1 each observation carries its history [N, T_obs, ...]."""
        torch = self.torch
        device = next(self.model.parameters()).device
        observations = canonical_observation(observations, self.state_parts)
        sizes = {k: len(v) for k, v in observations.items() if k.startswith(B.OBS_PREFIX)}
        if not sizes or len(set(sizes.values())) > 1:
            raise SpecError(f"observations need the same number of requests per key, got {sizes}")
        n = next(iter(sizes.values()))
        images = {
            B.camera_of(k): _image_batch(torch, v, k).to(device)
            for k, v in sorted(observations.items())
            if k.startswith(B.OBS_IMAGES + ".")
        }
        state = observations.get(B.OBS_STATE)
        proprio = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=device) if state is not None else None
        texts = [t if t is not None else self.task for t in (tasks or [None] * n)]
        if any(t is None for t in texts):
            raise SpecError("a request has no task instruction and the policy was built without a default task")
        initial = None if noise is None else torch.as_tensor(np.asarray(noise), dtype=torch.float32, device=device)
        with torch.no_grad(), self.precision.autocast():
            chunk = self.model.predict_action(images or None, list(texts), proprio, noise=initial)
        return chunk.float().cpu().numpy()

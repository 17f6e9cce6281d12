"""In-graph normalisation of states and actions from dataset statistics.

Reads the JSON state of librobot-data's NormalizationProcessor (``{"format": "librobot-normalizer",
"features": {key: {"mode", "clamp", "center", "scale"}}}``) into buffers, so a policy normalises its
inputs and un-normalises its actions inside its own graph: saved with the weights, exported to
ONNX with them, and identical wherever it runs. Features without statistics pass through.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from librobot.core.errors import ConfigError, SpecError

FORMAT = "librobot-normalizer"


def _buffer_name(key: str) -> str:
    return key.replace(".", "__")


class Normalizer(nn.Module):
    """y = (x − center) / scale per feature (optionally clamped to [−1, 1]); x = y · scale + center."""

    def __init__(self, dims: Mapping[str, int]) -> None:
        super().__init__()
        self.dims = dict(dims)
        self.modes: dict[str, str] = {}
        self.clamps: dict[str, bool] = {}
        for key, dim in self.dims.items():
            self.register_buffer(f"{_buffer_name(key)}__center", torch.zeros(dim))
            self.register_buffer(f"{_buffer_name(key)}__scale", torch.ones(dim))
            self.modes[key], self.clamps[key] = "identity", False

    def load_stats(self, state: Mapping[str, Any]) -> None:
        """Take the statistics of a NormalizationProcessor ``to_dict()`` (other features are ignored)."""
        if state.get("format") != FORMAT:
            raise ConfigError(f"normalisation state has format {state.get('format')!r}, expected {FORMAT!r}")
        for key, item in state.get("features", {}).items():
            if key not in self.dims:
                continue
            mode = item.get("mode", "identity")
            if mode == "identity":
                self.modes[key], self.clamps[key] = mode, False
                continue
            center = torch.as_tensor(item["center"], dtype=torch.float32).flatten()
            scale = torch.as_tensor(item["scale"], dtype=torch.float32).flatten()
            if center.numel() != self.dims[key] or scale.numel() != self.dims[key]:
                raise SpecError(
                    f"normalisation stats for '{key}' have {center.numel()} values; the policy's {key} has {self.dims[key]}"
                )
            if not bool((scale > 0).all()):
                raise SpecError(f"normalisation scale of '{key}' must be > 0 everywhere")
            getattr(self, f"{_buffer_name(key)}__center").copy_(center)
            getattr(self, f"{_buffer_name(key)}__scale").copy_(scale)
            self.modes[key], self.clamps[key] = mode, bool(item.get("clamp", False))

    def state(self) -> dict[str, Any]:
        """The statistics in the processor's JSON format (what ``load_stats`` reads back)."""
        features: dict[str, Any] = {}
        for key in self.dims:
            item: dict[str, Any] = {"mode": self.modes[key], "clamp": self.clamps[key]}
            if self.modes[key] != "identity":
                item["center"] = getattr(self, f"{_buffer_name(key)}__center").tolist()
                item["scale"] = getattr(self, f"{_buffer_name(key)}__scale").tolist()
            features[key] = item
        return {"format": FORMAT, "version": 1, "features": features}

    def _affine(self, key: str) -> tuple[Tensor, Tensor]:
        return getattr(self, f"{_buffer_name(key)}__center"), getattr(self, f"{_buffer_name(key)}__scale")

    def normalize(self, key: str, x: Tensor) -> Tensor:
        if self.modes.get(key, "identity") == "identity":
            return x
        center, scale = self._affine(key)
        y = (x - center.to(x.dtype)) / scale.to(x.dtype)
        return y.clamp(-1.0, 1.0) if self.clamps[key] else y

    def unnormalize(self, key: str, y: Tensor) -> Tensor:
        if self.modes.get(key, "identity") == "identity":
            return y
        center, scale = self._affine(key)
        return y * scale.to(y.dtype) + center.to(y.dtype)

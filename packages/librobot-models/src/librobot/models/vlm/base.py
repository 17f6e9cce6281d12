"""AbstractVLM: the torch side of ``VLMInterface`` shared by every backbone, and its output type.

Contract (all backbones, including the built-in tiny VLM and the pretrained-small one):

``vlm(images, text, *, suffix_embeds=None, suffix_mask=None, return_kv=False) -> VLMOutput``

- ``images``: float [B, C, H, W] or [B, N, C, H, W] (N images per sample, e.g. cameras) in [0, 1],
  uint8 in [0, 255], a list of [B, C, H, W] tensors or a {camera: tensor} mapping; ``None`` for text only.
- ``text``: ``list[str]`` of length B (a single ``str`` is used for every sample).
- ``suffix_embeds`` [B, S, D]: extra input embeddings appended after the prefix in the same pass
  (π0 training: prefix + action tokens at once). They see the whole prefix and earlier suffix
  tokens; the prefix never sees them. ``extend(prefix_kv, suffix_embeds)`` gives the same result
  from a cached prefix.
- ``VLMOutput.hidden_states`` [B, L(+S), D], ``attention_mask`` [B, L(+S)] bool (left-padded prefix),
  ``image_mask`` [B, L(+S)] bool, ``prefix_kv`` (a ``PrefixKV``) when ``return_kv=True``.
- ``prefix_attention``: only where ``prefix_attention_modes`` lists more than the backbone's own;
  e.g. "bidirectional" on a causal transformers backbone (π0's prefix-LM).
- ``suffix_attention``: only where the backbone has ``suffix_attention_modes`` (every built-in one):
  "causal" (the default above) or "bidirectional": the suffix is one block, each suffix token sees
  all the others (OpenVLA-OFT's parallel action slots); the prefix still never sees the suffix.
  ``extend`` stays causal.
- ``modulate_images(image_tokens [B, N·T, D], text [B, D]) -> [B, N·T, D]``: where the backbone
  says ``takes_modulate_images`` (every built-in one), rewrites the image tokens before they enter
  the language model, given the mean input embedding of the prompt's non-image tokens
  (``text_mean``; OpenVLA-OFT+'s FiLM).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from librobot.core.errors import ConfigError, SpecError
from librobot.core.interfaces import VLMInterface
from librobot.models.components.capture import exporting
from librobot.models.vlm.kv_cache import KVLayout, PrefixKV


@dataclass
class VLMOutput:
    """What every backbone's forward returns."""

    hidden_states: torch.Tensor  # [B, L, D]; padded positions are zero
    attention_mask: torch.Tensor  # [B, L] bool, True = real token
    image_mask: torch.Tensor  # [B, L] bool, True = token holding image features
    prefix_kv: PrefixKV | None = None
    num_prefix_tokens: int = 0  # L of the prefix; suffix tokens (if any) follow it

    def __getitem__(self, key: str) -> Any:  # dict-style access for code written against HF outputs
        return getattr(self, key)

    @property
    def suffix_hidden_states(self) -> torch.Tensor:
        return self.hidden_states[:, self.num_prefix_tokens :]


class ParameterGroup(nn.Module):
    """Loose parameters (view or modality embeddings) presented as a module, so a part listed in
    ``part_modules`` can include them and freeze/unfreeze reach them."""

    def __init__(self, *params: nn.Parameter) -> None:
        super().__init__()
        self._held = list(params)

    def parameters(self, recurse: bool = True):  # type: ignore[override]
        return iter(self._held)


class AbstractVLM(nn.Module, VLMInterface):
    """Base class of all VLM backbones (see the module docstring for the call contract)."""

    parts: tuple[str, ...] = ("vision", "projector", "language")

    # ------------------------------------------------------------------ to implement
    def part_modules(self) -> dict[str, list[nn.Module]]:
        """Part name → the modules that make it up (used by freeze/unfreeze)."""
        raise NotImplementedError

    @property
    def kv_layout(self) -> KVLayout:
        raise NotImplementedError

    @property
    def prefix_attention_modes(self) -> tuple[str, ...]:
        """How this backbone can run its prefix: its own attention first, then any other that
        ``forward(..., prefix_attention=...)`` accepts (the transformers wrappers: ``hf_base.py``)."""
        return (self.kv_layout.prefix_attention,)

    def extend(
        self,
        prefix_kv: PrefixKV,
        suffix_embeds: torch.Tensor,
        suffix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
    ) -> VLMOutput:
        """Run suffix embeddings through the language layers, attending to a cached prefix. With
        ``return_kv`` the output's ``prefix_kv`` is the cache grown by the suffix (``PrefixKV.appended``),
        so autoregressive decoding extends one new token at a time."""
        raise NotImplementedError

    # ------------------------------------------------------------------ interface helpers
    def get_embedding_dim(self) -> int:
        return self.embedding_dim

    @property
    def embedding_dim(self) -> int:
        return self.kv_layout.hidden_size

    def _check_parts(self, parts: Iterable[str]) -> list[str]:
        names = list(parts) or list(self.parts)
        unknown = [p for p in names if p not in self.parts]
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} has no part(s) {unknown}; freeze/unfreeze accept: {', '.join(self.parts)}"
            )
        return names

    def _set_trainable(self, parts: Iterable[str], flag: bool) -> None:
        parts = list(parts)
        if not parts:  # the whole backbone: every parameter, also ones no part lists
            for param in self.parameters():
                param.requires_grad_(flag)
            return
        modules = self.part_modules()
        for name in self._check_parts(parts):
            for module in modules.get(name, []):
                for param in module.parameters():
                    param.requires_grad_(flag)

    def freeze(self, *parts: str) -> None:
        self._set_trainable(parts, False)

    def unfreeze(self, *parts: str) -> None:
        self._set_trainable(parts, True)

    def get_num_parameters(self, trainable_only: bool = False, part: str | None = None) -> int:
        if part is not None:
            params = {id(p): p for m in self.part_modules()[self._check_parts([part])[0]] for p in m.parameters()}
            values: Iterable[nn.Parameter] = params.values()
        else:
            values = self.parameters()
        return sum(p.numel() for p in values if p.requires_grad or not trainable_only)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p for p in self.parameters() if p.is_floating_point()).dtype

    # ------------------------------------------------------------------ input validation
    def _views(self, images: Any) -> list[torch.Tensor]:
        """Images → a list of N float [B, C, H, W] tensors in [0, 1] (one per view/camera)."""
        return normalize_images(images, type(self).__name__)

    def _texts(self, text: Any, batch_size: int | None) -> list[str]:
        return normalize_text(text, batch_size, type(self).__name__)

    def _check_suffix(
        self, suffix_embeds: torch.Tensor, suffix_mask: torch.Tensor | None, batch_size: int
    ) -> torch.Tensor:
        if not isinstance(suffix_embeds, torch.Tensor) or suffix_embeds.ndim != 3:
            raise SpecError(f"suffix_embeds must be a [B, S, D] tensor, got {_describe(suffix_embeds)}")
        b, s, d = suffix_embeds.shape
        if b != batch_size or d != self.embedding_dim:
            raise SpecError(
                f"suffix_embeds is [{b}, {s}, {d}]; this backbone needs [B={batch_size}, S, D={self.embedding_dim}]"
            )
        if suffix_mask is None:
            return torch.ones(b, s, dtype=torch.bool, device=suffix_embeds.device)
        if tuple(suffix_mask.shape) != (b, s):
            raise SpecError(f"suffix_mask is {tuple(suffix_mask.shape)}, expected [B, S] = [{b}, {s}]")
        return suffix_mask.to(suffix_embeds.device).bool()


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def normalize_images(images: Any, owner: str = "VLM") -> list[torch.Tensor]:
    """Validate images and return a list of float [B, 3, H, W] tensors in [0, 1], one per view."""
    if isinstance(images, Mapping):
        views = list(images.values())
    elif isinstance(images, torch.Tensor):
        if images.ndim == 4:
            views = [images]
        elif images.ndim == 5:
            views = list(images.unbind(1))
        else:
            raise SpecError(f"{owner}: images must be [B, C, H, W] or [B, N, C, H, W], got shape {tuple(images.shape)}")
    elif isinstance(images, Sequence) and images and all(isinstance(v, torch.Tensor) for v in images):
        views = list(images)
    else:
        raise SpecError(
            f"{owner}: images must be a tensor, a list of [B, C, H, W] tensors or a camera → tensor mapping; "
            f"got {_describe(images)}"
        )
    if not views:
        raise SpecError(f"{owner}: no images were given; pass images=None for text-only input")
    out = []
    batch = None
    for i, view in enumerate(views):
        if not isinstance(view, torch.Tensor) or view.ndim != 4:
            raise SpecError(f"{owner}: image view {i} must be a [B, C, H, W] tensor, got {_describe(view)}")
        if view.shape[1] == 1:
            view = view.expand(-1, 3, -1, -1)
        if view.shape[1] != 3:
            raise SpecError(
                f"{owner}: image view {i} has {view.shape[1]} channels at dim 1 (shape {tuple(view.shape)}); "
                f"images are channels-first [B, 3, H, W] (permute HWC images with .permute(0, 3, 1, 2))"
            )
        if batch is None:
            batch = view.shape[0]
        elif view.shape[0] != batch:
            raise SpecError(f"{owner}: image views have different batch sizes ({batch} and {view.shape[0]})")
        if view.dtype == torch.uint8:
            view = view.float() / 255.0
        elif not view.is_floating_point():
            raise SpecError(f"{owner}: images must be float in [0, 1] or uint8, got dtype {view.dtype}")
        elif not exporting():  # value checks read data: skipped while a graph is captured (ONNX export)
            if not torch.isfinite(view).all():
                raise SpecError(f"{owner}: image view {i} contains NaN or inf")
            lo, hi = float(view.min()), float(view.max())
            if lo < -1e-3 or hi > 1.0 + 1e-3:
                raise SpecError(
                    f"{owner}: float images must lie in [0, 1], view {i} spans [{lo:.3g}, {hi:.3g}]; "
                    f"divide 0-255 images by 255 (normalisation is done inside the backbone)"
                )
        out.append(view)
    return out


def normalize_text(text: Any, batch_size: int | None, owner: str = "VLM") -> list[str]:
    """``str`` → repeated for the batch; ``None`` → empty strings; a list must have B strings."""
    if text is None:
        return [""] * (batch_size or 1)
    if isinstance(text, str):
        return [text] * (batch_size or 1)
    if not isinstance(text, Sequence) or not all(isinstance(t, str) for t in text):
        raise SpecError(f"{owner}: text must be a string or a list of strings, got {type(text).__name__}")
    if batch_size is not None and len(text) != batch_size:
        raise SpecError(
            f"{owner}: {len(text)} text prompts for a batch of {batch_size} images; pass one string per sample"
        )
    if not text:
        raise SpecError(f"{owner}: text is an empty list; pass one string per sample")
    return list(text)


def text_mean(embeds: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """Mean [B, D] of the embeddings where ``text_mask`` [B, L] is True (a row with none gives 0)."""
    weights = text_mask.to(embeds.dtype).unsqueeze(-1)
    return (embeds * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def count_parameters(module: nn.Module) -> int:
    """Distinct parameters (tied weights once), as published parameter counts are reported."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())

"""What Qwen2-VL, Qwen2.5-VL and Qwen3-VL share: flat-patch vision input, M-RoPE positions.

Images are resized to ``image_size`` (a multiple of patch × merge; 224 by default → 64 tokens at
patch 14 / 8×8 merged units), cut into the flat patches the Qwen vision towers take, and each view's
block in the prompt is ``<|vision_start|> <|image_pad|>×T <|vision_end|>``; the instruction follows.
Positions are the 3-row M-RoPE index computed by the model's own ``get_rope_index``; a suffix
continues at max(prefix position) + 1 on all three rows, as generation does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from librobot.core.errors import ConfigError
from librobot.models.vlm.hf_base import HFVLM, modules_except
from librobot.models.vlm.preprocess import CLIP_MEAN, CLIP_STD, qwen_patchify

QWEN_SPECIALS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


def qwen_token_ids(tokenizer: Any) -> dict[str, int]:
    """Structure-token ids of a generated tokenizer, for random-weight configs."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    return {
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
    }


def special_ids(tokenizer: Any) -> dict[str, int]:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


class QwenVLBase(HFVLM):
    specials: ClassVar[tuple[str, ...]] = QWEN_SPECIALS
    image_mean = CLIP_MEAN
    image_std = CLIP_STD
    position_scheme = "mrope"
    default_size: ClassVar[int] = 224

    def default_image_size(self) -> tuple[int, int]:
        return (self.default_size, self.default_size)

    def _check_image_size(self, size: tuple[int, int]) -> None:
        vc = self.hf.config.vision_config
        unit = vc.patch_size * vc.spatial_merge_size
        if size[0] % unit or size[1] % unit:
            raise ConfigError(
                f"{self.variant}: image_size {tuple(size)} must be a multiple of patch_size × spatial_merge_size "
                f"= {unit} (e.g. {unit * (size[0] // unit or 1)})"
            )

    def tokens_per_view(self) -> int:
        vc = self.hf.config.vision_config
        unit = vc.patch_size * vc.spatial_merge_size
        return (self.image_size[0] // unit) * (self.image_size[1] // unit)

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        vc = self.hf.config.vision_config
        patches, grid = qwen_patchify(pixels, vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size)
        out = self.hf.model.get_image_features(pixel_values=patches.to(self.dtype), image_grid_thw=grid)
        feats = torch.cat(out.pooler_output, dim=0).reshape(pixels.shape[0], self.tokens_per_view(), -1)
        extras: dict[str, Any] = {"grid_thw": grid}
        deepstack = getattr(out, "deepstack_features", None)
        if deepstack:
            extras["deepstack"] = [torch.cat(level, dim=0) for level in deepstack]
        return feats, extras

    def _prompt(self, text_ids: list[int], num_views: int) -> list[int]:
        cfg = self.hf.config
        block = [cfg.vision_start_token_id] + [cfg.image_token_id] * self.tokens_per_view() + [cfg.vision_end_token_id]
        return block * num_views + list(text_ids)

    def _positions(self, ids, mask, image_mask, extras) -> torch.Tensor:
        if "grid_thw" not in extras:  # text only: plain positions on all three rows
            return super()._positions(ids, mask, image_mask, extras)[None].expand(3, -1, -1)
        positions, _ = self.hf.model.get_rope_index(
            input_ids=ids,
            mm_token_type_ids=image_mask.int(),
            image_grid_thw=extras["grid_thw"],
            attention_mask=mask.long(),
        )
        return positions

    def _suffix_positions(self, next_position: torch.Tensor, length: int) -> torch.Tensor:
        return super()._suffix_positions(next_position, length)[None].expand(3, -1, -1)

    def _language(self, embeds, mask, positions, cache, use_cache, extras) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {}
        if extras.get("deepstack") is not None:  # Qwen3-VL adds mid-tower features in the first layers
            s = extras.get("suffix_length", 0)
            image_mask = extras["image_mask"]
            if s:
                image_mask = torch.cat([image_mask, image_mask.new_zeros(image_mask.shape[0], s)], dim=1)
            kwargs = {"visual_pos_masks": image_mask, "deepstack_visual_embeds": extras["deepstack"]}
        out = self.hf.model.language_model(
            inputs_embeds=embeds,
            attention_mask=self._attention_mask(mask, extras),
            position_ids=positions,
            past_key_values=cache,
            use_cache=use_cache,
            **kwargs,
        )
        return out.last_hidden_state, out.past_key_values

    def prepare_prefix(self, images: Any, text: Any, modulate_images: Any = None) -> dict[str, Any]:
        prefix = super().prepare_prefix(images, text, modulate_images)
        prefix["extras"]["image_mask"] = prefix["image_mask"]
        return prefix

    def part_modules(self) -> dict[str, list[nn.Module]]:
        visual = self.hf.model.visual
        projector = [visual.merger] + (
            [visual.deepstack_merger_list] if hasattr(visual, "deepstack_merger_list") else []
        )
        return {
            "vision": modules_except(visual, ("merger", "deepstack_merger_list")),
            "projector": projector,
            "language": [self.hf.model.language_model, self.hf.lm_head],
        }

    def image_processor(self) -> Any:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        vc = self.hf.config.vision_config
        pixels = self.image_size[0] * self.image_size[1]
        return Qwen2VLImageProcessorPil(
            patch_size=vc.patch_size,
            merge_size=vc.spatial_merge_size,
            temporal_patch_size=vc.temporal_patch_size,
            image_mean=list(self.mean),
            image_std=list(self.std),
            size={"shortest_edge": pixels, "longest_edge": pixels},
        )

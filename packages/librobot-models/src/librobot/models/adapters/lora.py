"""LoRA / QLoRA adapters on any backbone (every ``AbstractVLM`` here, or any ``nn.Module``), via peft.

``LoRAAdapter(vlm, rank=8, alpha=16)`` injects low-rank adapters into the linear layers of the chosen
parts (the language model by default), freezes every other weight, and behaves as the backbone it
wraps (same forward, KV cache, encode_*). ``merge()`` folds the adapters into the base weights for
inference speed and ``unmerge()`` takes them out again; ``merge_and_unload()`` returns the plain
backbone with the adapters folded in. ``QLoRAAdapter`` first quantises those linear layers to 4-bit
NF4 with bitsandbytes (on a CUDA GPU, else on the CPU: bitsandbytes >= 0.45 quantises there too) and
trains LoRA on top, as in Dettmers et al. (2023), with peft's own 4-bit LoRA layer, whose merge
dequantises, adds the update and re-quantises.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from librobot.core.checkpoint import load_checkpoint, save_checkpoint
from librobot.core.errors import CheckpointError, ConfigError
from librobot.core.extras import require
from librobot.models.vlm.base import AbstractVLM

LORA_MARK = "lora_"
# what a run config's ``model.vlm.lora.targets`` names → the backbone parts that get adapters
TARGETS: dict[str, tuple[str, ...] | None] = {"language": ("language",), "vision": ("vision",), "all-linear": None}


def lora_from_config(vlm: nn.Module, spec: Mapping[str, Any]) -> LoRAAdapter:
    """``LoRAAdapter`` from a run config's ``{rank, alpha, dropout, targets}`` (targets: language,
    vision or all-linear; default language)."""
    unknown = sorted(set(spec) - {"rank", "alpha", "dropout", "targets"})
    if unknown:
        raise ConfigError(f"model.vlm.lora: unknown option(s) {unknown}; it takes rank, alpha, dropout, targets")
    targets = spec.get("targets", "language")
    if targets not in TARGETS:
        raise ConfigError(f"model.vlm.lora.targets must be one of {sorted(TARGETS)}, got {targets!r}")
    rank = int(spec.get("rank", 8))
    return LoRAAdapter(
        vlm, rank, float(spec.get("alpha", 2 * rank)), float(spec.get("dropout", 0.0)), parts=TARGETS[targets]
    )


def lora_target_modules(
    model: nn.Module, parts: tuple[str, ...] | None = ("language",), exclude: tuple[str, ...] = ("lm_head",)
) -> list[str]:
    """Full names of the ``nn.Linear`` layers of ``parts`` (of an ``AbstractVLM``), or of the whole
    model when ``parts`` is None or the model has no parts; names containing ``exclude`` are skipped."""
    scope: list[nn.Module] = [model]
    if parts is not None and isinstance(model, AbstractVLM):
        modules = model.part_modules()
        unknown = [p for p in parts if p not in modules]
        if unknown:
            raise ConfigError(f"{type(model).__name__} has no part(s) {unknown}; parts: {', '.join(modules)}")
        scope = [m for p in parts for m in modules[p]]
    wanted = {id(m) for s in scope for m in s.modules()}
    names = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and id(m) in wanted and not any(e in name for e in exclude)
    ]
    if not names:
        raise ConfigError(f"no linear layers found in {parts or 'the model'} to put LoRA adapters on")
    return names


class LoRAAdapter(AbstractVLM):
    """A backbone with LoRA adapters; only the adapter weights train (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        *,
        parts: tuple[str, ...] | None = ("language",),
        target_modules: list[str] | None = None,
        exclude: tuple[str, ...] = ("lm_head",),
    ) -> None:
        super().__init__()
        peft = require("peft", extra="librobot-models[lora]", purpose="LoRA adapters")
        if rank < 1:
            raise ConfigError(f"LoRA rank must be >= 1, got {rank}")
        targets = list(target_modules) if target_modules is not None else lora_target_modules(model, parts, exclude)
        self.settings = {"rank": int(rank), "alpha": float(alpha), "dropout": float(dropout), "targets": targets}
        config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
        self._prepare(model, targets)
        if self._quant:  # peft picks its 4-bit LoRA layer only for a model that says it is loaded in 4-bit
            model.is_loaded_in_4bit = True
        self.model = peft.inject_adapter_in_model(config, model)
        for name, param in self.model.named_parameters():
            param.requires_grad_(LORA_MARK in name)
        self.train(model.training)

    _quant: dict[str, Any] = {}  # QLoRA's quantisation settings (empty: full-precision LoRA)

    def _prepare(self, model: nn.Module, targets: list[str]) -> None:
        """Hook for QLoRA (quantise the targets before the adapters go on)."""

    # ------------------------------------------------------------------ adapters
    def lora_layers(self) -> list[nn.Module]:
        from peft.tuners.lora import LoraLayer

        return [m for m in self.model.modules() if isinstance(m, LoraLayer)]

    @property
    def merged(self) -> bool:
        return all(layer.merged for layer in self.lora_layers())

    def merge(self) -> None:
        """Fold the adapters into the base weights (faster inference; training then stops reaching them)."""
        for layer in self.lora_layers():
            if not layer.merged:
                layer.merge()

    def unmerge(self) -> None:
        for layer in self.lora_layers():
            if layer.merged:
                layer.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """The plain backbone with the adapters folded in and the LoRA layers removed."""
        from peft.tuners.lora import LoraLayer

        self.merge()
        for name, module in list(self.model.named_modules()):
            if isinstance(module, LoraLayer):
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, module.get_base_layer())
        for param in self.model.parameters():
            param.requires_grad_(True)
        return self.model

    @contextmanager
    def base_backbone(self) -> Iterator[nn.Module]:
        """The backbone with its original weights and no LoRA layers, for as long as the block runs
        (to save it in its own format); the adapters are put back afterwards, as they were."""
        from peft.tuners.lora import LoraLayer

        was_merged = self.merged
        self.unmerge()
        swapped = []
        for name, module in list(self.model.named_modules()):
            if isinstance(module, LoraLayer):
                parent_name, _, child = name.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, module.get_base_layer())
                swapped.append((parent, child, module))
        try:
            yield self.model
        finally:
            for parent, child, module in swapped:
                setattr(parent, child, module)
            if was_merged:
                self.merge()

    @classmethod
    def from_settings(cls, model: nn.Module, settings: Mapping[str, Any]) -> LoRAAdapter:
        """The adapter ``settings`` (``self.settings`` of a saved one) describe, on ``model``."""
        return cls(
            model,
            int(settings["rank"]),
            float(settings["alpha"]),
            float(settings["dropout"]),
            target_modules=list(settings["targets"]),
        )

    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.model.state_dict().items() if LORA_MARK in k}

    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.model.parameters())
        lora = sum(p.numel() for n, p in self.model.named_parameters() if LORA_MARK in n)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"total": total, "lora": lora, "trainable": trainable, "frozen": total - trainable}

    def save_adapter(self, folder: str | Path) -> Path:
        if self.merged:
            raise CheckpointError("the adapters are merged into the base weights; unmerge() before saving them")
        state = {k: v.detach().cpu().contiguous() for k, v in self.lora_state_dict().items()}
        return save_checkpoint(
            folder, tensors={"adapter": state}, documents={"adapter_config": self.settings}, metadata={"kind": "lora"}
        )

    def load_adapter(self, folder: str | Path) -> None:
        ckpt = load_checkpoint(folder, framework="pt")
        saved = ckpt.documents.get("adapter_config", {})
        if saved.get("rank") != self.settings["rank"] or saved.get("targets") != self.settings["targets"]:
            raise CheckpointError(
                f"{folder}: adapter rank/targets differ from this adapter's "
                f"(rank {saved.get('rank')} vs {self.settings['rank']})"
            )
        missing = set(self.lora_state_dict()) - set(ckpt.tensors["adapter"])
        if missing:
            raise CheckpointError(f"{folder}: adapter tensors missing: {sorted(missing)[:5]}")
        self.model.load_state_dict(ckpt.tensors["adapter"], strict=False)

    # ------------------------------------------------------------------ the wrapped backbone
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_modules", {}).get("model")
            if model is None:
                raise
            return getattr(model, name)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        return self.model.part_modules()

    @property
    def parts(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.model.parts

    @property
    def kv_layout(self):
        return self.model.kv_layout

    @property
    def prefix_attention_modes(self) -> tuple[str, ...]:
        if isinstance(self.model, AbstractVLM):  # the adapters do not change which masks the backbone takes
            return self.model.prefix_attention_modes
        return (self.kv_layout.prefix_attention,)

    @property
    def embedding_dim(self) -> int:
        return self.model.embedding_dim

    @property
    def config(self) -> dict[str, Any]:
        return {**self.model.config, "lora": {k: v for k, v in self.settings.items() if k != "targets"}}

    def extend(self, *args: Any, **kwargs: Any) -> Any:
        return self.model.extend(*args, **kwargs)

    def encode_image(self, images: Any) -> torch.Tensor:
        return self.model.encode_image(images)

    def encode_text(self, text: Any) -> torch.Tensor:
        return self.model.encode_text(text)

    def freeze(self, *parts: str) -> None:
        """Stop training the adapters of ``parts`` (base weights stay frozen regardless)."""
        self._set_lora_trainable(parts, False)

    def unfreeze(self, *parts: str) -> None:
        """Train the adapters of ``parts`` again (never the base weights: that is what LoRA avoids)."""
        self._set_lora_trainable(parts, True)

    def _set_lora_trainable(self, parts: tuple[str, ...], flag: bool) -> None:
        modules = self.part_modules() if isinstance(self.model, AbstractVLM) else {"all": [self.model]}
        names = list(parts) or list(modules)
        unknown = [p for p in names if p not in modules]
        if unknown:
            raise ConfigError(f"no part(s) {unknown}; parts: {', '.join(modules)}")
        for part in names:
            for module in modules[part]:
                for name, param in module.named_parameters():
                    if LORA_MARK in name:
                        param.requires_grad_(flag)


class QLoRAAdapter(LoRAAdapter):
    """LoRA over 4-bit NF4-quantised linear layers (bitsandbytes; CUDA, or the CPU without a GPU)."""

    def __init__(
        self,
        model: nn.Module,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        *,
        parts: tuple[str, ...] | None = ("language",),
        target_modules: list[str] | None = None,
        exclude: tuple[str, ...] = ("lm_head",),
        compute_dtype: torch.dtype | None = None,
        double_quant: bool = True,
        device: str | None = None,
    ) -> None:
        self._bnb = require("bitsandbytes", extra="librobot-models[qlora]", purpose="4-bit QLoRA quantisation")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if compute_dtype is None:  # bf16 where the GPU computes in it; fp32 on the CPU (exact, portable)
            compute_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self._quant = {"compute_dtype": compute_dtype, "double_quant": double_quant, "device": device}
        super().__init__(model, rank, alpha, dropout, parts=parts, target_modules=target_modules, exclude=exclude)
        self.settings["quantization"] = "nf4"

    def _prepare(self, model: nn.Module, targets: list[str]) -> None:
        bnb = self._bnb
        for name in targets:
            linear = model.get_submodule(name)
            q = bnb.nn.Linear4bit(
                linear.in_features,
                linear.out_features,
                bias=linear.bias is not None,
                compute_dtype=self._quant["compute_dtype"],
                quant_type="nf4",
                compress_statistics=self._quant["double_quant"],
            )
            q.weight = bnb.nn.Params4bit(
                linear.weight.data.to("cpu"),
                requires_grad=False,
                quant_type="nf4",
                compress_statistics=self._quant["double_quant"],
            )
            if linear.bias is not None:
                q.bias = nn.Parameter(linear.bias.data, requires_grad=False)
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            try:
                setattr(parent, child, q.to(self._quant["device"]))  # moving to the device quantises
            except (RuntimeError, NotImplementedError) as exc:
                raise ConfigError(
                    f"bitsandbytes {getattr(self._bnb, '__version__', '?')} cannot quantise to 4-bit on "
                    f"'{self._quant['device']}' ({exc}); QLoRA needs a CUDA GPU or bitsandbytes >= 0.45 for the "
                    "CPU, else use LoRAAdapter (full-precision LoRA)"
                ) from exc
        model.to(self._quant["device"])

    # peft's 4-bit merge dequantises the stored bytes, but on the CPU bitsandbytes repacks them for
    # its kernel at the first forward pass, after which that reads garbage (measured: weights 0.19
    # off W + B·A, where NF4 rounding is 0.02). The fold here reads W through the layer itself.
    def merge(self) -> None:
        for layer in self.lora_layers():
            if not layer.merged:
                self._fold(layer, +1.0)
                layer.merged_adapters.extend(layer.active_adapters)

    def unmerge(self) -> None:
        for layer in self.lora_layers():
            if layer.merged:
                self._fold(layer, -1.0)
                layer.merged_adapters.clear()

    def _fold(self, layer: Any, sign: float) -> None:
        bnb, base = self._bnb, layer.get_base_layer()
        weight = base.weight
        with torch.no_grad():
            eye = torch.eye(base.in_features, device=weight.device, dtype=base.compute_dtype or torch.float32)
            dense = base(eye).float()  # [in, out] = Wᵀ (+ bias), whatever layout the bytes are in
            if base.bias is not None:
                dense -= base.bias.float()
            dense = dense.t().contiguous()
            for name in layer.active_adapters:
                dense += sign * layer.get_delta_weight(name).float()
            base.weight = bnb.nn.Params4bit(
                dense.to("cpu"),
                requires_grad=False,
                quant_type=weight.quant_type,
                compress_statistics=weight.compress_statistics,
                blocksize=weight.blocksize,
                quant_storage=weight.quant_storage,
            ).to(self._quant["device"])


def lora_adapter(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    parts: tuple[str, ...] | None = ("language",),
) -> LoRAAdapter:
    return LoRAAdapter(model, rank, alpha, dropout, parts=parts)


def qlora_adapter(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    parts: tuple[str, ...] | None = ("language",),
) -> QLoRAAdapter:
    return QLoRAAdapter(model, rank, alpha, dropout, parts=parts)

"""Policy folders: everything needed to rebuild a framework, checksummed, nothing pickled.

::

    manifest.json          sha256 + size of every file below (librobot.core.checkpoint)
    config.json            {"format": "librobot-policy", "framework": <registered name>, "config": {...},
                            "vlm": {"name": <registered name>, "config": {...}}, "versions": {...}}
    model.safetensors      every tensor of the framework except the backbone's
    normalization.json     state/action statistics (NormalizationProcessor format)
    vlm/                   the backbone in its own (Hugging Face) layout, loaded with pretrained=
    vlm_adapter/           LoRA adapters on that backbone, when it has them (config.json "vlm.lora"
                           holds their settings); ``merge_lora=True`` folds them into vlm/ instead
"""

from __future__ import annotations

import copy
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from librobot.core.checkpoint import (
    atomic_directory,
    load_tensors,
    read_json,
    save_tensors,
    verify_checkpoint,
    write_json,
    write_manifest,
)
from librobot.core.errors import CheckpointError, UnknownComponentError
from librobot.core.references import code_references
from librobot.core.registry import get_registry

if TYPE_CHECKING:
    from librobot.models.frameworks.base import AbstractVLA

FORMAT = "librobot-policy"
VERSION = 1
VLM_PREFIX = "vlm."
ADAPTER = "vlm_adapter"


def _versions() -> dict[str, str]:
    found = {}
    for name in ("librobot-core", "librobot-kernels", "librobot-models", "torch", "transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def vlm_name(vlm: Any) -> str:
    """The registered name a backbone is rebuilt from (its variant, else its family)."""
    config = getattr(vlm, "config", None) or {}
    name = config.get("variant") or config.get("family")
    if not name:
        raise CheckpointError(
            f"{type(vlm).__name__} does not say which registered VLM it is (config has no variant/family)"
        )
    return str(name)


def save_policy(model: AbstractVLA, directory: str | Path, *, merge_lora: bool = False) -> Path:
    directory = Path(directory)
    name = model.registry_name or type(model).__name__
    lora = _lora_settings(model.vlm)
    with atomic_directory(directory) as tmp:
        if lora is None:
            model.vlm.save_pretrained(tmp / "vlm")
        elif merge_lora:  # one plain backbone with the adapters folded in: nothing LoRA-specific to load
            copy.deepcopy(model.vlm).merge_and_unload().save_pretrained(tmp / "vlm")
            lora = None
        else:  # the base weights as they were, and the adapters beside them
            with model.vlm.base_backbone() as base:
                base.save_pretrained(tmp / "vlm")
            model.vlm.save_adapter(tmp / ADAPTER)
        # clone: safetensors refuses tensors that share memory (tied weights)
        tensors = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(VLM_PREFIX)}
        save_tensors(tmp / "model.safetensors", tensors)
        write_json(tmp / "normalization.json", model.normalizer.state())
        write_json(
            tmp / "config.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "framework": name,
                "config": model.config.to_dict(),
                "vlm": {"name": vlm_name(model.vlm), "config": model.vlm.config, **({"lora": lora} if lora else {})},
                "versions": _versions(),
            },
        )
        write_manifest(tmp, metadata={"format": FORMAT, "framework": name})
    return directory


def load_policy(
    directory: str | Path, *, device: str | torch.device = "cpu", verify: bool = True, trust_remote_code: bool = False
) -> AbstractVLA:
    """The policy in ``directory``. Everything it names is resolved against the registries; a
    ``module:attr`` reference in it is refused (an edited folder must not run code on whoever loads it)
    unless the caller trusts the folder with ``trust_remote_code=True``."""
    with code_references(trust_remote_code):
        return _load_policy(Path(directory), device=device, verify=verify)


def _lora_settings(vlm: Any) -> dict[str, Any] | None:
    """The settings of a LoRA-wrapped backbone (rank, alpha, dropout, targets), else None."""
    from librobot.models.adapters.lora import LoRAAdapter

    return dict(vlm.settings) if isinstance(vlm, LoRAAdapter) else None


def _with_adapters(vlm: Any, lora: Any, directory: Path) -> Any:
    """``vlm`` with the saved LoRA adapters back on (the same layers, the same weights)."""
    if lora is None:
        return vlm
    ok = (
        isinstance(lora, dict)
        and isinstance(lora.get("rank"), int)
        and all(isinstance(lora.get(k), (int, float)) for k in ("alpha", "dropout"))
        and isinstance(lora.get("targets"), list)
        and all(isinstance(t, str) for t in lora["targets"])
    )
    if not ok:
        raise CheckpointError(
            f"{directory}/config.json: 'vlm.lora' must hold rank, alpha, dropout and targets, got {lora!r}"
        )
    from librobot.models.adapters.lora import LoRAAdapter

    adapted = LoRAAdapter.from_settings(vlm, lora)
    adapted.load_adapter(directory / ADAPTER)
    return adapted


def _described_parts(meta: dict[str, Any], directory: Path) -> tuple[str, str, dict[str, Any]]:
    """(framework name, VLM name, framework config) of a policy's config.json, each checked."""
    vlm = meta.get("vlm")
    parts = (meta.get("framework"), vlm.get("name") if isinstance(vlm, dict) else None, meta.get("config"))
    for field, value, kind in zip(("framework", "vlm.name", "config"), parts, (str, str, dict)):
        if not isinstance(value, kind) or not value:
            raise CheckpointError(
                f"{directory}/config.json: '{field}' is missing or not a {kind.__name__} (found {value!r}); "
                "the policy folder is damaged: save it again with save_pretrained"
            )
    return parts  # type: ignore[return-value]


def _load_policy(directory: Path, *, device: str | torch.device, verify: bool) -> AbstractVLA:
    if verify:
        verify_checkpoint(directory)
    elif not directory.is_dir():
        raise CheckpointError(f"policy folder {directory} does not exist")
    meta = read_json(directory / "config.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{directory}/config.json is not a LibroBot policy (format {found!r})")
    version_found = meta.get("version", 0)
    if not isinstance(version_found, int):
        raise CheckpointError(f"{directory}/config.json: 'version' must be an integer, got {version_found!r}")
    if version_found > VERSION:
        raise CheckpointError(
            f"{directory} was saved by a newer librobot-models (policy format {version_found}); upgrade"
        )
    framework_name, vlm_name_, config = _described_parts(meta, directory)
    from librobot.models import create_vlm

    try:
        framework = get_registry("vla").get(framework_name)
    except UnknownComponentError as exc:
        raise CheckpointError(f"{directory}/config.json names framework {framework_name!r}: {exc}") from None
    vlm = _with_adapters(create_vlm(vlm_name_, pretrained=str(directory / "vlm")), meta["vlm"].get("lora"), directory)
    model = framework(vlm=vlm, config=config)
    tensors = load_tensors(directory / "model.safetensors", framework="pt")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.startswith(VLM_PREFIX)]
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}/model.safetensors does not match {type(model).__name__}: "
            f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
        )
    model.normalizer.load_stats(read_json(directory / "normalization.json"))
    return model.to(device)

"""The "vla" model factory: any registered framework, sized and normalised from the dataset.

In a run config::

    model:
      factory: vla
      framework: groot              # any registered framework (librobot info lists them)
      vlm: librobot-tiny-vlm        # any registered VLM, or {name: ..., pretrained: /local/folder, ...}
      # vlm: {name: paligemma-3b, pretrained: /ckpt, lora: {rank: 16, alpha: 32, targets: language}}
      normalization: {action: q01_q99, observation.state: mean_std}
      head: {num_inference_steps: 10}   # every other key is a framework option

action_dim, state_dim, horizon (the dataset's action chunk), n_obs_steps and the cameras come from
the dataset, and its statistics become the policy's in-graph normalisation, so a trained policy
works in robot units wherever it is loaded. A state joined from several observation vectors
(``data.state_keys``) is recorded as the policy's ``state_parts`` ([[key, width], ...]), so the
runtime, the servers and an ONNX export take the parts as separate keys; every part is normalised
with its own statistics under ``observation.state``'s mode (naming a part in ``normalization`` is
refused rather than silently ignored). ``vlm.lora`` puts LoRA adapters on the backbone
(targets: language | vision | all-linear): its own weights stay frozen, the adapters and the
framework's layers train, and the policy folder keeps the adapters beside the base weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from librobot.core import batch as B
from librobot.core.errors import ConfigError

DEFAULT_NORMALIZATION = {B.ACTION: "q01_q99", B.OBS_STATE: "mean_std"}


def dataset_dims(dataset: Any) -> dict[str, Any]:
    """action_dim, state_dim, horizon, n_obs_steps and cameras of a librobot-data window dataset."""
    features = getattr(dataset, "storage_features", None) or getattr(dataset, "features", None)
    offsets = getattr(dataset, "offsets", None)
    if not features or offsets is None or getattr(dataset, "action_key", None) is None:
        raise ConfigError(
            f"model.factory 'vla' sizes the policy from a librobot-data dataset with actions (a store, LeRobot, RLDS…); "
            f"got {type(dataset).__name__}"
        )
    action_key = dataset.action_key
    state_keys = list(getattr(dataset, "state_keys", None) or ([dataset.state_key] if dataset.state_key else []))
    obs_keys = list(dataset.image_keys) + state_keys
    dims = {
        "action_dim": int(features[action_key].shape[-1]),
        "state_dim": sum(int(features[k].shape[-1]) for k in state_keys),
        "horizon": len(offsets[action_key]),
        "n_obs_steps": len(offsets[obs_keys[0]]) if obs_keys else 1,
        "cameras": [B.camera_of(k) for k in dataset.image_keys],
    }
    parts = [[k, int(features[k].shape[-1])] for k in state_keys]
    if len(parts) > 1 or (parts and parts[0][0] != B.OBS_STATE):  # recorded only when it says something
        dims["state_parts"] = parts
    return dims


def build_vla(
    dataset: Any = None,
    framework: str = "groot",
    vlm: str | Mapping[str, Any] = "librobot-tiny-vlm",
    normalization: Mapping[str, str] | None = None,
    **options: Any,
) -> Any:
    """A framework from ``create_vla`` with dims and normalisation taken from ``dataset``."""
    from librobot.models import create_vla, create_vlm

    if dataset is None:
        raise ConfigError("model.factory 'vla' needs the training dataset (the trainer passes it)")
    dims = dataset_dims(dataset)
    clash = sorted(set(dims) & set(options))
    if clash:
        raise ConfigError(f"model options {clash} come from the dataset; remove them from the model section")
    vlm_options = dict(vlm) if isinstance(vlm, Mapping) else {"name": vlm}
    name = vlm_options.pop("name", None)
    if not name:
        raise ConfigError("model.vlm: give a registered VLM name, or a mapping with 'name' (and e.g. 'pretrained')")
    lora = vlm_options.pop("lora", None)
    backbone = create_vlm(name, **vlm_options)
    if lora is not None:
        from librobot.models.adapters.lora import lora_from_config

        if not isinstance(lora, Mapping):
            raise ConfigError(f"model.vlm.lora: expected {{rank, alpha, dropout, targets}}, got {lora!r}")
        backbone = lora_from_config(backbone, lora)
    model = create_vla(framework, vlm=backbone, **dims, **options)
    stats = getattr(dataset, "stats", None)
    modes = {
        k: v for k, v in dict(normalization or DEFAULT_NORMALIZATION).items() if k != B.OBS_STATE or dims["state_dim"]
    }
    _check_part_modes(modes, dims.get("state_parts"))
    wanted = [k for k, mode in modes.items() if mode != "identity"]
    if wanted and not stats:
        # Training on raw units would go on silently (a PushT policy's L1 was 264 pixels instead of ~0.1).
        where = getattr(dataset, "path", None) or getattr(getattr(dataset, "store", None), "path", None) or "DATASET"
        raise ConfigError(
            f"{where} has no statistics, but model.normalization normalises {wanted}. A recording that was killed "
            f"never writes them: compute them with `librobot data stats {where} --write`, or set "
            "model.normalization: {} to train on raw values"
        )
    if stats and modes:
        from librobot.data.normalize import NormalizationProcessor

        model.set_normalization(NormalizationProcessor.from_stats(stats, modes).to_dict())
    return model


def _check_part_modes(modes: Mapping[str, str], parts: list[list[Any]] | None) -> None:
    """The policy normalises its whole state with one mode (each part with its own statistics, as
    joined by the dataset); a mode for a single part would be ignored, so it is an error."""
    named = [k for k, _ in parts or [] if k != B.OBS_STATE and k in modes]
    if named:
        raise ConfigError(
            f"model.normalization: '{named[0]}' is a part of the policy's joined observation.state; every part is "
            f"normalised with observation.state's mode ({modes.get(B.OBS_STATE, 'none')}) and its own statistics. "
            f"Remove '{named[0]}' from model.normalization (or set observation.state's mode there)"
        )

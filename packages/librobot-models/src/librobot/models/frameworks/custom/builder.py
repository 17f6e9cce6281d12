"""Build a VLA straight from a config file (``librobot.core.config.load_config``): the file names the
framework (default "custom"), the VLM and the framework's options, e.g. configs/custom/*.yaml::

    framework: custom
    vlm: {name: librobot-tiny-vlm, dim: 64}      # or just a name; options go to create_vlm
    action_dim: 7
    state_dim: 14
    components: {head: {name: diffusion}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from librobot.core.errors import ConfigError


def load_custom_config(
    source: str | Path | Mapping[str, Any], overrides: Sequence[str] = (), *, key: str | None = None
) -> dict[str, Any]:
    """The plain-dict policy section of a YAML file (composed, overridden, interpolated) or mapping.
    ``key`` picks a section of a larger file (e.g. ``"model"`` in a training config)."""
    if isinstance(source, Mapping):
        if overrides:
            raise ConfigError("overrides apply to config files; edit the mapping instead")
        data: Any = source
    else:
        from omegaconf import OmegaConf

        from librobot.core.config import load_config

        data = OmegaConf.to_container(load_config(source, overrides=list(overrides)), resolve=True)
    if key is not None:
        if not isinstance(data, Mapping) or key not in data:
            raise ConfigError(f"{source}: no section '{key}'")
        data = data[key]
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a policy config must be a mapping, got {type(data).__name__}")
    return dict(data)


def vla_from_config(
    source: str | Path | Mapping[str, Any], overrides: Sequence[str] = (), *, key: str | None = None
) -> Any:
    """The policy a config describes: ``create_vla(framework, vlm=create_vlm(...), **options)``.

    ``overrides`` are dotlist strings (``components.head.name=ddim``, ``horizon=8``). Unknown
    options and component names fail with close matches before anything is built. The config is
    the caller's own, so a ``module:attr`` it names (an action tokenizer) is honoured."""
    from librobot.core.references import code_references
    from librobot.models import create_vla, create_vlm

    data = load_custom_config(source, overrides, key=key)
    framework = data.pop("framework", "custom")
    vlm_spec = data.pop("vlm", None)
    if vlm_spec is None or isinstance(vlm_spec, str):
        vlm_name, vlm_options = vlm_spec or "librobot-tiny-vlm", {}
    elif isinstance(vlm_spec, Mapping) and isinstance(vlm_spec.get("name"), str):
        vlm_name, vlm_options = vlm_spec["name"], {k: v for k, v in vlm_spec.items() if k != "name"}
    else:
        raise ConfigError(
            f"{source}: 'vlm' must be a registered name or {{name: ..., <create_vlm options>}}, got {vlm_spec!r}"
        )
    from librobot.core.registry import get_registry

    config_class = getattr(get_registry("vla").get(framework), "config_class", None)
    if config_class is not None:
        config_class.from_dict(data)  # validate every option (close-match errors) before building the VLM
    with code_references():
        return create_vla(framework, vlm=create_vlm(vlm_name, **vlm_options), config=data)

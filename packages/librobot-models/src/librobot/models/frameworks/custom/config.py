"""Config of the custom framework: which registered components to compose, and their options.

``components`` maps a role to a component (``None`` leaves the role out)::

    state_encoder:   {name: mlp_state | transformer_state, ...options}   current state → one token
    history_encoder: {name: lstm_history | transformer_history, ...}    state history [B, T, S] → one token
    image_encoder:   {name: resnet | resnet18 | vit, ...}               current frames → tokens per camera
    fusion:          {name: concat | cross_attention | film, ...}
    head:            {name: <any registered action head>, ...options}

A bare string is a name without options. Names are looked up in the registries ("encoder",
"fusion", "action_head"), so aliases work and a typo lists the close matches. Widths are filled in
by the framework (``hidden_dim``), so options hold only what differs from the defaults.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from librobot.core.errors import ConfigError, UnknownComponentError
from librobot.core.registry import get_registry
from librobot.models.action_heads.config import choice, positive
from librobot.models.frameworks.config import VLAConfig

ROLES = {
    "state_encoder": "encoder",
    "history_encoder": "encoder",
    "image_encoder": "encoder",
    "fusion": "fusion",
    "head": "action_head",
}
LOCAL_FUSIONS = ("concat",)  # handled in the framework itself (no module)
DEFAULTS: dict[str, Any] = {"state_encoder": "mlp_state", "fusion": "concat", "head": "flow_matching"}


@dataclass
class CustomConfig(VLAConfig):
    """hidden_dim: the width every component is built at (VLM tokens are projected to it).
    components: see the module docstring; missing roles take ``DEFAULTS`` (state encoder only with
    state_dim > 0), i.e. VLM tokens + an MLP state token, concatenated, a flow-matching head.
    max_cameras: cameras the image encoder's learned camera embedding distinguishes.
    vlm_inputs: "all" (the VLM sees the cameras and the instruction) or "text" (the instruction
    only: the image encoder alone sees the cameras; a frozen VLM then runs once per instruction,
    its output cached). image_history: the image encoder encodes every frame of the observation
    window (``n_obs_steps``), as Diffusion Policy does, instead of the current frame only."""

    hidden_dim: int = 128
    max_cameras: int = 4
    components: dict[str, Any] = field(default_factory=dict)
    vlm_inputs: str = "all"
    image_history: bool = False

    def validate(self) -> None:
        super().validate()
        positive("CustomConfig", hidden_dim=self.hidden_dim, max_cameras=self.max_cameras)
        choice("CustomConfig", "vlm_inputs", self.vlm_inputs, ("all", "text"))
        if not isinstance(self.image_history, bool):
            raise ConfigError(f"CustomConfig.image_history must be true or false, got {self.image_history!r}")
        if self.image_history and self.component("image_encoder") is None:
            raise ConfigError("CustomConfig.image_history needs an image encoder (components.image_encoder)")
        if not isinstance(self.components, Mapping):
            raise ConfigError(f"CustomConfig.components must be a mapping of role → component, got {self.components!r}")
        for role in self.components:
            if role not in ROLES:
                close = difflib.get_close_matches(str(role), list(ROLES), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"CustomConfig.components has no role '{role}'{hint}. Roles: {', '.join(ROLES)}")
        for role in ROLES:
            self.component(role)  # resolves every name now: typos fail at config time, not mid-build
        if self.state_dim == 0:
            for role in ("history_encoder",) + (("state_encoder",) if "state_encoder" in self.components else ()):
                if self.component(role) is not None:
                    raise ConfigError(
                        f"CustomConfig.components.{role} encodes proprioception, but state_dim=0; set state_dim or drop it"
                    )

    def component(self, role: str) -> tuple[str, dict[str, Any]] | None:
        """(canonical registered name, options) of a role, or None when it is left out."""
        spec = self.components.get(role, DEFAULTS.get(role))
        if role == "state_encoder" and role not in self.components and self.state_dim == 0:
            spec = None
        if spec is None:
            return None
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            options = {k: v for k, v in spec.items() if k != "name"}
            name = spec["name"]
        else:
            raise ConfigError(
                f"CustomConfig.components.{role} must be a name or {{name: ..., <options>}}, got {spec!r}"
            )
        if role == "fusion" and name.lower() in LOCAL_FUSIONS:
            return name.lower(), options
        try:
            canonical = get_registry(ROLES[role]).canonical(name)
        except UnknownComponentError as exc:
            extra = f" ('{role}' also accepts: {', '.join(LOCAL_FUSIONS)})" if role == "fusion" else ""
            raise ConfigError(f"CustomConfig.components.{role}: {exc.args[0]}{extra}") from None
        return canonical, options

"""AbstractVLA: what every framework shares — the seeds' call forms, normalisation in and out,
backbone freezing, parameter counts and self-contained save/load.

A framework implements two methods on canonical, *normalised* inputs:

- ``compute_loss(inputs) -> {"loss": scalar, <terms>}`` (``inputs.actions`` [B, H, A] in [-1, 1]-ish
  units, ``inputs.action_is_pad`` [B, H]);
- ``sample_actions(inputs, generator, noise) -> [B, H, A]`` normalised actions.

The base class turns user input into ``VLAInputs`` (see ``inputs.py``), normalises states and
target actions, and un-normalises predictions, so frameworks never see raw units.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from librobot.core import batch as B
from librobot.core.errors import SpecError
from librobot.core.interfaces import VLAInterface
from librobot.models.components.capture import exporting
from librobot.models.frameworks.config import VLAConfig
from librobot.models.frameworks.inputs import VLAInputs, canonicalize
from librobot.models.frameworks.normalizer import Normalizer
from librobot.models.frameworks.text_cache import TextOnlyCache


def build_vlm(vlm: Any) -> nn.Module:
    """A VLM instance from an instance, a registered name, or None (the built-in tiny VLM)."""
    if vlm is None:
        vlm = "librobot-tiny-vlm"
    if isinstance(vlm, str):
        from librobot.models import create_vlm

        return create_vlm(vlm)
    if not isinstance(vlm, nn.Module) or not hasattr(vlm, "get_embedding_dim"):
        raise SpecError(f"vlm must be a VLM backbone, a registered VLM name or None, got {type(vlm).__name__}")
    return vlm


class AbstractVLA(nn.Module, VLAInterface):
    """Base of the VLA frameworks (see the module docstring)."""

    config_class: ClassVar[type[VLAConfig]] = VLAConfig
    registry_name: ClassVar[str] = ""

    def __init__(
        self,
        vlm: Any = None,
        action_dim: int | None = None,
        state_dim: int | None = None,
        config: VLAConfig | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        if action_dim is not None:
            options["action_dim"] = action_dim
        if state_dim is not None:
            options["state_dim"] = state_dim
        self.config = self.config_class.resolve(config, options)
        self.vlm = build_vlm(vlm)
        self.text_cache = TextOnlyCache()  # frozen backbone + instruction only: see text_cache.py
        self.normalizer = Normalizer(
            {
                B.ACTION: self.config.action_dim,
                **({B.OBS_STATE: self.config.state_dim} if self.config.state_dim else {}),
            }
        )

    def _finish_init(self) -> None:
        """Subclasses call this last: applies ``freeze_vlm`` after every module exists, and keeps
        the backbone parameters this framework never reads frozen (see ``unused.py``)."""
        if self.config.freeze_vlm:
            self.freeze_backbone()
        self._freeze_unused()

    def backbone_probe(self, vlm: nn.Module, image: Tensor) -> list[Tensor]:
        """What this framework reads from its VLM, for one image and a one-letter prompt (its
        hidden states by default; frameworks that read logits, KV or image tokens override it)."""
        return [vlm(image, ["a"]).hidden_states]

    @property
    def unused_backbone_parameters(self) -> list[str]:
        """Backbone parameters this framework never reads (found once, on first need)."""
        if self.__dict__.get("_unused_backbone") is None:
            from librobot.models.frameworks.unused import parameters_without_path

            self.__dict__["_unused_backbone"] = parameters_without_path(self.vlm, self.backbone_probe)
        return self.__dict__["_unused_backbone"]

    def _freeze_unused(self) -> None:
        if not any(p.requires_grad for p in self.vlm.parameters()):
            return  # a frozen backbone: nothing to do (and no probe forward)
        params = dict(self.vlm.named_parameters())
        for name in self.unused_backbone_parameters:
            params[name].requires_grad_(False)

    # ------------------------------------------------------------------ framework hooks
    @abstractmethod
    def compute_loss(self, inputs: VLAInputs) -> dict[str, Tensor]: ...

    @abstractmethod
    def sample_actions(
        self, inputs: VLAInputs, generator: torch.Generator | None, noise: Tensor | None, **options: Any
    ) -> Tensor: ...

    # ------------------------------------------------------------------ public API
    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def state_dim(self) -> int:
        return self.config.state_dim

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def execution(self) -> dict[str, Any]:
        """How this policy's chunks are meant to be executed, for the runtime's ``mode="auto"``
        (``{}``: no preference, chunks run as they come; ACT may ask for temporal ensembling)."""
        return {}

    def prepare(
        self,
        images: Any,
        text: Any = None,
        proprioception: Tensor | None = None,
        actions: Tensor | None = None,
        action_is_pad: Tensor | None = None,
    ) -> VLAInputs:
        """Canonical, normalised inputs (what ``compute_loss``/``sample_actions`` receive)."""
        inputs = canonicalize(
            images,
            text,
            proprioception,
            actions,
            action_is_pad=action_is_pad,
            state_dim=self.config.state_dim,
            action_dim=self.config.action_dim,
            horizon=self.config.horizon,
            cameras=self.config.cameras,
        )
        device = self.device
        if inputs.views is not None:
            inputs.views = [v.to(device) for v in inputs.views]
        if inputs.state is not None:
            state = inputs.state.to(device=device, dtype=torch.float32)
            if not exporting() and not bool(torch.isfinite(state).all()):
                raise SpecError("proprioception contains NaN or inf")
            inputs.state = self.normalizer.normalize(B.OBS_STATE, state)
        if inputs.actions is not None:
            inputs.actions = self.normalizer.normalize(B.ACTION, inputs.actions.to(device=device, dtype=torch.float32))
            inputs.action_is_pad = inputs.action_is_pad.to(device)
        return inputs

    def forward(  # type: ignore[override]
        self,
        images: Any,
        text: Any = None,
        proprioception: Tensor | None = None,
        actions: Tensor | None = None,
        *,
        action_is_pad: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Training: ``{"loss": scalar, <terms>}``. Also accepts a batch-contract dict as ``images``."""
        inputs = self.prepare(images, text, proprioception, actions, action_is_pad)
        if inputs.actions is None:
            raise SpecError("forward computes the training loss and needs actions; use predict_action for inference")
        return self.compute_loss(inputs)

    @torch.no_grad()
    def predict_action(
        self,
        images: Any,
        text: Any = None,
        proprioception: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        **options: Any,
    ) -> Tensor:
        """An action chunk [B, H, A] in the robot's units (``options`` go to the framework's
        ``sample_actions``, e.g. π0's ``cache_prefix`` and ``guidance``).

        Randomness (diffusion/flow noise, CVAE latents) comes from ``generator``, explicit
        ``noise`` [B, H, A], or a generator seeded with ``config.seed`` — so the same inputs give
        the same chunk, also after save → load.
        """
        was_training = self.training
        self.eval()
        try:
            inputs = self.prepare(images, text, proprioception)
            if generator is None and noise is None:
                generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
            actions = self.sample_actions(inputs, generator, noise, **options)
        finally:
            self.train(was_training)
        return self.normalizer.unnormalize(B.ACTION, actions)

    def set_normalization(self, stats: Mapping[str, Any]) -> None:
        """Use dataset statistics (a NormalizationProcessor's ``to_dict()``) for states and actions."""
        self.normalizer.load_stats(stats)

    def freeze_backbone(self) -> None:
        self.vlm.freeze()

    def unfreeze_backbone(self) -> None:
        self.vlm.unfreeze()
        self._freeze_unused()

    def get_num_parameters(self, trainable_only: bool = False) -> int:
        unique = {id(p): p for p in self.parameters()}
        return sum(p.numel() for p in unique.values() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path, *, merge_lora: bool = False) -> Path:
        """Write a self-contained, checksummed policy folder (see ``persistence.py``); a LoRA
        backbone is saved as its base weights plus the adapters, or merged with ``merge_lora``."""
        from librobot.models.frameworks.persistence import save_policy

        return save_policy(self, directory, merge_lora=merge_lora)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        device: str | torch.device = "cpu",
        verify: bool = True,
        trust_remote_code: bool = False,
    ) -> AbstractVLA:
        """Load a policy folder written by ``save_pretrained`` (checksums verified first). The folder
        is data: a ``module:attr`` it names is refused unless ``trust_remote_code`` (librobot.core.references)."""
        from librobot.models.frameworks.persistence import load_policy

        model = load_policy(directory, device=device, verify=verify, trust_remote_code=trust_remote_code)
        if cls is not AbstractVLA and not isinstance(model, cls):
            raise SpecError(
                f"{directory} holds a {type(model).__name__}, not a {cls.__name__}; use AbstractVLA.from_pretrained"
            )
        return model


def backbone_frozen(vlm: nn.Module) -> bool:
    """True when no backbone parameter trains (its forward can then skip autograd)."""
    return not any(p.requires_grad for p in vlm.parameters())


def run_vlm(model: AbstractVLA, inputs: VLAInputs, **kwargs: Any) -> Any:
    """The backbone's output for the current frame of every camera and the instructions.

    A fully frozen backbone runs without autograd: GR00T-style training then costs only the head;
    given the instruction alone (no cameras), its outputs come from a per-instruction cache.
    """
    if backbone_frozen(model.vlm):
        with torch.no_grad():
            if inputs.views is None and not kwargs and not exporting():
                return model.text_cache(model.vlm, inputs.text)
            return model.vlm(inputs.current_views, inputs.text, **kwargs)
    return model.vlm(inputs.current_views, inputs.text, **kwargs)

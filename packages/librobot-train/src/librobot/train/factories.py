"""How a config becomes a model, datasets and callbacks — the hooks frameworks plug into.

- ``model: {factory: NAME, **kwargs}``: NAME is an entry of the **"train_model"** registry, or a
  ``"package.module:function"``. It is called as ``factory(dataset=<train dataset>, **kwargs)``
  (``dataset`` only when the factory takes it: dims and normalisation stats come from there) and
  returns an ``nn.Module`` whose ``forward(batch)`` returns ``{"loss": ..., **terms}``.
- ``data: {factory: NAME, val: {...}, **kwargs}``: NAME is an entry of the **"dataset"** registry
  (the one behind ``librobot.data.create_dataset``: store, lerobot, rlds, synthetic, toy-reach…)
  or ``"module:function"``; the training set is ``factory(**kwargs)`` and, when ``val`` is given,
  the validation set is ``factory(**{**kwargs, **val})`` (e.g. ``val: {split: val}``).
- ``callbacks: [{name: NAME, **kwargs}]``: entries of the **"callback"** registry (evaluation
  callbacks plug in here: they add metrics in ``on_evaluate``).

Unknown arguments are reported with the config key and the arguments the factory accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from librobot.core.errors import ConfigError, UnknownComponentError
from librobot.core.references import resolve
from librobot.core.registry import add_category

MODEL_CATEGORY = "train_model"
DATA_CATEGORY = "dataset"
add_category(MODEL_CATEGORY)  # a category of this package: exists as soon as the hooks are imported


def resolve_factory(spec: Any, category: str, key: str) -> Callable[..., Any]:
    """A registered name in ``category`` or a ``"module:attr"`` path → the callable. A path is
    honoured only inside ``code_references()`` (``train_from_config`` opens it for its config)."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"key '{key}': name a '{category}' registry entry or 'package.module:function', got {spec!r}")
    try:
        factory: Callable[..., Any] = resolve(spec, category, key=f"key '{key}'")
    except UnknownComponentError as exc:
        raise ConfigError(str(exc)) from None
    return factory


def call_factory(factory: Callable[..., Any], kwargs: Mapping[str, Any], key: str, **extra: Any) -> Any:
    """``factory(**extra, **kwargs)``, passing each ``extra`` only if the factory accepts it."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    passed = {k: v for k, v in extra.items() if k in params or takes_any}
    clash = sorted(set(passed) & set(kwargs))
    if clash:
        raise ConfigError(f"key '{key}': {clash} is filled in by the trainer; remove it from the config")
    arguments = {**passed, **kwargs}
    if params:
        try:
            inspect.signature(factory).bind(**arguments)
        except TypeError as exc:
            accepted = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            name = getattr(factory, "__qualname__", repr(factory))
            raise ConfigError(f"key '{key}': {name}: {exc}. It accepts: {', '.join(accepted) or '(nothing)'}") from None
    return factory(**arguments)


def _split(section: Mapping[str, Any], key: str, hint: str) -> tuple[Any, dict[str, Any]]:
    rest = dict(section)
    factory = rest.pop("factory", None)
    if factory is None:
        raise ConfigError(f"key '{key}.factory' is missing: {hint}")
    return factory, rest


def build_datasets(section: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(train, val)`` from the ``data`` section (``val`` is None without a ``val`` mapping)."""
    spec, kwargs = _split(
        section, "data", "name a 'dataset' registry entry (toy-reach, store, lerobot…) or 'module:function'"
    )
    val_overrides = kwargs.pop("val", None)
    factory = resolve_factory(spec, DATA_CATEGORY, "data.factory")
    train = call_factory(factory, kwargs, "data")
    if train is None:
        raise ConfigError(f"data.factory {spec!r} returned no dataset")
    val = None
    if val_overrides:
        if not isinstance(val_overrides, Mapping):
            raise ConfigError(
                f"key 'data.val': expected a mapping of overrides for the validation set (e.g. {{split: val}}), got {val_overrides!r}"
            )
        val = call_factory(factory, {**kwargs, **val_overrides}, "data.val")
    return train, val


def build_model(section: Mapping[str, Any], *, dataset: Any = None) -> Any:
    """The model from the ``model`` section (see the module docstring)."""
    from torch import nn

    spec, kwargs = _split(
        section, "model", f"name a '{MODEL_CATEGORY}' registry entry (toy-reach-policy, vla, …) or 'module:function'"
    )
    factory = resolve_factory(spec, MODEL_CATEGORY, "model.factory")
    model = call_factory(factory, kwargs, "model", dataset=dataset)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def build_callbacks(entries: Any) -> list[Any]:
    """Callbacks from the ``callbacks`` list: ``[{name: early-stopping, patience: 3}, ...]``."""
    from librobot.train.callbacks import Callback

    callbacks = []
    for i, entry in enumerate(entries or []):
        kwargs = dict(entry)
        name = kwargs.pop("name", None)
        factory = resolve_factory(name, "callback", f"callbacks.{i}.name")
        callback = call_factory(factory, kwargs, f"callbacks.{i}")
        if not isinstance(callback, Callback):
            raise ConfigError(
                f"callbacks.{i}: {name!r} built a {type(callback).__name__}, not a librobot.train.callbacks.Callback"
            )
        callbacks.append(callback)
    return callbacks

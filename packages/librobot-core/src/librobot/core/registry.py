"""Component registries: one per category, with aliases, lazy entries and close-match errors.

Packages announce their components in small torch-free *manifests* (``register_lazy(name,
"module:attr")``) loaded through the ``librobot.plugins`` entry-point group, so listing every
registry imports nothing heavy; the module behind an entry is imported the first time the entry is
used. User code and plugins may also register objects directly with the ``register`` decorator.

Names are matched case-insensitively with ``-`` and ``_`` treated alike, so ``so100_arm``,
``SO100-Arm`` and ``so100-arm`` are one name.
"""

from __future__ import annotations

import builtins
import difflib
import importlib
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from librobot.core.errors import DuplicateComponentError, UnknownComponentError

T = TypeVar("T")

# The categories the project uses. Plugins may add more with ``add_category``.
CATEGORIES: tuple[str, ...] = (
    "vlm",
    "vla",
    "action_head",
    "encoder",
    "fusion",
    "component",
    "dataset",
    "dataset_format",
    "transform",
    "tokenizer",
    "robot",
    "env",
    "expert",
    "driver",
    "optimizer",
    "scheduler",
    "loss",
    "callback",
    "exporter",
    "train_model",
)


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _target_of(obj: Any) -> str | None:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    return f"{module}:{qualname}" if module and qualname else None


@dataclass
class Entry:
    """One registered component. ``obj`` stays None until a lazy ``target`` is imported."""

    name: str
    target: str | None = None
    obj: Any = None
    aliases: tuple[str, ...] = ()
    doc: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def loaded(self) -> bool:
        return self.obj is not None


class Registry:
    """Name → component map for one category."""

    def __init__(self, category: str) -> None:
        self.category = category
        self._entries: dict[str, Entry] = {}  # canonical key → entry
        self._aliases: dict[str, str] = {}  # alias key → canonical key
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- registration
    def register(
        self,
        name: str | None = None,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        obj: Any = None,
        doc: str | None = None,
        source: str = "",
        **meta: Any,
    ) -> Any:
        """Register ``obj`` now, or return a decorator that registers what it decorates.

        Registering the object a lazy entry points at completes that entry instead of clashing.
        """

        def add(target_obj: T) -> T:
            reg_name = name or getattr(target_obj, "__name__", None)
            if not reg_name:
                raise ValueError(f"{self.category}: cannot infer a name for {target_obj!r}; pass name=")
            first_line = (inspect.getdoc(target_obj) or "").strip().splitlines()
            entry = Entry(
                name=reg_name,
                target=_target_of(target_obj),
                obj=target_obj,
                aliases=tuple(aliases),
                doc=doc if doc is not None else (first_line[0] if first_line else ""),
                source=source,
                meta=dict(meta),
            )
            self._add(entry)
            return target_obj

        if obj is not None:
            return add(obj)
        return add

    def register_lazy(
        self,
        name: str,
        target: str,
        *,
        aliases: tuple[str, ...] | list[str] = (),
        doc: str = "",
        source: str = "",
        **meta: Any,
    ) -> None:
        """Register ``target`` ("package.module:attr") without importing it."""
        if ":" not in target:
            raise ValueError(f"lazy target must look like 'package.module:attr', got {target!r}")
        self._add(Entry(name=name, target=target, aliases=tuple(aliases), doc=doc, source=source, meta=dict(meta)))

    def _add(self, entry: Entry) -> None:
        with self._lock:
            key = _key(entry.name)
            existing = self._entries.get(key)
            if existing is not None:
                self._merge_into(existing, entry)
                return
            if key in self._aliases:
                owner = self._entries[self._aliases[key]]
                raise DuplicateComponentError(
                    f"{self.category}: cannot register '{entry.name}': it is already an alias of "
                    f"'{owner.name}' ({owner.target or owner.source})"
                )
            for alias in entry.aliases:
                self._check_alias_free(_key(alias), entry.name, key)
            self._entries[key] = entry
            for alias in entry.aliases:
                self._aliases[_key(alias)] = key

    def _merge_into(self, existing: Entry, new: Entry) -> None:
        """Re-registration is allowed only for the same object (re-import) or to load a lazy entry."""
        same_obj = existing.obj is not None and existing.obj is new.obj
        fills_lazy = existing.obj is None and new.obj is not None and existing.target == new.target
        same_lazy = existing.obj is None and new.obj is None and existing.target == new.target
        if not (same_obj or fills_lazy or same_lazy):
            raise DuplicateComponentError(
                f"{self.category}: '{new.name}' is already registered to "
                f"{existing.target or existing.obj!r}"
                f"{f' (from {existing.source})' if existing.source else ''}; "
                f"refusing to re-register it to {new.target or new.obj!r}. Pick another name."
            )
        key = _key(existing.name)
        for alias in new.aliases:
            if _key(alias) not in self._aliases:
                self._check_alias_free(_key(alias), new.name, key)
                self._aliases[_key(alias)] = key
                existing.aliases += (alias,)
        if new.obj is not None:
            existing.obj = new.obj
        existing.doc = existing.doc or new.doc
        existing.meta = {**new.meta, **existing.meta}

    def _check_alias_free(self, alias_key: str, name: str, canonical_key: str) -> None:
        if alias_key in self._entries and alias_key != canonical_key:
            raise DuplicateComponentError(
                f"{self.category}: alias '{alias_key}' of '{name}' is already the name of another component"
            )
        owner = self._aliases.get(alias_key)
        if owner is not None and owner != canonical_key:
            raise DuplicateComponentError(
                f"{self.category}: alias '{alias_key}' of '{name}' already belongs to '{self._entries[owner].name}'"
            )

    def unregister(self, name: str) -> None:
        """Remove an entry and its aliases (mainly for tests and interactive work)."""
        with self._lock:
            key = self._resolve_key(name)
            entry = self._entries.pop(key)
            for alias in entry.aliases:
                self._aliases.pop(_key(alias), None)

    # ----------------------------------------------------------------- lookup
    def _resolve_key(self, name: str) -> str:
        if not isinstance(name, str):
            raise TypeError(f"{self.category} name must be a string, got {type(name).__name__}")
        _ensure_plugins()
        key = _key(name)
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        raise UnknownComponentError(self._unknown_message(name))

    def _unknown_message(self, name: str) -> str:
        shown: dict[str, str] = {}  # folded key → how to show it
        for entry in self._entries.values():
            shown[_key(entry.name)] = entry.name
            for alias in entry.aliases:
                shown.setdefault(_key(alias), f"{alias} (= {entry.name})")
        close = difflib.get_close_matches(_key(name), list(shown), n=5, cutoff=0.5)
        message = f"unknown {self.category} '{name}'."
        if close:
            message += f" Did you mean: {', '.join(shown[c] for c in close)}?"
        if not self._entries:
            message += (
                f" No {self.category} is registered at all: install the package that provides them "
                f"(see `librobot info`)."
            )
        elif len(self._entries) <= 30:
            message += f" Registered: {', '.join(sorted(e.name for e in self._entries.values()))}."
        else:
            message += f" {len(self._entries)} are registered; `librobot info` lists them."
        return message

    def canonical(self, name: str) -> str:
        """The registered name behind ``name`` (which may be an alias)."""
        return self._entries[self._resolve_key(name)].name

    def entry(self, name: str) -> Entry:
        return self._entries[self._resolve_key(name)]

    def get(self, name: str) -> Any:
        """The component registered as ``name``, importing its module on first use."""
        entry = self.entry(name)
        if entry.obj is None:
            self._load(entry)
        return entry.obj

    def _load(self, entry: Entry) -> None:
        assert entry.target is not None
        module_name, _, attr_path = entry.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(
                f"{self.category} '{entry.name}' lives in module '{module_name}', which failed to import: {exc}"
            ) from exc
        if entry.obj is None:  # importing may have registered it through the decorator already
            obj: Any = module
            try:
                for part in attr_path.split("."):
                    obj = getattr(obj, part)
            except AttributeError as exc:
                raise ImportError(
                    f"{self.category} '{entry.name}': module '{module_name}' has no attribute '{attr_path}'"
                ) from exc
            entry.obj = obj

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build the component ``name`` with the given arguments.

        Arguments the component does not accept are reported by name (with the accepted ones)
        before anything is constructed.
        """
        factory = self.get(name)
        try:
            signature = inspect.signature(factory)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                accepted = [
                    p.name for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                ]
                from librobot.core.errors import ConfigError

                raise ConfigError(
                    f"cannot create {self.category} '{self.canonical(name)}': {exc}. "
                    f"It accepts: {', '.join(accepted) or '(no arguments)'}"
                ) from None
        return factory(*args, **kwargs)

    def list(self, *, with_aliases: bool = False) -> builtins.list[str]:
        """Registered names, sorted; imports nothing."""
        _ensure_plugins()
        names = sorted(e.name for e in self._entries.values())
        if with_aliases:
            names = sorted(names + [a for e in self._entries.values() for a in e.aliases])
        return names

    def entries(self) -> builtins.list[Entry]:
        _ensure_plugins()
        return sorted(self._entries.values(), key=lambda e: e.name)

    def aliases(self, name: str) -> tuple[str, ...]:
        return self.entry(name).aliases

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self._resolve_key(name)
        except UnknownComponentError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        _ensure_plugins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.category!r}, {len(self._entries)} entries)"


_REGISTRIES: dict[str, Registry] = {c: Registry(c) for c in CATEGORIES}


def add_category(category: str) -> Registry:
    """Create (or return) the registry for a new category, e.g. from a plugin."""
    key = _key(category).replace("-", "_")
    if key not in _REGISTRIES:
        _REGISTRIES[key] = Registry(key)
    return _REGISTRIES[key]


def get_registry(category: str) -> Registry:
    """The registry of ``category``; an unknown category lists the close matches."""
    key = _key(category).replace("-", "_")
    if key not in _REGISTRIES:
        close = difflib.get_close_matches(key, list(_REGISTRIES), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownComponentError(
            f"unknown registry category '{category}'.{hint} Categories: {', '.join(sorted(_REGISTRIES))}"
        )
    return _REGISTRIES[key]


def registries() -> dict[str, Registry]:
    return dict(_REGISTRIES)


def register(category: str, name: str | None = None, **kwargs: Any) -> Callable[[T], T]:
    """Decorator: ``@register("vlm", "my-vlm", aliases=["mvlm"])``."""
    decorator: Callable[[T], T] = get_registry(category).register(name, **kwargs)
    return decorator


def create(category: str, name: str, *args: Any, **kwargs: Any) -> Any:
    return get_registry(category).create(name, *args, **kwargs)


# Plugins are loaded on the first lookup, not at import, so `import librobot.core` stays cheap.
_plugin_state = {"loaded": False, "loading": False}
_plugin_lock = threading.RLock()


def _ensure_plugins() -> None:
    if _plugin_state["loaded"] or _plugin_state["loading"]:
        return
    with _plugin_lock:
        if _plugin_state["loaded"] or _plugin_state["loading"]:
            return
        _plugin_state["loading"] = True
        try:
            from librobot.core.plugins import load_entry_point_plugins

            load_entry_point_plugins()
        finally:
            _plugin_state["loading"] = False
            _plugin_state["loaded"] = True


def reset_plugin_state() -> None:
    """Forget that entry-point plugins were loaded, so the next lookup loads them again (tests)."""
    with _plugin_lock:
        _plugin_state["loaded"] = False

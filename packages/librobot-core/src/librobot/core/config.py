"""Configuration: YAML files composed through ``defaults:`` lists, overrides, interpolation, schemas.

A config file may start with a defaults list (Hydra's convention, a subset of it)::

    defaults:
      - base                 # base.yaml from the same folder, merged at the root
      - model: groot         # model/groot.yaml, placed under the key `model`
      - robot: null          # nothing for this group
      - _self_               # where this file's own keys are merged (last when omitted)

Overrides are dotlist strings: ``training.lr=1e-3`` changes an existing key (an unknown key is an
error that suggests close matches), ``+training.new_key=1`` adds one, ``~training.old_key`` removes
one, and ``model=pi0`` picks another option for a defaults group. Every leaf remembers the file it
came from, so validation errors name the file as well as the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from librobot.core.checkpoint import atomic_write_text
from librobot.core.errors import ConfigError

S = TypeVar("S")
# id(config) → {dotted key: file}; DictConfig is unhashable, so entries are dropped by a finalizer.
_PROVENANCE: dict[int, dict[str, str]] = {}
_MISSING = object()


# ------------------------------------------------------------------------------------ helpers
def _leaf_paths(node: Any, prefix: str = "") -> Iterable[str]:
    if isinstance(node, Mapping):
        if not node and prefix:
            yield prefix
        for key, value in node.items():
            yield from _leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list) and node:
        for i, value in enumerate(node):
            yield from _leaf_paths(value, f"{prefix}.{i}" if prefix else str(i))
    else:
        yield prefix


def _all_paths(node: Any, prefix: str = "") -> Iterable[str]:
    if prefix:
        yield prefix
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _all_paths(value, f"{prefix}.{key}" if prefix else str(key))


def _container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, (DictConfig, ListConfig)) else cfg


def source_of(cfg: DictConfig, key: str) -> str | None:
    """The file (or override) that set ``key``, or its closest parent, if ``cfg`` was loaded here."""
    provenance = _PROVENANCE.get(id(cfg), {})
    parts = key.split(".")
    while parts:
        found = provenance.get(".".join(parts))
        if found:
            return found
        parts.pop()
    return None


def _where(provenance: Mapping[str, str], key: str) -> str:
    parts = key.split(".")
    while parts:
        if (found := provenance.get(".".join(parts))) is not None:
            return f"{found}: "
        parts.pop()
    # A parent key set by one file may have children from several; name the first.
    for path, origin in provenance.items():
        if path.startswith(key + "."):
            return f"{origin}: "
    return ""


# ------------------------------------------------------------------------------------ composition
class _Composer:
    def __init__(self, search_paths: Sequence[Path], choices: dict[str, str]) -> None:
        self.search_paths = list(search_paths)
        self.choices = choices
        self.used_choices: set[str] = set()

    def find(self, name: str, relative_to: Path) -> Path:
        roots = [relative_to, *self.search_paths]
        for root in roots:
            for candidate in (root / f"{name}.yaml", root / f"{name}.yml", root / name):
                if candidate.is_file():
                    return candidate.resolve()
        group, _, option = name.rpartition("/")
        options = sorted({p.stem for root in roots if (root / group).is_dir() for p in (root / group).glob("*.y*ml")})
        hint = ""
        if options:
            close = difflib.get_close_matches(option, options, n=3, cutoff=0.4)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            hint += f" Options for '{group}': {', '.join(options)}."
        raise ConfigError(f"config '{name}' not found in {', '.join(str(r) for r in roots)}.{hint}")

    def compose(self, path: Path, stack: tuple[Path, ...] = ()) -> tuple[DictConfig, dict[str, str]]:
        if path in stack:
            chain = " -> ".join(str(p) for p in (*stack, path))
            raise ConfigError(f"defaults form a cycle: {chain}")
        try:
            raw = OmegaConf.load(path)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except Exception as exc:  # yaml.YAMLError and friends carry the line number
            raise ConfigError(f"{path}: cannot parse YAML: {exc}") from exc
        if raw is None:
            raw = OmegaConf.create({})
        if not isinstance(raw, DictConfig):
            raise ConfigError(f"{path}: the top level must be a mapping, got a {type(raw).__name__}")
        defaults = _container(raw.get("defaults", []))
        if "defaults" in raw:
            del raw["defaults"]
        if not isinstance(defaults, list):
            raise ConfigError(f"{path}: 'defaults' must be a list")
        own = (raw, {p: str(path) for p in _leaf_paths(_container(raw))})
        parts: list[tuple[DictConfig, dict[str, str]]] = []
        placed_self = False
        for item in defaults:
            if item == "_self_":
                parts.append(own)
                placed_self = True
            elif isinstance(item, str):
                parts.append(self.compose(self.find(item, path.parent), (*stack, path)))
            elif isinstance(item, Mapping) and len(item) == 1:
                group, option = next(iter(item.items()))
                group = str(group)
                if group in self.choices:
                    option = self.choices[group]
                    self.used_choices.add(group)
                if option is None or option == "null":
                    continue
                sub, sub_prov = self.compose(self.find(f"{group}/{option}", path.parent), (*stack, path))
                keys = group.split("/")
                prefix = ".".join(keys)
                wrapped: Any = _container(sub)
                for key in reversed(keys):
                    wrapped = {key: wrapped}
                parts.append(
                    (OmegaConf.create(wrapped), {f"{prefix}.{k}" if k else prefix: v for k, v in sub_prov.items()})
                )
            else:
                raise ConfigError(f"{path}: cannot read defaults entry {item!r} (use 'name' or 'group: option')")
        if not placed_self:
            parts.append(own)
        merged = OmegaConf.merge(*[cfg for cfg, _ in parts]) if parts else OmegaConf.create({})
        provenance: dict[str, str] = {}
        for _, prov in parts:
            provenance.update(prov)
        assert isinstance(merged, DictConfig)
        return merged, provenance


def _parse_value(text: str) -> Any:
    return OmegaConf.from_dotlist([f"v={text}"])["v"]


def _apply_override(cfg: DictConfig, override: str, provenance: dict[str, str]) -> None:
    label = f"override '{override}'"
    if override.startswith("~"):
        key = override[1:].split("=", 1)[0]
        parent_key, _, leaf = key.rpartition(".")
        parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
        if not isinstance(parent, DictConfig) or leaf not in parent:
            raise ConfigError(f"{label}: cannot delete '{key}': no such key")
        del parent[leaf]
        for path in [p for p in provenance if p == key or p.startswith(key + ".")]:
            del provenance[path]
        return
    if "=" not in override:
        raise ConfigError(f"{label}: expected key=value, +key=value or ~key")
    key, value_text = override.split("=", 1)
    add = key.startswith("+")
    key = key.lstrip("+")
    if not key:
        raise ConfigError(f"{label}: empty key")
    exists = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False) is not _MISSING
    if not exists and not add:
        paths = list(_all_paths(_container(cfg)))
        close = difflib.get_close_matches(key, paths, n=3, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(f"{label}: unknown key '{key}'.{hint} Use '+{key}=...' to add a new key.")
    try:
        OmegaConf.update(cfg, key, _parse_value(value_text), merge=True, force_add=add)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{label}: {exc}") from exc
    for path in [p for p in provenance if p == key or p.startswith(key + ".")]:
        del provenance[path]
    provenance[key] = label


def load_config(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    schema: type[Any] | None = None,
    search_paths: Sequence[str | Path] = (),
    load_plugins: bool = True,
) -> DictConfig:
    """Compose ``path`` with its defaults, apply ``overrides`` and check interpolations.

    With ``schema`` (a dataclass), the result is validated against it and errors name the file
    and key. A top-level ``plugins: [folder, ...]`` list (relative to the file that names it) is
    loaded unless ``load_plugins=False``.
    """
    path = Path(path).resolve()
    # `key=value` without a dot may pick a defaults-group option; which keys are groups is known
    # only after composing, so the candidates not used as groups become ordinary value overrides.
    choices: dict[str, str] = {}
    for override in overrides:
        if not isinstance(override, str):
            raise ConfigError(f"overrides must be strings like 'key=value', got {override!r}")
        key = override.split("=", 1)[0]
        if "=" in override and not key.startswith(("+", "~")) and ("/" in key or "." not in key):
            choices[key] = override.split("=", 1)[1]
    composer = _Composer([Path(p).resolve() for p in search_paths], choices)
    cfg, provenance = composer.compose(path)
    for override in overrides:
        if override.split("=", 1)[0] not in composer.used_choices:
            _apply_override(cfg, override, provenance)
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise ConfigError(f"{_where(provenance, key)}key '{key}': {exc.msg if hasattr(exc, 'msg') else exc}") from None
    _resolve_plugin_dirs(cfg, provenance, path, load_plugins)
    _PROVENANCE[id(cfg)] = provenance
    weakref.finalize(cfg, _PROVENANCE.pop, id(cfg), None)
    if schema is not None:
        validate_config(cfg, schema)
    return cfg


def _resolve_plugin_dirs(cfg: DictConfig, provenance: Mapping[str, str], path: Path, load: bool) -> None:
    if "plugins" not in cfg:
        return
    entries = cfg.plugins
    if not isinstance(entries, ListConfig):
        raise ConfigError(f"{_where(provenance, 'plugins')}'plugins' must be a list of folders")
    resolved = []
    for i, entry in enumerate(entries):
        origin = provenance.get(f"plugins.{i}", str(path))
        base = Path(origin).parent if Path(origin).is_file() else path.parent
        folder = Path(str(entry))
        resolved.append(str(folder if folder.is_absolute() else (base / folder).resolve()))
    cfg.plugins = resolved
    if load:
        from librobot.core.plugins import load_plugin_dir

        for directory in resolved:
            load_plugin_dir(directory)


def save_config(cfg: DictConfig | Mapping[str, Any], path: str | Path, *, resolve: bool = False) -> Path:
    """Atomically write ``cfg`` as YAML; ``load_config`` reads it back equal."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    return atomic_write_text(path, OmegaConf.to_yaml(cfg, resolve=resolve))


def merge_configs(*configs: DictConfig | Mapping[str, Any]) -> DictConfig:
    merged = OmegaConf.merge(*configs)
    assert isinstance(merged, DictConfig)
    return merged


# ------------------------------------------------------------------------------------ validation
def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


class _Validator:
    def __init__(self, provenance: Mapping[str, str]) -> None:
        self.provenance = provenance
        self.errors: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.errors.append(f"{_where(self.provenance, key)}key '{key or '<root>'}': {message}")

    def check(self, value: Any, tp: Any, key: str) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        got = f"got {value!r} ({type(value).__name__})"
        if tp is Any or tp is object:
            return value
        if origin in (typing.Union, types.UnionType):
            if value is None:
                if type(None) in args:
                    return None
                self.fail(key, f"expected {_type_name(tp)}, got null")
                return None
            for arg in args:
                if arg is type(None):
                    continue
                trial = _Validator(self.provenance)
                result = trial.check(value, arg, key)
                if not trial.errors:
                    return result
            self.fail(key, f"expected {_type_name(tp)}, {got}")
            return value
        if value is None:
            self.fail(key, f"expected {_type_name(tp)}, got null")
            return None
        if origin is typing.Literal:
            if value not in args:
                self.fail(key, f"expected one of {', '.join(repr(a) for a in args)}, {got}")
            return value
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.dataclass(value, tp, key)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            try:
                return tp(value)
            except ValueError:
                self.fail(key, f"expected one of {', '.join(repr(m.value) for m in tp)}, {got}")
                return value
        if tp is bool:
            if not isinstance(value, bool):
                self.fail(key, f"expected bool (true/false), {got}")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(key, f"expected int, {got}")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(key, f"expected float, {got}")
                return value
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                self.fail(key, f"expected str, {got}")
            return value
        if tp is Path:
            if not isinstance(value, str):
                self.fail(key, f"expected a path string, {got}")
                return value
            return Path(value)
        if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
            if not isinstance(value, (list, tuple)):
                self.fail(key, f"expected a list, {got}")
                return value
            if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
                if len(value) != len(args):
                    self.fail(key, f"expected {len(args)} items, got {len(value)}")
                    return value
                return tuple(self.check(v, a, f"{key}.{i}") for i, (v, a) in enumerate(zip(value, args)))
            item_type = args[0] if args else Any
            items = [self.check(v, item_type, f"{key}.{i}") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple or tp is tuple else items
        if origin in (dict, Mapping, typing.Mapping) or tp is dict:
            if not isinstance(value, Mapping):
                self.fail(key, f"expected a mapping, {got}")
                return value
            value_type = args[1] if len(args) == 2 else Any
            return {k: self.check(v, value_type, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(tp, type):
            if not isinstance(value, tp):
                self.fail(key, f"expected {tp.__name__}, {got}")
            return value
        return value

    def dataclass(self, value: Any, schema: type[Any], key: str) -> Any:
        if not isinstance(value, Mapping):
            self.fail(key, f"expected a mapping for {schema.__name__}, got {value!r} ({type(value).__name__})")
            return None
        hints = typing.get_type_hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
        for unknown in [k for k in value if k not in fields]:
            close = difflib.get_close_matches(str(unknown), list(fields), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            full = f"{key}.{unknown}" if key else str(unknown)
            self.fail(full, f"unknown key{hint} ({schema.__name__} accepts: {', '.join(fields)})")
        kwargs = {}
        for name, fld in fields.items():
            full = f"{key}.{name}" if key else name
            if name in value:
                kwargs[name] = self.check(value[name], hints.get(name, Any), full)
            elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
                self.fail(full, f"required key is missing (expected {_type_name(hints.get(name, Any))})")
        if self.errors:
            return None
        return schema(**kwargs)


def validate_config(cfg: DictConfig | Mapping[str, Any], schema: type[S], *, key: str = "") -> S:
    """Check ``cfg`` (or its sub-tree at ``key``) against a dataclass schema; return the typed object.

    Unknown keys, missing required keys and wrong types are all reported in one ``ConfigError``,
    each line naming the file that set the key.
    """
    if not (dataclasses.is_dataclass(schema) and isinstance(schema, type)):
        raise TypeError(f"schema must be a dataclass type, got {schema!r}")
    provenance = _PROVENANCE.get(id(cfg), {}) if isinstance(cfg, DictConfig) else {}
    node: Any = cfg
    if key:
        node = OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else cfg[key]
    try:
        data = OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve interpolation in config: {exc}") from None
    validator = _Validator(provenance)
    result = validator.dataclass(data, schema, key)
    if validator.errors:
        count = len(validator.errors)
        raise ConfigError(
            f"{count} config error{'s' if count > 1 else ''} against {schema.__name__}:\n  "
            + "\n  ".join(validator.errors)
        )
    return result  # type: ignore[no-any-return]

"""Plugin discovery: the ``librobot.plugins`` entry-point group and plugin folders.

An entry point names either a module (imported; it registers with decorators) or a callable
(called with no arguments; it usually calls ``register_lazy`` so nothing heavy is imported). The
project's own packages announce their components the same way, through torch-free manifests.

A plugin folder holds ``*.py`` files and packages; each is imported under a private module name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from librobot.core.errors import PluginError

ENTRY_POINT_GROUP = "librobot.plugins"
log = logging.getLogger("librobot.plugins")


@dataclass
class PluginRecord:
    name: str
    origin: str  # "entry-point <dist>" or a file path
    ok: bool
    error: str = ""


_records: list[PluginRecord] = []
_loaded_dirs: set[Path] = set()


def plugin_records() -> list[PluginRecord]:
    """What was loaded so far, with the error of each plugin that failed."""
    return list(_records)


def load_entry_point_plugins() -> list[PluginRecord]:
    """Load every ``librobot.plugins`` entry point once.

    A broken third-party plugin is reported with a warning and in ``plugin_records()`` (and by
    ``librobot info``) instead of breaking every registry lookup.
    """
    loaded: list[PluginRecord] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = getattr(getattr(ep, "dist", None), "name", "?")
        origin = f"entry point '{ep.name}' of {dist}"
        if any(r.name == ep.name and r.origin == origin and r.ok for r in _records):
            continue
        try:
            target = ep.load()
            if callable(target) and not isinstance(target, ModuleType):
                target()
            record = PluginRecord(ep.name, origin, ok=True)
        except Exception as exc:
            record = PluginRecord(ep.name, origin, ok=False, error=f"{type(exc).__name__}: {exc}")
            log.warning("plugin %s (%s) failed to load: %s", ep.name, ep.value, record.error)
            log.debug("%s", traceback.format_exc())
        _records.append(record)
        loaded.append(record)
    return loaded


def _module_name_for(path: Path) -> str:
    digest = hashlib.sha1(str(path.parent.resolve()).encode()).hexdigest()[:10]
    return f"librobot_plugin_{digest}_{path.stem.replace('-', '_')}"


def load_plugin_file(path: str | Path) -> ModuleType:
    """Import one plugin file (or package folder with ``__init__.py``) and return the module."""
    path = Path(path).resolve()
    init = path / "__init__.py" if path.is_dir() else path
    if not init.is_file():
        raise PluginError(f"plugin {path} does not exist or is not a .py file / package folder")
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(path)] if path.is_dir() else None
    )
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import plugin {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        _records.append(PluginRecord(path.stem, str(path), ok=False, error=f"{type(exc).__name__}: {exc}"))
        raise PluginError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc
    _records.append(PluginRecord(path.stem, str(path), ok=True))
    return module


def load_plugin_dir(directory: str | Path) -> list[ModuleType]:
    """Import every plugin in ``directory`` (files starting with '_' are skipped), once per folder.

    Unlike entry points, a folder was named explicitly, so a failing plugin raises ``PluginError``.
    """
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise PluginError(f"plugin folder {directory} does not exist")
    if directory in _loaded_dirs:
        return []
    modules = []
    for child in sorted(directory.iterdir()):
        if child.name.startswith(("_", ".")):
            continue
        if (child.is_file() and child.suffix == ".py") or (child / "__init__.py").is_file():
            modules.append(load_plugin_file(child))
    _loaded_dirs.add(directory)
    return modules

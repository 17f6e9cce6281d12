"""What is installed: distributions, registered components per category, plugin problems, and
sections other packages contribute through the ``librobot.info`` entry-point group (kernels adds
its backends there)."""

from __future__ import annotations

import platform
import sys
from importlib.metadata import distributions, entry_points
from typing import Any

from librobot.core.hardware import hardware_summary
from librobot.core.plugins import plugin_records
from librobot.core.registry import registries

INFO_GROUP = "librobot.info"


def installed_packages() -> dict[str, str]:
    found = {}
    for dist in distributions():
        name = dist.metadata["Name"] or ""
        if name.lower().replace("_", "-").startswith("librobot-"):
            found[name] = dist.version
    return dict(sorted(found.items()))


def collect_info() -> dict[str, Any]:
    """Everything ``librobot info`` prints, as JSON-able data. Imports no torch by itself."""
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "packages": installed_packages(),
        "components": {category: reg.list() for category, reg in registries().items()},
        "plugin_errors": [f"{r.name} ({r.origin}): {r.error}" for r in plugin_records() if not r.ok],
        "sections": {"cpu": hardware_summary()},
    }
    for ep in sorted(entry_points(group=INFO_GROUP), key=lambda e: e.name):
        try:
            info["sections"][ep.name] = ep.load()()
        except Exception as exc:
            info["sections"][ep.name] = {"error": f"{type(exc).__name__}: {exc}"}
    return info


def format_info(info: dict[str, Any]) -> str:
    lines = [f"python {info['python']} on {info['platform']}", "", "packages:"]
    lines += [f"  {name:<22} {version}" for name, version in info["packages"].items()] or ["  (none)"]
    lines += ["", "components:"]
    for category, names in info["components"].items():
        if names:
            lines.append(f"  {category} ({len(names)}): {', '.join(names)}")
    empty = [c for c, names in info["components"].items() if not names]
    if empty:
        lines.append(f"  (none registered: {', '.join(empty)})")
    for name, section in info["sections"].items():
        lines += ["", f"{name}:"]
        if isinstance(section, dict):
            lines += [f"  {key}: {value}" for key, value in section.items()]
        else:
            lines.append(f"  {section}")
    if info["plugin_errors"]:
        lines += ["", "plugins that failed to load:"] + [f"  {e}" for e in info["plugin_errors"]]
    return "\n".join(lines)

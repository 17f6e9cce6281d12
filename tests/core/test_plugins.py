"""Plugins through a real entry point (a temporary dist-info on sys.path) and a plugin folder.
Each scenario runs in a fresh interpreter so registry state cannot leak between tests."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from librobot.core.errors import PluginError
from librobot.core.plugins import load_plugin_dir


def run_python(code: str, *paths: Path) -> dict:
    env_path = ":".join(str(p) for p in paths)
    completed = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path[:0] = {env_path.split(':')!r}\n" + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def make_dist(root: Path, name: str, entry: str, module_source: str) -> None:
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[librobot.plugins]\n{name} = {entry}\n")


def test_entry_point_plugin_registers_lazily_without_importing_heavy_module(tmp_path):
    make_dist(
        tmp_path,
        "acme_plugin",
        "acme_plugin:register",
        """
        from librobot.core.registry import get_registry
        def register():
            get_registry("vlm").register_lazy("acme-vlm", "acme_heavy:AcmeVLM", aliases=["acme"])
        """,
    )
    (tmp_path / "acme_heavy.py").write_text(
        "class AcmeVLM:\n    def __init__(self, width=4):\n        self.width = width\n"
    )
    result = run_python(
        """
        import json, sys
        from librobot.core import get_registry
        reg = get_registry("vlm")
        listed = "acme-vlm" in reg.list()
        heavy_before = "acme_heavy" in sys.modules
        width = reg.create("acme", width=7).width
        print(json.dumps({"listed": listed, "heavy_before": heavy_before, "width": width}))
        """,
        tmp_path,
    )
    assert result == {"listed": True, "heavy_before": False, "width": 7}


def test_module_entry_point_registers_with_decorators(tmp_path):
    make_dist(
        tmp_path,
        "deco_plugin",
        "deco_plugin",
        """
        from librobot.core import register
        @register("robot", "toy-bot", aliases=["toy"])
        class ToyBot:
            pass
        """,
    )
    result = run_python(
        """
        import json
        from librobot.core import get_registry
        print(json.dumps({"name": get_registry("robot").get("toy").__name__}))
        """,
        tmp_path,
    )
    assert result == {"name": "ToyBot"}


def test_broken_entry_point_is_reported_not_fatal(tmp_path):
    make_dist(tmp_path, "broken_plugin", "broken_plugin:register", "def register():\n    raise RuntimeError('boom')\n")
    result = run_python(
        """
        import json
        from librobot.core import get_registry
        from librobot.core.plugins import plugin_records
        get_registry("vlm").list()
        bad = [r.error for r in plugin_records() if not r.ok]
        print(json.dumps({"bad": bad}))
        """,
        tmp_path,
    )
    assert result["bad"] == ["RuntimeError: boom"]


def test_plugin_folder_named_in_config_is_loaded(tmp_path):
    plugins = tmp_path / "my_plugins"
    plugins.mkdir()
    (plugins / "gripper.py").write_text(
        "from librobot.core import register\n@register('action_head', 'folder-head')\nclass FolderHead:\n    pass\n"
    )
    (plugins / "_private.py").write_text("raise RuntimeError('files starting with _ are skipped')\n")
    (tmp_path / "train.yaml").write_text("plugins: [my_plugins]\nmodel:\n  head: folder-head\n")
    result = run_python(
        """
        import json
        from librobot.core import get_registry, load_config
        cfg = load_config(CONFIG_PATH)
        print(json.dumps({"head": get_registry("action_head").get(cfg.model.head).__name__,
                          "dirs": list(cfg.plugins)}))
        """.replace("CONFIG_PATH", repr(str(tmp_path / "train.yaml"))),
    )
    assert result == {"head": "FolderHead", "dirs": [str(plugins.resolve())]}


def test_failing_folder_plugin_raises_with_file_name(tmp_path):
    (tmp_path / "bad.py").write_text("import no_such_dependency_abc\n")
    with pytest.raises(PluginError, match=r"bad\.py failed to import: ModuleNotFoundError"):
        load_plugin_dir(tmp_path)
    with pytest.raises(PluginError, match="does not exist"):
        load_plugin_dir(tmp_path / "nope")

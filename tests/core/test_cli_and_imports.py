import json
import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


def test_core_import_and_listing_every_registry_import_no_torch():
    code = (
        "import sys, librobot.core\n"
        "assert 'torch' not in sys.modules\n"
        "from librobot.core.registry import registries\n"
        "counts = {c: len(r.list()) for c, r in registries().items()}\n"
        "from librobot.core import load_config, save_checkpoint, FeatureSpec, seed_everything\n"
        "import json; print(json.dumps({'torch': 'torch' in sys.modules, 'counts': counts}))\n"
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["torch"] is False
    assert set(report["counts"]) >= {"vlm", "vla", "action_head", "robot", "env", "dataset"}


def test_librobot_info_lists_packages_and_components():
    result = run("-m", "librobot.core", "info", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["packages"]["librobot-core"] == "0.1.0"
    assert "vlm" in info["components"] and info["plugin_errors"] == []


def test_cli_reports_library_errors_without_traceback(tmp_path):
    result = run("-m", "librobot.core", "nosuchcommand")
    assert result.returncode == 2 and "invalid choice" in result.stderr

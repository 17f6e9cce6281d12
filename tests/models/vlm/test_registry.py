"""The VLM manifest: torch-free listing, every entry resolves, aliases, clear errors."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

from librobot.core.errors import ConfigError, UnknownComponentError
from librobot.core.registry import get_registry
from librobot.models import create_vlm, list_vlms
from librobot.models.vlm import _manifest


def test_listing_vlms_imports_no_torch():
    code = (
        "import json, sys\n"
        "from librobot.models import list_vlms\n"
        "names = list_vlms()\n"
        "print(json.dumps({'n': len(names), 'torch': 'torch' in sys.modules, "
        "'transformers': 'transformers' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"n": len(list_vlms()), "torch": False, "transformers": False}


def test_every_manifest_entry_resolves_to_a_callable():
    reg = get_registry("vlm")
    names = [e[0] for e in _manifest.FULL + _manifest.TINY] + ["librobot-tiny-vlm", "pretrained-small"]
    assert sorted(names) == sorted(n for n in list_vlms() if reg.entry(n).target.startswith("librobot.models.vlm"))
    for name in names:
        factory = reg.get(name)
        assert callable(factory), name
        assert "pretrained" in inspect.signature(factory).parameters, name
    # one registered variant per real checkpoint of the seeds' list (11), plus the families' other sizes
    seed_names = [
        "qwen2-vl-2b",
        "qwen2-vl-7b",
        "qwen3-vl-4b",
        "qwen3-vl-7b",
        "florence-2-base",
        "florence-2-large",
        "paligemma-3b",
        "internvl2-2b",
        "internvl2-8b",
        "llava-7b",
        "llava-13b",
    ]
    assert all(n in reg for n in seed_names)
    assert len(_manifest.FULL) == 26 and len(_manifest.TINY) == 9


def test_seed_names_resolve_honestly():
    reg = get_registry("vlm")
    assert reg.canonical("qwen3-vl-7b") == "qwen3-vl-8b"  # no 7B was released
    assert "no such checkpoint" in reg.entry("qwen3-vl-7b").doc
    assert reg.canonical("llava-7b") == "llava-1.5-7b"
    assert reg.canonical("florence-2") == "florence-2-base"
    assert reg.canonical("Qwen2_VL_2B") == "qwen2-vl-2b"


def test_unknown_names_and_arguments_are_clear_errors():
    with pytest.raises(UnknownComponentError, match="Did you mean: qwen2-vl-2b"):
        create_vlm("qwen2-vl-2")
    with pytest.raises(ConfigError, match=r"hidden_dim.*It accepts: pretrained"):
        create_vlm("qwen2-vl-tiny", hidden_dim=768)
    with pytest.raises(ConfigError, match="unknown option"):
        create_vlm("librobot-tiny-vlm", width=3)


def test_seed_import_paths():
    from librobot.models.vlm import registry
    from librobot.models.vlm.adapters import LoRAAdapter

    assert registry.create_vlm is create_vlm
    assert LoRAAdapter.__name__ == "LoRAAdapter"

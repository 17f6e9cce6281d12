"""Suite-wide settings. Threads first: on a shared 2-core VM two torch threads were up to 45x
slower than one, and this must happen before torch is imported anywhere."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("LIBROBOT_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# tests import metaworld/mujoco directly: choose headless rendering before any of them does
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

import importlib.util
import re
from pathlib import Path

# The edge tier (core, robots, kernels) installs no torch: modules that import it at the top are
# torch tests as a whole, so they are left out there instead of failing collection one by one.
_HAS_TORCH = importlib.util.find_spec("torch") is not None
_TOP_LEVEL_TORCH = re.compile(r"^(import torch|from torch[ .])", re.MULTILINE)
_left_out: list[str] = []


def pytest_ignore_collect(collection_path: Path, config):
    if _HAS_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if _TOP_LEVEL_TORCH.search(collection_path.read_text(encoding="utf-8")):
        _left_out.append(collection_path.name)
        return True
    return None


def pytest_terminal_summary(terminalreporter):
    if _left_out:
        terminalreporter.write_line(
            f"torch not installed: {len(_left_out)} torch-only test modules left out ({', '.join(sorted(_left_out))})"
        )

"""Seeding and RNG-state capture for python, numpy and (when already imported) torch.

Core never imports torch: torch is seeded only if the caller imported it first, which every
package that uses torch does before it seeds.
"""

from __future__ import annotations

import os
import random
import sys
from typing import Any

import numpy as np

MAX_SEED = 2**32 - 1


def seed_everything(seed: int, *, deterministic: bool = False) -> int:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and CUDA) when torch is loaded.

    ``deterministic=True`` also asks torch for deterministic algorithms (slower, bitwise repeatable).
    """
    if not 0 <= int(seed) <= MAX_SEED:
        raise ValueError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # affects subprocesses (dataloader workers)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
    return seed


def capture_rng_state() -> dict[str, Any]:
    """The RNG states of python, numpy and (if loaded) torch, as JSON-able data."""
    version, internal, gauss = random.getstate()
    legacy: tuple[str, np.ndarray, int, int, float] = np.random.get_state()  # type: ignore[assignment]
    kind, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        state["torch"] = torch.get_rng_state().tolist()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["torch_cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
        if "torch_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["torch_cuda"]])

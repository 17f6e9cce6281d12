"""Helpers (no tests) for the export tests: tiny, non-trivial policies of every registered framework.

Each is built on a small built-in tiny VLM, its weights perturbed (so outputs vary with the
inputs, the instruction and the noise) and given real normalisation statistics (so the in-graph
normaliser is exercised), then saved as a policy folder the way training saves one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

A, S = 3, 4  # action and state dims
TASKS = ("pick up the red cube", "open the drawer")
TINY_VLM = dict(
    image_size=16, patch_size=8, tokens_per_view=4, dim=32, depth=1, heads=2, kv_heads=1, max_text_tokens=16
)
SMALL_HEAD = {"num_inference_steps": 3, "hidden_dim": 32, "depth": 1, "num_heads": 2}
# sized for seconds per export: 3 sampling steps, one-layer heads, short chunks (the token-decoding
# policies write H·A tokens one by one, so their chunk is 2 steps)
OPTIONS: dict[str, dict] = {
    "act": dict(hidden_dim=32, num_heads=2, feedforward_dim=64, cvae_layers=1, encoder_layers=1, latent_dim=8),
    "custom": dict(hidden_dim=32, head=SMALL_HEAD),
    "groot": dict(hidden_dim=32, head=SMALL_HEAD),
    "helix": dict(s1_dim=32, s1_depth=1, s1_heads=2, num_latents=2, latent_dim=16),
    "octo": dict(hidden_dim=32, depth=1, num_heads=2, head=SMALL_HEAD),
    "openvla": dict(horizon=2),
    "openvla-oft": dict(head_hidden_dim=32, head_blocks=1),
    "pi0": dict(num_inference_steps=3),
    "robovlms": dict(history_dim=32),
    "rt2": dict(horizon=2),
}


def stats() -> dict:
    return {
        "format": "librobot-normalizer",
        "features": {
            "action": {"mode": "min_max", "clamp": False, "center": [0.5, -1.0, 2.0], "scale": [2.0, 0.5, 3.0]},
            "observation.state": {"mode": "mean_std", "clamp": False, "center": [0.1] * S, "scale": [3.0] * S},
        },
    }


def build(name: str, seed: int = 0, **overrides):
    import torch

    from librobot.models import create_vla, create_vlm

    torch.manual_seed(seed)
    options = {"horizon": 4, **OPTIONS.get(name, {}), **overrides}
    model = create_vla(name, vlm=create_vlm("librobot-tiny-vlm", **TINY_VLM), action_dim=A, state_dim=S, **options)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.set_normalization(stats())
    return model.eval()


def save_policy(name: str, directory: Path, **overrides) -> Path:
    return build(name, **overrides).save_pretrained(directory)


def observation(rng: np.random.Generator, history: int = 1) -> dict[str, np.ndarray]:
    """One frame as a robot sends it: state [S], image [3, H, W] in [0, 1]; with ``history`` > 1 a
    window of that many frames ([T, S], [T, 3, H, W]), as a runtime sends policies trained on one."""
    size = TINY_VLM["image_size"]
    lead = (history,) if history > 1 else ()
    return {
        "observation.state": rng.normal(size=(*lead, S)).astype(np.float32) * 2.0,
        "observation.images.front": rng.random((*lead, 3, size, size), dtype=np.float32),
    }


def action_scale() -> np.ndarray:
    return np.asarray(stats()["features"]["action"]["scale"])

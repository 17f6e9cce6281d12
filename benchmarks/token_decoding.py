"""Autoregressive action-token decoding (OpenVLA- and RT-2-style): latency of one prediction on
this CPU with the growing KV cache against the two slower ways of decoding the same tokens.

For each framework, backbone and batch (one 64×64 camera, a short instruction, a 39-D state, 4-D
actions, horizon 16: 64 action tokens, the Meta-World benchmark's shape), greedy decoding with:

- ``grown``: the prompt runs once, then each step runs only the newest token over the cache, which
  grows by that token (what ``predict_action`` does);
- ``prompt_cached``: the prompt's cache is reused, but every step runs all tokens generated so far
  again (quadratic in the chunk length; how decoding worked before the cache could grow);
- ``recompute``: the whole sequence at every step (``use_cache=False``), the reference.

All three must choose the same tokens (checked). Reported: median wall and process-CPU time per
prediction (CPU time is the steadier figure on a shared machine) and the speed-ups of ``grown``.
Weights are random (seeded); latency does not depend on their values.

    OMP_NUM_THREADS=1 python benchmarks/token_decoding.py --out benchmarks/results/token_decoding.json
"""

from __future__ import annotations

import argparse
import os
import platform

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from _common import emit_json, timed

from librobot.models import create_vla, create_vlm

FRAMEWORKS = ("openvla", "rt2")
BACKBONES = ("librobot-tiny-vlm", "paligemma-tiny")
TEXT = "pick up the puck and place it at the goal"


@torch.no_grad()
def prompt_cached(vla, inputs) -> torch.Tensor:
    """The earlier decoding loop: the prompt is cached, the generated tokens are run again each step."""
    out = vla.vlm(inputs.current_views, inputs.text, return_kv=True)
    ids = torch.zeros(inputs.batch_size, 0, dtype=torch.long)
    last = out.hidden_states[:, -1]
    for _ in range(vla.sequence_length):
        suffix = vla._suffix(inputs, ids)
        if suffix is not None:
            last = vla.vlm.extend(out.prefix_kv, suffix).hidden_states[:, -1]
        ids = torch.cat([ids, vla._choose(vla.vocab.logits(vla.vlm, last).float())[:, None]], dim=1)
    return ids


def bench(framework: str, backbone: str, batch: int, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    vla = create_vla(framework, vlm=create_vlm(backbone), action_dim=4, state_dim=39, horizon=16).eval()
    g = torch.Generator().manual_seed(0)
    inputs = vla.prepare(torch.rand(batch, 3, 64, 64, generator=g), [TEXT] * batch, torch.randn(batch, 39, generator=g))
    ways = {
        "grown": lambda: vla.generate_ids(inputs, use_cache=True)[0],
        "prompt_cached": lambda: prompt_cached(vla, inputs),
        "recompute": lambda: vla.generate_ids(inputs, use_cache=False)[0],
    }
    tokens = {name: fn() for name, fn in ways.items()}
    same = all(torch.equal(tokens["recompute"], t) for t in tokens.values())
    times = {name: timed(fn, repeats, warmup) for name, fn in ways.items()}
    grown = times["grown"]
    return {
        "framework": framework,
        "backbone": backbone,
        "batch": batch,
        "tokens": int(tokens["grown"].shape[1]),
        "same_tokens": same,
        **times,
        "speedup_vs_prompt_cached_cpu": round(times["prompt_cached"]["cpu_median_ms"] / grown["cpu_median_ms"], 2),
        "speedup_vs_recompute_cpu": round(times["recompute"]["cpu_median_ms"] / grown["cpu_median_ms"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", nargs="*", default=list(FRAMEWORKS))
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = [
        bench(f, b, n, args.repeats, args.warmup) for f in args.frameworks for b in args.backbones for n in args.batches
    ]
    doc = {
        "benchmark": "token_decoding",
        "inputs": {"cameras": 1, "image": [64, 64], "state_dim": 39, "action_dim": 4, "horizon": 16, "text": TEXT},
        "machine": {
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "results": rows,
    }
    emit_json(doc, args.out)


if __name__ == "__main__":
    main()

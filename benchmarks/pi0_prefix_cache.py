"""π0-style prefix KV cache: ``predict_action`` latency with the cache vs recomputing the prefix at
every denoising step, on this CPU.

For each backbone (the built-in tiny VLM at its default size and Hugging Face ``-tiny`` variants,
PaliGemma being π0's own family) and batch 1 and 8 (one 64×64 camera, a short instruction, a
14-D state, 7-D actions, horizon 16), 10 Euler flow steps:

- ``cached``: one VLM pass per observation, the state block's keys/values appended once, then
  only the H action tokens through the expert at each step (what ``predict_action`` does);
- ``recompute``: the VLM prefix and the whole suffix (state + actions) at every step
  (``predict_action(..., cache_prefix=False)``), the reference;
- backbone calls per prediction (counted with a forward hook), the max |difference| between the
  two chunks, and the speed-up (median wall time and median process CPU time; CPU time is the
  steadier figure on a shared machine, as waiting for a core does not count).

Weights are random (seeded); latency does not depend on their values.

    OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 \\
        python benchmarks/pi0_prefix_cache.py --out bench_pi0_prefix_cache.json

Prints one JSON document (and writes it to --out when given).
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

# name[:option=value,...] (options go to create_vlm); the last row is a wider, deeper built-in VLM,
# closer to π0's proportions (backbone several times the expert), where the cache saves more
BACKBONES = (
    "librobot-tiny-vlm",
    "paligemma-tiny",
    "qwen2.5-vl-tiny",
    "librobot-tiny-vlm:dim=384,depth=6,heads=6,kv_heads=2",
)
TEXT = "pick up the red block and place it in the bowl"
STEPS = 10


def parse_backbone(spec: str) -> tuple[str, dict]:
    name, _, options = spec.partition(":")
    kwargs = {}
    for item in filter(None, options.split(",")):
        key, _, value = item.partition("=")
        kwargs[key] = int(value) if value.lstrip("-").isdigit() else value
    return name, kwargs


def bench(backbone: str, batch: int, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    name, options = parse_backbone(backbone)
    policy = create_vla(
        "pi0", vlm=create_vlm(name, **options), action_dim=7, state_dim=14, horizon=16, num_inference_steps=STEPS
    ).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, 64, 64, generator=g)
    state = torch.randn(batch, 14, generator=g)
    calls: list[int] = []
    policy.vlm.register_forward_hook(lambda *_: calls.append(1))

    def run(cache: bool) -> torch.Tensor:
        return policy.predict_action(images, TEXT, state, cache_prefix=cache)

    counts = {}
    for cache in (True, False):
        calls.clear()
        run(cache)
        counts[cache] = len(calls)
    diff = float((run(True) - run(False)).abs().max())
    cached = timed(lambda: run(True), repeats, warmup)
    recompute = timed(lambda: run(False), repeats, warmup)
    layout = policy.vlm.kv_layout
    return {
        "backbone": backbone,
        "batch": batch,
        "vlm_params": sum(p.numel() for p in policy.vlm.parameters()),
        "expert_params": sum(p.numel() for p in policy.expert.parameters()),
        "vlm_width": layout.hidden_size,
        "expert_width": policy.expert.width,
        "layers": layout.num_layers,
        "backbone_calls": {"cached": counts[True], "recompute": counts[False]},
        "max_abs_diff": diff,
        "cached": cached,
        "recompute": recompute,
        "speedup_wall": round(recompute["median_ms"] / cached["median_ms"], 2),
        "speedup_cpu": round(recompute["cpu_median_ms"] / max(cached["cpu_median_ms"], 1e-9), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import librobot.kernels as kernels

    rows = [bench(b, n, args.repeats, args.warmup) for b in args.backbones for n in args.batches]
    doc = {
        "benchmark": "pi0_prefix_cache",
        "denoising_steps": STEPS,
        "inputs": {"cameras": 1, "image": [64, 64], "state_dim": 14, "action_dim": 7, "horizon": 16, "text": TEXT},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "malloc": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")},
            "kernel_backends": kernels.available_backends(),
            "device": "cpu",
        },
        "results": rows,
    }
    emit_json(doc, args.out)


if __name__ == "__main__":
    main()

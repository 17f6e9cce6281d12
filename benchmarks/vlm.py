"""VLM backbones on this CPU: forward latency and parameter counts.

For the built-in ``librobot-tiny-vlm``, ``pretrained-small`` and every family's ``-tiny`` variant:

- parameters (total and per part);
- prefix forward latency at batch 1 (one 64×64 camera view + a short instruction) and batch 8
  (two views each), median and 90th percentile over timed repeats after a warm-up;
- the π0 use case: hidden states of a 10-token suffix from the cached prefix (``extend``) next to
  recomputing prefix + suffix in one pass (``forward(..., suffix_embeds=...)``), the reference.

And for every full-size variant, the parameter count computed on the meta device next to the
published figure. Weights are random (seeded); latency does not depend on their values.

    OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 \\
        python benchmarks/vlm.py --out bench_vlm.json

Prints one JSON document (and writes it to --out when given).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from _common import emit_json, timed

from librobot.models import create_vlm
from librobot.models.vlm import _manifest
from librobot.models.vlm.base import count_parameters

TEXT = "pick up the red block and place it in the bowl"
FAMILY_MODULES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "florence2", "paligemma", "internvl", "llava", "kosmos2")


def bench_backbone(name: str, repeats: int) -> dict:
    torch.manual_seed(0)
    start = time.perf_counter()
    vlm = create_vlm(name).eval()
    build_s = time.perf_counter() - start
    g = torch.Generator().manual_seed(0)
    one = torch.rand(1, 1, 3, 64, 64, generator=g)
    eight = torch.rand(8, 2, 3, 64, 64, generator=g)
    suffix = torch.randn(1, 10, vlm.get_embedding_dim(), generator=g)
    row: dict = {
        "params": count_parameters(vlm),
        "params_by_part": {part: vlm.get_num_parameters(part=part) for part in vlm.parts},
        "embedding_dim": vlm.get_embedding_dim(),
        "build_s": round(build_s, 3),
    }
    with torch.inference_mode():
        out = vlm(one, TEXT, return_kv=True)
        row["prefix_tokens_batch1"] = int(out.attention_mask.sum())
        row["forward_batch1"] = timed(lambda: vlm(one, TEXT), repeats)
        row["forward_batch8_2views"] = timed(lambda: vlm(eight, [TEXT] * 8), max(3, repeats // 5))
        kv = out.prefix_kv
        row["suffix10_from_cache"] = timed(lambda: vlm.extend(kv, suffix), repeats)
        row["suffix10_recomputed_reference"] = timed(lambda: vlm(one, TEXT, suffix_embeds=suffix), repeats)
    row["cache_speedup"] = round(
        row["suffix10_recomputed_reference"]["median_ms"] / row["suffix10_from_cache"]["median_ms"], 2
    )
    return row


def full_size_counts() -> dict:
    published = {}
    for mod in FAMILY_MODULES:
        published.update(importlib.import_module(f"librobot.models.vlm.{mod}").SIZES)
    rows = {}
    for name, *_ in _manifest.FULL:
        count = count_parameters(create_vlm(name, device="meta"))
        pub = published[name]["published_params"]
        rows[name] = {
            "params": count,
            "published": pub,
            "rel_diff_pct": round(100 * (count - pub) / pub, 3),
            "checkpoint": published[name]["checkpoint"],
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--only", nargs="*", help="backbone names (default: built-ins and every -tiny variant)")
    parser.add_argument("--skip-pretrained-small", action="store_true")
    parser.add_argument("--out")
    args = parser.parse_args()
    names = args.only or [
        "librobot-tiny-vlm",
        *([] if args.skip_pretrained_small else ["pretrained-small"]),
        *[n for n, *_ in _manifest.TINY],
    ]
    result = {
        "benchmark": "vlm",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
        "allocator": {k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")},
        # the machine may be shared: latencies scale with the load around them
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "input": {
            "batch1": "1 view 64x64 (resized to each tower's size) + one instruction",
            "batch8": "8 samples x 2 views",
            "suffix": "10 embeddings appended after the prefix",
        },
        "backbones": {name: bench_backbone(name, args.repeats) for name in names},
        "full_size_param_counts": full_size_counts(),
    }
    result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    emit_json(result, args.out)


if __name__ == "__main__":
    main()

"""librobot-robots benchmark: scripted-expert success rates per simulated task, safety-layer and
CAN codec cost per control tick. Prints one JSON document.

    python benchmarks/robots.py                       # every env, 50 episodes each (~20 min on 2 cores)
    python benchmarks/robots.py --episodes 10 --env 'metaworld-*' --env pusht

Success rates come with 95% Wilson intervals; Meta-World's own reference is "~98% mean expert
success" (its documentation), which the Meta-World mean here is set beside. Timings are set beside
a plain numpy reference measured in the same run.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import time

os.environ.setdefault("LIBROBOT_PROGRESS", "0")

import numpy as np

from librobot.robots import ManualClock, SafetyLayer, evaluate_expert, list_envs
from librobot.robots.drivers import can_layout
from librobot.robots.wheel_loader import wheel_loader_spec


def bench_safety(n: int = 50_000) -> dict:
    spec = wheel_loader_spec()
    rng = np.random.default_rng(0)
    cmds = rng.uniform(-2, 2, size=(n, spec.action_dim))
    clock = ManualClock()
    layer = SafetyLayer(spec, initial=np.zeros(spec.action_dim), clock=clock)
    start = time.perf_counter()
    for c in cmds:
        clock.advance(spec.period)
        layer.filter(c)
    ours = (time.perf_counter() - start) / n * 1e6
    lo, hi = spec.action_space.low_array, spec.action_space.high_array
    start = time.perf_counter()
    for c in cmds:  # reference: a bare clamp, no rate limit, no checks, no log
        np.clip(c, lo, hi)
    ref = (time.perf_counter() - start) / n * 1e6
    return {
        "safety_filter_us_per_tick": round(ours, 2),
        "reference_np_clip_us": round(ref, 2),
        "ticks": n,
        "interventions_logged": sum(layer.counts.values()),
    }


def bench_can(n: int = 20_000) -> dict:
    values = {"throttle": 0.5, "steering": 0.1, "brake": 0.0}
    start = time.perf_counter()
    for i in range(n):
        can_id, data = can_layout.encode("CMD_DRIVE", values, i % 15)
        can_layout.decode(can_id, data)
    ours = (time.perf_counter() - start) / n * 1e6
    start = time.perf_counter()
    for _ in range(n):  # reference: packing the same three fields with no scaling, counter or CRC
        int(0.5 * 50000).to_bytes(2, "little") + (1000).to_bytes(2, "little", signed=True) + bytes(2)
    ref = (time.perf_counter() - start) / n * 1e6
    return {"can_encode_decode_us": round(ours, 2), "reference_plain_pack_us": round(ref, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--env", action="append", default=None, help="env name or glob (repeatable); default: all")
    parser.add_argument("--seed", type=int, default=1000, help="first seed (different from the tests' seeds)")
    args = parser.parse_args()
    names = list_envs()
    if args.env:
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in args.env)]
    reports = []
    for name in names:
        report = evaluate_expert(name, args.episodes, seed=args.seed).to_dict()
        reports.append(report)
        print(json.dumps(report), flush=True, file=__import__("sys").stderr)  # progress
    mw = [r["success_rate"] for r in reports if r["env"].startswith("metaworld-")]
    out = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "episodes_per_env": args.episodes,
        "experts": reports,
        "summary": {
            "metaworld_tasks": len(mw),
            "metaworld_mean_success": round(float(np.mean(mw)), 4) if mw else None,
            "metaworld_reference_mean_success": 0.98,
            "metaworld_min": min(mw) if mw else None,
        },
        "safety": bench_safety(),
        "can": bench_can(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

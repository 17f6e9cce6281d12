"""Pixel learning benchmark: policies that must read the camera, trained in a wall-clock budget.

Two suites, every framework trained from ``configs/<suite>/<framework>.yaml`` with
``train.max_time`` (default 25 minutes) and evaluated in closed loop on seeds never used for
demonstrations, next to policies that learned nothing (hold still, uniform random actions) on the
same seeds:

- ``pusht``: PushT with the 96x96 top camera and the pusher's (x, y) only: the T's pose is in the
  image alone. Success (> 95% of the target covered) and the mean best coverage per episode.
- ``metaworld_pixels``: six Meta-World tasks with a 96x96 camera and the robot's own state (hand position
  and gripper opening); objects and goals reach the policy only through the camera.

    python benchmarks/pixels.py --suite pusht --frameworks custom helix --budget 25m
    python benchmarks/pixels.py --suite pusht --baselines          # hold still and random, same seeds
    python benchmarks/pixels.py --suite pusht --frameworks act --resume   # continue a killed run

Results are appended as one JSON line per run (``--out``); ``--table RESULTS`` prints the markdown
table. A killed run continues with ``--resume`` (training from its checkpoint, then the missing
evaluation episodes). This is not a test: each framework takes its budget plus the evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    # the reactive expert: the planner's open-loop phases cannot be imitated from frames (its plan is
    # not in the image); the reactive one picks each move from what it sees now
    "pusht": {
        "envs": ["pusht"],
        "demos": 200,
        "expert": "pusht-reactive",
        "env_kwargs": {"render": True, "image_size": 96},
    },
    "metaworld_pixels": {
        # learning.py's six tasks, but reach and pick-place have goals floating in the air (a site with
        # no shadow): one camera cannot show their depth. button-press-topdown (reach a visible button)
        # and shelf-place (put the block on a visible shelf) take their places.
        "envs": [
            "metaworld-button-press-topdown",
            "metaworld-push",
            "metaworld-shelf-place",
            "metaworld-door-open",
            "metaworld-drawer-close",
            "metaworld-button-press",
        ],
        "demos": 50,
        "env_kwargs": {"render": True, "image_size": 96, "state": "robot", "camera": "corner"},
    },
}


def ensure_dataset(path: Path, suite: dict) -> None:
    from librobot.train.record import record_dataset

    if path.exists():
        return
    summary = record_dataset(
        suite["envs"], suite["demos"], path, env_kwargs=suite["env_kwargs"], expert=suite.get("expert")
    )
    print(
        f"recorded {summary.episodes} demonstrations ({summary.frames} frames) in {summary.seconds:.0f} s",
        file=sys.stderr,
    )


def evaluate(policy, args: argparse.Namespace, suite: dict, log: Path | None):
    from librobot.train.evaluation.closed_loop import evaluate_closed_loop

    return evaluate_closed_loop(
        policy,
        args.envs or suite["envs"],
        args.episodes,
        num_envs=args.num_envs,
        n_action_steps=args.n_action_steps,
        env_kwargs=suite["env_kwargs"],
        episode_log=log,
        resume=args.resume,
    )


def report_row(report) -> dict:
    per_env = report.per_env()
    return {
        "success_mean": report.success_rate,
        "success_ci95": list(report.ci95),
        "mean_max_coverage": _mean([s.mean_max_coverage for s in per_env.values()]),
        "per_task": {
            env: {"success": s.success_rate, "ci95": list(s.ci95), "mean_length": s.mean_length,
                  "mean_max_coverage": s.mean_max_coverage}
            for env, s in per_env.items()
        },
        "eval_seconds": round(report.seconds, 1),
        "eval_episodes": len(report.results),
    }  # fmt: skip


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def run_framework(name: str, args: argparse.Namespace, suite: dict, data: Path) -> dict:
    import torch

    from librobot.core.checkpoint import atomic_write_text
    from librobot.serve.torch_policy import TorchPolicy
    from librobot.train.commands import held_out_factory
    from librobot.train.config import load_run_config
    from librobot.train.evaluation.offline import evaluate_offline, hold_indices, with_previous_action
    from librobot.train.run import train_from_config

    config = ROOT / "configs" / args.suite / f"{name.replace('-', '_')}.yaml"
    run_dir = Path(args.runs) / f"{args.suite}-{name}{args.tag}"
    overrides = [
        f"data.path={data}",
        f"train.max_time={args.budget}",
        "train.max_steps=null",
        f"run_dir={run_dir}",
        "eval.every_n_steps=0",
        "logging.log_every_n_steps=200",
        *args.override,
    ]
    _, raw = load_run_config(str(config), overrides)
    saved = run_dir / "train_result.json"
    if args.resume and saved.is_file() and (run_dir / "policy").is_dir():
        train = json.loads(saved.read_text())  # trained before; only the evaluation was left
    else:
        result = train_from_config(raw, resume="auto" if args.resume else None, configure_logs=False)
        if (result.stop_reason or "").startswith("stopped by"):
            raise SystemExit(f"{name}: {result.stop_reason} at step {result.step}; continue it with --resume")
        train = {
            "steps": result.step,
            "train_seconds": round(result.train_seconds, 1),
            "train_samples_per_s": round(result.step * raw.train.batch_size / max(result.train_seconds, 1e-9), 1),
            "final_train_loss": result.train_metrics.get("train/loss"),
            **({"resumed_from_step": result.start_step} if result.start_step else {}),
        }
        atomic_write_text(saved, json.dumps(train))
    policy = TorchPolicy.from_pretrained(run_dir / "policy")
    model = policy.model
    # did it learn? offline error on held-out demonstrations next to hold / repeat-last
    held_out = with_previous_action(held_out_factory(run_dir, None, "val"), int(model.horizon))
    features = held_out.dataset.storage_features
    action, state = features["action"], features.get("observation.state")
    hold = hold_indices(action.names, state.names if state else None, action.shape[-1], state.shape[-1] if state else 0)
    offline = evaluate_offline(model, held_out, batch_size=64, max_batches=20, hold=hold)
    report = evaluate(policy, args, suite, run_dir / "eval_episodes.jsonl")
    images = {c: torch.rand(1, model.config.n_obs_steps, 3, 96, 96) for c in (model.config.cameras or [])} or None
    state_in = torch.zeros(1, model.config.n_obs_steps, model.state_dim) if model.state_dim else None
    latencies = []
    for _ in range(7):
        t = time.perf_counter()
        model.predict_action(images, ["x"], state_in)
        latencies.append(time.perf_counter() - t)
    return {
        "framework": name + args.tag,
        "suite": args.suite,
        "budget": args.budget,
        "overrides": list(args.override),
        "batch_size": raw.train.batch_size,
        **train,
        **report_row(report),
        "offline_l1": offline["l1"],
        "offline_ratio_to_best_baseline": offline["verdict"]["ratio_to_best_baseline"],
        "offline_best_baseline": offline["verdict"]["best_baseline"],
        "parameters": model.get_num_parameters(),
        "trainable_parameters": model.get_num_parameters(trainable_only=True),
        "predict_ms_batch1": round(1e3 * sorted(latencies)[len(latencies) // 2], 2),
    }


class _Baseline:
    """A policy that learned nothing: ``hold`` keeps the robot where it is, ``random`` draws uniform
    actions in the env's action box (PushT: the table; Meta-World: [-1, 1])."""

    def __init__(self, kind: str, suite: str, seed: int = 0) -> None:
        self.kind, self.suite = kind, suite
        self.rng = np.random.default_rng(seed)

    action_dim = property(lambda self: 2 if self.suite == "pusht" else 4)
    chunk_size = property(lambda self: 8)
    obs_horizon = 1

    def predict_chunk(self, observation, task=None):
        if self.kind == "random":
            high = 512.0 if self.suite == "pusht" else 1.0
            low = 0.0 if self.suite == "pusht" else -1.0
            return self.rng.uniform(low, high, (8, self.action_dim)).astype(np.float32)
        if self.suite == "pusht":  # the target is a position: the current one
            return np.repeat(np.asarray(observation["observation.state"], np.float32)[None], 8, axis=0)
        return np.zeros((8, self.action_dim), np.float32)  # Meta-World: deltas, gripper effort 0


def run_baselines(args: argparse.Namespace, suite: dict) -> list[dict]:
    from librobot.core.interfaces import PolicyInterface

    rows = []
    for kind in ("hold", "random"):
        policy = type("BaselinePolicy", (_Baseline, PolicyInterface), {})(kind, args.suite)
        report = evaluate(policy, args, suite, None)
        rows.append({"framework": f"baseline:{kind}", "suite": args.suite, **report_row(report)})
    return rows


def markdown_table(path: Path) -> str:
    rows = {r["framework"]: r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip())}
    tasks = list(dict.fromkeys(t for r in rows.values() for t in r["per_task"]))
    coverage = any(r.get("mean_max_coverage") is not None for r in rows.values())
    head = ["policy", "success [95% CI]"] + (["mean max coverage"] if coverage else [])
    head += [t.removeprefix("metaworld-") for t in tasks] if len(tasks) > 1 else []
    head += ["steps in budget", "train s", "samples/s", "offline error / best baseline", "predict b1 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows.values(), key=lambda r: -r["success_mean"]):
        lo, hi = r["success_ci95"]
        cells = [r["framework"], f"{100 * r['success_mean']:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}]"]
        cells += [f"{r['mean_max_coverage']:.3f}"] if coverage else []
        cells += [f"{100 * r['per_task'][t]['success']:.0f}%" for t in tasks] if len(tasks) > 1 else []
        trained = "steps" in r
        cells += [str(r["steps"]) if trained else "-", f"{r['train_seconds']:.0f}" if trained else "-"]
        cells += [f"{r['train_samples_per_s']:.0f}" if trained else "-"]
        cells += [f"{r['offline_ratio_to_best_baseline']:.2f} ({r['offline_best_baseline']})" if trained else "-"]
        cells += [f"{r['predict_ms_batch1']:.0f}" if trained else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), help="required unless --table")
    parser.add_argument("--frameworks", nargs="+", default=[])
    parser.add_argument("--baselines", action="store_true", help="evaluate hold-still and random policies")
    parser.add_argument("--budget", default="25m", help="training wall-clock budget per framework")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes per task")
    parser.add_argument("--envs", nargs="+", default=None, help="evaluate on these envs (default: the suite's)")
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--n-action-steps", type=int, default=8)
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--tag", default="", help="suffix of the run folder and result name (variants)")
    parser.add_argument("--data", default=None, help="dataset folder (recorded when missing)")
    parser.add_argument("--runs", default="runs/pixels")
    parser.add_argument("--resume", action="store_true", help="continue a killed run")
    parser.add_argument("--out", default=None, help="results file (default benchmarks/results/pixels_<suite>.jsonl)")
    parser.add_argument("--table", metavar="RESULTS", help="print a results file as a markdown table and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(Path(args.table)))
        return 0
    if args.suite is None:
        parser.error("--suite is required (or --table RESULTS)")
    suite = SUITES[args.suite]
    data = Path(args.data or f"data/pixels-{args.suite}")
    ensure_dataset(data, suite)
    out = Path(args.out or f"benchmarks/results/pixels_{args.suite}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "seeds": "evaluation seeds from 1,000,000; demonstrations from 0",
    }
    rows = run_baselines(args, suite) if args.baselines else []
    for row in rows:
        _write(out, row, machine)
    for name in args.frameworks:  # each row is written as soon as it exists: a long sweep keeps what it finished
        rows.append(_write(out, run_framework(name, args, suite, data), machine))
    print(json.dumps(rows, indent=2))
    return 0


def _cpu_model() -> str:
    """The CPU's model name (machines differ between sessions: compare figures from one machine)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _write(out: Path, row: dict, machine: dict) -> dict:
    with open(out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({**row, "machine": machine}) + "\n")
    coverage = f", coverage {row['mean_max_coverage']:.3f}" if row.get("mean_max_coverage") is not None else ""
    print(f"{row['framework']:<20} success {100 * row['success_mean']:5.1f}%{coverage}", file=sys.stderr)
    return row


if __name__ == "__main__":
    sys.exit(main())

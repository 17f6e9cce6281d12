"""Learning benchmark: train every framework on scripted Meta-World demonstrations, then measure
closed-loop success per task (with 95% Wilson intervals), training wall time and samples/s.

One multi-task policy per framework, conditioned on the instruction, with the built-in tiny VLM,
trained from configs/metaworld/<framework>.yaml. Results are appended as one JSON line per
framework (so a long run keeps what it finished) and summarised as a table at the end.

    python benchmarks/learning.py --frameworks groot act --steps 4000 --episodes 50
    python benchmarks/learning.py --images          # 96x96 camera observations (slower)
    python benchmarks/learning.py --images --frameworks rt2 --resume   # continue a killed run

Training checkpoints every --checkpoint-every steps and evaluation logs each episode as it ends, so
a run killed part-way (a signal, the end of a session) continues with --resume: training from its
last checkpoint, exactly as if uninterrupted, then only the evaluation episodes still missing.

This is not a test: a full run of every framework takes hours on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = [
    "metaworld-reach",
    "metaworld-push",
    "metaworld-pick-place",
    "metaworld-door-open",
    "metaworld-drawer-close",
    "metaworld-button-press",
]


def ensure_dataset(path: Path, tasks: list[str], demos: int, images: bool) -> None:
    from librobot.train.record import record_dataset

    if path.exists():
        return
    kwargs = {"render": True, "image_size": 96} if images else {"render": False}
    summary = record_dataset(tasks, demos, path, env_kwargs=kwargs)
    print(
        f"recorded {summary.episodes} demonstrations ({summary.frames} frames) in {summary.seconds:.0f} s",
        file=sys.stderr,
    )


def run_framework(name: str, args: argparse.Namespace, data: Path) -> dict:
    import torch

    from librobot.core.checkpoint import atomic_write_text
    from librobot.serve.torch_policy import TorchPolicy
    from librobot.train.config import load_run_config
    from librobot.train.evaluation.closed_loop import evaluate_closed_loop
    from librobot.train.run import train_from_config

    config = ROOT / "configs" / "metaworld" / f"{name.replace('-', '_')}.yaml"
    run_dir = Path(args.runs) / f"{name}{'-images' if args.images else ''}"
    overrides = [
        f"data.path={data}",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"run_dir={run_dir}",
        f"checkpoint.every_n_steps={args.checkpoint_every}",
        "eval.every_n_steps=0",
        "logging.log_every_n_steps=200",
    ]
    _, raw = load_run_config(str(config), overrides)
    provenance: dict = {}  # how a resumed or --evaluate-only row got its training figures
    if args.evaluate_only:  # evaluate a trained policy again; training figures from its result line or run folder
        if not (run_dir / "policy").is_dir():
            raise SystemExit(f"{name}: --evaluate-only needs a trained policy in {run_dir / 'policy'}")
        previous = _previous_row(Path(args.out), name, args)
        if previous is not None:
            provenance = {"evaluated_again": True}
        else:
            previous = _train_figures_from_run(run_dir, name, args)
            provenance = {k: previous[k] for k in ("train_figures_from", "resumed_from_step") if k in previous}
        train = {k: previous[k] for k in ("train_seconds", "train_samples_per_s", "final_train_loss", "val_loss")}
        step = previous["steps"]
    else:
        started = time.perf_counter()
        result = train_from_config(raw, resume="auto" if args.resume else None, configure_logs=False)
        train_seconds = time.perf_counter() - started
        if result.step < args.steps:  # stopped early (a signal): a partial run is no result
            raise SystemExit(
                f"{name}: training stopped at step {result.step} of {args.steps}; no result written "
                "(continue it with --resume)"
            )
        step = result.step
        # A whole run counts its wall time (setup, validation and checkpoints included: ~0.5% above the
        # trainer's step time for octo and openvla on images); a resumed one has only the step time.
        if result.start_step:  # this process ran only the last part: the trainer's time in every step
            train_seconds = result.train_seconds
            provenance = {"resumed_from_step": result.start_step}
        train = {
            "train_seconds": round(train_seconds, 1),
            "train_samples_per_s": round(result.step * args.batch_size / train_seconds, 1),
            "final_train_loss": result.train_metrics.get("train/loss"),
            "val_loss": result.eval_metrics.get("val/loss"),
        }
        # kept beside the policy, so an evaluation that dies (memory, a signal) can be re-run alone
        atomic_write_text(run_dir / "train_result.json", json.dumps({"steps": step, **train, **provenance}))
    policy = TorchPolicy.from_pretrained(run_dir / "policy")
    model = policy.model
    env_kwargs = {"render": True, "image_size": 96} if args.images else {"render": False}
    report = evaluate_closed_loop(
        policy,
        args.tasks,
        args.episodes,
        num_envs=args.num_envs,
        n_action_steps=args.n_action_steps,
        env_kwargs=env_kwargs,
        episode_log=run_dir / "eval_episodes.jsonl",
        resume=args.resume,
    )
    text = ["reach the goal"]
    state = torch.zeros(1, model.state_dim) if model.state_dim else None
    images = {c: torch.rand(1, 3, 96, 96) for c in (model.config.cameras or [])} or None
    latencies = []
    for _ in range(7):
        t = time.perf_counter()
        model.predict_action(images, text, state)
        latencies.append(time.perf_counter() - t)
    per_env = report.per_env()
    return {
        "framework": name,
        "observations": observations(args),
        "steps": step,
        "batch_size": args.batch_size,
        **train,
        "parameters": model.get_num_parameters(),
        "trainable_parameters": model.get_num_parameters(trainable_only=True),
        "predict_ms_batch1": round(1e3 * sorted(latencies)[len(latencies) // 2], 2),
        "success_mean": report.success_rate,
        "success_ci95": list(report.ci95),
        "per_task": {
            env: {"success": s.success_rate, "ci95": list(s.ci95), "episodes": s.episodes, "mean_length": s.mean_length}
            for env, s in per_env.items()
        },
        "eval_seconds": round(report.seconds, 1),
        "eval_env_steps_per_s": round(report.env_steps / max(report.seconds, 1e-9), 1),
        "obs_horizon": policy.obs_horizon,
        **({"eval_resumed_episodes": report.resumed_episodes} if report.resumed_episodes else {}),
        **provenance,
    }


def observations(args: argparse.Namespace) -> str:
    return "state+image96" if args.images else "state"


def read_rows(path: Path) -> list[dict]:
    """The result lines of a results file, oldest first (none when it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def latest_rows(paths: list[Path]) -> list[dict]:
    """The latest result line per (framework, observations, steps) over these files."""
    latest = {(r["framework"], r["observations"], r["steps"]): r for p in paths for r in read_rows(p)}
    return list(latest.values())


def _previous_row(out: Path, name: str, args: argparse.Namespace) -> dict | None:
    """The last result line of ``name`` with these observations and steps (to re-evaluate it)."""
    kind = observations(args)
    rows = [r for r in read_rows(out) if (r["framework"], r["observations"], r["steps"]) == (name, kind, args.steps)]
    return rows[-1] if rows else None


def _train_figures_from_run(run_dir: Path, name: str, args: argparse.Namespace) -> dict:
    """Training figures of a run whose evaluation never wrote a result line: its train_result.json,
    or for runs older than that file, the run folder itself (config.yaml is written when training
    starts, the policy when it ends; losses from metrics.jsonl)."""
    saved = run_dir / "train_result.json"
    if saved.is_file():
        figures = {**json.loads(saved.read_text(encoding="utf-8")), "train_figures_from": saved.name}
    else:
        metrics = read_rows(run_dir / "metrics.jsonl")
        train = [m for m in metrics if "train/loss" in m]
        val = [m for m in metrics if "val/loss" in m]
        seconds = (run_dir / "policy" / "model.safetensors").stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime
        figures = {
            "steps": train[-1]["step"] if train else 0,
            "train_seconds": round(seconds, 1),
            "train_samples_per_s": round(train[-1]["step"] * args.batch_size / seconds, 1) if train else 0.0,
            "final_train_loss": train[-1]["train/loss"] if train else None,
            "val_loss": val[-1]["val/loss"] if val else None,
            "train_figures_from": "run folder times",
        }
    if figures["steps"] != args.steps:
        raise SystemExit(f"{name}: {run_dir} trained {figures['steps']} steps, not --steps {args.steps}")
    return figures


def markdown_table(path: Path) -> str:
    """A markdown table of a results file: the latest line per (framework, observations, steps)."""
    latest = latest_rows([path])
    tasks = list(dict.fromkeys(t for r in latest for t in r["per_task"]))
    head = ["framework", "obs", "steps", "mean success [95% CI]", *(t.removeprefix("metaworld-") for t in tasks)]
    head += ["train s", "samples/s", "predict b1 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(latest, key=lambda r: (r["observations"], -r["success_mean"])):
        lo, hi = r["success_ci95"]
        cells = [r["framework"], r["observations"], str(r["steps"])]
        cells.append(f"{100 * r['success_mean']:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}]")
        cells += [f"{100 * r['per_task'][t]['success']:.0f}%" if t in r["per_task"] else "-" for t in tasks]
        cells += [f"{r['train_seconds']:.0f}", f"{r['train_samples_per_s']:.0f}", f"{r['predict_ms_batch1']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    from librobot.models import list_vlas

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", default=None, help="default: every registered framework")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--demos", type=int, default=50, help="demonstrations per task")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes per task")
    parser.add_argument("--num-envs", type=int, default=25)
    parser.add_argument("--n-action-steps", type=int, default=8)
    parser.add_argument("--images", action="store_true", help="96x96 camera observations as well as the state")
    parser.add_argument("--data", default=None, help="dataset folder (recorded when missing)")
    parser.add_argument(
        "--evaluate-only",
        action="store_true",
        help="evaluate the policies already trained in --runs again (training figures from --out's earlier lines)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        help="training steps between checkpoints (0: only the final one)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue a killed run: training from its checkpoint, then evaluation"
    )
    parser.add_argument("--runs", default="runs/learning")
    parser.add_argument("--out", default="benchmarks/results/learning.jsonl")
    parser.add_argument("--table", metavar="RESULTS", help="print a results file as a markdown table and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(Path(args.table)))
        return 0
    frameworks = args.frameworks or list_vlas()
    data = Path(args.data or f"data/metaworld{len(args.tasks)}{'-images' if args.images else ''}")
    ensure_dataset(data, args.tasks, args.demos, args.images)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MALLOC_MMAP_MAX_": os.environ.get("MALLOC_MMAP_MAX_"),
        "demos_per_task": args.demos,
    }
    rows = []
    for name in frameworks:
        row = {**run_framework(name, args, data), "machine": machine}
        rows.append(row)
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        print(
            f"{name:<12} success {100 * row['success_mean']:5.1f}% "
            f"[{100 * row['success_ci95'][0]:.0f}, {100 * row['success_ci95'][1]:.0f}]  "
            f"train {row['train_seconds']:.0f} s ({row['train_samples_per_s']:.0f} samples/s)",
            file=sys.stderr,
        )
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

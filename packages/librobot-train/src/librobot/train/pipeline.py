"""``librobot demo``: the main job end to end on a built-in default, on a CPU, with no downloads.

1. record scripted-expert demonstrations of Meta-World tasks (each with its instruction);
2. train one instruction-conditioned VLA policy on them with the built-in tiny VLM;
3. evaluate it in closed loop (vectorised, through the serve runtime and the safety layer);
4. export it to ONNX and check it against torch;
5. write a report: curves, success rates with 95% intervals, rollout videos, export figures.

Every stage writes into one folder, and a finished stage is not redone when the command is run
again (delete the folder, or pass --fresh, to start over); an interrupted training continues from
its last checkpoint and an interrupted evaluation keeps the episodes it finished.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from librobot.core.checkpoint import read_json, write_json
from librobot.core.logging import get_logger

log = get_logger("demo")
DEFAULT_TASKS = ("metaworld-reach", "metaworld-button-press", "metaworld-drawer-close", "metaworld-door-open")


@dataclass
class DemoSettings:
    out: Path = Path("runs/demo")
    tasks: Sequence[str] = DEFAULT_TASKS
    demos: int = 30  # per task
    framework: str = "groot"
    steps: int = 1500
    batch_size: int = 64
    episodes: int = 10  # evaluation episodes per task
    videos: int = 1  # per task
    num_envs: int = 16
    export: bool = True
    fresh: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def train_config(s: DemoSettings, data: Path, run_dir: Path) -> dict[str, Any]:
    """The run config the demo trains with (what `librobot train` would read from a file)."""
    return {
        "name": "demo",
        "run_dir": str(run_dir),
        "model": {"factory": "vla", "framework": s.framework, "vlm": "librobot-tiny-vlm"},
        "data": {
            "factory": "store",
            "path": str(data),
            "obs_horizon": 1,
            "action_horizon": 16,
            "split": "train",
            "val": {"split": "val"},
        },
        "train": {"max_steps": s.steps, "batch_size": s.batch_size, "seed": 0},
        "optimizer": {"name": "adamw", "lr": 3.0e-4, "weight_decay": 0.01},
        "scheduler": {"name": "cosine", "warmup_steps": min(100, s.steps // 10), "min_lr_ratio": 0.05},
        "ema": {"enabled": True, "max_decay": 0.995},
        "checkpoint": {"every_n_steps": 500, "keep_last": 1, "monitor": "val/loss"},
        "eval": {"every_n_steps": 0, "max_batches": 10},
        "logging": {"log_every_n_steps": 50},
        "callbacks": [{"name": "export-policy"}],
    }


def _stage(s: DemoSettings, name: str) -> float:
    log.info("== %s", name)
    return time.perf_counter()


def _training_done(run_dir: Path, steps: int) -> bool:
    """A policy from a training that reached ``steps`` (an interrupted training exports one too)."""
    from librobot.train.checkpointing import CheckpointManager

    latest = CheckpointManager(run_dir / "checkpoints").read_pointer("latest")
    return (run_dir / "policy" / "manifest.json").is_file() and latest is not None and latest["step"] >= steps


def run_demo(s: DemoSettings) -> Path:
    """Run (or finish) the demo into ``s.out``; return the report's path."""
    from librobot.train.record import record_dataset

    if s.fresh and s.out.exists():
        shutil.rmtree(s.out)
    s.out.mkdir(parents=True, exist_ok=True)
    data, run_dir = s.out / "data", s.out / "run"

    if not data.exists():
        t = _stage(s, f"1/5 recording {s.demos} expert demonstrations of each of {len(s.tasks)} tasks")
        record_dataset(list(s.tasks), s.demos, data, env_kwargs={"render": False})
        s.timings["record_s"] = time.perf_counter() - t

    if not _training_done(run_dir, s.steps):
        from librobot.train.run import train_from_config

        t = _stage(s, f"2/5 training {s.framework} (tiny VLM) for {s.steps} steps")
        # an interrupted training (Ctrl-C checkpoints; a kill loses at most 500 steps) continues
        train_from_config(train_config(s, data, run_dir), resume="auto", configure_logs=False)
        s.timings["train_s"] = time.perf_counter() - t

    from librobot.serve.torch_policy import TorchPolicy
    from librobot.train.evaluation.closed_loop import evaluate_closed_loop, summary_lines

    t = _stage(s, f"3/5 closed-loop evaluation: {s.episodes} episodes per task")
    policy = TorchPolicy.from_pretrained(run_dir / "policy")
    # the episodes of an interrupted evaluation are kept, unless the policy was trained just now
    report = evaluate_closed_loop(
        policy,
        list(s.tasks),
        s.episodes,
        num_envs=s.num_envs,
        n_action_steps=8,
        env_kwargs={"render": False},
        videos_per_env=s.videos,
        video_dir=s.out / "videos",
        episode_log=s.out / "episodes.jsonl",
        resume="train_s" not in s.timings,
    )
    s.timings["eval_s"] = time.perf_counter() - t
    for line in summary_lines(report):
        log.info("%s", line)

    export_info: dict[str, Any] = {}
    if s.export:
        t = _stage(s, "4/5 exporting to ONNX and checking it against torch")
        export_info = export_and_check(
            run_dir / "policy", s.out / "export", list(dict.fromkeys(r.task for r in report.results))
        )
        s.timings["export_s"] = time.perf_counter() - t

    _stage(s, "5/5 writing the report")
    from librobot.train.evaluation.report import write_report

    model = policy.model
    details = {
        "framework": s.framework,
        "backbone": "librobot-tiny-vlm (built in, random init)",
        "parameters": f"{model.get_num_parameters():,} ({model.get_num_parameters(trainable_only=True):,} trainable)",
        "demonstrations": f"{s.demos} per task, state observations",
        "training steps": f"{s.steps} × batch {s.batch_size}",
        **{k: (f"{v:.0f} s" if k.endswith("_s") else v) for k, v in s.timings.items()},
        **export_info,
    }
    previous = read_json(s.out / "summary.json") if (s.out / "summary.json").is_file() else {}
    write_json(
        s.out / "summary.json", {**previous, "success_rate": report.success_rate, "ci95": list(report.ci95), **details}
    )
    return write_report(report, s.out, title="LibroBot demo", extra=details, curves=run_dir / "curves.png")


def export_and_check(policy_dir: Path, out: Path, tasks: list[str]) -> dict[str, Any]:
    """Export the policy to ONNX for the demo's instructions and compare it with torch."""
    import numpy as np

    from librobot.serve.export import export_onnx
    from librobot.serve.onnx_policy import OnnxPolicy
    from librobot.serve.torch_policy import TorchPolicy

    export_onnx(policy_dir, out, tasks=tasks)
    onnx_policy, torch_policy = OnnxPolicy(out), TorchPolicy.from_pretrained(policy_dir)
    rng = np.random.default_rng(0)
    state = rng.standard_normal(torch_policy.model.state_dim).astype(np.float32)
    noise = rng.standard_normal((torch_policy.chunk_size, torch_policy.action_dim)).astype(np.float32)
    observation = {"observation.state": state}
    a = onnx_policy.predict_chunk(observation, tasks[0], noise=noise)
    b = torch_policy.predict_chunk(observation, tasks[0], noise=noise)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"onnx export": f"{out} ({size / 1e6:.1f} MB)", "onnx vs torch max |Δ|": f"{float(np.abs(a - b).max()):.2e}"}

"""``librobot sim record`` and ``librobot eval``: the recording and evaluation commands.

``sim record`` joins the ``sim`` command group that librobot-robots contributes (robots cannot
depend on the data store, so the recorder lives here, above both).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from librobot.core.errors import ConfigError


def _env_kwargs(pairs: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--env-arg expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = OmegaConf.from_dotlist([f"v={value}"])["v"]
    return out


# ------------------------------------------------------------------------------------ sim record
def _run_record(args: argparse.Namespace) -> int:
    from librobot.train.record import record_dataset

    kwargs = _env_kwargs(args.env_arg)
    kwargs.setdefault("render", not args.no_images)
    summary = record_dataset(
        args.env,
        args.episodes,
        args.out,
        seed=args.seed,
        only_successful=not args.keep_failures,
        overwrite=args.overwrite,
        max_steps=args.max_steps,
        env_kwargs=kwargs,
        expert=args.expert,
    )
    per_env = ", ".join(f"{k}: {v}" for k, v in summary.per_env.items())
    print(
        f"recorded {summary.episodes} episodes, {summary.frames} frames in {summary.seconds:.0f} s → {summary.path} ({per_env})"
    )
    return 0


def add_sim_record(subparsers: Any) -> None:
    """Add ``record`` to the ``sim`` group (created here if librobot-robots did not add it)."""
    sim = subparsers.choices.get("sim") or subparsers.add_parser("sim", help="simulated environments")
    groups = [a for a in sim._actions if isinstance(a, argparse._SubParsersAction)]
    sim_sub = groups[0] if groups else sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    p = sim_sub.add_parser(
        "record",
        help="record scripted-expert demonstrations into a dataset (episode store)",
        description="Run each env's scripted expert and write the episodes (LeRobot-compatible keys) into a new "
        "episode store; the dataset appears only when complete.",
    )
    p.add_argument("--env", nargs="+", required=True, help="registered env names or globs (metaworld-*)")
    p.add_argument("--episodes", type=int, required=True, help="episodes per env")
    p.add_argument("--out", required=True, type=Path, help="the dataset folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-images", action="store_true", help="state only (no camera rendering: much faster on a CPU)")
    p.add_argument("--keep-failures", action="store_true", help="keep episodes the expert failed")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env option, e.g. image_size=64")
    p.add_argument("--expert", default=None, help="a registered expert instead of each env's own (pusht-reactive)")
    p.set_defaults(func=_run_record)


# ------------------------------------------------------------------------------------ eval
def load_policy_for_eval(
    path: str | Path, *, trust_remote_code: bool = False, precision: str = "auto"
) -> tuple[Any, Any]:
    """(policy, torch model or None) from a policy folder, a run folder, or an ONNX export folder;
    ``precision`` applies to torch policies (``TorchPolicy``)."""
    path = Path(path)
    if (path / "policy" / "config.json").is_file():
        path = path / "policy"
    if (path / "policy.json").is_file() and not (path / "config.json").is_file():
        from librobot.serve.onnx_policy import OnnxPolicy

        return OnnxPolicy(path), None
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{path} is neither a policy folder (config.json), a run folder (policy/) nor an ONNX export (policy.json)"
        )
    from librobot.serve.torch_policy import TorchPolicy

    policy = TorchPolicy.from_pretrained(path, trust_remote_code=trust_remote_code, precision=precision)
    return policy, policy.model


def held_out_factory(path: Path, data: str | None, split: str | None) -> Any:
    """``make(**overrides)`` building the held-out dataset of a run: its config's data section with
    the validation overrides (``val:``), or the dataset at ``data`` (``split``: "val" or None for all).
    A run folder is data: its data factory must be a registered name (no code is imported)."""
    from librobot.core.references import resolve

    if data is not None:
        from librobot.data import create_dataset

        return lambda **kw: create_dataset(data, split=split, **kw)
    run = next((p for p in (path, path.parent) if (p / "config.yaml").is_file()), None)
    if run is None:
        raise ConfigError(f"{path} is a policy folder without its run's config.yaml: pass --data DATASET")
    from omegaconf import OmegaConf

    from librobot.core.config import load_config

    section = (
        OmegaConf.to_container(load_config(run / "config.yaml", load_plugins=False), resolve=True).get("data") or {}
    )
    kwargs = {k: v for k, v in section.items() if k not in ("factory", "val")}
    if split == "val":
        if not section.get("val"):
            raise ConfigError(
                f"{run}/config.yaml has no validation split (data.val): pass --data DATASET or --split all"
            )
        kwargs.update(section["val"])
    else:
        kwargs.pop("split", None)
    factory = resolve(str(section.get("factory")), "dataset", key=f"{run}/config.yaml data.factory")
    return lambda **kw: factory(**{**kwargs, **kw})


def _run_offline(args: argparse.Namespace) -> int:
    from librobot.core import batch as B
    from librobot.core.checkpoint import write_json
    from librobot.train.evaluation.offline import evaluate_offline, hold_indices, summary_lines, with_previous_action

    policy, model = load_policy_for_eval(
        args.policy, trust_remote_code=args.trust_remote_code, precision=args.precision
    )
    if model is None:
        raise ConfigError("--offline needs a torch policy (a policy or run folder), not an ONNX export")
    split = None if args.split == "all" else args.split
    dataset = with_previous_action(held_out_factory(Path(args.policy), args.data, split), int(model.horizon))
    features = dataset.dataset.storage_features
    action, state = features[dataset.dataset.action_key], dataset.dataset.state_feature  # joined parts' names
    hold = hold_indices(action.names, state.names if state else None, action.shape[-1], state.shape[-1] if state else 0)
    with policy.precision.autocast():
        metrics = evaluate_offline(model, dataset, batch_size=args.batch_size, max_batches=args.max_batches, hold=hold)
    print("\n".join(summary_lines(metrics, action.names)))
    out = Path(args.out)
    record = {"policy": str(args.policy), "precision": policy.precision.name, "action": B.ACTION, **metrics}
    write_json(out / "offline.json", record)
    print(f"report: {out / 'offline.json'}")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    if args.offline:
        return _run_offline(args)
    if not args.env:
        raise ConfigError(
            "closed-loop evaluation needs --env NAME ... (or --offline for the action error on held-out data)"
        )
    from librobot.train.evaluation.closed_loop import evaluate_closed_loop, summary_lines
    from librobot.train.evaluation.report import write_report

    policy, model = load_policy_for_eval(
        args.policy, trust_remote_code=args.trust_remote_code, precision=args.precision
    )
    kwargs = _env_kwargs(args.env_arg)
    cameras = getattr(getattr(model, "config", None), "cameras", None)
    # an ONNX export has no model config: its declared image inputs say it needs the camera
    inputs = dict(getattr(policy, "input_features", None) or {})
    kwargs.setdefault("render", bool(cameras) or any(getattr(f, "kind", "") == "image" for f in inputs.values()))
    out = Path(args.out)
    report = evaluate_closed_loop(
        policy,
        args.env,
        args.episodes,
        num_envs=args.num_envs,
        n_action_steps=args.n_action_steps,
        max_steps=args.max_steps,
        env_kwargs=kwargs,
        videos_per_env=args.videos,
        video_dir=out / "videos",
        episode_log=out / "episodes.jsonl",
        resume=args.resume,
        mode=args.mode,
    )
    print("\n".join(summary_lines(report)))
    extra = {"policy": str(args.policy)}
    if model is not None:
        extra["precision"] = policy.precision.name
    page = write_report(report, out, title=f"evaluation of {args.policy}", extra=extra)
    print(f"report: {page}")
    return 0


def add_eval(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="closed-loop evaluation of a policy in simulated tasks",
        description="Roll a policy out in simulated tasks (vectorised, through the serve runtime with the safety layer) "
        "and report success rates with 95%% intervals, episode lengths and rollout videos.",
    )
    p.add_argument("policy", help="a policy folder, a run folder (uses <run>/policy) or an ONNX export folder")
    p.add_argument("--env", nargs="+", help="registered env names or globs (closed loop)")
    p.add_argument(
        "--offline",
        action="store_true",
        help="no simulator: per-dimension action error on held-out episodes next to the 'hold still' and "
        "'repeat the last action' baselines, with a warning when the policy is not clearly better",
    )
    p.add_argument("--data", help="--offline: the dataset to score on (default: the run's validation split)")
    p.add_argument("--split", choices=("val", "all"), default="val", help="--offline: which episodes of --data")
    p.add_argument("--max-batches", type=int, default=None, help="--offline: stop after this many batches")
    p.add_argument("--batch-size", type=int, default=32, help="--offline: samples per policy call")
    p.add_argument("--episodes", type=int, default=20, help="episodes per env")
    p.add_argument("--num-envs", type=int, default=8, help="environments stepped in lockstep (one batched policy call)")
    p.add_argument("--n-action-steps", type=int, default=None, help="actions executed per chunk (default: all)")
    p.add_argument(
        "--mode",
        choices=("auto", "sync", "ensemble"),
        default="auto",
        help="how chunks run: sync (n-action-steps of each chunk), ensemble (a chunk every step, ACT's temporal "
        "ensembling); auto (default) follows the policy (an ACT policy with temporal_ensemble ensembles)",
    )
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--videos", type=int, default=1, help="rollout videos per env")
    p.add_argument("--out", default="eval", help="report folder (episodes.jsonl there gets each episode as it ends)")
    p.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--resume", action="store_true", help="keep the episodes of an earlier, interrupted run in --out")
    from librobot.serve.cli import add_precision_option, add_trust_remote_code_option

    add_trust_remote_code_option(p)
    add_precision_option(p)
    p.set_defaults(func=_run_eval)


# ------------------------------------------------------------------------------------ demo
def demo_settings(args: argparse.Namespace) -> Any:
    """The ``DemoSettings`` a ``librobot demo`` command line asks for."""
    from librobot.train.pipeline import DemoSettings

    settings = DemoSettings(out=Path(args.out), framework=args.framework, steps=args.steps, demos=args.demos,
                            episodes=args.episodes, export=not args.no_export, fresh=args.fresh)  # fmt: skip
    if args.tasks:
        settings.tasks = args.tasks
    if args.quick:  # a smoke run of every stage in about two minutes
        settings.steps, settings.demos, settings.episodes, settings.tasks = 60, 4, 2, settings.tasks[:2]
    return settings


def _run_demo(args: argparse.Namespace) -> int:
    from librobot.train.pipeline import run_demo

    page = run_demo(demo_settings(args))
    print(f"report: {page}")
    return 0


def add_demo(subparsers: Any) -> None:
    from librobot.train.pipeline import DemoSettings

    d = DemoSettings()
    p = subparsers.add_parser(
        "demo",
        help="the main job end to end: record demonstrations, train, evaluate, export, report (CPU, ~10 min)",
        description="Record scripted-expert demonstrations of Meta-World tasks, train an instruction-conditioned VLA "
        "policy with the built-in tiny VLM, evaluate it in closed loop, export it to ONNX and write an HTML report.",
    )
    p.add_argument("--out", default=str(d.out), help="output folder (finished stages are reused)")
    p.add_argument("--framework", default=d.framework, help="any registered framework (librobot info lists them)")
    p.add_argument("--tasks", nargs="+", default=None, help=f"env names (default: {' '.join(d.tasks)})")
    p.add_argument("--demos", type=int, default=d.demos, help="demonstrations per task")
    p.add_argument("--steps", type=int, default=d.steps, help="training steps")
    p.add_argument("--episodes", type=int, default=d.episodes, help="evaluation episodes per task")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--fresh", action="store_true", help="delete the output folder first")
    p.add_argument("--quick", action="store_true", help="tiny sizes: every stage in about two minutes")
    p.set_defaults(func=_run_demo)

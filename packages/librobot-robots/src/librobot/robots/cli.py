"""``librobot sim …`` and ``librobot robot …`` commands (added through the ``librobot.cli`` entry point).

``librobot sim list``                       simulated environments, their experts and instructions
``librobot sim expert --env X --episodes N`` scripted-expert success rate with a 95% interval
``librobot robot list`` / ``robot show NAME`` robot definitions (name, or a YAML file)

(``librobot sim record`` lives in librobot-train, which owns the dataset writer.)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from typing import Any

from librobot.core.errors import ConfigError


def add_commands(subparsers: Any) -> None:
    sim = subparsers.add_parser("sim", help="simulated environments and scripted experts")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    sim.set_defaults(func=lambda args: (sim.print_help(), 2)[1])

    p = sim_sub.add_parser("list", help="list simulated environments")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_sim_list)

    p = sim_sub.add_parser("expert", help="measure a scripted expert's success rate")
    p.add_argument(
        "--env",
        action="append",
        required=True,
        help="env name or glob (repeatable), e.g. metaworld-push or 'metaworld-*'",
    )
    p.add_argument("--episodes", type=int, default=20, help="episodes per env (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed+i")
    p.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: the env's)")
    p.add_argument("--expert", default=None, help="expert name (default: the env's own)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    p.set_defaults(func=cmd_sim_expert)

    robot = subparsers.add_parser("robot", help="robot definitions")
    robot_sub = robot.add_subparsers(dest="robot_command", metavar="SUBCOMMAND")
    robot.set_defaults(func=lambda args: (robot.print_help(), 2)[1])
    p = robot_sub.add_parser("list", help="list registered robots")
    p.set_defaults(func=cmd_robot_list)
    p = robot_sub.add_parser("show", help="print a robot's spaces, limits and rates as JSON")
    p.add_argument("name", help="registered name/alias or a YAML file")
    p.set_defaults(func=cmd_robot_show)


def _env_entries() -> list[Any]:
    from librobot.core.registry import get_registry

    return get_registry("env").entries()


def cmd_sim_list(args: argparse.Namespace) -> int:
    from librobot.core.extras import is_available

    rows = []
    for e in _env_entries():
        extra = e.meta.get("extra", "")
        needs = {"librobot-robots[metaworld]": "metaworld", "librobot-robots[pusht]": "gym_pusht"}.get(
            extra, "gymnasium"
        )
        rows.append(
            {
                "env": e.name,
                "aliases": list(e.aliases),
                "expert": e.meta.get("expert", ""),
                "task": e.meta.get("task", e.doc),
                "extra": extra,
                "available": is_available(needs),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["env"]) for r in rows), default=10)
    for r in rows:
        mark = "" if r["available"] else f"  [needs pip install '{r['extra']}']"
        print(f"{r['env']:<{width}}  expert={r['expert'] or '-':<22} {r['task']}{mark}")
    print(f"{len(rows)} environments")
    return 0


def _expand(patterns: list[str]) -> list[str]:
    from librobot.core.registry import get_registry

    registry = get_registry("env")
    names = registry.list()
    out: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matched = fnmatch.filter(names, pattern)
            if not matched:
                raise ConfigError(f"no environment matches '{pattern}'; see `librobot sim list`")
            out += matched
        else:
            out.append(registry.canonical(pattern))  # unknown names raise with close matches
    return list(dict.fromkeys(out))


def cmd_sim_expert(args: argparse.Namespace) -> int:
    from librobot.robots.sim.api import evaluate_expert

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be at least 1, got {args.episodes}")
    envs = _expand(args.env)
    reports = []
    for name in envs:
        report = evaluate_expert(
            name, args.episodes, expert=args.expert, seed=args.seed, max_steps=args.max_steps, progress=True
        )
        reports.append(report.to_dict())
        if not args.json:
            r, (lo, hi) = reports[-1], report.ci95
            print(
                f"{name}: success {r['successes']}/{r['episodes']} = {100 * report.success_rate:.1f}% "
                f"(95% CI {100 * lo:.1f}-{100 * hi:.1f}%), episode length mean {r['mean_length']} "
                f"[{r['min_length']}, {r['max_length']}], {r['steps_per_s']} steps/s",
                flush=True,
            )
    if len(reports) > 1:
        total = sum(r["successes"] for r in reports)
        n = sum(r["episodes"] for r in reports)
        mean = sum(r["success_rate"] for r in reports) / len(reports)
        summary = {"envs": len(reports), "mean_success_rate": round(mean, 4), "pooled": f"{total}/{n}"}
        if not args.json:
            print(f"mean over {len(reports)} envs: {100 * mean:.1f}% ({total}/{n} episodes)")
    else:
        summary = {}
    if args.json:
        print(json.dumps({"reports": reports, "summary": summary}, indent=2))
    return 0


def cmd_robot_list(args: argparse.Namespace) -> int:
    from librobot.core.registry import get_registry

    for e in get_registry("robot").entries():
        print(f"{e.name:<14} aliases={','.join(e.aliases):<14} {e.doc}")
    return 0


def cmd_robot_show(args: argparse.Namespace) -> int:
    from librobot.robots.base import create_robot

    robot = create_robot(args.name)
    print(json.dumps(robot.spec.to_dict(), indent=2))
    return 0

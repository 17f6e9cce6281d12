"""``librobot train CONFIG [key=value ...]`` and the ``librobot-train`` script.

CONFIG is a YAML file or a built-in config name (``toy-reach``). Under ``torchrun`` every process runs
the same command: ``torchrun --nproc_per_node 2 -m librobot.train.cli CONFIG ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from librobot.core.errors import LibroBotError
from librobot.train.config import BUILTIN_CONFIGS

_EXAMPLES = """examples:
  librobot train toy-reach                              # the built-in toy task (CPU, a few minutes)
  librobot train toy-reach train.max_steps=100 name=quick    # overrides: key=value, +new.key=v, ~drop.key
  librobot train my.yaml --resume                       # continue runs/<name> from its latest checkpoint
  torchrun --nproc_per_node 2 -m librobot.train.cli my.yaml distributed.strategy=fsdp
"""


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", help="run folder (default: run_dir from the config, else runs/<name>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH",
        help="continue from the latest checkpoint of the run folder (a damaged one is passed over for the newest "
        "older one that verifies; none verifying is an error), or from PATH (a checkpoint or run folder)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help=f"a YAML config file or a built-in config ({', '.join(BUILTIN_CONFIGS)})")
    # REMAINDER + a second pass: argparse alone cannot take options after a variable-length list of
    # positionals inside a subcommand (`librobot train toy-reach a=1 --run-dir x b=2`).
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, help="config overrides: key=value, +key=value (new key), ~key (delete)"
    )
    _add_options(parser)


def _reparse(args: argparse.Namespace) -> None:
    """Separate the options given after CONFIG from the overrides."""
    late = argparse.ArgumentParser(prog="librobot train", add_help=False)
    _add_options(late)
    late.add_argument("overrides", nargs="*")
    found = late.parse_intermixed_args(list(args.overrides or []))
    args.overrides = found.overrides
    args.run_dir = found.run_dir if found.run_dir is not None else args.run_dir
    args.resume = found.resume if found.resume is not None else args.resume
    args.print_config = args.print_config or found.print_config


def _split_resume(args: argparse.Namespace) -> None:
    # `--resume key=value`: argparse took an override as the optional PATH.
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        args.overrides.append(args.resume)
        args.resume = "auto"


def run_train(args: argparse.Namespace) -> int:
    from librobot.train.config import load_run_config, run_config_dict

    _reparse(args)
    _split_resume(args)
    run, raw = load_run_config(args.config, args.overrides)
    if args.print_config:
        if args.run_dir:
            run.run_dir = args.run_dir
        print(json.dumps(run_config_dict(run), indent=2))
        return 0
    from librobot.train.run import train_from_config

    result = train_from_config(raw, run_dir=args.run_dir, resume=args.resume)
    if result.stop_reason and result.stop_reason.startswith("stopped by SIG"):
        import signal

        return 128 + int(getattr(signal, result.stop_reason.split()[-1]))
    return 0


def add_commands(subparsers: Any) -> None:
    """Entry point of the ``librobot.cli`` group: adds ``librobot train``."""
    parser = subparsers.add_parser(
        "train",
        help="train a policy from a config",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_train)
    from librobot.train.commands import add_demo, add_eval, add_sim_record

    add_eval(subparsers)
    add_sim_record(subparsers)
    add_demo(subparsers)


def train_main(argv: Sequence[str] | None = None) -> int:
    """The ``librobot-train`` script."""
    from librobot.core.logging import configure_logging

    parser = argparse.ArgumentParser(
        prog="librobot-train",
        description="Train a policy from a config.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    _add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging("DEBUG" if args.verbose else "INFO")
    try:
        return run_train(args)
    except LibroBotError as exc:
        if args.verbose:
            raise
        print(f"librobot-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover - torchrun -m librobot.train.cli
    sys.exit(train_main())

"""The ``librobot`` command. Subcommands come from the installed packages through the
``librobot.cli`` entry-point group: each entry point is a function ``add_commands(subparsers)``
that adds its parsers and sets ``func`` on them (``func(args) -> int``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from librobot.core import __version__
from librobot.core.errors import LibroBotError
from librobot.core.logging import configure_logging

CLI_GROUP = "librobot.cli"


def _cmd_info(args: argparse.Namespace) -> int:
    from librobot.core.info import collect_info, format_info

    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="librobot",
        description="LibroBot VLA: train, evaluate, export and serve vision-language-action policies.",
    )
    parser.add_argument("--version", action="version", version=f"librobot-core {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = sub.add_parser("info", help="installed packages, registered components, kernel backends")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=_cmd_info)
    for ep in sorted(entry_points(group=CLI_GROUP), key=lambda e: e.name):
        try:
            ep.load()(sub)
        except Exception as exc:
            logging.getLogger("librobot").warning("commands of %s failed to load: %s", ep.name, exc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging("DEBUG" if args.verbose else "INFO")
    try:
        return int(args.func(args) or 0)
    except LibroBotError as exc:
        if args.verbose:
            raise
        print(f"librobot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``librobot data convert|info|stats|verify|view|formats`` (added to the ``librobot`` command through the
``librobot.cli`` entry point)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from librobot.data.errors import ConversionError


def _options(pairs: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; values parse as JSON when they can (numbers, lists, true), else stay strings."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConversionError(f"option {pair!r} is not key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _open(path: str, fmt: str | None, options: dict[str, Any]) -> Any:
    from librobot.data.formats.base import detect_format, get_format

    name = fmt or detect_format(path)
    return get_format(name).open(path, **options)


def _cmd_convert(args: argparse.Namespace) -> int:
    from librobot.data.convert import convert

    write_options = _options(args.option)
    for name, value in (("image_encoding", args.image_encoding), ("image_quality", args.image_quality)):
        if value is None:
            continue
        if args.dst_format != "store":
            flag = "--" + name.replace("_", "-")
            raise ConversionError(f"{flag} applies to a store target, not --to {args.dst_format}")
        write_options[name] = value
    result = convert(
        args.src,
        args.dst,
        src_format=args.src_format,
        dst_format=args.dst_format,
        read_options=_options(args.read_option),
        write_options=write_options,
        overwrite=args.overwrite,
    )
    state = "up to date" if result.skipped else f"written in {result.seconds:.1f} s"
    images = ""
    if result.image_encoding and result.dst_format == "store":  # lossy or not, say how the frames were kept
        from librobot.data.store.layout import describe_encoding, image_encodings, read_record

        kinds = {describe_encoding(e) for e in image_encodings(read_record(result.dst)).values()}
        images = "; images: " + " / ".join(sorted(kinds)) if kinds else ""
    print(
        f"{result.dst}: {result.dst_format}, {result.num_episodes} episodes, {result.num_frames} frames, "
        f"{result.bytes_on_disk / 1e6:.2f} MB ({state}; from {result.src_format}{images})"
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from librobot.data.store.layout import dir_size, disk_usage

    source = _open(args.path, args.src_format, _options(args.read_option))
    summary = source.summary()
    summary.setdefault("bytes_on_disk", disk_usage(args.path))
    summary.setdefault("bytes_of_files", dir_size(args.path))
    source.close() if hasattr(source, "close") else None
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['path']}  ({summary['format']})")
    for key in ("fps", "robot_type", "num_episodes", "num_frames", "episode_length"):
        if summary.get(key) is not None:
            print(f"  {key}: {summary[key]}")
    files = f" in {summary['files']} files" if "files" in summary else ""
    print(
        f"  on disk: {summary['bytes_on_disk'] / 1e6:.1f} MB (as du counts it), holding "
        f"{summary['bytes_of_files'] / 1e6:.1f} MB of data{files}"
    )
    if summary.get("tasks"):
        print(
            f"  tasks ({len(summary['tasks'])}): "
            + "; ".join(summary["tasks"][:5])
            + (" ..." if len(summary["tasks"]) > 5 else "")
        )
    print("  features:")
    encodings = summary.get("image_encoding") or {}
    for key, spec in summary["features"].items():
        line = f"    {key}: {spec['dtype']} {spec['shape']}" + (f" names={spec['names']}" if spec.get("names") else "")
        print(line + (f"  [{encodings[key]['summary']}]" if key in encodings else ""))
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from librobot.core.logging import track
    from librobot.data.stats import StatsAccumulator

    if args.write:  # a store's statistics, recomputed and saved (its writer does it on close)
        from librobot.data.store import EpisodeWriter

        if args.src_format not in (None, "store"):
            raise ConversionError("--write saves statistics into a librobot store; convert other formats first")
        EpisodeWriter(args.path, mode="a").close()
    source = _open(args.path, args.src_format, _options(args.read_option))
    stats = getattr(source, "stats", None) if not args.recompute else None
    if stats is None:  # stream over the episodes
        acc = StatsAccumulator(source.features)
        for i in track(range(source.num_episodes), total=source.num_episodes, description="statistics"):
            acc.update(source.episode(i).frames)
        stats = acc.result()
    if args.keys:
        stats = {k: v for k, v in stats.items() if k in args.keys}
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    for key, item in stats.items():
        print(f"{key}  (count {item['count']})")
        for name in ("mean", "std", "min", "max", "q01", "q99"):
            if name in item:
                values = item[name] if isinstance(item[name], list) else [item[name]]
                print(
                    f"  {name:>5}: " + " ".join(f"{v:.4g}" for v in values[:16]) + (" ..." if len(values) > 16 else "")
                )
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from librobot.data.store import verify_store

    report = verify_store(args.path)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    for problem in report.problems:
        print(problem.line())
    how = (
        "against their recorded checksums" if report.checksums else "for presence and decoding (no checksums recorded)"
    )
    if report.ok:
        print(f"{report.path}: all {report.chunks} chunks of {report.arrays} arrays intact, checked {how}")
        return 0
    counts = {kind: sum(p.problem == kind for p in report.problems) for kind in ("missing", "corrupt", "unrecorded")}
    print(
        f"{report.path}: {len(report.problems)} damaged ("
        + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        + f") of {report.chunks} chunks in {report.arrays} arrays, checked {how}; "
        "re-convert the dataset or restore these files"
    )
    return 1


def _cmd_view(args: argparse.Namespace) -> int:
    from librobot.data.view import render_episode

    source = _open(args.path, args.src_format, _options(args.read_option))
    episode = source.episode(args.episode)
    out = Path(args.out or f"{Path(args.path).name}_episode_{args.episode}")
    names = {k: spec.names for k, spec in source.features.items() if spec.names}
    page = render_episode(
        episode,
        out,
        fps=source.fps,
        title=f"{Path(args.path).name} episode {args.episode}",
        names=names,
        max_frames=args.max_frames,
    )
    print(page)
    return 0


def _cmd_formats(args: argparse.Namespace) -> int:
    from librobot.core.registry import get_registry

    for entry in get_registry("dataset_format").entries():
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        print(f"{entry.name:16} {entry.doc}{aliases}")
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``data`` and its sub-commands to the ``librobot`` parser."""
    data = subparsers.add_parser("data", help="convert, inspect and view robot datasets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--from", dest="src_format", help="source format (default: detected)")
        parser.add_argument("--read-option", action="append", metavar="KEY=VALUE", help="reader option, e.g. fps=50")

    convert = sub.add_parser("convert", help="convert a dataset between formats (through the store)")
    convert.add_argument("src")
    convert.add_argument("dst")
    common(convert)
    convert.add_argument("--to", dest="dst_format", default="store", help="target format (default: store)")
    convert.add_argument(
        "-o", "--option", action="append", metavar="KEY=VALUE", help="writer option, e.g. video=lossless"
    )
    convert.add_argument(
        "--image-encoding",
        choices=["auto", "raw", "video", "h264", "av1", "lossless"],
        help="how a store keeps camera frames: raw uint8 chunks (bit-exact), or video clips (video = h264; "
        "lossless = bit-exact clips, larger). Default auto: video when the source's images are lossy video "
        "already (LeRobot mp4s), else raw",
    )
    convert.add_argument(
        "--image-quality", type=int, metavar="CRF", help="crf of a lossy video encoding (lower: better)"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace a destination made from something else")
    convert.set_defaults(func=_cmd_convert)

    info = sub.add_parser("info", help="fps, episodes, frames, features, tasks and size of a dataset")
    info.add_argument("path")
    common(info)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)

    stats = sub.add_parser("stats", help="per-feature statistics (stored ones, or computed streaming)")
    stats.add_argument("path")
    common(stats)
    stats.add_argument("--keys", nargs="*", help="only these features")
    stats.add_argument("--recompute", action="store_true", help="ignore stored statistics")
    stats.add_argument(
        "--write",
        action="store_true",
        help="recompute a store's statistics and save them (e.g. after a killed recording)",
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=_cmd_stats)

    verify = sub.add_parser(
        "verify", help="check every chunk file of a store (missing, truncated, changed); exit 1 if any is damaged"
    )
    verify.add_argument("path")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_cmd_verify)

    view = sub.add_parser("view", help="write PNG plots and an HTML page of one episode")
    view.add_argument("path")
    common(view)
    view.add_argument("--episode", type=int, default=0)
    view.add_argument("--out", help="output folder (default: <dataset>_episode_<n>)")
    view.add_argument("--max-frames", type=int, default=8, help="camera frames shown per camera")
    view.set_defaults(func=_cmd_view)

    formats = sub.add_parser("formats", help="list the dataset formats")
    formats.set_defaults(func=_cmd_formats)

"""The same LeRobot dataset loaded by LeRobot 0.6.1 and by librobot, in one run: bytes on disk and
random-access samples/s (batch 64, DataLoader with 2 workers, 2 observation frames + 16 actions).

LeRobot writes the dataset itself (``../shared/peers/lerobot/bench.py --sections dataset``, its
synthetic v3.0 dataset: AV1 video, 96x96 camera, 6-D state) and times its own loader on it;
librobot converts that folder (``auto``: lossy video stays video; and ``raw`` frames) and times
its store on the same windows. Round 1 of each store pass is cold (no clip decoded yet).

    python benchmarks/vs_lerobot_loader.py [--episodes 100 --frames 150] [--out R.json --markdown R.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import emit_json  # noqa: E402
from data import measure  # noqa: E402

PEER_PYTHON = "/tmp/peer-lerobot/venv/bin/python"
PEER_BENCH = HERE.parents[1] / "shared" / "peers" / "lerobot" / "bench.py"
ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "68719476736", "MALLOC_TOP_PAD_": "1073741824"}


def lerobot_side(args, root: Path) -> dict:
    command = [
        args.lerobot_python, str(args.peer_bench), "--sections", "dataset", "--ds-episodes", str(args.episodes),
        "--ds-frames", str(args.frames), "--ds-batch", "64", "--ds-batches", "20", "--no-ds-images",
        "--keep-dataset", str(root), "--workdir", str(root.parent / "peer-work"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **ALLOCATOR}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"LeRobot's side failed:\n{done.stderr[-3000:]}")
    video = json.loads(done.stdout.strip().splitlines()[-1])["dataset"]["video"]
    return {"bytes": video["size"]["total_bytes"], "read": video["read"]}


def librobot_side(source: Path, work: Path, encoding: str, rounds: int) -> dict:
    from librobot.data.convert import convert
    from librobot.data.dataset import StoreDataset
    from librobot.data.store.layout import disk_usage

    store = work / f"store-{encoding}"
    t0 = time.perf_counter()
    result = convert(source, store, write_options={"image_encoding": encoding})
    convert_s = time.perf_counter() - t0
    dataset = StoreDataset(store, obs_horizon=2, action_horizon=16, image_dtype="float32")
    rates = [
        measure(dataset, loader="torch", workers=2, batch_size=64, batches=40, seed=100 * r)[0] for r in range(rounds)
    ]
    return {
        "encoding": f"{encoding} -> {result.image_encoding}" if encoding == "auto" else encoding,
        "bytes_on_disk": disk_usage(store),
        "convert_s": round(convert_s, 1),
        "frames": result.num_frames,
        "samples_per_s_by_round": [round(r) for r in rates],
    }


def markdown(doc: dict) -> str:
    peer = doc["lerobot"]
    peer_rate = peer["read"]["chunk16_workers2"]["samples_per_s"]
    lines = [
        "# The same LeRobot dataset: LeRobot 0.6.1's loader vs librobot's store",
        "",
        f"CPU: {doc['cpu']}; {doc['episodes']} episodes x {doc['frames']} frames, 96x96 AV1 camera, 6-D state; "
        "batch 64, DataLoader with 2 workers, 2 observation frames + 16 actions per sample.",
        "",
        f"Command: `{doc['command']}`",
        "",
        "| loader | on disk | vs LeRobot's bytes | samples/s (round 1 = cold) | vs LeRobot |",
        "|---|---|---|---|---|",
        f"| LeRobot 0.6.1 (its dataset, PyAV decoding) | {peer['bytes'] / 1e6:.2f} MB | 1.00 | {peer_rate:,.0f} | 1.0 |",
    ]
    for row in doc["librobot"]:
        rates = row["samples_per_s_by_round"]
        lines.append(
            f"| librobot store, `{row['encoding']}` | {row['bytes_on_disk'] / 1e6:.2f} MB | "
            f"{row['bytes_on_disk'] / peer['bytes']:.2f} | {' / '.join(f'{r:,}' for r in rates)} | "
            f"{min(rates) / peer_rate:.1f} (slowest round) |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encodings", nargs="+", default=["auto", "raw"])
    parser.add_argument("--lerobot-python", default=PEER_PYTHON)
    parser.add_argument("--peer-bench", type=Path, default=PEER_BENCH)
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args()
    from librobot.core.hardware import cpu_info

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "lerobot_dataset"
        doc = {
            "benchmark": "vs_lerobot_loader",
            "cpu": cpu_info().model,
            "episodes": args.episodes,
            "frames": args.frames,
            "command": " ".join(sys.argv),
            "lerobot": lerobot_side(args, source),
            "librobot": [librobot_side(source, work, e, args.rounds) for e in args.encodings],
        }
    emit_json(doc, args.out)
    if args.markdown:
        Path(args.markdown).write_text(markdown(doc))


if __name__ == "__main__":
    main()

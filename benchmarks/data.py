"""Sampling throughput: the episode store vs decoding a LeRobot (parquet + mp4) dataset on the fly.

Both datasets hold the same generated episodes (two cameras, states, actions). Each sample is a
training window: T_obs observation frames per camera plus an action chunk of horizon H, drawn at
random (a seeded RandomSampler) with 0 and 2 workers, through torch's DataLoader ("torch") and
through librobot's WindowLoader ("window": a DataLoader whose batches' images are read in place
into reused shared memory; both datasets get it). "frames/s" counts samples (training frames with
their history and chunk) per second after a warm-up batch. Image modes: "float32" (the contract's
float [0, 1]) and "uint8" (float conversion left to the device); "direct_getitem_uint8" is plain
dataset[i] calls, no DataLoader: the cost of data access alone. Store and video are measured in
alternating rounds (medians reported) because this machine is shared and its load varies.

The LeRobot side uses LeRobot's default encoding (AV1 via libsvtav1, crf 30, a keyframe every 2
frames, yuv420p) unless --codec says otherwise, keeps its numeric columns in memory as LeRobot
does, keeps mp4 files open per worker, and seeks to the keyframe before each window.

    OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 \\
        python benchmarks/data.py --out bench_data.json

Prints one JSON document (and writes it to --out when given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from librobot.data.convert import convert
from librobot.data.dataset import StoreDataset
from librobot.data.dataset_lerobot import LeRobotVideoDataset
from librobot.data.loader import WindowLoader
from librobot.data.store import write_episodes
from librobot.data.store.layout import dir_size, disk_usage
from librobot.data.synthetic import synthetic_episodes


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(dataset, *, loader: str, workers: int, batch_size: int, batches: int, seed: int) -> tuple[float, float]:
    """(samples per wall second after a warm-up batch, samples per CPU second of every process).

    CPU time counts the main process and the workers (their usage is collected when they exit at
    the end of the pass, warm-up included) and barely depends on what else runs on the machine.
    """
    sampler = RandomSampler(
        dataset, replacement=True, num_samples=batch_size * (batches + 1), generator=torch.Generator().manual_seed(seed)
    )
    make = WindowLoader if loader == "window" else DataLoader
    cpu = _cpu_seconds()
    it = iter(make(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers))
    first = len(next(it)["task"])
    started = time.perf_counter()
    count = sum(len(batch["task"]) for batch in it)  # exhausting the iterator also joins the workers
    wall = time.perf_counter() - started
    return count / wall, (count + first) / (_cpu_seconds() - cpu)


def measure_direct(dataset, *, samples: int, seed: int) -> tuple[float, float]:
    """(samples per wall second, per CPU second) of plain ``dataset[i]`` calls: data access alone."""
    picks = np.random.default_rng(seed).integers(0, len(dataset), samples)
    cpu, started = _cpu_seconds(), time.perf_counter()
    for i in picks:
        dataset[int(i)]
    return samples / (time.perf_counter() - started), samples / (_cpu_seconds() - cpu)


def summarize(rates: list[tuple[float, float]]) -> dict:
    wall, cpu = [r[0] for r in rates], [r[1] for r in rates]
    return {
        "median": round(statistics.median(wall), 1),
        "rounds": [round(r, 1) for r in wall],
        "per_cpu_s_median": round(statistics.median(cpu), 1),
    }


def ratio(store: list[tuple[float, float]], video: list[tuple[float, float]], which: int) -> float:
    return round(statistics.median(r[which] for r in store) / statistics.median(r[which] for r in video), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--length", type=int, default=100, help="frames per episode")
    parser.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--obs-horizon", type=int, default=2)
    parser.add_argument("--action-horizon", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--store-batches", type=int, default=40)
    parser.add_argument("--video-batches", type=int, default=8)
    parser.add_argument("--codec", default="lerobot", choices=["lerobot", "h264", "lossless"])
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    parser.add_argument("--modes", nargs="*", default=["float32", "uint8"], choices=["float32", "uint8"])
    parser.add_argument("--loaders", nargs="*", default=["torch", "window"], choices=["torch", "window"])
    parser.add_argument("--rounds", type=int, default=3, help="alternating store/video rounds; medians reported")
    parser.add_argument("--dir", help="keep the datasets here (default: a temporary folder)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    load_start = round(os.getloadavg()[0], 2)
    root = Path(args.dir or tempfile.mkdtemp(prefix="librobot-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    episodes = synthetic_episodes(
        args.episodes,
        lengths=[args.length] * args.episodes,
        image_size=tuple(args.size),
        state_dim=14,
        action_dim=14,
        seed=0,
    )
    generate_s = time.perf_counter() - t0
    store_path, lerobot_path = root / "episodes.store", root / f"episodes.lerobot-{args.codec}"
    t0 = time.perf_counter()
    if not store_path.exists():
        write_episodes(store_path, episodes)
    store_write_s = time.perf_counter() - t0
    del episodes
    t0 = time.perf_counter()
    convert(store_path, lerobot_path, dst_format="lerobot-v3", write_options={"video": args.codec})
    lerobot_write_s = time.perf_counter() - t0

    window = {"obs_horizon": args.obs_horizon, "action_horizon": args.action_horizon}
    store_ds = StoreDataset(store_path, **window)
    video_ds = LeRobotVideoDataset(lerobot_path, **window)
    picks = np.random.default_rng(1).integers(0, len(store_ds), 16)
    pixel_error = float(
        np.mean(
            [
                (store_ds[int(i)]["observation.images.top"] - video_ds[int(i)]["observation.images.top"])
                .abs()
                .mean()
                .item()
                * 255
                for i in picks
            ]
        )
    )
    # Store and video are measured alternately, round by round, so both see the same machine load.
    results: dict[str, dict] = {}
    speedup: dict[str, dict] = {}
    for mode in args.modes:
        store_ds = StoreDataset(store_path, image_dtype=mode, **window)
        video_ds = LeRobotVideoDataset(lerobot_path, image_dtype=mode, **window)
        for loader in args.loaders:
            name = f"{mode}/{loader}"
            results[name], speedup[name] = {}, {}
            for workers in args.workers:
                store_rates, video_rates = [], []
                for r in range(args.rounds):
                    common = {
                        "loader": loader,
                        "workers": workers,
                        "batch_size": args.batch_size,
                        "seed": 100 * r + workers,
                    }
                    store_rates.append(measure(store_ds, batches=args.store_batches, **common))
                    video_rates.append(measure(video_ds, batches=args.video_batches, **common))
                key = f"workers={workers}"
                results[name][key] = {"store": summarize(store_rates), "lerobot_video": summarize(video_rates)}
                speedup[name][key] = {
                    "wall": ratio(store_rates, video_rates, 0),
                    "per_cpu_s": ratio(store_rates, video_rates, 1),
                }
    direct_store = StoreDataset(store_path, image_dtype="uint8", **window)
    direct_video = LeRobotVideoDataset(lerobot_path, image_dtype="uint8", **window)
    store_rates, video_rates = [], []
    for r in range(args.rounds):
        store_rates.append(measure_direct(direct_store, samples=args.batch_size * args.store_batches, seed=r))
        video_rates.append(measure_direct(direct_video, samples=args.batch_size * args.video_batches, seed=r))
    results["direct_getitem_uint8"] = {"store": summarize(store_rates), "lerobot_video": summarize(video_rates)}
    speedup["direct_getitem_uint8"] = {
        "wall": ratio(store_rates, video_rates, 0),
        "per_cpu_s": ratio(store_rates, video_rates, 1),
    }
    video_bytes = dir_size(lerobot_path / "videos")
    report = {
        "benchmark": "data sampling: episode store vs LeRobot parquet+mp4 decoded on the fly",
        "dataset": {
            "episodes": args.episodes,
            "frames": args.episodes * args.length,
            "cameras": 2,
            "image_hw": args.size,
            "state_dim": 14,
            "action_dim": 14,
            "obs_horizon": args.obs_horizon,
            "action_horizon": args.action_horizon,
            "batch_size": args.batch_size,
            "lerobot_video": args.codec,
        },
        "frames_per_s": results,
        "store_speedup_x": speedup,
        "bytes_on_disk": {  # allocated blocks, as du counts them (what a user pays), and the bytes held
            "store": disk_usage(store_path),
            "store_bytes_of_files": dir_size(store_path),
            "lerobot": disk_usage(lerobot_path),
            "lerobot_videos": video_bytes,
            "lerobot_parquet_and_meta": dir_size(lerobot_path) - video_bytes,
            "raw_uint8_images": args.episodes * args.length * 2 * 3 * args.size[0] * args.size[1],
        },
        "video_vs_store_mean_abs_pixel_error_0_255": round(pixel_error, 2),
        "build_seconds": {
            "generate": round(generate_s, 1),
            "store_write": round(store_write_s, 1),
            "lerobot_write": round(lerobot_write_s, 1),
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            **{
                k: os.environ.get(k)
                for k in ("OMP_NUM_THREADS", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
            },
            "page_cache": "warm (datasets were just written)",
            "dir": str(root),
        },
    }
    report["environment"]["load_average_1min"] = {"start": load_start, "end": round(os.getloadavg()[0], 2)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())

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

``--image-encoding raw video`` measures one store per image encoding (raw chunks, video clips;
store/video_clip.py), each in the alternating rounds. Each dataset is opened once per image mode
and read by every round, as epochs read one dataset: a video store decodes its clips in the first
round (the cold figure: ``rounds[0]``), and its forked workers share them from then on. The
``direct_getitem_uint8`` rounds open the dataset afresh each time: all cold. ``--scene pusht`` makes PushT-like episodes
(one flat-shaded 96x96 camera, 2-D state and action) instead of the textured, noisy cameras.

    OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 \\
        python benchmarks/data.py --out bench_data.json
    python benchmarks/data.py --scene pusht --episodes 100 --length 150 --size 96 96 --batch-size 64 \\
        --workers 2 --modes float32 --loaders torch --image-encoding raw video

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

from librobot.core.batch import ACTION, OBS_STATE, image_key
from librobot.data.convert import convert
from librobot.data.dataset import StoreDataset
from librobot.data.dataset_lerobot import LeRobotVideoDataset
from librobot.data.episode import Episode
from librobot.data.loader import WindowLoader
from librobot.data.store import write_episodes
from librobot.data.store.chunk_cache import shared_cache
from librobot.data.store.layout import dir_size, disk_usage
from librobot.data.synthetic import synthetic_episodes


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pusht_like_episodes(num: int, length: int, size: int, seed: int = 0) -> list[Episode]:
    """PushT-like episodes: a flat background, a fixed green goal T, a grey T that drifts and turns,
    a blue agent disc (rendered at 2x and averaged, so edges are anti-aliased as gym-pusht's are);
    the state is the agent's position, the action the next one."""
    rng = np.random.default_rng(seed)
    n = 2 * size
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) / 2 * (96 / size)

    def t_shape(cx: float, cy: float, angle: float) -> np.ndarray:
        c, s = np.cos(angle), np.sin(angle)
        u, v = (xs - cx) * c + (ys - cy) * s, -(xs - cx) * s + (ys - cy) * c
        return ((np.abs(u) < 14) & (v > -10) & (v < -3)) | ((np.abs(u) < 3.5) & (v >= -3) & (v < 18))

    goal = t_shape(48, 48, np.pi / 4)
    episodes = []
    for _ in range(num):
        p = rng.uniform(0, 2 * np.pi, 6)
        t = np.arange(length + 1) / 10.0
        agent = np.stack([48 + 38 * np.sin(0.9 * t + p[3]), 48 + 38 * np.sin(0.7 * t + p[4])], 1).astype(np.float32)
        frames = np.empty((length, size, size, 3), np.uint8)
        for i in range(length):
            img = np.empty((n, n, 3), np.float32)
            img[:] = (238, 238, 238)
            img[goal] = (144, 238, 144)
            tx, ty = 48 + 24 * np.sin(0.3 * t[i] + p[0]), 48 + 24 * np.sin(0.25 * t[i] + p[1])
            img[t_shape(tx, ty, p[2] + 0.4 * np.sin(0.2 * t[i]))] = (119, 136, 153)
            img[(xs - agent[i, 0]) ** 2 + (ys - agent[i, 1]) ** 2 < 16] = (65, 105, 225)
            frames[i] = img.reshape(size, 2, size, 2, 3).mean((1, 3)).round().astype(np.uint8)
        episodes.append(
            Episode(
                frames={OBS_STATE: agent[:-1], ACTION: agent[1:], image_key("top"): frames},
                task="push the T onto the goal",
                fps=10.0,
            )
        )
    return episodes


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
    start = getattr(dataset, "worker_start_method", None)  # as librobot's trainer starts them
    context = {"multiprocessing_context": start} if start and workers else {}
    it = iter(make(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, **context))
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
    parser.add_argument("--scene", default="camera", choices=["camera", "pusht"])
    parser.add_argument("--obs-horizon", type=int, default=2)
    parser.add_argument("--action-horizon", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--store-batches", type=int, default=40)
    parser.add_argument("--video-batches", type=int, default=8)
    parser.add_argument("--codec", default="lerobot", choices=["lerobot", "h264", "lossless"])
    parser.add_argument(
        "--image-encoding", nargs="+", default=["raw"], choices=["raw", "video", "h264", "av1", "lossless"]
    )
    parser.add_argument("--image-quality", type=int, help="crf of the lossy store encodings")
    parser.add_argument("--no-lerobot-read", action="store_true", help="measure the stores only")
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
    if args.scene == "pusht":
        if args.size[0] != args.size[1]:
            parser.error("--scene pusht renders square images")
        episodes = pusht_like_episodes(args.episodes, args.length, args.size[0])
    else:
        episodes = synthetic_episodes(
            args.episodes,
            lengths=[args.length] * args.episodes,
            image_size=tuple(args.size),
            state_dim=14,
            action_dim=14,
            seed=0,
        )
    cameras = [k for k in episodes[0].frames if k.startswith("observation.images.")]
    state_dim, action_dim = episodes[0].frames[OBS_STATE].shape[1], episodes[0].frames[ACTION].shape[1]
    generate_s = time.perf_counter() - t0
    stores, write_s = {}, {}
    for encoding in args.image_encoding:
        name = "store" if encoding == "raw" else f"store_{encoding}"
        stores[name] = root / f"episodes.{name}"
        t0 = time.perf_counter()
        if not stores[name].exists():
            quality = None if encoding in ("raw", "lossless") else args.image_quality
            write_episodes(stores[name], episodes, image_encoding=encoding, image_quality=quality)
        write_s[name] = round(time.perf_counter() - t0, 1)
    first_store = next(iter(stores.values()))
    lerobot_path = root / f"episodes.lerobot-{args.codec}"
    t0 = time.perf_counter()
    convert(first_store, lerobot_path, dst_format="lerobot-v3", write_options={"video": args.codec})
    lerobot_write_s = time.perf_counter() - t0
    camera = cameras[0]
    originals = np.concatenate([e.frames[camera] for e in episodes]).transpose(0, 3, 1, 2).astype(np.int16)
    del episodes

    window = {"obs_horizon": args.obs_horizon, "action_horizon": args.action_horizon}
    sources = {name: (StoreDataset, path, args.store_batches) for name, path in stores.items()}
    if not args.no_lerobot_read:
        sources["lerobot_video"] = (LeRobotVideoDataset, lerobot_path, args.video_batches)
    picks = np.random.default_rng(1).integers(0, len(originals), 64)
    pixel_error = {}
    for name, (make, path, _) in sources.items():
        ds = make(path, image_dtype="uint8", **window)
        frames = np.stack([ds[int(i)][camera][-1].numpy() for i in picks]).astype(np.int16)
        pixel_error[name] = round(float(np.abs(frames - originals[picks]).mean()), 2)
    # The sources are measured alternately, round by round, so all see the same machine load.
    results: dict[str, dict] = {}
    speedup: dict[str, dict] = {}
    for mode in args.modes:
        datasets = {name: make(path, image_dtype=mode, **window) for name, (make, path, _) in sources.items()}
        for loader in args.loaders:
            name = f"{mode}/{loader}"
            results[name], speedup[name] = {}, {}
            for workers in args.workers:
                rates: dict[str, list] = {source: [] for source in sources}
                for r in range(args.rounds):
                    common = {"loader": loader, "workers": workers, "batch_size": args.batch_size, "seed": 100 * r}
                    for source, (_, _, batches) in sources.items():
                        rates[source].append(measure(datasets[source], batches=batches, **common))
                key = f"workers={workers}"
                results[name][key] = {source: summarize(rates[source]) for source in sources}
                speedup[name][key] = _speedups(rates)
    rates = {source: [] for source in sources}
    for r in range(args.rounds):
        for source, (make, path, batches) in sources.items():
            shared_cache().clear()  # with a fresh dataset: no clip decoded yet, a cold pass
            dataset = make(path, image_dtype="uint8", **window)
            rates[source].append(measure_direct(dataset, samples=args.batch_size * batches, seed=r))
    results["direct_getitem_uint8"] = {source: summarize(rates[source]) for source in sources}
    speedup["direct_getitem_uint8"] = _speedups(rates)
    video_bytes = dir_size(lerobot_path / "videos")
    report = {
        "benchmark": "data sampling: episode store vs LeRobot parquet+mp4 decoded on the fly",
        "dataset": {
            "scene": args.scene,
            "episodes": args.episodes,
            "frames": args.episodes * args.length,
            "cameras": len(cameras),
            "image_hw": args.size,
            "state_dim": int(state_dim),
            "action_dim": int(action_dim),
            "obs_horizon": args.obs_horizon,
            "action_horizon": args.action_horizon,
            "batch_size": args.batch_size,
            "store_batches": args.store_batches,
            "lerobot_video": args.codec,
            "store_image_encodings": args.image_encoding,
        },
        "frames_per_s": results,
        "store_speedup_x": speedup,
        "bytes_on_disk": {  # allocated blocks, as du counts them (what a user pays), and the bytes held
            **{name: disk_usage(path) for name, path in stores.items()},
            **{f"{name}_bytes_of_files": dir_size(path) for name, path in stores.items()},
            "lerobot": disk_usage(lerobot_path),
            "lerobot_videos": video_bytes,
            "lerobot_parquet_and_meta": dir_size(lerobot_path) - video_bytes,
            "raw_uint8_images": args.episodes * args.length * len(cameras) * 3 * args.size[0] * args.size[1],
        },
        "mean_abs_pixel_error_0_255_vs_originals": pixel_error,
        "build_seconds": {"generate": round(generate_s, 1), **write_s, "lerobot_write": round(lerobot_write_s, 1)},
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            **{
                k: os.environ.get(k)
                for k in (
                    "OMP_NUM_THREADS",
                    "MALLOC_MMAP_MAX_",
                    "MALLOC_TRIM_THRESHOLD_",
                    "MALLOC_TOP_PAD_",
                    "LIBROBOT_VIDEO_CACHE_MB",
                )
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


def _speedups(rates: dict[str, list[tuple[float, float]]]) -> dict:
    """Each store's median over LeRobot's (wall, per CPU-second), when LeRobot was measured."""
    if "lerobot_video" not in rates:
        return {}
    return {
        source: {"wall": ratio(r, rates["lerobot_video"], 0), "per_cpu_s": ratio(r, rates["lerobot_video"], 1)}
        for source, r in rates.items()
        if source != "lerobot_video"
    }


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput of the built-in toy-reach policy on this machine, printed as one JSON document.

Three figures from the same run, same model and data sizes (the `toy-reach` config: 24x24 camera,
instruction, 2-D state, 8-step action chunks, batch 64):

- ``trainer``: samples/s through ``librobot.train.Trainer`` (per-sample seeded data, grad clipping,
  EMA, cosine schedule, param groups; logging/plots/checkpoints off so only the step is timed);
- ``plain_loop``: a hand-written loop over the same model and data (DataLoader + AdamW), the reference;
- ``data_only``: how fast the dataset + collate alone produce samples.

Run: ``OMP_NUM_THREADS=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824
python benchmarks/train_throughput.py [--steps 40] [--rounds 3] [--batch-size 64] [--threads 1] [--num-workers 0]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (all three measures)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from librobot.train.toy_reach import toy_reach_dataset, toy_reach_policy
    from librobot.train.trainer import Trainer

    torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    dataset = toy_reach_dataset(4096, horizon=8, image_size=24)

    def fresh_model() -> torch.nn.Module:
        torch.manual_seed(0)
        return toy_reach_policy(dataset=dataset, hidden_dim=128, depth=2)

    def measure_data() -> float:
        it = iter(
            DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.num_workers)
        )
        for _ in range(args.warmup):
            next(it)
        begin = time.perf_counter()
        for _ in range(args.steps):
            next(it)
        return args.steps * args.batch_size / (time.perf_counter() - begin)

    def measure_plain() -> float:
        model = fresh_model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        it = iter(
            DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.num_workers)
        )
        begin = 0.0
        for step in range(total):
            if step == args.warmup:
                begin = time.perf_counter()
            loss = model(next(it))["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return args.steps * args.batch_size / (time.perf_counter() - begin)

    from librobot.train.callbacks import Callback

    class Clock(Callback):
        """Times the steps between the end of warm-up and the last one."""

        def __init__(self) -> None:
            self.start = 0.0
            self.end = 0.0

        def on_step_end(self, trainer: Trainer) -> None:
            if trainer.step == args.warmup:
                self.start = time.perf_counter()
            if trainer.step == total:
                self.end = time.perf_counter()

    def measure_trainer() -> float:
        clock = Clock()
        with tempfile.TemporaryDirectory() as run_dir:
            config = {
                "train": {
                    "max_steps": total,
                    "batch_size": args.batch_size,
                    "max_grad_norm": 1.0,
                    "num_workers": args.num_workers,
                },
                "optimizer": {
                    "name": "adamw",
                    "lr": 1e-3,
                    "weight_decay": 0.01,
                    "param_groups": [{"name": "vision", "match": ["vision"], "lr": 5e-4}],
                },
                "scheduler": {"name": "cosine", "warmup_steps": 5},
                "ema": {"enabled": True},
                "checkpoint": {"every_n_steps": 0, "save_final": False, "monitor": None},
                "logging": {"log_every_n_steps": 10**6, "tensorboard": False, "plot": False, "progress": False},
            }
            Trainer(fresh_model(), dataset, config=config, run_dir=run_dir, callbacks=[clock]).fit()
        return args.steps * args.batch_size / (clock.end - clock.start)

    # Interleaved rounds, medians reported: the machine is shared and its speed drifts.
    rounds: dict[str, list[float]] = {"trainer": [], "plain_loop": [], "data_only": []}
    for _ in range(args.rounds):
        rounds["data_only"].append(measure_data())
        rounds["plain_loop"].append(measure_plain())
        rounds["trainer"].append(measure_trainer())
    median = {k: round(statistics.median(v), 1) for k, v in rounds.items()}

    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "model": "toy-reach-policy (hidden 128, depth 2, 24x24 camera, horizon 8)",
                "batch_size": args.batch_size,
                "steps_timed": args.steps,
                "torch_threads": args.threads,
                "num_workers": args.num_workers,
                "allocator": {
                    k: os.environ.get(k) for k in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
                },
                "cpu_count": os.cpu_count(),
                "machine": platform.machine(),
                "torch": torch.__version__,
                "rounds": args.rounds,
                "samples_per_s_median": median,
                "samples_per_s_each_round": {k: [round(x, 1) for x in v] for k, v in rounds.items()},
                "trainer_vs_plain": round(median["trainer"] / median["plain_loop"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

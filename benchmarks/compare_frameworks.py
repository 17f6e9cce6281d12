"""Multi-framework comparison on the same data: loss after N steps, parameters, predict latency.

Every registered framework is built with the same backbone (the built-in tiny VLM by default),
sized and normalised from the same dataset, trained for N steps on the same batches, and then
measured: held-out loss before and after (with the loss's random draws — noise, flow times,
latents — fixed, so the numbers are comparable), total and trainable parameters, and the median
``predict_action`` latency at batch 1 and 8 on this CPU. Prints a table, then JSON.

    python benchmarks/compare_frameworks.py --steps 200
    python benchmarks/compare_frameworks.py --data runs/demo/data --vlm qwen2-vl-tiny
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def dataset(path: Path, split: str):
    from librobot.data.dataset import StoreDataset

    return StoreDataset(path, obs_horizon=1, action_horizon=16, split=split)


def held_out_loss(model, batches) -> float:
    import torch

    losses = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            torch.manual_seed(1000 + i)  # the same random draws for every measurement
            losses.append(float(model(batch)["loss"]))
    return statistics.fmean(losses)


def latency_ms(model, batch, size: int, repeats: int = 7) -> float:
    import torch

    sub = {k: (v[:size] if isinstance(v, torch.Tensor | list) else v) for k, v in batch.items()}
    model.predict_action(sub)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict_action(sub)
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def compare(args: argparse.Namespace) -> list[dict]:
    import torch
    from torch.utils.data import DataLoader

    from librobot.models import list_vlas
    from librobot.train.vla import build_vla

    train, val = dataset(Path(args.data), "train"), dataset(Path(args.data), "val")
    g = torch.Generator().manual_seed(0)
    train_batches = list(DataLoader(train, batch_size=args.batch_size, shuffle=True, generator=g, drop_last=True))
    val_batches = list(DataLoader(val, batch_size=args.batch_size, shuffle=False))[: args.val_batches]
    rows = []
    for name in args.frameworks or list_vlas():
        torch.manual_seed(0)
        model = build_vla(train, framework=name, vlm=args.vlm)
        before = held_out_loss(model.eval(), val_batches)
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
        started = time.perf_counter()
        for step in range(args.steps):
            loss = model(train_batches[step % len(train_batches)])["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        train_s = time.perf_counter() - started
        model.eval()
        rows.append(
            {
                "framework": name,
                "loss_before": round(before, 5),
                "loss_after": round(held_out_loss(model, val_batches), 5),
                "parameters": model.get_num_parameters(),
                "trainable_parameters": model.get_num_parameters(trainable_only=True),
                "train_steps_per_s": round(args.steps / train_s, 2),
                "predict_ms_b1": round(latency_ms(model, val_batches[0], 1), 2),
                "predict_ms_b8": round(latency_ms(model, val_batches[0], 8), 2),
            }
        )
        print(f"  {name} done", file=sys.stderr)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="runs/demo/data", help="an episode store (e.g. from `librobot sim record`)")
    parser.add_argument("--frameworks", nargs="+", default=None)
    parser.add_argument("--vlm", default="librobot-tiny-vlm")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--val-batches", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    args = parser.parse_args()
    if not Path(args.data).exists():
        from librobot.train.record import record_dataset

        record_dataset(["metaworld-reach", "metaworld-button-press"], 10, args.data, env_kwargs={"render": False})
    rows = compare(args)
    header = f"{'framework':<12} {'loss before':>11} {'after':>8} {'params':>10} {'trainable':>10} {'steps/s':>8} {'ms b1':>7} {'ms b8':>7}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['framework']:<12} {r['loss_before']:>11.4f} {r['loss_after']:>8.4f} {r['parameters']:>10,} "
            f"{r['trainable_parameters']:>10,} {r['train_steps_per_s']:>8.2f} {r['predict_ms_b1']:>7.1f} {r['predict_ms_b8']:>7.1f}"
        )
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "vlm": args.vlm,
        "data": str(args.data),
    }
    print(json.dumps({"machine": machine, "frameworks": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

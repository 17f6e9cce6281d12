"""DDP and FSDP2 with 2 processes on CPU (gloo, launched by torchrun) train the same weights as one
process with the doubled batch, and compute the same validation loss over uneven shards."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _train_testlib import final_tensors, tiny_config

from librobot.train.distributed import _default_units
from librobot.train.metrics import read_jsonl
from librobot.train.run import train_from_config
from librobot.train.toy_reach import toy_reach_dataset, toy_reach_policy

HERE = Path(__file__).resolve().parent


def config(run_dir, batch_size, strategy):
    return tiny_config(
        run_dir,
        data={"padding": False, "num_samples": 128, "val": {"seed": 3, "num_samples": 21}},  # 11 + 10 per rank
        train={"max_steps": 8, "batch_size": batch_size, "max_grad_norm": 0.5},
        optimizer={"name": "adamw", "lr": 1e-2, "weight_decay": 0.05},
        scheduler={"name": "cosine", "warmup_steps": 2},
        ema={"enabled": True, "max_decay": 0.9},
        eval={"every_n_steps": 4},
        distributed={"strategy": strategy},
        logging={"log_every_n_steps": 2},
    )


def records(run_dir, key):
    return [(r["step"], r[key]) for r in read_jsonl(run_dir / "metrics.jsonl") if key in r]


def test_two_process_ddp_and_fsdp_match_one_process_with_double_batch(tmp_path):
    paths = []
    for strategy in ("ddp", "fsdp"):
        path = tmp_path / f"{strategy}.json"
        path.write_text(json.dumps(config(tmp_path / strategy, 8, strategy)))
        paths.append(str(path))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIBROBOT_PROGRESS": "0", "PYTHONPATH": str(HERE)}
    launch = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(HERE / "_dist_worker.py"),
            *paths,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    train_from_config(config(tmp_path / "single", 16, "auto"), configure_logs=False)  # runs while the workers start
    output, _ = launch.communicate(timeout=400)
    assert launch.returncode == 0, output[-6000:]
    assert "(2 processes, ddp)" in output and "(2 processes, fsdp)" in output
    units = len(
        _default_units(toy_reach_policy(dataset=toy_reach_dataset(8, horizon=4, image_size=8), hidden_dim=32, depth=1))
    )
    assert f"FSDP2: sharded {units} submodules + root over 2 ranks" in output

    single = final_tensors(tmp_path / "single")
    for strategy in ("ddp", "fsdp"):
        run = tmp_path / strategy
        for name in ("model", "ema"):
            ours, ref = final_tensors(run, name), final_tensors(tmp_path / "single", name)
            assert ours.keys() == ref.keys()
            for key in ref:
                torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=2e-5, msg=f"{strategy} {name} {key}")
        moved = max((single[k] - final_tensors(run)[k]).abs().max().item() for k in single)
        assert moved < 2e-5
        # the logged training loss is the mean over both ranks; validation covers all 21 samples once
        assert [s for s, _ in records(run, "train/loss")] == [2, 4, 6, 8]
        assert [v for _, v in records(run, "train/loss")] == pytest.approx(
            [v for _, v in records(tmp_path / "single", "train/loss")], rel=1e-4
        )
        assert records(run, "val/samples") == [(4, 21.0), (8, 21.0)]
        assert [v for _, v in records(run, "val/loss")] == pytest.approx(
            [v for _, v in records(tmp_path / "single", "val/loss")], rel=1e-4
        )
        assert [v for _, v in records(run, "grad_norm")] == pytest.approx(
            [v for _, v in records(tmp_path / "single", "grad_norm")], rel=1e-3
        )

"""SIGKILL a real training process at arbitrary points (found by watching its run folder), resume
it each time, and end with exactly the weights of an uninterrupted run (bitwise, on CPU)."""

import os
import re
import signal
import subprocess
import sys
import time

import torch
import yaml
from _train_testlib import final_tensors, tiny_config

from librobot.train.checkpointing import CheckpointManager
from librobot.train.config import load_run_config
from librobot.train.metrics import read_jsonl
from librobot.train.run import train_from_config

MAX_STEPS = 60


def write_config(tmp_path):
    cfg = tiny_config(
        tmp_path / "unused",
        model={"dropout": 0.1},  # the torch RNG matters...
        data={
            "state_noise": 0.05,
            "num_samples": 80,
            "val": {"seed": 5, "num_samples": 24},
        },  # ...and per-sample seeding
        train={
            "max_steps": MAX_STEPS,
            "batch_size": 8,
            "grad_accum_steps": 2,
            "max_grad_norm": 1.0,
            "deterministic": True,
        },
        optimizer={
            "name": "adamw",
            "lr": 2e-3,
            "weight_decay": 0.05,
            "param_groups": [{"name": "head", "match": ["head"], "lr": 1e-3}],
        },
        scheduler={"name": "cosine", "warmup_steps": 5},
        ema={"enabled": True, "max_decay": 0.95},
        checkpoint={"every_n_steps": 7, "keep_last": 2, "monitor": "val/loss"},
        eval={"every_n_steps": 10},
        logging={"log_every_n_steps": 3},
    )
    del cfg["run_dir"]
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def launch(config, run_dir, log, resume):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LIBROBOT_PROGRESS": "0"}
    command = [sys.executable, "-m", "librobot.train.cli", str(config), "--run-dir", str(run_dir)] + (
        ["--resume"] if resume else []
    )
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def latest_step(run_dir):
    pointer = CheckpointManager(run_dir / "checkpoints").read_pointer("latest")
    return -1 if pointer is None else pointer["step"]


def writing_checkpoint_after(run_dir, step):
    """True while a checkpoint newer than ``step`` is being built (its hidden temp directory exists)."""
    folder = run_dir / "checkpoints"
    names = [p.name for p in folder.glob(".step_*.tmp-*")] if folder.is_dir() else []
    return any(int(re.match(r"\.step_(\d+)", n).group(1)) > step for n in names)


def kill_when(process, condition, what, log_path):
    """Watch the run folder until ``condition()``, then SIGKILL the process right there."""
    deadline = time.monotonic() + 300  # a hang guard, not a timing assumption
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"training ended (rc {process.returncode}) before {what}:\n{log_path.read_text()[-4000:]}"
            )
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL


def test_sigkill_at_arbitrary_points_then_resume_matches_uninterrupted_run_bitwise(tmp_path):
    config = write_config(tmp_path)
    killed = tmp_path / "killed"
    log_path = tmp_path / "runs.log"
    with open(log_path, "wb") as log:
        # 1) killed as soon as its first checkpoint is complete (it is already past it, mid-step)
        first = launch(config, killed, log, resume=False)
        kill_when(first, lambda: latest_step(killed) >= 7, "the first checkpoint", log_path)
        resumed_from = latest_step(killed)
        assert 7 <= resumed_from < MAX_STEPS
        # 2) resumed, then killed while it writes a later checkpoint (or just after one appears)
        second = launch(config, killed, log, resume=True)
        kill_when(
            second,
            lambda: writing_checkpoint_after(killed, resumed_from + 14) or latest_step(killed) > resumed_from + 14,
            "a later checkpoint",
            log_path,
        )
        assert latest_step(killed) < MAX_STEPS
        # 3) resumed to the end
        third = launch(config, killed, log, resume=True)
        assert third.wait(timeout=300) == 0, log_path.read_text()[-4000:]
    assert latest_step(killed) == MAX_STEPS

    run, _ = load_run_config(config)
    train_from_config(run, run_dir=tmp_path / "reference", configure_logs=False)

    for name in ("model", "ema", "optimizer"):
        ours, ref = final_tensors(killed, name), final_tensors(tmp_path / "reference", name)
        assert ours.keys() == ref.keys()
        mismatched = [k for k in ref if not torch.equal(ours[k], ref[k])]
        assert not mismatched, f"{name}: {mismatched[:5]} differ"

    # logged numbers match too (records past each kill were dropped and replayed); no temp dirs remain
    def logged(run_dir):
        return [(r["step"], r.get("train/loss"), r.get("val/loss")) for r in read_jsonl(run_dir / "metrics.jsonl")]

    assert logged(killed) == logged(tmp_path / "reference")
    assert not list((killed / "checkpoints").glob(".*tmp*")) and not list((killed / "checkpoints").glob(".trash*"))
    text = log_path.read_text()
    assert text.count("resumed from") == 2

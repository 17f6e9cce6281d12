"""train.max_time: a wall-clock budget ends the run with its final checkpoint, and the schedule
follows the fraction of the budget used. Time comes from a fake clock (no sleeps)."""

import math

import pytest
from _train_testlib import tiny_config

from librobot.core.errors import ConfigError
from librobot.train.checkpointing import CheckpointManager
from librobot.train.config import duration_seconds, to_run_config
from librobot.train.metrics import read_jsonl
from librobot.train.schedules import lr_factor
from librobot.train.toy_reach import toy_reach_dataset, toy_reach_policy
from librobot.train.trainer import Trainer


class FakeClock:
    """Advances ``step_s`` per reading: a training step (read at its start and end) costs ``step_s``."""

    def __init__(self, step_s):
        self.now, self.step_s = 1000.0, step_s

    def __call__(self):
        self.now += self.step_s
        return self.now


class LearningRates:
    def __init__(self):
        self.seen = []

    def on_step_end(self, trainer):
        self.seen.append(trainer.optimizer.param_groups[0]["lr"])


def _trainer(run_dir, clock, callbacks=(), **train):
    cfg = tiny_config(
        run_dir,
        train={"max_steps": None, "max_time": "10s", **train},
        scheduler={"name": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.1},
        ema={"enabled": True, "max_decay": 0.9},
        checkpoint={"every_n_steps": 0},
        logging={"log_every_n_steps": 4},
    )
    dataset = toy_reach_dataset(64, horizon=4, image_size=8)
    model = toy_reach_policy(dataset=dataset, hidden_dim=32, depth=1)
    from librobot.train.callbacks import Callback

    hooks = [type("Hook", (Callback,), {"on_step_end": c.on_step_end})() for c in callbacks]
    return Trainer(model, dataset, config=cfg, callbacks=hooks, clock=clock)


def test_max_time_stops_by_time_with_a_final_checkpoint_and_a_finished_schedule(tmp_path):
    lrs = LearningRates()
    trainer = _trainer(tmp_path / "run", FakeClock(step_s=0.8), callbacks=[lrs])
    result = trainer.fit()
    # 10 s at 0.8 s per step: the budget is spent during step 13 (12 steps = 9.6 s < 10 s)
    assert result.step == 13
    assert result.train_seconds == pytest.approx(10.4)
    assert result.stop_reason == "time budget reached (10 s of training at step 13)"
    latest = CheckpointManager(tmp_path / "run" / "checkpoints").latest()
    assert latest is not None and latest.name == "step_000000013"
    assert (latest / "ema.safetensors").is_file()
    # warmup in steps; then cosine over the fraction of the budget used before each step (0.08 per step)
    expected = [
        1e-3 * lr_factor("cosine", s + 1, total_steps=1, warmup_steps=2, min_lr_ratio=0.1, progress=0.08 * s)
        for s in range(13)
    ]
    assert lrs.seen == pytest.approx(expected)
    assert lrs.seen[0] == pytest.approx(1e-3) and lrs.seen[6] == pytest.approx(
        1e-3 * (0.1 + 0.45 * (1 + math.cos(0.48 * math.pi)))
    )
    # the schedule reached its end with the budget: the learning rate is at its floor
    assert trainer.scheduler.progress == 1.0
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    logged = [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "train/loss" in r]
    assert logged == [4, 8, 12, 13]


def test_max_steps_still_caps_a_time_budget(tmp_path):
    result = _trainer(tmp_path / "run", FakeClock(step_s=0.1), max_steps=7).fit()
    assert result.step == 7 and result.stop_reason is None


def test_a_resumed_budget_counts_the_time_already_spent(tmp_path):
    from _train_testlib import SendSignalAt

    first = _trainer(tmp_path / "run", FakeClock(step_s=1.0))
    first._user_callbacks.append(SendSignalAt(4))
    assert first.fit().step == 4
    again = Trainer(
        first.module,
        first.train_data,
        config=first.config,
        run_dir=tmp_path / "run",
        resume="auto",
        clock=FakeClock(1.0),
    )
    result = again.fit()
    assert (result.start_step, result.step) == (4, 10) and result.train_seconds == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("value", "seconds"), [("25m", 1500), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), (12, 12), ("2m30s", 150)]
)
def test_durations(value, seconds):
    assert duration_seconds(value) == seconds


def test_bad_budgets_are_named():
    with pytest.raises(ConfigError, match=r"train.max_time': cannot read '25 minutes' as a duration"):
        to_run_config({"train": {"max_time": "25 minutes"}})
    with pytest.raises(ConfigError, match=r"train.max_steps': null \(no step limit\) needs a time budget"):
        to_run_config({"train": {"max_steps": None}})
    with pytest.raises(ConfigError, match=r"train.max_time': must be > 0"):
        to_run_config({"train": {"max_time": 0}})

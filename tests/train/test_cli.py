"""`librobot train` / `librobot-train` end to end on the built-in toy-reach config, and the lazy manifest."""

import json

import pytest

from librobot.core.cli import main as librobot_main
from librobot.core.registry import get_registry
from librobot.train import _manifest
from librobot.train.callbacks import Callback
from librobot.train.checkpointing import CheckpointManager
from librobot.train.cli import train_main
from librobot.train.metrics import read_jsonl

SMALL = [
    "train.max_steps=6",
    "train.batch_size=8",
    "data.num_samples=64",
    "data.val.num_samples=16",
    "data.image_size=8",
    "model.hidden_dim=16",
    "checkpoint.every_n_steps=3",
    "eval.every_n_steps=3",
    "logging.log_every_n_steps=2",
    "logging.plot=false",
    "logging.tensorboard=false",
]


def test_librobot_train_runs_the_builtin_toy_config_and_resumes(tmp_path, capsys):
    run = tmp_path / "toy-reach"
    # options may sit between overrides
    assert (
        librobot_main(["train", "toy-reach", *SMALL[:3], "--run-dir", str(run), *SMALL[3:], "logging.progress=true"])
        == 0
    )
    assert "train" in capsys.readouterr().err  # the rich progress bar was drawn
    assert CheckpointManager(run / "checkpoints").read_pointer("latest")["step"] == 6
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r] == [2, 4, 6]
    # a longer schedule continues from step 6 (`--resume key=value` keeps the override an override)
    assert train_main(["toy-reach", *SMALL, "--run-dir", str(run), "--resume", "train.max_steps=8"]) == 0
    assert CheckpointManager(run / "checkpoints").read_pointer("latest")["step"] == 8
    assert "resumed from" in (run / "train.log").read_text()


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert train_main(["toy-reach", "train.batch_sise=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("librobot-train: error:") and "unknown key 'train.batch_sise'" in err
    assert train_main(["toy-reach", "--print-config", "train.max_steps=3", "--run-dir", "/tmp/x"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["max_steps"] == 3 and printed["scheduler"]["name"] == "cosine"
    assert printed["run_dir"] == "/tmp/x"


@pytest.mark.parametrize(
    "category, entries",
    [
        ("optimizer", _manifest.OPTIMIZERS),
        ("scheduler", _manifest.SCHEDULERS),
        ("loss", _manifest.LOSSES),
        ("callback", _manifest.CALLBACKS),
        ("train_model", _manifest.MODELS),
        ("dataset", _manifest.DATASETS),
    ],
)
def test_every_manifest_entry_resolves(category, entries):
    registry = get_registry(category)
    for name, _, aliases, _ in entries:
        target = registry.get(name)
        assert callable(target)
        for alias in aliases:
            assert registry.canonical(alias) == name
        if category == "callback":
            assert issubclass(target, Callback)

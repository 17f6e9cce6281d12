"""Resuming from damaged or foreign checkpoints: fall back to an older valid one, or fail with a
named error that says which checkpoint, what is wrong and the fix, leaving the run folder as it was."""

import json
import logging
import shutil

import pytest
import yaml
from _train_testlib import tiny_config, train_losses

from librobot.core.checkpoint import read_json, write_json, write_manifest
from librobot.core.errors import CheckpointError
from librobot.train.checkpointing import CheckpointManager, resolve_resume
from librobot.train.cli import train_main
from librobot.train.errors import CheckpointMismatchError, NoResumableCheckpointError
from librobot.train.run import train_from_config

pytestmark = pytest.mark.torch


def first_run(run, **sections):
    """A finished run with checkpoints every 5 steps; returns its config."""
    defaults = {"train": {"max_steps": 5}, "checkpoint": {"every_n_steps": 5, "keep_last": 3}}
    cfg = tiny_config(run, **{**defaults, **sections})
    train_from_config(cfg, configure_logs=False)
    return cfg


def ckpt(run, step):
    return run / "checkpoints" / f"step_{step:09d}"


def damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "flip":  # same size, different bytes: only the checksum can tell
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


def snapshot(run):
    """Every file of the run folder except the log, by content."""
    files = [p for p in sorted(run.rglob("*")) if p.is_file() and p.name != "train.log"]
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in files}


@pytest.fixture
def own_logging():
    """Put the librobot logger back as it was: the CLI points it at capsys's stream, closed after the test."""
    logger = logging.getLogger("librobot")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in [h for h in logger.handlers if h not in saved[0]]:
        logger.removeHandler(handler)
        handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def checkpoint_warnings():
    # the librobot logger stops propagating once logging is configured, so caplog cannot be relied on
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("librobot.train.checkpoint")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    "how, why", [("flip", "sha256 does not match the manifest"), ("truncate", "truncated or corrupt")]
)
def test_only_checkpoint_damaged_fails_resume_and_leaves_the_run_untouched(tmp_path, capsys, own_logging, how, why):
    run = tmp_path / "run"
    cfg = first_run(run)
    damage(ckpt(run, 5) / "model.safetensors", how)
    before = snapshot(run)
    assert b'"step": 5' in before["metrics.jsonl"]

    with pytest.raises(NoResumableCheckpointError) as info:
        train_from_config(cfg, resume="auto", configure_logs=False)
    message = str(info.value)
    assert f"cannot resume {run}: none of its 1 checkpoint(s) can be loaded (step_000000005: " in message
    assert f"{ckpt(run, 5) / 'model.safetensors'}" in message and why in message
    assert "Restore the damaged checkpoint from a backup" in message and "--run-dir PATH or name=NEW_NAME" in message
    assert snapshot(run) == before  # metrics.jsonl, checkpoints and pointers byte-identical

    del cfg["run_dir"]
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert train_main([str(config), "--run-dir", str(run), "--resume"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # the lines before are the run's INFO logs
    assert last.startswith(f"librobot-train: error: cannot resume {run}: none of its 1 checkpoint(s)")
    assert "step_000000005: " in last and "Restore the damaged checkpoint" in last
    assert snapshot(run) == before
    # naming the checkpoint itself fails the same way, with the fix
    with pytest.raises(NoResumableCheckpointError, match=rf"cannot resume from {ckpt(run, 5)}: .*{why}.*Restore it"):
        resolve_resume(ckpt(run, 5), run)


def test_damaged_latest_falls_back_to_the_older_valid_checkpoint(tmp_path, checkpoint_warnings):
    run = tmp_path / "run"
    cfg = first_run(run, train={"max_steps": 10})
    damage(ckpt(run, 10) / "optimizer.safetensors", "flip")
    first_line = (run / "metrics.jsonl").read_text().splitlines()[0]

    cfg["train"]["max_steps"] = 15
    result = train_from_config(cfg, resume="auto", configure_logs=False)
    assert result.start_step == 5 and result.step == 15
    fallback = [m for m in checkpoint_warnings if m.startswith("resume: checkpoint step_000000010 is damaged")]
    assert len(fallback) == 1 and "optimizer.safetensors: sha256 does not match the manifest" in fallback[0]
    assert "resuming from the older step_000000005 instead: the steps after 5 are trained again" in fallback[0]
    # history up to the resumed step is kept as it was; steps 10 and 15 come from the resumed run
    assert (run / "metrics.jsonl").read_text().splitlines()[0] == first_line
    assert [s for s, _ in train_losses(run)] == [5, 10, 15]
    assert resolve_resume("auto", run) == ckpt(run, 15)
    assert CheckpointManager.problem(ckpt(run, 10)) is None  # the damaged one was rewritten on the way


def test_checkpoint_of_another_model_names_the_mismatched_keys(tmp_path):
    run = tmp_path / "run"
    cfg = first_run(run)
    before = snapshot(run)
    cfg["model"] = {**cfg["model"], "hidden_dim": 16, "depth": 2}
    with pytest.raises(CheckpointMismatchError) as info:
        train_from_config(cfg, resume="auto", configure_logs=False)
    message = str(info.value)
    assert message.startswith(
        f"checkpoint {ckpt(run, 5)} holds weights of another model than the one being resumed (ToyReachPolicy): "
        "6 missing: head.1.norm.weight, head.1.norm.bias, head.1.mlp.0.weight, head.1.mlp.0.bias, "
        "head.1.mlp.3.weight and 1 more; 18 mis-shaped: "
        "vision.top.proj.weight (checkpoint [32, 128], model [16, 128]), "
    )
    assert "unexpected" not in message
    assert message.endswith(
        "Fix: resume with the config that made the checkpoint (its config.json), "
        "or start a new run in another folder (--run-dir PATH or name=NEW_NAME)"
    )
    assert snapshot(run) == before

    deeper = tmp_path / "deeper"
    cfg = first_run(deeper, model={"depth": 2})
    cfg["model"]["depth"] = 1
    unexpected = r"\(ToyReachPolicy\): 6 unexpected: head\.1\.mlp\.0\.bias, head\.1\.mlp\.0\.weight, "
    with pytest.raises(CheckpointMismatchError, match=unexpected):
        train_from_config(cfg, resume="auto", configure_logs=False)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda s: s.pop("step"), "no 'step' (a non-negative integer is required)"),
        (lambda s: s.update(step="5"), "'step' is '5', expected a non-negative integer"),
        (lambda s: s["data"].pop("epoch"), "'data.epoch' is missing or not an integer"),
    ],
)
def test_trainer_state_without_a_valid_step_is_a_named_error(tmp_path, edit, expected):
    run = tmp_path / "run"
    cfg = first_run(run)
    folder = ckpt(run, 5)
    state = read_json(folder / "trainer_state.json")
    edit(state)
    write_json(folder / "trainer_state.json", state)
    # re-sign the edited file, so it is a well-formed checkpoint with a bad document, not a corrupt one
    write_manifest(folder, read_json(folder / "manifest.json")["metadata"])
    with pytest.raises(CheckpointMismatchError) as info:
        train_from_config(cfg, resume="auto", configure_logs=False)
    message = str(info.value)
    assert message.startswith(f"checkpoint {folder}: trainer_state.json cannot be used: {expected}; ")
    assert "Fix: restore the checkpoint from a backup, resume from another one (--resume PATH)" in message


def test_latest_pointer_cannot_lead_outside_the_checkpoints_folder(tmp_path):
    run = tmp_path / "run"
    first_run(run)
    shutil.copytree(ckpt(run, 5), tmp_path / "elsewhere")  # a valid checkpoint, but not this run's
    (run / "checkpoints" / "latest.json").write_text(json.dumps({"step": 99, "path": "../../elsewhere"}))
    assert resolve_resume("auto", run) == ckpt(run, 5)
    assert issubclass(NoResumableCheckpointError, CheckpointError)
    assert issubclass(CheckpointMismatchError, CheckpointError)

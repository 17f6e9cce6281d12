"""`librobot demo` at toy sizes: every stage runs, writes its outputs, and a finished stage is
reused when the command runs again (the full-size run is the README's first command)."""

from __future__ import annotations

import json

import pytest

from librobot.core.cli import build_parser
from librobot.core.cli import main as librobot_main
from librobot.train.commands import demo_settings
from librobot.train.pipeline import DemoSettings, run_demo, train_config

pytestmark = pytest.mark.torch


def test_demo_stages_write_their_outputs_and_are_reused(tmp_path):
    settings = DemoSettings(
        out=tmp_path / "demo", tasks=("metaworld-reach",), demos=2, steps=8, batch_size=8, episodes=1,
        videos=0, num_envs=1, export=False,
    )  # fmt: skip
    page = run_demo(settings)
    out = settings.out
    assert page == out / "index.html" and "metaworld-reach" in page.read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["framework"] == "groot"
    assert {"record_s", "train_s", "eval_s"} <= set(summary)
    assert (out / "run" / "policy" / "manifest.json").is_file() and (out / "run" / "curves.png").is_file()
    recorded = {p: p.stat().st_mtime_ns for p in (out / "data").rglob("*") if p.is_file()}
    policy_time = (out / "run" / "policy" / "manifest.json").stat().st_mtime_ns

    again = DemoSettings(**{**settings.__dict__, "timings": {}})
    run_demo(again)
    assert "record_s" not in again.timings and "train_s" not in again.timings  # reused, not redone
    assert {p: p.stat().st_mtime_ns for p in recorded} == recorded
    assert (out / "run" / "policy" / "manifest.json").stat().st_mtime_ns == policy_time

    # `librobot eval` on the trained run; an interrupted evaluation continues with --resume
    ev = tmp_path / "eval"
    command = ["eval", str(out / "run"), "--env", "metaworld-reach", "--episodes", "2", "--num-envs", "1",
               "--max-steps", "6", "--videos", "0", "--out", str(ev)]  # fmt: skip
    assert librobot_main(command) == 0
    report = json.loads((ev / "report.json").read_text())
    assert report["episodes"] == 2 and report["resumed_episodes"] == 0 and report["env_steps"] >= 2
    lines = (ev / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 3
    (ev / "episodes.jsonl").write_text("\n".join(lines[:2]) + "\n")  # the second episode was lost
    assert librobot_main([*command, "--resume"]) == 0
    resumed = json.loads((ev / "report.json").read_text())
    assert resumed["episodes"] == 2 and resumed["resumed_episodes"] == 1
    assert [r["seed"] for r in resumed["results"]] == [r["seed"] for r in report["results"]]

    # `librobot eval --offline`: action error on the run's validation episodes beside the baselines
    off = tmp_path / "offline"
    assert librobot_main(["eval", str(out / "run"), "--offline", "--max-batches", "2", "--out", str(off)]) == 0
    offline = json.loads((off / "offline.json").read_text())
    assert offline["samples"] > 0 and len(offline["l1_per_dim"]) == 4
    assert set(offline["baselines"]) == {"hold", "repeat_last"} and offline["baselines"]["repeat_last"]["l1"] > 0
    assert isinstance(offline["verdict"]["learned"], bool)


def test_an_interrupted_demo_continues_its_training(tmp_path):
    from _train_testlib import SendSignalAt, train_losses

    from librobot.train.record import record_dataset
    from librobot.train.run import train_from_config

    settings = DemoSettings(
        out=tmp_path / "demo", tasks=("metaworld-reach",), demos=2, steps=8, batch_size=8, episodes=1,
        videos=0, num_envs=1, export=False,
    )  # fmt: skip
    data, run = settings.out / "data", settings.out / "run"
    record_dataset(["metaworld-reach"], 2, data, env_kwargs={"render": False})
    config = train_config(settings, data, run)
    config["logging"]["log_every_n_steps"] = 2
    stopped = train_from_config(config, callbacks=[SendSignalAt(5)], configure_logs=False)  # Ctrl-C at step 5
    assert stopped.step == 5 and (run / "policy" / "manifest.json").is_file()
    settings.steps = 8
    run_demo(settings)
    assert "train_s" in settings.timings  # the half-trained policy was not taken as the result
    # the first part's lines are kept; the demo's own config logs every 50 steps, so the end once
    assert [step for step, _ in train_losses(run)] == [2, 4, 8]
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 8


def test_demo_trains_the_framework_asked_for_with_the_tiny_vlm(tmp_path):
    config = train_config(DemoSettings(framework="act", steps=123), tmp_path / "data", tmp_path / "run")
    assert config["model"] == {"factory": "vla", "framework": "act", "vlm": "librobot-tiny-vlm"}
    assert config["train"]["max_steps"] == 123 and config["data"]["path"] == str(tmp_path / "data")


def test_demo_command_line_maps_to_settings():
    settings = demo_settings(build_parser().parse_args(["demo", "--out", "x", "--framework", "pi0", "--no-export"]))
    assert (settings.out.name, settings.framework, settings.export, settings.steps) == ("x", "pi0", False, 1500)
    quick = demo_settings(build_parser().parse_args(["demo", "--quick"]))
    assert (quick.steps, quick.demos, quick.episodes, len(quick.tasks)) == (60, 4, 2, 2)

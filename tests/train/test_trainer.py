"""The Trainer in one process: learning, accumulation, clipping, precision and compile switches,
graceful stop + exact resume, retention, evaluation callbacks, errors."""

import json

import pytest
import torch
from _train_testlib import SendSignalAt, final_tensors, tiny_config, train_losses
from torch import nn

from librobot.core.errors import CheckpointError, ConfigError, MissingExtraError
from librobot.train.callbacks import Callback
from librobot.train.checkpointing import CheckpointManager, load_inference_weights, resolve_resume
from librobot.train.errors import TrainingError
from librobot.train.metrics import read_jsonl
from librobot.train.run import train_from_config
from librobot.train.toy_reach import toy_reach_dataset, toy_reach_policy
from librobot.train.trainer import Trainer


def test_toy_reach_policy_learns_and_the_run_folder_is_complete(tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(
        run,
        data={"num_samples": 1024, "horizon": 8, "image_size": 12, "val": {"seed": 1, "num_samples": 128}},
        model={"hidden_dim": 64, "depth": 2},
        train={"max_steps": 80, "batch_size": 32, "max_grad_norm": 1.0},
        optimizer={"lr": 3e-3, "weight_decay": 0.01},
        scheduler={"name": "cosine", "warmup_steps": 10},
        ema={"enabled": True, "max_decay": 0.9},
        checkpoint={"every_n_steps": 40, "monitor": "val/loss"},
        eval={"every_n_steps": 40},
        logging={"log_every_n_steps": 10, "tensorboard": True, "plot": True},
    )
    result = train_from_config(cfg, configure_logs=False)
    losses = [loss for _, loss in train_losses(run)]
    assert len(losses) == 8
    assert losses[-1] < 0.6 * losses[0], losses
    evals = [r["val/loss"] for r in read_jsonl(run / "metrics.jsonl") if "val/loss" in r]
    assert len(evals) == 2 and evals[1] < evals[0]
    assert result.step == 80 and result.eval_metrics["val/loss"] == evals[-1]
    # run folder: resolved config, metrics, curves, tensorboard events, checkpoints with pointers
    assert (run / "config.yaml").read_text().count("max_steps: 80") == 1
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    manager = CheckpointManager(run / "checkpoints")
    assert [s for s, _ in manager.steps()] == [40, 80]
    assert manager.read_pointer("latest")["step"] == 80 and manager.read_pointer("best")["step"] == 80
    model = toy_reach_policy(dataset=toy_reach_dataset(8, horizon=8, image_size=12), hidden_dim=64, depth=2)
    assert load_inference_weights(result.last_checkpoint, model) == "ema"
    assert torch.equal(model.out[1].weight, final_tensors(run, "ema")["out.1.weight"])


def test_grad_accumulation_equals_one_batch_k_times_larger(tmp_path):
    common = dict(
        data={"padding": False},
        train={"max_steps": 6, "max_grad_norm": 0.5},
        optimizer={"name": "adamw", "lr": 1e-2, "weight_decay": 0.1},
    )
    a = tiny_config(tmp_path / "a", **common)
    a["train"].update(batch_size=4, grad_accum_steps=4)
    b = tiny_config(tmp_path / "b", **common)
    b["train"].update(batch_size=16, grad_accum_steps=1)
    train_from_config(a, configure_logs=False)
    train_from_config(b, configure_logs=False)
    wa, wb = final_tensors(tmp_path / "a"), final_tensors(tmp_path / "b")
    moved = max((wa[k] - final_tensors(tmp_path / "b")[k]).abs().max().item() for k in wa)
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-4, atol=2e-5)
    assert moved < 2e-5
    la, lb = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
    assert [s for s, _ in la] == [s for s, _ in lb]
    assert [v for _, v in la] == pytest.approx([v for _, v in lb], rel=1e-5)


def test_clipping_bounds_the_update_norm(tmp_path):
    cfg = tiny_config(
        tmp_path / "r",
        train={"max_steps": 1, "max_grad_norm": 0.05},
        optimizer={"name": "sgd", "lr": 1.0},
        logging={"log_every_n_steps": 1},
    )
    torch.manual_seed(0)
    dataset = toy_reach_dataset(256, horizon=4, image_size=8)
    model = toy_reach_policy(dataset=dataset, hidden_dim=32, depth=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = Trainer(model, dataset, config=cfg)
    result = trainer.fit()
    update = torch.sqrt(sum(((p.detach() - before[n]) ** 2).sum() for n, p in model.named_parameters()))
    assert result.train_metrics["grad_norm"] > 0.5  # the raw gradient was far larger...
    assert update.item() == pytest.approx(0.05, rel=1e-4)  # ...and plain SGD with lr 1 moved exactly max_norm


def test_gradient_checkpointing_switch(tmp_path):
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(2, 1)

        def forward(self, batch):
            return {"loss": self.w(batch["observation.state"][:, 0]).pow(2).mean()}

    cfg = tiny_config(tmp_path / "p", train={"gradient_checkpointing": True})
    with pytest.raises(ConfigError, match=r"Plain has no gradient_checkpointing_enable\(\).*set it to false"):
        Trainer(Plain(), toy_reach_dataset(64, horizon=4, image_size=8), config=cfg).fit()
    runs = {}
    for flag in (False, True):
        cfg = tiny_config(
            tmp_path / str(flag), train={"max_steps": 4, "gradient_checkpointing": flag}, model={"dropout": 0.2}
        )
        train_from_config(cfg, configure_logs=False)
        runs[flag] = final_tensors(tmp_path / str(flag))
    for key in runs[False]:  # recomputation replays the same dropout masks: identical training
        assert torch.equal(runs[False][key], runs[True][key]), key


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_fp32_weights(tmp_path, precision):
    run = tmp_path / precision
    cfg = tiny_config(
        run, train={"max_steps": 30, "precision": precision, "max_grad_norm": 1.0}, optimizer={"lr": 3e-3}
    )
    train_from_config(cfg, configure_logs=False)
    losses = [loss for _, loss in train_losses(run)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert all(t.dtype == torch.float32 for t in final_tensors(run).values())
    latest = CheckpointManager(run / "checkpoints").latest()
    scaler = json.loads((latest / "trainer_state.json").read_text())["scaler"]
    if precision == "fp16":  # loss scaling state travels with the checkpoint
        assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    else:
        assert scaler is None


@pytest.mark.parametrize(("flags", "expected"), [("avx2 fma avx512f amx_bf16", "bf16"), ("avx2 fma", "fp32")])
def test_auto_precision_follows_the_cpu(tmp_path, monkeypatch, flags, expected):
    import librobot.core.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_info", lambda: hardware.parse_cpuinfo(f"flags\t: {flags}\n"))
    seen = []
    real = torch.autocast

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    run = tmp_path / expected
    train_from_config(tiny_config(run, train={"max_steps": 3, "precision": "auto"}), configure_logs=False)
    assert seen == ([torch.bfloat16] * 3 if expected == "bf16" else [])
    assert all(t.dtype == torch.float32 for t in final_tensors(run).values())


def test_wandb_without_the_extra_names_it(tmp_path):
    cfg = tiny_config(tmp_path / "w", logging={"wandb": True})
    with pytest.raises(MissingExtraError, match=r"pip install 'librobot-train\[wandb\]'"):
        train_from_config(cfg, configure_logs=False)


def test_compile_switch_gives_the_same_training(tmp_path):
    results = {}
    for flag in (False, True):
        cfg = tiny_config(
            tmp_path / str(flag),
            train={"max_steps": 3, "compile": flag, "compile_backend": "eager"},
            data={"image_size": 0},
        )
        train_from_config(cfg, configure_logs=False)
        results[flag] = final_tensors(tmp_path / str(flag))
    for key in results[False]:
        torch.testing.assert_close(results[True][key], results[False][key], rtol=1e-6, atol=1e-7)


def test_trainer_optimizer_has_per_module_lrs_after_warmup_scaling(tmp_path):
    cfg = tiny_config(
        tmp_path / "g",
        optimizer={
            "lr": 1e-3,
            "weight_decay": 0.02,
            "param_groups": [
                {"name": "vision", "match": ["vision"], "lr": 1e-4},
                {"name": "head", "match": ["head", "out"]},
            ],
        },
        scheduler={"name": "linear", "warmup_steps": 4},
    )
    dataset = toy_reach_dataset(64, horizon=4, image_size=8)
    trainer = Trainer(toy_reach_policy(dataset=dataset, hidden_dim=32, depth=1), dataset, config=cfg)
    trainer.setup()
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert sorted(groups) == [
        "default/decay",
        "default/no_decay",
        "head/decay",
        "head/no_decay",
        "vision/decay",
        "vision/no_decay",
    ]
    assert groups["vision/decay"]["lr"] == pytest.approx(1e-4 / 4)  # warmup factor (0+1)/4 at step 0
    assert groups["head/decay"]["lr"] == pytest.approx(1e-3 / 4)
    assert groups["head/decay"]["weight_decay"] == 0.02 and groups["head/no_decay"]["weight_decay"] == 0.0
    names = trainer.param_plan.names
    assert "text.weight" in names["default/no_decay"]  # the embedding table
    assert all(n.startswith("vision.") for n in names["vision/decay"] + names["vision/no_decay"])


def resumable_config(run_dir):
    return tiny_config(
        run_dir,
        model={"dropout": 0.1},
        data={"state_noise": 0.05, "num_samples": 96, "val": {"seed": 5, "num_samples": 40}},
        train={"max_steps": 24, "batch_size": 8, "grad_accum_steps": 2, "max_grad_norm": 1.0, "deterministic": True},
        optimizer={"name": "lion", "lr": 1e-3, "weight_decay": 0.1},
        scheduler={"name": "cosine", "warmup_steps": 3},
        ema={"enabled": True, "max_decay": 0.95},
        checkpoint={"every_n_steps": 10, "monitor": "val/loss"},
        eval={"every_n_steps": 4},
        logging={"log_every_n_steps": 3},
    )


def test_sigterm_checkpoints_then_resume_is_bitwise_exact(tmp_path):
    full = resumable_config(tmp_path / "full")
    train_from_config(full, configure_logs=False)
    cut = resumable_config(tmp_path / "cut")
    stopped = train_from_config(cut, callbacks=[SendSignalAt(7)], configure_logs=False)
    assert stopped.stop_reason == "stopped by SIGTERM" and stopped.step == 7
    assert CheckpointManager(tmp_path / "cut" / "checkpoints").read_pointer("latest")["step"] == 7
    resumed = train_from_config(cut, resume="auto", configure_logs=False)
    assert resumed.step == 24 and resumed.stop_reason is None
    for name in ("model", "ema", "optimizer"):
        a, b = final_tensors(tmp_path / "full", name), final_tensors(tmp_path / "cut", name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    # the logs read as one uninterrupted run, evaluation numbers included
    assert train_losses(tmp_path / "cut") == train_losses(tmp_path / "full")

    def evals(d):
        return [(r["step"], r["val/loss"]) for r in read_jsonl(d / "metrics.jsonl") if "val/loss" in r]

    assert evals(tmp_path / "cut") == evals(tmp_path / "full") and len(evals(tmp_path / "full")) == 6


class ScoreAt(Callback):
    """An evaluation callback (like a closed-loop success rate) with a scripted score per step."""

    def __init__(self, scores):
        self.scores = scores

    def on_evaluate(self, trainer, metrics):
        metrics["eval/success"] = self.scores[trainer.step]


def test_retention_keeps_last_n_and_the_best(tmp_path):
    cfg = tiny_config(
        tmp_path / "r",
        train={"max_steps": 30},
        checkpoint={"every_n_steps": 5, "keep_last": 2, "monitor": "eval/success", "mode": "max"},
        eval={"every_n_steps": 5},
    )
    scores = {5: 0.2, 10: 0.9, 15: 0.5, 20: 0.9, 25: 0.1, 30: 0.3}
    result = train_from_config(cfg, callbacks=[ScoreAt(scores)], configure_logs=False)
    manager = CheckpointManager(tmp_path / "r" / "checkpoints")
    assert [s for s, _ in manager.steps()] == [10, 25, 30]  # best (first to reach 0.9) + the last two
    best = manager.read_pointer("best")
    assert best == {"step": 10, "path": "step_000000010", "monitor": "eval/success", "value": 0.9, "mode": "max"}
    assert result.best_checkpoint == manager.dir_for(10)
    assert not list((tmp_path / "r" / "checkpoints").glob(".*"))  # no temp or trash left behind


def test_early_stopping_stops_after_patience(tmp_path):
    cfg = tiny_config(
        tmp_path / "e",
        train={"max_steps": 100},
        eval={"every_n_steps": 2},
        callbacks=[{"name": "early-stopping", "monitor": "eval/success", "mode": "max", "patience": 3}],
    )
    scores = {s: (0.5 if s <= 4 else 0.4) for s in range(0, 101)}
    result = train_from_config(cfg, callbacks=[ScoreAt(scores)], configure_logs=False)
    assert result.step == 8  # best 0.5 at step 2; evaluations at 4, 6 and 8 do not improve on it
    assert "early stopping: eval/success did not improve for 3 evaluations" in result.stop_reason


def test_existing_run_is_not_overwritten_and_corrupt_latest_falls_back(tmp_path):
    cfg = tiny_config(tmp_path / "x", train={"max_steps": 10}, checkpoint={"every_n_steps": 5, "keep_last": 3})
    train_from_config(cfg, configure_logs=False)
    with pytest.raises(ConfigError, match=r"already holds checkpoints \(up to step 10\); resume with --resume"):
        train_from_config(cfg, configure_logs=False)
    latest = tmp_path / "x" / "checkpoints" / "step_000000010"
    (latest / "model.safetensors").write_bytes(b"garbage")
    assert resolve_resume("auto", tmp_path / "x") == tmp_path / "x" / "checkpoints" / "step_000000005"
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve_resume(tmp_path / "nothing-here", tmp_path / "x")


def test_model_contract_and_non_finite_loss_errors(tmp_path):
    class Bad(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.kind, self.w = kind, nn.Parameter(torch.ones(1))

        def forward(self, batch):
            if self.kind == "tensor":
                return self.w.sum()
            return {"loss": self.w.sum() * float("nan")}

    data = toy_reach_dataset(64, horizon=4, image_size=8)
    with pytest.raises(TrainingError, match=r"Bad.forward\(batch\) must return a dict with a scalar 'loss'"):
        Trainer(Bad("tensor"), data, config=tiny_config(tmp_path / "a")).fit()
    with pytest.raises(TrainingError, match=r"the training loss became nan by step 5: lower optimizer.lr"):
        Trainer(Bad("nan"), data, config=tiny_config(tmp_path / "b")).fit()


def test_metrics_file_is_truncated_to_the_resumed_step(tmp_path):
    run = tmp_path / "m"
    cfg = tiny_config(run, train={"max_steps": 10}, checkpoint={"every_n_steps": 5})
    train_from_config(cfg, configure_logs=False)
    # a crashed run may have logged past its last checkpoint: simulate it, plus a torn last line
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 99, "train/loss": 1.0}) + "\n" + '{"step": 100, "tr')
    cfg["train"]["max_steps"] = 15
    train_from_config(cfg, resume="auto", configure_logs=False)
    steps = [s for s, _ in train_losses(run)]
    assert steps == [5, 10, 15]


def test_resume_with_a_parameter_that_never_got_a_gradient_is_exact(tmp_path):
    # a camera embedding in a state-only run: AdamW keeps no state for it, which once broke resume
    def trainer(run, resume=None, callbacks=()):
        torch.manual_seed(0)
        model = toy_reach_policy(dataset=data, hidden_dim=32, depth=1)
        model.unused_embed = nn.Parameter(torch.randn(4, 3))
        cfg = tiny_config(run, train={"max_steps": 12, "deterministic": True}, checkpoint={"every_n_steps": 6})
        return Trainer(model, data, config=cfg, resume=resume, callbacks=list(callbacks))

    data = toy_reach_dataset(96, horizon=4, image_size=8)
    full = trainer(tmp_path / "full").fit()
    assert full.start_step == 0 and full.train_seconds > 0
    assert trainer(tmp_path / "cut", callbacks=[SendSignalAt(8)]).fit().step == 8
    saved = json.loads((tmp_path / "cut" / "checkpoints" / "step_000000008" / "trainer_state.json").read_text())
    assert saved["window"]["steps"] == 3 and saved["window"]["train_s"] > 0  # steps 6-8 of the window ending at 10
    assert saved["train_seconds"] >= saved["window"]["train_s"]
    resumed = trainer(tmp_path / "cut", resume="auto")
    resumed.setup()
    assert resumed._window["train_s"] == saved["window"]["train_s"]
    assert resumed.train_seconds == saved["train_seconds"]
    result = resumed.fit()
    assert result.step == 12 and result.start_step == 8
    assert result.train_seconds > saved["train_seconds"]  # both parts' step time, not only the last one
    a, b = final_tensors(tmp_path / "full"), final_tensors(tmp_path / "cut")
    assert a.keys() == b.keys() and "unused_embed" in a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert train_losses(tmp_path / "cut") == train_losses(tmp_path / "full")

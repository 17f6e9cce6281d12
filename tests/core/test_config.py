from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from omegaconf import OmegaConf

from librobot.core.config import load_config, save_config, source_of, validate_config
from librobot.core.errors import ConfigError


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path):
    write(tmp_path, "base.yaml", "seed: 0\noutput_dir: runs/default\ntraining:\n  lr: 1.0e-4\n  steps: 100\n")
    write(tmp_path, "model/groot.yaml", "framework: groot\nhidden_dim: 256\nhead:\n  steps: 10\n")
    write(tmp_path, "model/pi0.yaml", "framework: pi0\nhidden_dim: 512\nhead:\n  steps: 10\n")
    write(
        tmp_path,
        "train.yaml",
        "defaults:\n  - base\n  - model: groot\n  - _self_\n"
        "training:\n  steps: 200\n  checkpoint_dir: ${output_dir}/checkpoints\n"
        "experiment: ${model.framework}-${training.steps}\n",
    )
    return tmp_path


def test_defaults_compose_in_order_and_interpolate(tree):
    cfg = load_config(tree / "train.yaml")
    assert cfg.seed == 0
    assert cfg.training.lr == pytest.approx(1e-4)
    assert cfg.training.steps == 200  # _self_ after base: the file's own keys win
    assert cfg.model.framework == "groot" and cfg.model.hidden_dim == 256
    assert cfg.training.checkpoint_dir == "runs/default/checkpoints"
    assert cfg.experiment == "groot-200"
    assert source_of(cfg, "training.lr") == str((tree / "base.yaml").resolve())
    assert source_of(cfg, "model.head.steps") == str((tree / "model/groot.yaml").resolve())


def test_self_first_lets_defaults_override(tree):
    write(tree, "self_first.yaml", "defaults:\n  - _self_\n  - base\nseed: 5\n")
    assert load_config(tree / "self_first.yaml").seed == 0


def test_overrides_values_groups_additions_and_deletions(tree):
    cfg = load_config(
        tree / "train.yaml",
        overrides=["training.lr=1e-3", "model=pi0", "+training.warmup=50", "~seed", "output_dir=/tmp/x"],
    )
    assert cfg.training.lr == pytest.approx(1e-3) and isinstance(cfg.training.lr, float)
    assert cfg.model.framework == "pi0" and cfg.model.hidden_dim == 512
    assert cfg.experiment == "pi0-200"  # interpolation follows the chosen group
    assert cfg.training.warmup == 50
    assert "seed" not in cfg
    assert cfg.training.checkpoint_dir == "/tmp/x/checkpoints"
    assert source_of(cfg, "training.lr") == "override 'training.lr=1e-3'"


def test_unknown_override_key_is_an_error_with_suggestion(tree):
    with pytest.raises(
        ConfigError, match=r"unknown key 'training\.lrr'.*Did you mean: training\.lr.*'\+training\.lrr=\.\.\.'"
    ):
        load_config(tree / "train.yaml", overrides=["training.lrr=1e-3"])


def test_unknown_group_option_lists_options(tree):
    with pytest.raises(
        ConfigError, match=r"config 'model/grot' not found.*Did you mean: groot.*Options for 'model': groot, pi0"
    ):
        load_config(tree / "train.yaml", overrides=["model=grot"])


def test_broken_interpolation_names_key_and_file(tree):
    write(tree, "bad_interp.yaml", "defaults:\n  - base\nlog_dir: ${outputdir}/logs\n")
    with pytest.raises(ConfigError, match=r"bad_interp\.yaml: key 'log_dir'.*outputdir"):
        load_config(tree / "bad_interp.yaml")


def test_yaml_syntax_error_and_cycle_are_reported(tree):
    write(tree, "broken.yaml", "a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: cannot parse YAML"):
        load_config(tree / "broken.yaml")
    write(tree, "loop_a.yaml", "defaults:\n  - loop_b\n")
    write(tree, "loop_b.yaml", "defaults:\n  - loop_a\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tree / "loop_a.yaml")


def test_save_load_round_trip(tree, tmp_path):
    cfg = load_config(tree / "train.yaml", overrides=["training.lr=3e-4"])
    out = save_config(cfg, tmp_path / "saved" / "config.yaml")
    again = load_config(out)
    assert OmegaConf.to_container(again, resolve=True) == OmegaConf.to_container(cfg, resolve=True)


@dataclass
class TrainingSchema:
    lr: float
    steps: int = 10
    checkpoint_dir: str = "ckpt"
    optimizer: Literal["adamw", "lion"] = "adamw"


@dataclass
class ModelSchema:
    framework: str
    hidden_dim: int
    head: dict[str, int] = field(default_factory=dict)


@dataclass
class RunSchema:
    training: TrainingSchema
    model: ModelSchema
    seed: int = 0
    output_dir: str = "runs"
    experiment: str = ""
    tags: list[str] = field(default_factory=list)


def test_schema_validation_returns_typed_object(tree):
    run = validate_config(load_config(tree / "train.yaml"), RunSchema)
    assert isinstance(run.training, TrainingSchema)
    assert run.training.steps == 200 and run.model.hidden_dim == 256
    assert run.training.checkpoint_dir == "runs/default/checkpoints"


def test_schema_errors_name_file_key_and_expected_type(tree):
    write(tree, "typo.yaml", "defaults:\n  - train\ntraining:\n  lrr: 0.1\n  steps: many\n  optimizer: sgd\n")
    with pytest.raises(ConfigError) as info:
        load_config(tree / "typo.yaml", schema=RunSchema)
    message = str(info.value)
    typo = str((tree / "typo.yaml").resolve())
    assert "3 config errors against RunSchema" in message
    assert f"{typo}: key 'training.lrr': unknown key; did you mean 'lr'?" in message
    assert f"{typo}: key 'training.steps': expected int, got 'many' (str)" in message
    assert f"{typo}: key 'training.optimizer': expected one of 'adamw', 'lion', got 'sgd'" in message


def test_schema_reports_missing_required_and_override_origin(tree):
    write(tree, "nolr.yaml", "model:\n  framework: x\n  hidden_dim: 1\ntraining:\n  steps: 1\n")
    with pytest.raises(ConfigError, match=r"key 'training\.lr': required key is missing \(expected float\)"):
        load_config(tree / "nolr.yaml", schema=RunSchema)
    with pytest.raises(ConfigError, match=r"override 'model\.hidden_dim=wide': key 'model\.hidden_dim': expected int"):
        load_config(tree / "train.yaml", overrides=["model.hidden_dim=wide"], schema=RunSchema)

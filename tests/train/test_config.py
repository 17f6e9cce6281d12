"""The training config fails fast: unknown keys, wrong types and bad values are named with their file."""

import pytest

from librobot.core.errors import ConfigError, UntrustedCodeError
from librobot.core.references import code_references
from librobot.train.config import RunConfig, load_run_config, to_run_config
from librobot.train.factories import build_callbacks, build_datasets, build_model


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_a_typo_fails_fast_naming_key_suggestion_and_file(tmp_path):
    path = write(tmp_path, "name: x\ntrain:\n  max_step: 10\n  batch_size: 4\noptimizer:\n  lr: 1e-3\n")
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    message = str(err.value)
    assert f"{path}: key 'train.max_step': unknown key; did you mean 'max_steps'" in message


def test_wrong_types_and_values_are_all_reported(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: big\n  precision: fp8\nema:\n  enabled: maybe\n")
    with pytest.raises(ConfigError) as err:
        load_run_config(path)
    message = str(err.value)
    assert "3 config errors against RunConfig" in message
    assert "key 'train.batch_size': expected int, got 'big'" in message
    assert "key 'train.precision': expected one of 'fp32', 'bf16', 'fp16'" in message
    assert "key 'ema.enabled': expected bool" in message
    with pytest.raises(
        ConfigError, match=r"key 'train.batch_size': must be > 0, got 0[\s\S]*key 'checkpoint.keep_last': must be > 0"
    ):
        to_run_config({"train": {"batch_size": 0}, "checkpoint": {"keep_last": 0}})


def test_override_typo_is_named(tmp_path):
    path = write(tmp_path, "train:\n  max_steps: 10\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.max_stepz'.*Did you mean: train.max_steps"):
        load_run_config(path, ["train.max_stepz=5"])
    cfg, _ = load_run_config(path, ["train.max_steps=5", "optimizer.lr=0.01"])
    assert cfg.train.max_steps == 5 and cfg.optimizer.lr == 0.01


def test_builtin_toy_reach_config_is_valid_and_complete():
    cfg, _ = load_run_config("toy-reach")
    assert isinstance(cfg, RunConfig) and cfg.name == "toy-reach"
    assert cfg.model["factory"] == "toy-reach-policy" and cfg.data["factory"] == "toy-reach"
    assert [g.name for g in cfg.optimizer.param_groups] == ["vision", "head"]
    with pytest.raises(ConfigError, match="neither a config file nor a built-in config"):
        load_run_config("toy-reech")


def test_factory_arguments_and_names_are_checked():
    with pytest.raises(
        ConfigError,
        match=r"key 'data': .*toy_reach_dataset: got an unexpected keyword argument 'num_sample'.*It accepts: num_samples",
    ):
        build_datasets({"factory": "toy-reach", "num_sample": 10})
    with pytest.raises(ConfigError, match=r"key 'data.factory': unknown dataset 'toy-reech'.*Did you mean: toy-reach"):
        build_datasets({"factory": "toy-reech"})
    with pytest.raises(ConfigError, match=r"key 'model.factory' is missing"):
        build_model({"hidden_dim": 3})
    with pytest.raises(ConfigError, match=r"key 'callbacks.0': .*unexpected keyword argument 'patiense'.*patience"):
        build_callbacks([{"name": "early-stopping", "patiense": 3}])
    with code_references(), pytest.raises(ConfigError, match=r"key 'model.factory': cannot import 'nowhere.mod:fn'"):
        build_model({"factory": "nowhere.mod:fn"})


def test_val_split_is_built_from_overrides_and_the_model_is_sized_from_data():
    train, val = build_datasets(
        {
            "factory": "toy-reach",
            "num_samples": 20,
            "horizon": 5,
            "image_size": 0,
            "val": {"num_samples": 7, "seed": 9},
        }
    )
    assert (len(train), len(val)) == (20, 7)
    section = {"factory": "librobot.train.toy_reach:toy_reach_policy", "hidden_dim": 16}
    with pytest.raises(
        UntrustedCodeError, match=r"key 'model.factory': 'librobot.train.toy_reach:toy_reach_policy' names code"
    ):
        build_model(section, dataset=train)  # a 'module:attr' is honoured only for the user's own config
    with code_references():
        model = build_model(section, dataset=train)
    assert (model.state_dim, model.action_dim, model.horizon, model.cameras) == (2, 2, 5, ())


def test_the_users_own_config_may_name_code_to_train_with(tmp_path):
    """`librobot train CONFIG` honours a 'module:function' factory of the config it was given."""
    from librobot.train.run import train_from_config

    run, _ = load_run_config(
        "toy-reach",
        [
            "model.factory=librobot.train.toy_reach:toy_reach_policy",
            "model.hidden_dim=16",
            "data.num_samples=32",
            "data.val.num_samples=8",
            "train.max_steps=2",
            "train.batch_size=8",
            f"run_dir={tmp_path / 'run'}",
            "checkpoint.every_n_steps=2",
            "eval.every_n_steps=2",
        ],
    )
    result = train_from_config(run, configure_logs=False)
    assert result.step == 2 and (tmp_path / "run" / "checkpoints").is_dir()

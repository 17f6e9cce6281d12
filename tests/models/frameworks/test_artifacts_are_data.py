"""A policy folder is data: a 'module:attr' written into it must never be imported or called.

The attack: edit a saved policy's config.json so that its action tokenizer is ``os:system`` with
``tokenizer_kwargs: {command: ...}``, recompute the manifest (whoever edits a folder can), and hand
the folder to every loader a user runs on it. The command would write a marker file; it must not."""

import json
import shlex

import numpy as np
import pytest
import torch

from librobot.core.checkpoint import write_manifest
from librobot.core.errors import CheckpointError, UntrustedCodeError
from librobot.core.interfaces import ActionTokenizerInterface
from librobot.core.references import code_references
from librobot.models import create_vla
from librobot.models.frameworks.base import AbstractVLA

from .conftest import ACTION_DIM, STATE_DIM, make_batch, tiny_vlm


def _rt2_policy(folder):
    vla = create_vla("rt2", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=4, num_bins=16)
    vla.save_pretrained(folder)
    return vla


def _tamper(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    write_manifest(folder)  # the manifest is no defence: whoever edits the folder rewrites it


@pytest.fixture
def hostile_policy(tmp_path):
    """(run folder holding policy/, marker path the injected command would create)."""
    run = tmp_path / "run"
    folder = run / "policy"
    _rt2_policy(folder)
    marker = tmp_path / "pwned"

    def edit(config):
        config["config"]["tokenizer"] = "os:system"
        config["config"]["tokenizer_kwargs"] = {"command": f"touch {shlex.quote(str(marker))}"}

    _tamper(folder, edit)
    return run, marker


def _loaders():
    from librobot.serve.cli import load_policy as serve_load_policy
    from librobot.serve.export.api import export_policy
    from librobot.train.commands import load_policy_for_eval

    return {
        "from_pretrained": lambda run: AbstractVLA.from_pretrained(run / "policy"),
        "serve FOLDER": lambda run: serve_load_policy(str(run / "policy")),
        "serve RUN": lambda run: serve_load_policy(str(run)),
        "export FOLDER": lambda run: export_policy(run / "policy", run / "onnx", tasks=["push"]),
        "eval RUN": lambda run: load_policy_for_eval(run),
    }


@pytest.mark.parametrize("loader", list(_loaders()))
def test_a_code_reference_in_a_policy_folder_is_never_imported(hostile_policy, loader):
    run, marker = hostile_policy
    with pytest.raises(UntrustedCodeError, match=r"tokenizer: 'os:system' names code to import.*trust_remote_code"):
        _loaders()[loader](run)
    assert not marker.exists()


def test_a_trusted_scope_around_the_loader_does_not_leak_into_it(hostile_policy):
    """A training run honours its own config's references; a policy it loads still refuses them."""
    run, marker = hostile_policy
    with code_references(), pytest.raises(UntrustedCodeError):
        AbstractVLA.from_pretrained(run / "policy")
    assert not marker.exists()


class UniformLike(ActionTokenizerInterface):
    """An action tokenizer nobody registered: a policy saved with it names it as 'module:Class'."""

    fixed_length = True

    def __init__(self, num_bins=16):
        self.num_bins = num_bins

    @property
    def vocab_size(self):
        return self.num_bins

    def encode(self, actions):
        ids = np.clip(np.round((np.asarray(actions) + 1) / 2 * (self.num_bins - 1)), 0, self.num_bins - 1)
        return ids.astype(np.int64).reshape(len(actions), -1).tolist()

    def decode(self, tokens, horizon, action_dim):
        n = horizon * action_dim  # generation may stop early or run long: pad with the middle bin, cut
        ids = np.asarray([(list(seq) + [self.num_bins // 2] * n)[:n] for seq in tokens], dtype=np.float32)
        return ids.reshape(-1, horizon, action_dim) / (self.num_bins - 1) * 2 - 1

    def to_dict(self):
        return {"num_bins": self.num_bins}

    @classmethod
    def from_dict(cls, state):
        return cls(**state)


def test_trust_remote_code_honours_a_reference_the_user_vouches_for(tmp_path):
    """The escape hatch: a policy saved with an unregistered tokenizer reloads only when trusted, and equal."""
    folder = tmp_path / "policy"
    vla = create_vla(
        "rt2", vlm=tiny_vlm(), action_dim=ACTION_DIM, state_dim=STATE_DIM, horizon=4, tokenizer=UniformLike(16)
    )
    vla.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["config"]["tokenizer"] == f"{__name__}:UniformLike"
    with pytest.raises(UntrustedCodeError):
        AbstractVLA.from_pretrained(folder)
    loaded = AbstractVLA.from_pretrained(folder, trust_remote_code=True)
    assert isinstance(loaded.tokenizer.tokenizer, UniformLike)
    b = make_batch()
    with torch.no_grad():
        expected = vla.eval().predict_action(b["images"], b["text"], b["proprioception"])
        got = loaded.eval().predict_action(b["images"], b["text"], b["proprioception"])
    assert expected.shape == (3, 4, ACTION_DIM) and expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the command-line loaders take the same escape hatch (--trust-remote-code)
    from librobot.serve.cli import load_policy as serve_load_policy
    from librobot.train.commands import load_policy_for_eval

    assert isinstance(serve_load_policy(str(folder), trust_remote_code=True).model.tokenizer.tokenizer, UniformLike)
    assert isinstance(load_policy_for_eval(folder, trust_remote_code=True)[1].tokenizer.tokenizer, UniformLike)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.pop("framework"), r"'framework' is missing"),
        (lambda c: c.update(framework="os:system"), r"names framework 'os:system': unknown vla"),
        (lambda c: c.update(vlm=["x"]), r"'vlm.name' is missing"),
        (lambda c: c.update(config=None), r"'config' is missing"),
        (lambda c: c.update(version="1"), r"'version' must be an integer"),
    ],
)
def test_a_damaged_policy_config_is_a_named_error(tmp_path, edit, message):
    folder = tmp_path / "policy"
    _rt2_policy(folder)
    _tamper(folder, edit)
    with pytest.raises(CheckpointError, match=message):
        AbstractVLA.from_pretrained(folder)

"""Loading a backbone from a local folder is strict: a folder whose tensors only partly match the
architecture fails naming the keys (no layer is left silently random), a folder of another size is
named, and ``strict=False`` loads anyway with a warning that still lists the keys."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from librobot.core.errors import CheckpointError
from librobot.models import create_vlm

from .conftest import HF_TINY


def _saved(build_tiny, name, folder):
    build_tiny(name).save_pretrained(folder)
    return folder / "model.safetensors"


def _rewrite(path, edit):
    tensors = load_file(str(path))
    key = sorted(tensors)[len(tensors) // 2]
    edit(tensors, key)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return key


@pytest.mark.parametrize("name", HF_TINY)
def test_a_folder_missing_a_weight_fails_naming_it_and_strict_false_warns(build_tiny, name, tmp_path, caplog):
    weights = _saved(build_tiny, name, tmp_path)
    reference = create_vlm(name, pretrained=str(tmp_path))  # the complete folder loads cleanly
    assert reference.config["pretrained"] == str(tmp_path) and reference.config["parameters"] > 0
    key = _rewrite(weights, lambda t, k: t.pop(k))
    short = key.split(".", 1)[1] if key.startswith(("model.", "language_model.")) else key
    with pytest.raises(CheckpointError, match=rf"does not match the .* architecture: 1 missing \(.*{short}"):
        create_vlm(name, pretrained=str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="librobot.models.vlm"):
        loose = create_vlm(name, pretrained=str(tmp_path), strict=False)
    assert "1 missing" in caplog.text and short in caplog.text and "stay random" in caplog.text
    assert loose.config["parameters"] == reference.config["parameters"]


def test_a_renamed_weight_is_both_missing_and_unexpected(build_tiny, tmp_path):
    weights = _saved(build_tiny, "qwen2-vl-tiny", tmp_path)
    key = _rewrite(weights, lambda t, k: t.__setitem__(k + "_renamed", t.pop(k)))
    with pytest.raises(CheckpointError, match=rf"1 missing .*; 1 unexpected \(.*{key.rsplit('.', 1)[-1]}_renamed"):
        create_vlm("qwen2-vl-tiny", pretrained=str(tmp_path))


def test_a_folder_of_another_size_is_named(build_tiny, tmp_path):
    _saved(build_tiny, "qwen2-vl-tiny", tmp_path)
    with pytest.raises(
        CheckpointError, match=r"is not a qwen2-vl-2b checkpoint: hidden_size 64 \(the folder\) vs 1536"
    ):
        create_vlm("qwen2-vl-2b", pretrained=str(tmp_path))


def test_a_reshaped_weight_is_a_named_error(build_tiny, tmp_path):
    weights = _saved(build_tiny, "paligemma-tiny", tmp_path)
    key = _rewrite(weights, lambda t, k: t.__setitem__(k, torch.zeros(*t[k].shape[:-1], t[k].shape[-1] + 1)))
    with pytest.raises(CheckpointError, match=rf"(do not fit the architecture|mis-shaped).*{key.rsplit('.', 2)[-2]}"):
        create_vlm("paligemma-tiny", pretrained=str(tmp_path))

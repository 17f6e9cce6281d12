"""LoRA from a run config to a deployed policy: the backbone's own weights stay put while the
adapters and the framework train, the policy folder keeps base weights + adapters (or merged
weights) and reloads to the same model, and the export folds the adapters in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.models import create_vla, create_vlm
from librobot.models.adapters.lora import LoRAAdapter, lora_from_config
from librobot.models.frameworks.base import AbstractVLA

A, S, H = 3, 4, 4


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 32, 32, generator=g), ["push the block", "open it"], torch.randn(2, S, generator=g)


def _policy(targets="language"):
    torch.manual_seed(0)
    vlm = create_vlm("librobot-tiny-vlm", image_size=32, patch_size=8, tokens_per_view=4, dim=64, depth=2)
    adapted = lora_from_config(vlm, {"rank": 4, "alpha": 8, "targets": targets})
    return create_vla("pi0", vlm=adapted, action_dim=A, state_dim=S, horizon=H)


def test_only_the_adapters_and_the_framework_train():
    vla = _policy()
    base = {k: v.clone() for k, v in vla.vlm.model.named_parameters() if "lora_" not in k}
    adapters = {k: v.clone() for k, v in vla.vlm.lora_state_dict().items()}
    head = {k: v.clone() for k, v in vla.named_parameters() if not k.startswith("vlm.")}
    optimizer = torch.optim.AdamW([p for p in vla.parameters() if p.requires_grad], lr=1e-2)
    images, text, state = _batch()
    for _ in range(2):
        optimizer.zero_grad()
        vla(images, text, state, torch.rand(2, H, A) * 2 - 1)["loss"].backward()
        optimizer.step()
    assert all(torch.equal(v, dict(vla.vlm.model.named_parameters())[k]) for k, v in base.items())
    after = vla.vlm.lora_state_dict()
    assert any("lora_B" in k and not torch.equal(v, after[k]) for k, v in adapters.items())  # B starts at 0
    assert any(not torch.equal(v, dict(vla.named_parameters())[k]) for k, v in head.items())


@pytest.mark.parametrize("targets", ["language", "all-linear"])
def test_a_lora_policy_saves_base_and_adapters_and_reloads_equal(tmp_path, targets):
    vla = _policy(targets)
    with torch.no_grad():  # adapters away from their zero start, so they matter
        for k, v in vla.vlm.model.named_parameters():
            if "lora_B" in k:
                v.normal_(0, 0.5)
    images, text, state = _batch(1)
    noise = torch.randn(2, H, A)
    expected = vla.predict_action(images, text, state, noise=noise)
    vla.save_pretrained(tmp_path / "policy")
    meta = json.loads((tmp_path / "policy" / "config.json").read_text())
    assert meta["vlm"]["lora"]["rank"] == 4 and (tmp_path / "policy" / "vlm_adapter").is_dir()
    loaded = AbstractVLA.from_pretrained(tmp_path / "policy")
    assert isinstance(loaded.vlm, LoRAAdapter) and loaded.vlm.settings == vla.vlm.settings
    torch.testing.assert_close(loaded.predict_action(images, text, state, noise=noise), expected, rtol=0, atol=0)
    # merged: a plain backbone, the same actions up to float rounding
    vla.save_pretrained(tmp_path / "merged", merge_lora=True)
    plain = AbstractVLA.from_pretrained(tmp_path / "merged")
    assert (
        not isinstance(plain.vlm, LoRAAdapter)
        and "lora" not in json.loads((tmp_path / "merged" / "config.json").read_text())["vlm"]
    )
    torch.testing.assert_close(plain.predict_action(images, text, state, noise=noise), expected, rtol=1e-4, atol=1e-5)
    assert isinstance(vla.vlm, LoRAAdapter) and not vla.vlm.merged  # saving left the live policy as it was


def test_the_export_folds_the_adapters_in_and_matches_torch(tmp_path):
    from librobot.serve.export import export_policy
    from librobot.serve.onnx_policy import OnnxPolicy

    vla = _policy()
    with torch.no_grad():
        for k, v in vla.vlm.model.named_parameters():
            if "lora_B" in k:
                v.normal_(0, 0.5)
    vla.save_pretrained(tmp_path / "policy")
    result = export_policy(tmp_path / "policy", tmp_path / "onnx", tasks=["push the block"])
    assert result.report["parity_vs_torch"]["max_abs_normalized"] <= 1e-4
    images, _, state = _batch(2)
    noise = np.random.default_rng(0).standard_normal((H, A)).astype(np.float32)
    onnx_chunk = OnnxPolicy(tmp_path / "onnx").predict_chunk(
        {"observation.images.front": images[0].numpy(), "observation.state": state[0].numpy()},
        "push the block",
        noise=noise,
    )
    torch_chunk = vla.predict_action(images[:1], ["push the block"], state[:1], noise=torch.from_numpy(noise)[None])[0]
    np.testing.assert_allclose(onnx_chunk, torch_chunk.numpy(), atol=1e-3)


def test_a_run_config_puts_lora_on_the_backbone_and_names_mistakes():
    from librobot.data.datasets import synthetic_dataset
    from librobot.train.vla import build_vla

    data = synthetic_dataset(
        num_episodes=2, cameras=("top",), image_size=(32, 32), state_dim=S, action_dim=A, action_horizon=H
    )
    vlm = {"name": "librobot-tiny-vlm", "image_size": 32, "dim": 64, "lora": {"rank": 2, "targets": "vision"}}
    model = build_vla(data, framework="pi0", vlm=vlm)
    assert isinstance(model.vlm, LoRAAdapter) and all(".vit." in t or "vit" in t for t in model.vlm.settings["targets"])
    with pytest.raises(ConfigError, match=r"targets must be one of \['all-linear', 'language', 'vision'\]"):
        build_vla(data, framework="pi0", vlm={**vlm, "lora": {"targets": "decoder"}})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['rnak'\]"):
        build_vla(data, framework="pi0", vlm={**vlm, "lora": {"rnak": 4}})

"""GR00T-style does what GR00T N1/N1.5 does: it reads the backbone's language layer ``select_layer``
with the layers above it dropped (Isaac-GR00T's EagleBackbone), samples flow time from a scaled
Beta(1.5, 1) and integrates in 4 steps (its FlowmatchingActionHead)."""

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from librobot.core.errors import CheckpointError, ConfigError
from librobot.models import create_vla, create_vlm
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.vlm.hf_base import check_sizes

S = 0.999  # GR00T's noise_s
A, B = 3, 3


def language_layers(vlm):
    if vlm.config["family"] == "librobot-tiny-vlm":
        return vlm.lm.transformer.layers
    return vlm.hf.model.language_model.layers


def full_backbone(name):
    """A backbone (the tiny VLM with 3 language layers, or a tiny transformers variant with 2) and
    its final norm."""
    torch.manual_seed(0)
    if name == "librobot-tiny-vlm":
        vlm = create_vlm(name, image_size=32, patch_size=8, tokens_per_view=4, dim=64, depth=3, max_text_tokens=32)
        return vlm, vlm.lm.transformer.norm
    vlm = create_vlm(name)
    return vlm, vlm.hf.model.language_model.norm


CASES = [("librobot-tiny-vlm", 1), ("librobot-tiny-vlm", 2), ("qwen2-vl-tiny", 1)]


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 3, 32, 32, generator=g, dtype=torch.float64)
    words = ["pick", "up", "the", "red", "cube", "open", "drawer", "now"]
    text = [" ".join(words[int(i)] for i in torch.randint(0, 8, (n,), generator=g)) for n in (2, 5, 7)]
    return images, text


@pytest.mark.parametrize(("backbone", "k"), CASES)
def test_groot_at_select_layer_k_reads_layer_k_of_the_full_backbone_exactly(backbone, k):
    full, norm = full_backbone(backbone)
    layers = language_layers(full)
    vla = create_vla("groot", vlm=copy.deepcopy(full), action_dim=A, select_layer=k).double()
    full.double()
    captured = {}
    layers[k - 1].register_forward_hook(lambda m, i, o: captured.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    for seed in (1, 2):
        images, text = inputs(seed)
        with torch.no_grad():
            reference = full(images, text)
            # GR00T's hidden_states[k] of its truncated LLM: layer k's output through the final norm
            expected = norm(captured["h"]).masked_fill(~reference.attention_mask[..., None].bool(), 0.0)
            tokens, mask = vla.conditioning(vla.prepare(images, text))
        assert tokens.dtype == torch.float64
        torch.testing.assert_close(tokens, vla.vlm_proj(expected), rtol=0, atol=1e-12)
        assert torch.equal(mask.bool(), reference.attention_mask.bool())
        # the last layer's features differ: the match above is the selection, not a coincidence
        assert not torch.allclose(vla.vlm_proj(reference.hidden_states), tokens, atol=1e-3)


@pytest.mark.parametrize(("backbone", "k"), CASES)
def test_the_layers_above_k_are_gone_with_their_parameters(backbone, k):
    full, _ = full_backbone(backbone)
    dropped = sum(p.numel() for layer in language_layers(full)[k:] for p in layer.parameters())
    vla = create_vla("groot", vlm=copy.deepcopy(full), action_dim=A, select_layer=k)
    assert len(language_layers(vla.vlm)) == k and vla.vlm.kv_layout.num_layers == k
    lm = vla.vlm.lm if backbone == "librobot-tiny-vlm" else vla.vlm.hf.model.language_model
    assert not any(n.startswith(f"layers.{k}.") or f".layers.{k}." in n for n, _ in lm.named_parameters())
    assert sum(p.numel() for p in vla.vlm.parameters()) == sum(p.numel() for p in full.parameters()) - dropped


def test_a_layer_above_the_backbones_depth_is_an_error_naming_the_depth():
    with pytest.raises(
        ConfigError, match=r"select_layer=4, but the backbone \(librobot-tiny-vlm\) has 3 language layers"
    ):
        create_vla("groot", action_dim=A, select_layer=4)
    with pytest.raises(ConfigError, match=r"select_layer must be a layer number >= 1"):
        create_vla("groot", action_dim=A, select_layer=0)
    assert len(create_vla("groot", action_dim=A).vlm.lm.transformer.layers) == 3  # None: the last layer


@pytest.mark.parametrize(("backbone", "k"), CASES[1:])
def test_a_saved_truncated_policy_reloads_truncated_and_predicts_the_same(backbone, k, tmp_path):
    full, _ = full_backbone(backbone)
    vla = create_vla("groot", vlm=full, action_dim=A, state_dim=4, select_layer=k)
    images, text = inputs(3)
    state = torch.randn(B, 4, generator=torch.Generator().manual_seed(3))
    before = vla.predict_action(images.float(), text, state)
    loaded = AbstractVLA.from_pretrained(vla.save_pretrained(tmp_path / "policy"))
    assert loaded.config.select_layer == k and len(language_layers(loaded.vlm)) == k
    assert loaded.get_num_parameters() == vla.get_num_parameters()
    assert torch.equal(loaded.predict_action(images.float(), text, state), before)


def test_a_real_variants_folder_may_hold_fewer_layers_never_more():
    table = {"text": {"hidden_size": 1536, "num_hidden_layers": 28}}
    check_sizes("qwen2-vl-2b", "f", SimpleNamespace(hidden_size=1536, num_hidden_layers=12), table)  # select_layer 12
    with pytest.raises(CheckpointError, match=r"num_hidden_layers 30 \(the folder\) vs 28"):
        check_sizes("qwen2-vl-2b", "f", SimpleNamespace(hidden_size=1536, num_hidden_layers=30), table)


def test_flow_time_follows_beta_1_5_1_scaled_by_s():
    head = create_vla("groot", action_dim=A).head
    assert head.config.time_sampling == "beta_gr00t"
    n = 200_000
    t = head.sample_time(n, torch.Generator().manual_seed(0), torch.zeros(1, dtype=torch.float64))
    x = (t * S).sort().values  # GR00T's Beta draw B = t · s, CDF x^1.5 on [0, 1]
    assert abs(float(t.mean()) - 0.6 / S) < 4 * math.sqrt(0.6 * 0.4 / 3.5) / S / math.sqrt(n)  # mean α/(α+β)
    ecdf = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum((ecdf - x.pow(1.5)).abs(), (ecdf - 1 / n - x.pow(1.5)).abs()).max()
    assert float(ks) < 1.63 / math.sqrt(n)  # Kolmogorov-Smirnov at the 1% level
    # GR00T's τ = (s − B) / s reaches s − 1 < 0, i.e. t = 1 − τ up to 1 / s (π0's t stops at 1)
    assert 1.0 < float(t.max()) <= 1 / S and float(t.min()) >= 0.0


def count_denoiser_calls(vla):
    calls = []
    vla.head.denoiser.register_forward_hook(lambda m, i, o: calls.append(1))
    images, text = inputs(4)
    vla.predict_action(images.float(), text)
    return len(calls)


def test_inference_takes_gr00ts_four_steps_unless_head_says_otherwise():
    torch.manual_seed(0)
    assert count_denoiser_calls(create_vla("groot", action_dim=A)) == 4
    plain = create_vla("groot", action_dim=A, head={"time_sampling": "uniform", "num_inference_steps": 10})
    assert plain.head.config.time_sampling == "uniform" and count_denoiser_calls(plain) == 10
    # GR00T's flow settings are the flow head's: a diffusion head keeps its own sampler settings
    diffusion = create_vla("groot", action_dim=A, head_type="diffusion")
    assert diffusion.head.config.num_inference_steps == 10


def test_a_lora_backbone_is_truncated_with_its_adapters_and_reloads(tmp_path):
    pytest.importorskip("peft")
    from librobot.models.adapters.lora import LoRAAdapter

    full, _ = full_backbone("librobot-tiny-vlm")
    vla = create_vla("groot", vlm=LoRAAdapter(full, rank=2), action_dim=A, select_layer=1, freeze_vlm=False)
    assert vla.vlm.settings["targets"] and all(".layers.0." in t for t in vla.vlm.settings["targets"])
    with torch.no_grad():  # non-zero adapters, so that reloading them matters
        for name, p in vla.vlm.named_parameters():
            if "lora_B" in name:
                p.normal_()
    images, text = inputs(5)
    loaded = AbstractVLA.from_pretrained(vla.save_pretrained(tmp_path / "policy"))
    assert len(language_layers(loaded.vlm.model)) == 1
    assert torch.equal(loaded.predict_action(images.float(), text), vla.predict_action(images.float(), text))

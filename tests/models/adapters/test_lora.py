"""LoRA / QLoRA through peft on the backbones: only adapters train, merge == unmerged, counts, files."""

from __future__ import annotations

import sys

import pytest
import torch

from librobot.core.errors import ConfigError, MissingExtraError
from librobot.models import create_vlm
from librobot.models.adapters import LoRAAdapter, QLoRAAdapter, lora_target_modules

TEXTS = ["pick up the red block", "open the drawer"]


def images() -> torch.Tensor:
    return torch.rand(2, 2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def randomise_lora_b(adapter: LoRAAdapter) -> None:
    """LoRA B starts at zero (the adapter starts as the identity); give it values to test merging."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("name", ["librobot-tiny-vlm", "qwen2-vl-tiny", "paligemma-tiny"])
def test_merge_equals_unmerged_and_counts(name):
    torch.manual_seed(0)
    vlm = create_vlm(name)
    total_before = vlm.get_num_parameters()
    targets = lora_target_modules(vlm)
    expected_lora = sum(4 * (vlm.get_submodule(t).in_features + vlm.get_submodule(t).out_features) for t in targets)
    with torch.no_grad():
        base = vlm(images(), TEXTS).hidden_states.clone()
    adapter = LoRAAdapter(vlm, rank=4, alpha=8)
    counts = adapter.parameter_counts()
    assert counts == {
        "total": total_before + expected_lora,
        "lora": expected_lora,
        "trainable": expected_lora,
        "frozen": total_before,
    }
    assert adapter.get_num_parameters(trainable_only=True) == expected_lora
    with torch.no_grad():
        assert torch.allclose(adapter(images(), TEXTS).hidden_states, base, atol=1e-6)  # B = 0: identity
    randomise_lora_b(adapter)
    with torch.no_grad():
        unmerged = adapter(images(), TEXTS).hidden_states
        adapter.merge()
        assert adapter.merged
        merged = adapter(images(), TEXTS).hidden_states
        adapter.unmerge()
        again = adapter(images(), TEXTS).hidden_states
    assert not torch.allclose(unmerged, base, atol=1e-3)  # the adapters do something
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert torch.allclose(again, unmerged, atol=1e-5)
    plain = adapter.merge_and_unload()
    with torch.no_grad():
        assert torch.allclose(plain(images(), TEXTS).hidden_states, unmerged, atol=1e-5)
    assert sum(p.numel() for p in plain.parameters()) == total_before


def test_only_adapter_parameters_train():
    torch.manual_seed(0)
    adapter = LoRAAdapter(create_vlm("librobot-tiny-vlm"), rank=4, alpha=8)
    adapter.train()
    before = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    trainable = [p for p in adapter.parameters() if p.requires_grad]
    assert all("lora_" in n for n, p in adapter.named_parameters() if p.requires_grad)
    opt = torch.optim.Adam(trainable, lr=1e-2)
    target = torch.randn(2, adapter.get_embedding_dim())
    losses = []
    for _ in range(15):
        out = adapter(images(), TEXTS)
        pooled = out.hidden_states[:, -1]
        loss = (pooled - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    for n, p in adapter.named_parameters():
        if "lora_" in n:
            continue
        assert torch.equal(p, before[n]), f"base weight {n} changed"
    assert any(not torch.equal(p, before[n]) for n, p in adapter.named_parameters() if "lora_A" in n)


def test_freeze_parts_and_adapter_files(tmp_path):
    torch.manual_seed(0)
    adapter = LoRAAdapter(create_vlm("librobot-tiny-vlm"), rank=2, parts=("language", "vision"))
    n_lora = adapter.parameter_counts()["lora"]
    adapter.freeze("vision")
    vision_lora = sum(p.numel() for n, p in adapter.model.vit.named_parameters() if "lora_" in n)
    assert vision_lora > 0 and adapter.parameter_counts()["trainable"] == n_lora - vision_lora
    adapter.unfreeze()
    assert adapter.parameter_counts()["trainable"] == n_lora
    randomise_lora_b(adapter)
    adapter.save_adapter(tmp_path / "lora")
    torch.manual_seed(0)
    fresh = LoRAAdapter(create_vlm("librobot-tiny-vlm"), rank=2, parts=("language", "vision"))
    fresh.load_adapter(tmp_path / "lora")
    with torch.no_grad():
        assert torch.equal(fresh(images(), TEXTS).hidden_states, adapter(images(), TEXTS).hidden_states)
    # the wrapped backbone's interface is all there (a framework can take the adapter as its VLM)
    with torch.no_grad():
        kv = adapter(images(), TEXTS, return_kv=True).prefix_kv
    assert adapter.kv_layout == kv.layout and adapter.config["lora"]["rank"] == 2
    with pytest.raises(ConfigError, match="no part"):
        LoRAAdapter(create_vlm("librobot-tiny-vlm"), parts=("decoder",))


def test_qlora_errors_clearly_without_bitsandbytes(monkeypatch):
    torch.manual_seed(0)
    vlm = create_vlm("librobot-tiny-vlm")
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(MissingExtraError, match=r"librobot-models\[qlora\]"):
        QLoRAAdapter(vlm)


def test_qlora_on_the_cpu_uses_peft_4bit_layers_trains_and_merges():
    """bitsandbytes quantises to NF4 on the CPU too; peft must wrap each Linear4bit in its own 4-bit
    LoRA layer (whose merge dequantises, adds B·A and re-quantises), not the plain one."""
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    from peft.tuners.lora.bnb import Linear4bit as LoraLinear4bit

    torch.manual_seed(0)
    adapter = QLoRAAdapter(create_vlm("librobot-tiny-vlm"), rank=4, device="cpu")
    layers = adapter.lora_layers()
    assert layers and all(isinstance(m, LoraLinear4bit) for m in layers)
    assert all(isinstance(m.get_base_layer(), bnb.nn.Linear4bit) for m in layers)
    counts = adapter.parameter_counts()
    assert counts["trainable"] == counts["lora"] > 0
    optimizer = torch.optim.AdamW([p for p in adapter.parameters() if p.requires_grad], lr=1e-2)
    before = {k: v.clone() for k, v in adapter.lora_state_dict().items()}
    loss = adapter(images(), TEXTS).hidden_states.float().pow(2).mean()
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(v, adapter.lora_state_dict()[k]) for k, v in before.items())
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "lora_B" in name:
                p.zero_()
        plain = adapter(images(), TEXTS).hidden_states.float()  # the adapters add nothing
    randomise_lora_b(adapter)
    with torch.no_grad():
        unmerged = adapter(images(), TEXTS).hidden_states.float()
        adapter.merge()
        merged = adapter(images(), TEXTS).hidden_states.float()
        adapter.unmerge()
        again = adapter(images(), TEXTS).hidden_states.float()
        torch.manual_seed(0)
        full_precision = create_vlm("librobot-tiny-vlm")(images(), TEXTS).hidden_states.float()
    # merging re-quantises every adapted weight to NF4 once more, so merged and unmerged differ by
    # about what quantising the backbone changed in the first place (a broken merge: 8x that)
    rounding = (plain - full_precision).abs().max()
    assert (merged - unmerged).abs().max() < 1.5 * rounding, ((merged - unmerged).abs().max(), rounding)
    assert (again - unmerged).abs().max() < 2.5 * rounding and not adapter.merged  # rounded twice
    layer = adapter.lora_layers()[0]  # per layer: the merged weight is W + B·A up to one NF4 rounding
    x = torch.randn(5, layer.in_features)
    with torch.no_grad():
        expected = layer(x)
        adapter.merge()
        assert layer.merged and (layer(x) - expected).abs().max() < 0.1 * expected.abs().max()


@pytest.mark.gpu
def test_qlora_on_gpu_trains_and_merges():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    adapter = QLoRAAdapter(create_vlm("qwen2-vl-tiny"), rank=4)
    x = images().cuda()
    assert adapter.parameter_counts()["trainable"] == adapter.parameter_counts()["lora"]
    randomise_lora_b(adapter)
    with torch.no_grad():
        unmerged = adapter(x, TEXTS).hidden_states.float()
        adapter.merge()
        merged = adapter(x, TEXTS).hidden_states.float()
    # merging re-quantises to NF4, so equality is up to quantisation error
    assert torch.allclose(merged, unmerged, atol=0.1, rtol=0.05)

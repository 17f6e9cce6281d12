"""The transformers wrappers, each family through its tiny variant: image+text → hidden states on the
CPU offline, prefix KV cache == recomputation, HF-layout save/load round trip, parts, errors."""

from __future__ import annotations

import pytest
import torch

from librobot.core.errors import CheckpointError, ConfigError, SpecError
from librobot.models import create_vlm

from .conftest import HF_TINY, TEXTS


@pytest.mark.parametrize("name", HF_TINY)
def test_images_and_text_to_hidden_states(build_tiny, images, name):
    vlm = build_tiny(name)
    with torch.no_grad():
        out = vlm(images, TEXTS)
    b, length, d = out.hidden_states.shape
    assert b == 2 and d == vlm.get_embedding_dim() == vlm.kv_layout.hidden_size
    assert out.attention_mask.shape == out.image_mask.shape == (2, length)
    assert out.attention_mask.dtype == torch.bool
    # every view got exactly its tokens, all inside the valid (left-padded) region
    assert out.image_mask.sum(1).tolist() == [2 * vlm.tokens_per_view()] * 2
    assert not (out.image_mask & ~out.attention_mask).any()
    assert out.attention_mask[:, -1].all()  # left padding: the last position is always real
    lengths = out.attention_mask.sum(1)
    assert lengths[1] > lengths[0]  # the second instruction is longer
    assert torch.isfinite(out.hidden_states).all()
    assert (out.hidden_states[~out.attention_mask] == 0).all()
    real = out.hidden_states[out.attention_mask]
    assert real.abs().mean() > 1e-3 and real.std() > 1e-3
    # the two samples' image tokens differ (different images), and the features depend on the image
    with torch.no_grad():
        other = vlm(images.flip(0), TEXTS)
    assert not torch.allclose(out.hidden_states[0][out.image_mask[0]], other.hidden_states[0][other.image_mask[0]])


@pytest.mark.parametrize("name", HF_TINY)
def test_prefix_kv_cache_equals_recomputation(build_tiny, images, name):
    vlm = build_tiny(name)
    g = torch.Generator().manual_seed(2)
    suffix = torch.randn(2, 5, vlm.get_embedding_dim(), generator=g)
    suffix_mask = torch.tensor([[True] * 5, [True, True, True, True, False]])
    with torch.no_grad():
        prefix = vlm(images, TEXTS, return_kv=True)
        full = vlm(images, TEXTS, suffix_embeds=suffix, suffix_mask=suffix_mask)
        cached = vlm.extend(prefix.prefix_kv, suffix, suffix_mask)
        cached_again = vlm.extend(prefix.prefix_kv, suffix, suffix_mask)  # the cache is not consumed
    kv = prefix.prefix_kv
    layout = vlm.kv_layout
    assert len(kv) == layout.num_layers and kv.length == prefix.hidden_states.shape[1]
    assert kv.keys[0].shape == (2, layout.num_kv_heads, kv.length, layout.head_dim)
    assert torch.equal(kv.attention_mask, prefix.attention_mask)
    # the prefix does not see the suffix; the suffix sees the prefix and its own earlier tokens
    assert torch.allclose(full.hidden_states[:, : prefix.num_prefix_tokens], prefix.hidden_states, atol=1e-5)
    valid = suffix_mask
    assert torch.allclose(full.suffix_hidden_states[valid], cached.hidden_states[valid], atol=2e-5, rtol=1e-4)
    assert torch.equal(cached.hidden_states, cached_again.hidden_states)
    assert (cached.hidden_states[~valid] == 0).all()
    # the suffix really depends on the prefix: another instruction changes it
    with torch.no_grad():
        other = vlm.extend(vlm(images, ["push the block left", "stop"], return_kv=True).prefix_kv, suffix, suffix_mask)
    assert not torch.allclose(other.hidden_states[valid], cached.hidden_states[valid], atol=1e-4)


@pytest.mark.parametrize("name", HF_TINY)
def test_hf_layout_round_trip_is_identical(build_tiny, images, name, tmp_path):
    vlm = build_tiny(name)
    folder = vlm.save_pretrained(tmp_path / name)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file() and (folder / "preprocessor_config.json").is_file()
    loaded = create_vlm(name, pretrained=str(folder))
    assert loaded.image_size == vlm.image_size and loaded.tokens_per_view() == vlm.tokens_per_view()
    with torch.no_grad():
        a = vlm(images, TEXTS, return_kv=True)
        b = loaded(images, TEXTS, return_kv=True)
    assert torch.equal(a.hidden_states, b.hidden_states)
    assert all(torch.equal(x, y) for x, y in zip(a.prefix_kv.keys, b.prefix_kv.keys))
    # the saved folder is an ordinary Hugging Face checkpoint
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    assert AutoConfig.from_pretrained(folder).model_type in type(vlm).model_types
    assert AutoTokenizer.from_pretrained(folder)("pick")["input_ids"] == vlm.tokenizer("pick")["input_ids"]
    assert AutoImageProcessor.from_pretrained(folder) is not None


@pytest.mark.parametrize("name", HF_TINY)
def test_parts_cover_every_parameter_once_and_freeze(build_tiny, name):
    vlm = build_tiny(name)
    owners: dict[int, str] = {}
    for part, modules in vlm.part_modules().items():
        for module in modules:
            for p in module.parameters():
                assert owners.setdefault(id(p), part) == part, f"{name}: a parameter is in two parts"
    assert set(owners) == {id(p) for p in vlm.parameters()}
    try:
        vlm.freeze("vision", "projector")
        trainable = vlm.get_num_parameters(trainable_only=True)
        assert trainable == vlm.get_num_parameters(part="language")
        vlm.freeze()
        assert vlm.get_num_parameters(trainable_only=True) == 0
    finally:
        vlm.unfreeze()
    assert vlm.get_num_parameters(trainable_only=True) == vlm.get_num_parameters()
    with pytest.raises(ConfigError, match="freeze/unfreeze accept"):
        vlm.freeze("decoder")


@pytest.mark.parametrize("name", ["qwen2-vl-tiny", "paligemma-tiny", "florence-2-tiny"])
def test_encoders_and_logits(build_tiny, images, name):
    vlm = build_tiny(name)
    with torch.no_grad():
        img = vlm.encode_image(images)
        txt = vlm.encode_text(TEXTS)
    assert img.shape == (2, 2 * vlm.tokens_per_view(), vlm.get_embedding_dim())
    assert txt.shape[0] == 2 and txt.shape[2] == vlm.get_embedding_dim()
    # encode_image gives exactly the features scattered into the prefix
    with torch.no_grad():
        out = vlm.prepare_prefix(images, TEXTS)
    assert torch.allclose(out["embeds"][out["image_mask"]].view(2, -1, img.shape[-1]), img)
    if name != "florence-2-tiny":
        with torch.no_grad():
            logits = vlm.compute_logits(vlm(images, TEXTS).hidden_states)
        assert logits.shape[-1] == vlm.hf.config.get_text_config().vocab_size


def test_prefix_attention_follows_the_real_model(build_tiny, images):
    """PaliGemma's image+prompt prefix is bidirectional (prefix-LM); Qwen2-VL's is causal."""
    edits = ["pick up the red block", "pick up the red cube!"]
    for name, bidirectional in (("paligemma-tiny", True), ("florence-2-tiny", True), ("qwen2-vl-tiny", False)):
        vlm = build_tiny(name)
        with torch.no_grad():
            a = vlm(images[:1], edits[:1])
            b = vlm(images[:1], edits[1:])
        first_image_token = a.image_mask[0].nonzero()[0, 0]
        # left padding differs with length, so compare the first image token of each
        ha = a.hidden_states[0, first_image_token]
        hb = b.hidden_states[0, b.image_mask[0].nonzero()[0, 0]]
        assert torch.allclose(ha, hb, atol=1e-5) != bidirectional, name
        assert vlm.kv_layout.prefix_attention == ("bidirectional" if bidirectional else "causal")


def test_text_only_and_camera_mapping(build_tiny, images):
    vlm = build_tiny("qwen2-vl-tiny")
    with torch.no_grad():
        text_only = vlm(None, TEXTS)
        as_dict = vlm({"wrist": images[:, 0], "top": images[:, 1]}, TEXTS)
        as_5d = vlm(images, TEXTS)
    assert not text_only.image_mask.any()
    assert torch.equal(as_dict.hidden_states, as_5d.hidden_states)


def test_bad_inputs_are_clear_errors(build_tiny, images):
    vlm = build_tiny("llava-tiny")
    with pytest.raises(SpecError, match=r"in \[0, 1\]"):
        vlm(images * 255, TEXTS)
    with pytest.raises(SpecError, match="channels-first"):
        vlm(images[:, 0].permute(0, 2, 3, 1), TEXTS)
    with pytest.raises(SpecError, match="3 text prompts for a batch of 2"):
        vlm(images, [*TEXTS, "x"])
    with pytest.raises(SpecError, match="NaN"):
        vlm(
            images.masked_fill(
                torch.zeros_like(images, dtype=torch.bool).index_fill(4, torch.tensor([3]), True), float("nan")
            ),
            TEXTS,
        )
    with pytest.raises(SpecError, match=r"uint8|float"):
        vlm(images.long(), TEXTS)
    with pytest.raises(SpecError, match="suffix_embeds is"):
        vlm(images, TEXTS, suffix_embeds=torch.zeros(2, 3, 7))
    # uint8 images are accepted and mean the same as /255 floats
    u8 = (images * 255).round().to(torch.uint8)
    with torch.no_grad():
        assert torch.allclose(vlm(u8, TEXTS).hidden_states, vlm(u8.float() / 255, TEXTS).hidden_states)


def test_pretrained_folder_errors(tmp_path, build_tiny):
    with pytest.raises(CheckpointError, match=r"does-not-exist.*does not exist.*Nothing is downloaded"):
        create_vlm("qwen2-vl-2b", pretrained=str(tmp_path / "does-not-exist"))
    with pytest.raises(ConfigError, match="local folder"):
        create_vlm("qwen2-vl-2b", pretrained=True)
    folder = build_tiny("llava-tiny").save_pretrained(tmp_path / "llava")
    with pytest.raises(ConfigError, match=r"holds a 'llava' checkpoint.*qwen2-vl"):
        create_vlm("qwen2-vl-2b", pretrained=str(folder))
    with pytest.raises(ConfigError, match="multiple of patch_size"):
        create_vlm("qwen2-vl-tiny", image_size=50)

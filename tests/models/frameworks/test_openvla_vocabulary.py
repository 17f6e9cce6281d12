"""Action tokens are tokenizer tokens, also on a backbone whose embedding table is padded past its
tokenizer (as real checkpoints are: Qwen2-VL has 151,936 rows for ~151,657 tokenizer ids), and
OpenVLA's prompt and stop token (Kim et al. 2024, openvla ``prismatic/vla/action_tokenizer.py``)."""

import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.models import create_vla, create_vlm
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.openvla.config import OpenVLAConfig

A, H, PADDING = 3, 1, 64
OPENVLA_PROMPT = "In: What action should the robot take to {}?\nOut:"


def padded_backbone(name="qwen2-vl-tiny"):
    """A tiny transformers backbone whose embeddings and LM head have PADDING rows past its tokenizer."""
    torch.manual_seed(0)
    vlm = create_vlm(name)
    vlm.hf.resize_token_embeddings(len(vlm.tokenizer) + PADDING)
    rows = vlm.hf.get_input_embeddings().num_embeddings
    assert rows == vlm.lm_head.weight.shape[0] == len(vlm.tokenizer) + PADDING
    return vlm


def observation(batch=2):
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, 32, 32, generator=g), ["Pick up the Red cube", "open the drawer"][:batch]


def assert_real_tokens(tok, ids):
    """Each id is a token the tokenizer knows: it names it and maps the name back to the id."""
    names = tok.convert_ids_to_tokens(ids)
    assert None not in names, f"ids without a token: {[i for i, n in zip(ids, names) if n is None][:5]}"
    assert tok.convert_tokens_to_ids(names) == ids
    assert all(tok.decode([i]) for i in ids)


@pytest.mark.parametrize("backbone", ["qwen2-vl-tiny", "llava-tiny"])
def test_openvla_bins_are_the_last_ids_of_the_tokenizer_vocabulary_not_padding_rows(backbone):
    vlm = padded_backbone(backbone)
    tok = vlm.tokenizer
    vla = create_vla("openvla", vlm=vlm, action_dim=A, horizon=H)
    ids = vla.vocab.ids.tolist()
    # OpenVLA's mapping: bin k → tokenizer.vocab_size - 1 - k (the tiny tokenizers' specials are
    # ids 0-3 and their added tokens come after vocab_size, so none is skipped here)
    assert ids == [tok.vocab_size - 1 - k for k in range(256)]
    assert max(ids) < tok.vocab_size < vlm.hf.get_input_embeddings().num_embeddings
    assert_real_tokens(tok, ids)
    # what the policy decodes round-trips through the tokenizer: target ids → text → ids → actions
    actions = torch.rand(4, H, A, generator=torch.Generator().manual_seed(1)) * 2 - 1
    targets, _ = vla.encode_actions(actions, torch.zeros(4, H, dtype=torch.bool))
    for row in targets[:, : H * A].tolist():
        assert_real_tokens(tok, row)
    names = [tok.convert_ids_to_tokens(row) for row in targets.tolist()]
    back = torch.tensor([tok.convert_tokens_to_ids(n) for n in names])
    torch.testing.assert_close(vla.decode_tokens(back), vla.undiscretize(vla.discretize(actions)))


def test_openvla_skips_special_ids_inside_the_tokenizer_vocabulary():
    vlm = padded_backbone()
    tok = vlm.tokenizer
    special, size = tok.vocab_size - 3, len(tok)
    tok.add_tokens([tok.convert_ids_to_tokens(special)], special_tokens=True)  # marks that id special
    assert len(tok) == size and special in tok.added_tokens_decoder
    ids = create_vla("openvla", vlm=vlm, action_dim=A, horizon=H, num_bins=8).vocab.ids.tolist()
    last = [i for i in range(tok.vocab_size - 1, -1, -1) if i != special]
    assert ids == last[:8] and special not in ids


def test_the_backbone_gets_openvlas_prompt_for_each_instruction():
    vlm = padded_backbone()
    vla = create_vla("openvla", vlm=vlm, action_dim=A, horizon=H).eval()
    seen = []
    tokenize = vlm.tokenize

    def recording(texts, num_views=0):
        seen.extend(texts)
        return tokenize(texts, num_views)

    vlm.tokenize = recording
    images, text = observation()
    expected = [OPENVLA_PROMPT.format("pick up the red cube"), OPENVLA_PROMPT.format("open the drawer")]
    vla.predict_action(images, text)
    assert seen and set(seen) == set(expected)  # every backbone call got OpenVLA's prompt
    seen.clear()
    vla(images, text, None, torch.zeros(2, H, A))
    assert seen and set(seen) == set(expected)  # training too
    # the prompt's ids are the tokenizer's ids of that text, inside the backbone's layout
    ids, mask = tokenize(expected[:1], 1)
    prompt_ids = vlm.tokenizer(expected[0], add_special_tokens=False)["input_ids"]
    row = ids[0][mask[0]].tolist()
    assert any(row[i : i + len(prompt_ids)] == prompt_ids for i in range(len(row)))


def test_the_training_target_ends_with_the_eos_and_decoding_knows_the_length():
    vlm = padded_backbone()
    eos = vlm.tokenizer.eos_token_id
    vla = create_vla("openvla", vlm=vlm, action_dim=A, horizon=H).eval()
    calls = []
    vlm.register_forward_pre_hook(lambda m, args, kw: calls.append(kw.get("suffix_embeds")), with_kwargs=True)
    # the H·A action ids, then the EOS, supervised (weight 1) even when every step is padding
    actions = torch.rand(2, H, A) * 2 - 1
    targets, weight = vla.encode_actions(actions, torch.ones(2, H, dtype=torch.bool))
    assert targets.shape == (2, H * A + 1) and targets[:, -1].tolist() == [eos, eos]
    assert weight[:, -1].tolist() == [1.0, 1.0] and bool((weight[:, :-1] == 0).all())
    assert set(targets[:, :-1].flatten().tolist()) <= set(vla.vocab.ids.tolist())
    # teacher forcing feeds all H·A action tokens, so the last one's position predicts the EOS
    images, text = observation()
    out = vla(images, text, None, actions)
    assert torch.isfinite(out["loss"]) and calls[-1].shape[1] == H * A
    # greedy decoding writes exactly H·A tokens; the stop token need not be generated
    assert vla.generate(images, text).shape == (2, H * A)


def test_openvla_prompt_option_keeps_the_plain_instruction_and_rejects_unknown_values(tmp_path):
    assert OpenVLAConfig().prompt == "openvla"
    assert create_vla("openvla", action_dim=A, horizon=H).prompt("Open The Drawer") == OPENVLA_PROMPT.format(
        "open the drawer"
    )
    old = {k: v for k, v in OpenVLAConfig().to_dict().items() if k != "prompt"}
    assert OpenVLAConfig.from_dict(old).prompt == "openvla"  # a folder saved before the option loads
    vla = create_vla("openvla", action_dim=A, horizon=H, prompt="instruction")
    assert vla.prompt("Open The Drawer") == "Open The Drawer"
    vla.save_pretrained(tmp_path / "p")
    assert AbstractVLA.from_pretrained(tmp_path / "p").prompt("Open The Drawer") == "Open The Drawer"
    with pytest.raises(ConfigError, match=r"prompt='openvl' is not one of 'openvla', 'instruction'.*'openvla'"):
        OpenVLAConfig(prompt="openvl")


def test_rt2_reserved_ids_are_new_tokenizer_tokens_on_the_padding_rows_and_survive_save_load(tmp_path):
    vlm = padded_backbone()
    tok = vlm.tokenizer
    size, rows = len(tok), vlm.hf.get_input_embeddings().num_embeddings
    vla = create_vla("rt2", vlm=vlm, action_dim=A, horizon=H, num_bins=16).eval()
    ids = vla.vocab.ids.tolist()
    # the 16 new tokens take the ids after the tokenizer's, on rows the table already had
    assert vla.config.reserved_start == size and ids == list(range(size, size + 16))
    assert len(tok) == size + 16 and max(ids) < len(tok)
    assert vlm.hf.get_input_embeddings().num_embeddings == rows  # no growth: padding rows became tokens
    assert_real_tokens(tok, ids)
    assert tok.convert_ids_to_tokens(ids[:2]) == ["<robot_action_0>", "<robot_action_1>"]
    # instruction text cannot produce an action token
    assert ids[0] not in vlm.tokenize(["<robot_action_0>"], 0)[0].tolist()[0]
    images, text = observation()
    generated = vla.generate(images, text)
    assert_real_tokens(tok, generated.flatten().tolist())
    expected = vla.predict_action(images, text)
    vla.save_pretrained(tmp_path / "p")
    loaded = AbstractVLA.from_pretrained(tmp_path / "p")
    assert len(loaded.vlm.tokenizer) == size + 16 and loaded.vocab.ids.tolist() == ids  # not added twice
    assert torch.equal(loaded.predict_action(images, text), expected)


def test_rt2_policy_saved_with_ids_past_the_tokenizer_keeps_them():
    # before action tokens went into the tokenizer, RT-2 took the rows after the (padded) table
    vlm = padded_backbone()
    size, rows = len(vlm.tokenizer), vlm.hf.get_input_embeddings().num_embeddings
    vla = create_vla("rt2", vlm=vlm, action_dim=A, horizon=H, num_bins=16, reserved_start=rows)
    assert vla.vocab.ids.tolist() == list(range(rows, rows + 16)) and len(vlm.tokenizer) == size
    with pytest.raises(ConfigError, match="inside the tokenizer's"):
        create_vla("rt2", vlm=padded_backbone(), action_dim=A, horizon=H, num_bins=16, reserved_start=10)

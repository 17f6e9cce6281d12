"""OpenVLA-OFT does what OFT does: its action slots attend to each other bidirectionally inside the
backbone's language model (parallel decoding), and OFT+'s FiLM makes the image tokens the language
model reads depend on the instruction.

OFT has no cached path to compare with a recomputed one: the whole chunk is one backbone pass and
the prompt changes with every observation. What a cache would rest on is checked instead: the
prompt's hidden states do not depend on the action block, and a one-slot block (causal and
bidirectional alike) gives the same result either way.
"""

import json

import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.models import create_vla, create_vlm, list_vlms
from librobot.models.frameworks.base import AbstractVLA
from librobot.models.frameworks.openvla.config import OpenVLAOFTConfig
from librobot.models.vlm.tiny_vlm import TinyVLM

from .conftest import STATE_DIM, make_batch, tiny_vlm

A, H = 3, 2
BACKBONES = [n for n in list_vlms() if n.endswith("-tiny") or n == "librobot-tiny-vlm"]
# two instructions of different length: the batch is left-padded
TEXTS = ["pick up the red block", "open the drawer"]


def backbone(name):
    torch.manual_seed(0)
    return tiny_vlm() if name == "librobot-tiny-vlm" else create_vlm(name)


def build(name="librobot-tiny-vlm", **options):
    vlm = backbone(name)
    torch.manual_seed(0)
    vla = create_vla("openvla-oft", vlm=vlm, action_dim=A, state_dim=STATE_DIM, horizon=H, **options)
    return vla.eval()


def observation(batch=2):
    b = make_batch(batch=batch)
    return b["images"], TEXTS[:batch], b["proprioception"]


def slot_states(vla, slots):
    """The backbone's final hidden states at the action positions, with ``slots`` as the slot embeddings."""
    seen = []
    hook = vla.vlm.register_forward_hook(lambda module, args, out: seen.append(out.hidden_states))
    with torch.no_grad():
        vla.action_slots.copy_(slots)
        vla.predict_action(*observation())
    hook.remove()
    return seen[0][:, -vla.num_slots :]


# ---------------------------------------------------------------- (a) parallel decoding
@pytest.mark.parametrize("name", BACKBONES)
def test_an_earlier_action_slot_sees_a_later_one_only_when_bidirectional(name):
    for attention in ("bidirectional", "causal"):
        vla = build(name, action_attention=attention, mixer_depth=0)
        slots = vla.action_slots.detach().clone()
        moved = slots.clone()
        moved[:, -1] += torch.randn(moved.shape[-1], generator=torch.Generator().manual_seed(1))  # the last slot only
        before, after = slot_states(vla, slots), slot_states(vla, moved)
        first = (before[:, 0] - after[:, 0]).abs().max()
        if attention == "bidirectional":
            assert first > 1e-4, f"{name}: the first action slot does not see the last one"
        else:
            assert first <= 1e-6, f"{name}: a causal first slot changed with a later one ({first:.2e})"
        assert (before[:, -1] - after[:, -1]).abs().max() > 1e-4  # the moved slot itself always changes


def test_bidirectional_is_the_default_and_the_mixer_only_compensates_for_causal_attention():
    default, causal = build(), build(action_attention="causal")
    assert default.config.action_attention == "bidirectional" and default.mixer is None
    assert causal.mixer is not None and len(causal.mixer.layers) == 1
    assert build(mixer_depth=2).mixer is not None  # still available on request


# ---------------------------------------------------------------- (b) the prompt is untouched
@pytest.mark.parametrize("name", BACKBONES)
def test_the_prompt_never_sees_the_action_block_and_one_slot_is_the_same_either_way(name):
    vlm = backbone(name)
    images, text, _ = observation()
    g = torch.Generator().manual_seed(2)
    suffix = 0.02 * torch.randn(2, 5, vlm.get_embedding_dim(), generator=g)
    with torch.no_grad():
        alone = vlm(images, text)
        block = vlm(images, text, suffix_embeds=suffix, suffix_attention="bidirectional")
        one = [vlm(images, text, suffix_embeds=suffix[:, :1], suffix_attention=a) for a in ("causal", "bidirectional")]
    length = alone.hidden_states.shape[1]
    assert block.num_prefix_tokens == length
    torch.testing.assert_close(block.hidden_states[:, :length], alone.hidden_states, rtol=0, atol=1e-5)
    torch.testing.assert_close(one[1].hidden_states, one[0].hidden_states, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["qwen2-vl-tiny", "kosmos-2-tiny", "paligemma-tiny", "florence-2-tiny"])
def test_eager_attention_runs_the_same_action_block_as_sdpa(name):
    """The block mask in the form each attention implementation takes (bool for sdpa, additive for eager)."""
    images, text, _ = observation()
    outs = []
    for attn in ("sdpa", "eager"):
        torch.manual_seed(0)
        vlm = create_vlm(name, attn_implementation=attn)
        suffix = 0.02 * torch.randn(2, 4, vlm.get_embedding_dim(), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            outs.append(vlm(images, text, suffix_embeds=suffix, suffix_attention="bidirectional").hidden_states)
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5)


def test_an_unknown_suffix_attention_is_named():
    with pytest.raises(ConfigError, match="suffix_attention='sideways'"):
        tiny_vlm()(None, ["a"], suffix_embeds=torch.zeros(1, 1, 64), suffix_attention="sideways")


# ---------------------------------------------------------------- (c) FiLM
def image_tokens_fed(vla, text):
    """The image tokens the language model receives for one observation and instruction."""
    images, _, state = observation(batch=1)
    vlm, seen = vla.vlm, []
    if isinstance(vlm, TinyVLM):  # its language model takes (embeds, mask, image_mask, ...)
        hook = vlm.lm.register_forward_pre_hook(lambda module, args: seen.append(args[0][args[2]]))
        undo = hook.remove
    else:  # the transformers wrappers place them in prepare_prefix

        def capture(*args, **kwargs):
            p = type(vlm).prepare_prefix(vlm, *args, **kwargs)
            seen.append(p["embeds"][p["image_mask"]])
            return p

        vlm.prepare_prefix = capture

        def undo():
            del vlm.prepare_prefix

    with torch.no_grad():
        vla.predict_action(images, [text], state)
    undo()
    return seen[0]


@pytest.mark.parametrize("name", ["librobot-tiny-vlm", "qwen2-vl-tiny", "paligemma-tiny"])
def test_film_makes_the_image_tokens_depend_on_the_instruction(name):
    film = build(name, film=True)
    assert film.film is not None and build(name).film is None
    with torch.no_grad():  # away from the identity FiLM starts as
        film.film.proj.weight.normal_(0, 0.5)
        film.film.proj.bias.normal_(0, 0.1)
    a, b = (image_tokens_fed(film, t) for t in ("pick up the red block", "open the top drawer"))
    assert (a - b).abs().max() > 1e-3, f"{name}: FiLM left the image tokens independent of the instruction"
    plain = build(name)
    a, b = (image_tokens_fed(plain, t) for t in ("pick up the red block", "open the top drawer"))
    assert torch.equal(a, b)  # without FiLM the vision side never reads the text


def test_film_trains():
    vla = build(film=True).train()
    with torch.no_grad():  # zero-initialised output layers would hide upstream gradients
        for p in vla.parameters():
            if p.dim() > 1 and p.abs().sum() == 0:
                p.normal_(0, 0.02)
    b = make_batch()
    vla(b["images"], b["text"], b["proprioception"], b["actions"][:, :H, :A])["loss"].backward()
    assert vla.film.proj.weight.grad is not None and vla.film.proj.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- (d) saved policies
def randomised(vla):
    with torch.no_grad():  # zero-initialised head output and FiLM would hide any difference
        for p in vla.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vla


@pytest.mark.parametrize("options", [{}, {"action_attention": "causal"}, {"film": True}], ids=str)
def test_save_and_reload_give_identical_actions(options, tmp_path):
    vla = randomised(build(**options))
    images, text, state = observation()
    expected = vla.predict_action(images, text, state)
    vla.save_pretrained(tmp_path / "policy")
    loaded = AbstractVLA.from_pretrained(tmp_path / "policy")
    assert loaded.config == vla.config
    assert torch.equal(loaded.predict_action(images, text, state), expected)


def test_a_folder_saved_before_action_attention_loads_as_it_was_trained(tmp_path):
    """Old folders have every option but action_attention and film; they ran causally with one mixer layer."""
    vla = randomised(build(action_attention="causal", mixer_depth=1))
    images, text, state = observation()
    expected = vla.predict_action(images, text, state)
    vla.save_pretrained(tmp_path / "policy")
    path = tmp_path / "policy" / "config.json"
    meta = json.loads(path.read_text())
    for key in ("action_attention", "film"):
        del meta["config"][key]
    path.write_text(json.dumps(meta))
    loaded = AbstractVLA.from_pretrained(tmp_path / "policy", verify=False)  # the checksum is of the new file
    assert loaded.config.action_attention == "causal" and loaded.mixer is not None
    assert torch.equal(loaded.predict_action(images, text, state), expected)
    # a config written by hand names only some options: it gets the defaults
    assert OpenVLAOFTConfig.from_dict({"action_dim": A, "mixer_depth": 1}).action_attention == "bidirectional"


# ---------------------------------------------------------------- config and backbone checks
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"action_attention": "bidirectonal"}, "did you mean 'bidirectional'"),
        ({"mixer_depth": -1}, "mixer_depth must be an int >= 0, or null"),
        ({"film": "yes"}, "film must be true or false"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        OpenVLAOFTConfig(**options)


class CausalOnly(TinyVLM):
    """A backbone that says nothing about suffix attention or image modulation (like a plugin's)."""

    suffix_attention_modes = ()
    takes_modulate_images = False


def test_a_backbone_without_the_options_gets_a_named_error_or_runs_causal():
    vlm = CausalOnly(image_size=32, patch_size=8, tokens_per_view=4, dim=64, depth=2, heads=4, kv_heads=2)
    with pytest.raises(ConfigError, match="set action_attention='causal'"):
        create_vla("openvla-oft", vlm=vlm, action_dim=A, horizon=H)
    with pytest.raises(ConfigError, match="set film=false"):
        create_vla("openvla-oft", vlm=vlm, action_dim=A, horizon=H, action_attention="causal", film=True)
    vla = create_vla("openvla-oft", vlm=vlm, action_dim=A, horizon=H, action_attention="causal")
    assert vla.backbone_options() == {}  # the plain backbone call

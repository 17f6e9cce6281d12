"""freeze()/unfreeze() without parts cover every backbone parameter, also loose ones no part lists."""

import pytest

from librobot.models import create_vlm, list_vlms

TINY = [n for n in list_vlms() if n.endswith("-tiny") or n == "librobot-tiny-vlm"]


@pytest.mark.parametrize("name", TINY)
def test_freeze_reaches_every_parameter_and_parts_cover_the_backbone(name):
    vlm = create_vlm(name)
    vlm.freeze()
    assert [n for n, p in vlm.named_parameters() if p.requires_grad] == []
    vlm.unfreeze()
    assert all(p.requires_grad for p in vlm.parameters())
    vlm.freeze(*vlm.parts)  # freezing every part by name leaves nothing trainable either
    assert [n for n, p in vlm.named_parameters() if p.requires_grad] == []

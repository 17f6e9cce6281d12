"""Every framework works with every registered backbone (the tiny variants of each family and the
built-in tiny VLM): a finite loss whose gradients reach exactly the trainable parameters — which
catches backbone parts a framework never reads (LM heads, decoders) left trainable — and
predictions of the right shape."""

import pytest
import torch

from librobot.models import create_vla, create_vlm, list_vlas, list_vlms

BACKBONES = [n for n in list_vlms() if n.endswith("-tiny") or n == "librobot-tiny-vlm"]
A, S, B = 3, 5, 2


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_framework_trains_and_predicts_on(backbone):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(B, 3, 32, 32, generator=g)
    text = ["open the drawer", "push the red block"]
    state = torch.randn(B, S, generator=g)
    failures = []
    for name in list_vlas():
        torch.manual_seed(0)
        vla = create_vla(name, vlm=create_vlm(backbone), action_dim=A, state_dim=S)
        vla.unfreeze_backbone()
        with torch.no_grad():  # zero-initialised output layers would hide upstream gradients
            for p in vla.parameters():
                if p.requires_grad and p.dim() > 1 and p.abs().sum() == 0:
                    p.normal_(0, 0.02)
        actions = torch.randn(B, vla.horizon, A, generator=g).clamp(-1, 1)
        loss = vla(images, text, state, actions)["loss"]
        loss.backward()
        missing = [n for n, p in vla.named_parameters() if p.requires_grad and p.grad is None]
        chunk = vla.predict_action(images, text, state)
        if not torch.isfinite(loss) or missing or chunk.shape != (B, vla.horizon, A) or not torch.isfinite(chunk).all():
            failures.append(f"{name}: loss={float(loss):.3g} no-grad={missing[:4]} chunk={tuple(chunk.shape)}")
    assert not failures, "\n".join(failures)

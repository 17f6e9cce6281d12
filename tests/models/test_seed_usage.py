"""The seed documents' usage example, through the import paths they use (DESIGN.md: the seeds'
names keep working). Three deviations, each forced: a tiny backbone instead of downloading
``qwen2-vl-2b`` (``pretrained=True`` would name the Hub; weights load only from local folders),
smaller images, and images drawn in [0, 1] (the batch contract) rather than ``torch.randn``."""

import pytest
import torch


def test_the_seed_readme_basic_usage_runs_from_the_seed_import_paths():
    from librobot.models.frameworks import create_vla
    from librobot.models.vlm import create_vlm

    torch.manual_seed(0)
    vlm = create_vlm("librobot-tiny-vlm")  # seed: create_vlm("qwen2-vl-2b", pretrained=True)
    vla = create_vla("groot", vlm=vlm, action_dim=7, state_dim=14)

    images = torch.rand(2, 3, 96, 96)  # seed: torch.randn(2, 3, 224, 224)
    text = ["pick up the cup", "move forward"]
    proprioception = torch.randn(2, 14)
    actions = torch.randn(2, 7)

    outputs = vla(images, text, proprioception, actions)
    loss = outputs["loss"]
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vla.parameters())

    predicted_actions = vla.predict_action(images, text, proprioception)
    assert predicted_actions.shape == (2, vla.horizon, 7) and torch.isfinite(predicted_actions).all()


def test_the_seed_registry_paths_are_the_registry_functions():
    import librobot.models as models
    from librobot.models.action_heads import create_action_head, list_action_heads, register_action_head
    from librobot.models.frameworks.registry import create_vla, register_vla
    from librobot.models.vlm.registry import create_vlm, register_vlm

    assert (create_vla, register_vla) == (models.create_vla, models.register_vla)
    assert (create_action_head, register_action_head) == (models.create_action_head, models.register_action_head)
    assert {"groot", "pi0", "act"} <= set(models.list_vlas()) and "flow_matching" in list_action_heads()
    head = create_action_head("mlp_oft", action_dim=3, horizon=4, cond_dim=8)
    assert head(torch.randn(2, 5, 8), torch.randn(2, 4, 3))["loss"].item() > 0
    assert callable(create_vlm) and callable(register_vlm)
    with pytest.raises(KeyError, match="Did you mean: groot"):
        create_vla("grot")

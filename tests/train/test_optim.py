import pytest
import torch
from torch import nn

from librobot.core.errors import ConfigError
from librobot.train.config import OptimizerSection, ParamGroupSection
from librobot.train.optim import Lion, build_optimizer, build_param_groups


class VLAish(nn.Module):
    def __init__(self):
        super().__init__()
        self.vlm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "proj": nn.Linear(4, 4), "norm": nn.LayerNorm(4)})
        self.head = nn.Sequential(nn.Linear(4, 8), nn.GroupNorm(2, 8), nn.Linear(8, 2))
        self.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def groups_by_name(optimizer):
    names = {id(p): n for n, p in optimizer._model.named_parameters()}
    return {
        g["name"]: (sorted(names[id(p)] for p in g["params"]), g["lr"], g["weight_decay"])
        for g in optimizer.param_groups
    }


def test_per_module_lrs_and_no_decay_land_on_the_right_parameters():
    model = VLAish()
    section = OptimizerSection(
        name="adamw",
        lr=1e-3,
        weight_decay=0.05,
        param_groups=[
            ParamGroupSection("vlm", ["vlm"], lr=1e-5),
            ParamGroupSection("head", ["head.*"], lr=3e-3, weight_decay=0.1),
        ],
    )
    optimizer, plan = build_optimizer(model, section)
    optimizer._model = model
    got = groups_by_name(optimizer)
    assert got == {
        "vlm/decay": (["vlm.proj.weight"], 1e-5, 0.05),
        # embedding table, norm weight/bias and the bias: no decay
        "vlm/no_decay": (["vlm.embed.weight", "vlm.norm.bias", "vlm.norm.weight", "vlm.proj.bias"], 1e-5, 0.0),
        "head/decay": (["head.0.weight", "head.2.weight"], 3e-3, 0.1),
        "head/no_decay": (["head.0.bias", "head.1.bias", "head.1.weight", "head.2.bias"], 3e-3, 0.0),
        # pos_embed matches the default no_decay glob; frozen parameters are left out entirely
        "default/no_decay": (["pos_embed"], 1e-3, 0.0),
    }
    assert isinstance(optimizer, torch.optim.AdamW)
    assert plan.names["head/decay"] == ["head.0.weight", "head.2.weight"]


def test_embeddings_decay_when_asked_and_first_matching_group_wins():
    model = VLAish()
    plan = build_param_groups(
        model,
        lr=1.0,
        weight_decay=0.1,
        no_decay_embeddings=False,
        no_decay=[],
        groups=[ParamGroupSection("a", ["vlm.embed"]), ParamGroupSection("b", ["vlm"])],
    )
    assert plan.names["a/decay"] == ["vlm.embed.weight"]
    assert "vlm.embed.weight" not in plan.names["b/decay"]
    assert plan.names["default/decay"] == ["pos_embed", "head.0.weight", "head.2.weight"]


def test_a_group_matching_nothing_is_an_error_listing_modules():
    with pytest.raises(
        ConfigError, match=r"param group 'vision' \(match \['vison'\]\) matches no parameter.*head, pos_embed, vlm"
    ):
        build_param_groups(VLAish(), lr=1.0, weight_decay=0.0, groups=[ParamGroupSection("vision", ["vison"])])


def test_lion_matches_a_hand_computed_update():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(5))
    start = p.detach().clone()
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    g1, g2 = torch.randn(5), torch.randn(5)
    p.grad = g1.clone()
    opt.step()
    # step 1: m=0 → update=sign(0.1*g1); p = p*(1-0.05) - 0.1*update; m = 0.01*g1
    expect1 = start * 0.95 - 0.1 * torch.sign(0.1 * g1)
    torch.testing.assert_close(p.detach(), expect1)
    p.grad = g2.clone()
    opt.step()
    m1 = 0.01 * g1
    expect2 = expect1 * 0.95 - 0.1 * torch.sign(0.9 * m1 + 0.1 * g2)
    torch.testing.assert_close(p.detach(), expect2)
    torch.testing.assert_close(opt.state[p]["exp_avg"], 0.99 * m1 + 0.01 * g2)


def test_sgd_rejects_betas():
    with pytest.raises(ConfigError, match="sgd takes no betas"):
        build_optimizer(nn.Linear(2, 2), OptimizerSection(name="sgd", lr=0.1, betas=[0.9, 0.99]))


def test_adamw_is_fused_by_default_and_equals_the_reference_update():
    from librobot.train.optim import adamw

    torch.manual_seed(0)
    models = [nn.Linear(6, 5) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    fused = adamw([{"params": list(models[0].parameters())}], lr=1e-2, weight_decay=0.1)
    reference = adamw([{"params": list(models[1].parameters())}], lr=1e-2, weight_decay=0.1, foreach=False)
    assert fused.defaults["fused"] is True and not reference.defaults.get("fused")
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(4, 6, generator=g)
        for model, optimizer in zip(models, (fused, reference)):
            optimizer.zero_grad()
            model(x).pow(2).sum().backward()
            optimizer.step()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, torch.zeros_like(a))

import math

import pytest
import torch

from librobot.core.errors import ConfigError
from librobot.core.registry import get_registry
from librobot.train.schedules import lr_factor


@pytest.mark.parametrize(
    "kind, step, expected",
    [
        # W=10 warmup steps, T=110 total, r=0.1: warmup (s+1)/W, then p = (s-10)/100
        ("cosine", 0, 0.1),
        ("cosine", 4, 0.5),
        ("cosine", 9, 1.0),
        ("cosine", 10, 1.0),
        ("cosine", 60, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))),  # = 0.55
        ("cosine", 85, 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75))),
        ("cosine", 110, 0.1),
        ("cosine", 500, 0.1),  # past the end: stays at the floor
        ("linear", 4, 0.5),
        ("linear", 10, 1.0),
        ("linear", 35, 1 - 0.9 * 0.25),
        ("linear", 110, 0.1),
        ("constant", 2, 0.3),
        ("constant", 10, 1.0),
        ("constant", 109, 1.0),
    ],
)
def test_closed_forms(kind, step, expected):
    assert lr_factor(kind, step, total_steps=110, warmup_steps=10, min_lr_ratio=0.1) == pytest.approx(
        expected, abs=1e-12
    )


def test_cosine_midpoint_is_halfway_and_no_warmup_starts_at_one():
    assert lr_factor("cosine", 50, total_steps=100) == pytest.approx(0.5)
    assert lr_factor("linear", 0, total_steps=100) == 1.0


def test_scheduler_drives_every_group_and_resumes_from_its_step():
    p1, p2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.1}], lr=1.0)
    sched = get_registry("scheduler").create("cosine", opt, total_steps=20, warmup_steps=4, min_lr_ratio=0.0)
    seen = []
    for _ in range(12):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for s, (a, b) in enumerate(seen):
        f = lr_factor("cosine", s, total_steps=20, warmup_steps=4)
        assert a == pytest.approx(f) and b == pytest.approx(0.1 * f)
    # a fresh scheduler loaded with the state continues at the same step
    opt2 = torch.optim.SGD([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.1}], lr=1.0)
    sched2 = get_registry("scheduler").create("cosine", opt2, total_steps=20, warmup_steps=4)
    sched2.load_state_dict(sched.state_dict())
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_factor("cosine", 12, total_steps=20, warmup_steps=4))


def test_unknown_schedule_is_named():
    with pytest.raises(ConfigError, match="unknown schedule 'cosin'"):
        lr_factor("cosin", 0, total_steps=10)

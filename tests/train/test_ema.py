import pytest
import torch
from torch import nn

from librobot.train.ema import EMA


def test_decay_schedule_closed_form():
    ema = EMA(nn.Linear(1, 1), max_decay=0.999, min_decay=0.0, warmup_power=0.75, inv_gamma=1.0, start_step=3)
    assert ema.decay(3) == 0.0  # before/at start_step the EMA copies the weights
    assert ema.decay(4) == pytest.approx(1 - 2**-0.75)
    assert ema.decay(13) == pytest.approx(1 - 11**-0.75)
    assert ema.decay(10**9) == 0.999
    assert EMA(nn.Linear(1, 1), max_decay=0.9, warmup_power=0.0).decay(1) == 0.9


def test_ema_matches_hand_computed_reference_and_swaps_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(model, max_decay=0.8, warmup_power=1.0, inv_gamma=2.0, start_step=1)
    reference = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    for step in range(1, 7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3))  # moves the BatchNorm running stats (buffers are copied, not averaged)
        ema.update(model, step)
        n = step - 1
        d = 0.0 if n <= 0 else min(1 - (1 + n / 2.0) ** -1.0, 0.8)
        for name, p in model.named_parameters():
            reference[name] = d * reference[name] + (1 - d) * p.detach().double()
    for name, value in reference.items():
        torch.testing.assert_close(ema.params[name].double(), value, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ema.buffers["1.running_mean"], model[1].running_mean)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    with ema.swapped_in(model):
        torch.testing.assert_close(model[0].weight.double(), reference["0.weight"], rtol=1e-6, atol=1e-6)
    for name, p in model.named_parameters():
        assert torch.equal(p, trained[name])  # training weights are back


def test_update_every_skips_steps_and_state_round_trips():
    model = nn.Linear(2, 2)
    ema = EMA(model, max_decay=0.5, warmup_power=0.0, update_every=2)
    assert not ema.update(model, 1) and ema.update(model, 2)
    clone = EMA(nn.Linear(2, 2), max_decay=0.5, warmup_power=0.0, update_every=2)
    clone.load(ema.full_tensors(), ema.state())
    assert clone.num_updates == 1 and torch.equal(clone.params["weight"], ema.params["weight"])

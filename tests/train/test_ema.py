import pytest
import torch
import torch.nn as nn
from oat_edge.train.ema import EMA, EMAConfig, ema_decay


def test_decay_follows_the_power_schedule_and_is_clipped_at_max_value():
    assert ema_decay(0) == 0.0
    assert ema_decay(1) == pytest.approx(1 - 2 ** -0.75)
    assert ema_decay(100) == pytest.approx(1 - 101 ** -0.75)
    assert ema_decay(10 ** 9) == 0.9999
    assert ema_decay(10, EMAConfig(power=1.0, inv_gamma=1.0, max_value=0.5)) == 0.5


def test_update_blends_parameters_with_the_scheduled_decay():
    torch.manual_seed(0)
    m = nn.Linear(3, 2)
    ema = EMA(m)
    ema.update(m)  # step 0: decay 0 -> exact copy
    assert torch.equal(ema.model.weight, m.weight)
    old = ema.model.weight.clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    d = ema.update(m)
    assert d == pytest.approx(ema_decay(1))
    torch.testing.assert_close(ema.model.weight, d * old + (1 - d) * m.weight)


def test_buffers_and_frozen_parameters_are_copied_not_averaged():
    m = nn.BatchNorm1d(2)
    m.weight.requires_grad_(False)
    ema = EMA(m)
    ema.update(m)
    with torch.no_grad():
        m.running_mean.fill_(5.0)
        m.weight.fill_(3.0)
    ema.update(m)
    assert ema.model.running_mean.tolist() == [5.0, 5.0]
    assert ema.model.weight.tolist() == [3.0, 3.0]


def test_state_dict_round_trip_restores_weights_and_step():
    m = nn.Linear(2, 2)
    a = EMA(m)
    for _ in range(3):
        a.update(m)
    b = EMA(nn.Linear(2, 2))
    b.load_state_dict(a.state_dict())
    assert b.step == 3 and torch.equal(b.model.weight, a.model.weight)

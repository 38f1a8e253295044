import pytest
import torch
from oat_edge.train.normalizer import Normalizer

torch.set_num_threads(1)


def test_fit_maps_data_range_to_minus_one_one_and_round_trips():
    x = torch.randn(50, 10, 3) * torch.tensor([1.0, 10.0, 0.1]) + 5
    n = Normalizer.fit(x)
    y = n.normalize(x)
    assert torch.allclose(y.reshape(-1, 3).min(0).values, torch.full((3,), -1.0), atol=1e-5)
    assert torch.allclose(y.reshape(-1, 3).max(0).values, torch.full((3,), 1.0), atol=1e-5)
    assert torch.allclose(n.unnormalize(y), x, atol=1e-4)
    assert torch.equal(n.low, x.reshape(-1, 3).min(0).values)


def test_constant_dim_passes_through_centred():
    x = torch.stack([torch.linspace(0, 1, 20), torch.full((20,), 3.0)], -1)
    n = Normalizer.fit(x, range_eps=1e-4)
    assert n.scale[1] == 1.0 and n.offset[1] == -3.0
    assert torch.allclose(n.normalize(x)[:, 1], torch.zeros(20))


@pytest.mark.parametrize("bad", [torch.tensor([[1.0, float("nan")]]), torch.tensor([[1.0, float("inf")]]),
                                 torch.zeros(0, 2)])
def test_fit_rejects_nan_inf_and_empty(bad):
    with pytest.raises(ValueError, match="x: expected"):
        Normalizer.fit(bad)


def test_dict_round_trip_preserves_stats():
    n = Normalizer.fit(torch.randn(30, 4))
    m = Normalizer.from_dict(n.to_dict())
    for k in ("scale", "offset", "low", "high"):
        assert torch.equal(getattr(n, k), getattr(m, k))
    assert all(isinstance(v, list) for v in n.to_dict().values())


def test_wrong_dim_raises_with_expected_and_given():
    n = Normalizer(3)
    with pytest.raises(ValueError, match="x: expected last dim 3, got 2"):
        n.normalize(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="offset: expected length 2"):
        Normalizer.from_dict({"scale": [1, 1], "offset": [0], "low": [0, 0], "high": [1, 1]})

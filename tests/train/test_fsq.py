import pytest
import torch
from oat_edge.train.fsq import FSQ

torch.set_num_threads(1)


def test_every_id_round_trips_through_codes():
    f = FSQ((8, 5, 5, 5))
    ids = torch.arange(f.codebook_size)
    assert f.codebook_size == 1000 and f.dim == 4
    assert torch.equal(f.codes_to_ids(f.ids_to_codes(ids)), ids)


def test_id_digits_follow_basis_1_8_40_200():
    f = FSQ((8, 5, 5, 5))
    assert f.ids_to_codes(torch.tensor(0)).tolist() == [-1.0, -1.0, -1.0, -1.0]
    assert f.ids_to_codes(torch.tensor(1)).tolist() == [-0.75, -1.0, -1.0, -1.0]
    assert f.ids_to_codes(torch.tensor(8)).tolist() == [-1.0, -0.5, -1.0, -1.0]
    assert f.ids_to_codes(torch.tensor(40)).tolist() == [-1.0, -1.0, -0.5, -1.0]
    assert f.ids_to_codes(torch.tensor(999)).tolist() == [0.75, 1.0, 1.0, 1.0]


def test_forward_codes_lie_on_grid_and_ids_agree():
    f = FSQ((8, 5, 5, 5))
    z = torch.randn(4096, 4) * 4
    codes, ids = f(z)
    assert codes.min() >= -1 and codes.max() <= 1
    assert set(codes[:, 0].unique().tolist()) == {i / 4 for i in range(-4, 4)}
    assert set(codes[:, 1].unique().tolist()) == {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert torch.equal(ids, f.codes_to_ids(codes))
    assert torch.equal(f.ids_to_codes(ids), codes)


def test_zero_latent_maps_to_zero_code():
    codes, _ = FSQ((8, 5, 5, 5))(torch.zeros(1, 4))
    assert codes.abs().max() == 0


def test_straight_through_gradient_equals_bound_gradient():
    f = FSQ((8, 5, 5, 5))
    z = torch.randn(64, 4, requires_grad=True)
    codes, _ = f(z)
    (codes * torch.arange(1.0, 5.0)).sum().backward()
    z2 = z.detach().clone().requires_grad_(True)
    (f.bound(z2) / f._half * torch.arange(1.0, 5.0)).sum().backward()
    assert torch.allclose(z.grad, z2.grad) and z.grad.abs().min() > 0


def test_bad_levels_and_dims_raise():
    with pytest.raises(ValueError, match="fsq_levels.*expected.*got"):
        FSQ((8, 1))
    with pytest.raises(ValueError, match="z: expected last dim 4.*got 3"):
        FSQ()(torch.zeros(2, 3))

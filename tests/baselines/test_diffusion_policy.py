import pytest
import torch
from oat_edge.baselines.diffusion_policy import DiffusionChunkPolicy, DiffusionConfig, DiffusionPolicy, ddpm_scheduler

from .conftest import smooth_chunks


def test_config_rejects_bad_sizes_with_the_field_name():
    with pytest.raises(ValueError, match="DiffusionConfig.width"):
        DiffusionConfig(obs_dim=5, width=30, n_heads=4)
    with pytest.raises(ValueError, match="inference_steps"):
        DiffusionConfig(obs_dim=5, train_timesteps=10, inference_steps=20)
    with pytest.raises(ValueError, match="obs_dim"):
        DiffusionConfig(obs_dim=0)


def test_ddpm_training_learns_to_predict_the_noise():
    torch.manual_seed(0)
    cfg = DiffusionConfig(obs_dim=5, action_dim=3, horizon=8, width=32, n_layers=1, n_heads=2, dropout=0.0)
    net, sched = DiffusionPolicy(cfg), ddpm_scheduler(cfg)
    a = smooth_chunks(64, seed=0)
    a = (a - a.mean()) / a.abs().max()
    obs = torch.randn(64, 2, 5)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        first = float(net.loss(obs, a, sched, generator=torch.Generator().manual_seed(5))[0])
    for _ in range(150):
        loss, _ = net.loss(obs, a, sched, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(net.loss(obs, a, sched, generator=torch.Generator().manual_seed(5))[0])
    assert first == pytest.approx(1.0, abs=0.15)  # zero-initialised output: predicts 0 noise, MSE ~ 1
    assert last < 0.6 * first


def test_predict_output_is_finite_and_inside_the_action_range(diffusion_policy):
    obs = torch.randn(3, 2, 5) * 50  # far outside the training range
    for steps in (1, 10):
        a = diffusion_policy.predict(obs, steps=steps, seed=0)
        lo, hi = diffusion_policy.action_normalizer.low, diffusion_policy.action_normalizer.high
        assert a.shape == (3, 8, 3) and torch.isfinite(a).all()
        assert (a >= lo - 1e-5).all() and (a <= hi + 1e-5).all()


def test_checkpoint_round_trip(diffusion_policy):
    again = DiffusionChunkPolicy.from_checkpoint(diffusion_policy.checkpoint())
    obs = torch.randn(2, 2, 5)
    torch.testing.assert_close(again.predict(obs, seed=4), diffusion_policy.predict(obs, seed=4))
    with pytest.raises(ValueError, match="expected 'diffusion_policy'"):
        DiffusionChunkPolicy.from_checkpoint({"kind": "oat"})

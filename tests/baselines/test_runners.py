import numpy as np
import pytest
import torch
from oat_edge.baselines.runners import (
    DiffusionRunner,
    TokenRunner,
    UndecodableActions,
    ddim_step,
    ddim_timesteps,
    open_runner,
)
from oat_edge.errors import BundleError, InputError

from .conftest import smooth_chunks


def test_fast_runner_decodes_real_tokenizations_exactly_as_the_tokenizer(fast_policy, bundles):
    r = open_runner(bundles["fast"])
    tok = fast_policy.tokenizer
    a = smooth_chunks(20, seed=3)
    ids = tok.tokenize(a, add_eos=True)
    n = max(map(len, ids))
    padded = np.array([s + [tok.eos_id] * (n - len(s)) for s in ids])
    got, ok = r.fast_decode(padded)
    want, want_ok = tok.detokenize(ids)
    assert ok.all() and want_ok.all()
    np.testing.assert_allclose(r._unnormalize(got), want, atol=1e-5)


def test_fast_runner_rejects_sequences_that_do_not_expand_to_a_whole_chunk(fast_policy, bundles):
    r = open_runner(bundles["fast"])
    seq = fast_policy.tokenizer.tokenize(smooth_chunks(1, seed=4))[0]
    eos = fast_policy.tokenizer.eos_id
    dropped, truncated, out_of_vocab = seq[1:] + [eos], seq[: len(seq) // 2] + [eos], [10_000] + seq[1:]
    n = max(map(len, (dropped, truncated, out_of_vocab)))
    _, ok = r.fast_decode(np.array([s + [eos] * (n - len(s)) for s in (dropped, truncated, out_of_vocab)]))
    assert not ok.any()


def test_fast_runner_generates_what_pytorch_generates_and_raises_when_it_does_not_decode(fast_policy, bundles, obs):
    r = open_runner(bundles["fast"])
    decoded = undecodable = 0
    for seed in range(12):
        a, ok, n = fast_policy.predict(obs[None], temperature=0.0, seed=seed) if seed == 0 else \
            fast_policy.predict(obs[None], seed=seed)
        ids = r.generate(obs[None], temperature=0.0 if seed == 0 else None, seed=seed)
        assert ids.shape[1] == min(n[0] + 1, r.K)  # the end token ends generation
        if ok[0]:
            decoded += 1
            np.testing.assert_allclose(r.act(obs, temperature=0.0 if seed == 0 else None, seed=seed), a[0], atol=1e-4)
        else:
            undecodable += 1
            with pytest.raises(UndecodableActions, match="do not decode"):
                r.act(obs, temperature=0.0 if seed == 0 else None, seed=seed)
            assert r.last_stats["undecodable"] == 1
    assert undecodable > 0  # a random-weight FAST policy does produce malformed sequences


def test_bin_runner_matches_the_pytorch_token_policy_and_decodes_prefixes(bin_policy, bundles, obs):
    r = open_runner(bundles["bin"])
    assert isinstance(r, TokenRunner) and r.info["num_tokens"] == 24
    for seed in (0, 7):
        want = bin_policy.predict(obs, seed=seed).numpy()
        got, st = r.act(obs, seed=seed, return_stats=True)
        np.testing.assert_allclose(got, want, atol=1e-4)
        assert st["tokens_used"] == 24
    # a prefix leaves the rest of the chunk at the bin centre (normalized 0)
    part = r.act(obs, max_tokens=3, seed=0)
    centre = (0.0 - r.act_offset) / r.act_scale
    np.testing.assert_allclose(part[1:], np.broadcast_to(centre, part[1:].shape), atol=1e-5)


def test_ddim_in_numpy_is_diffusers_ddim():
    from diffusers import DDIMScheduler
    for steps in (1, 10, 100):
        s = DDIMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                          prediction_type="epsilon")
        s.set_timesteps(steps)
        np.testing.assert_array_equal(ddim_timesteps(100, steps), s.timesteps.numpy())
        rng = np.random.default_rng(steps)
        x = rng.standard_normal((2, 8, 3))
        alphas = s.alphas_cumprod.numpy().astype(np.float64)
        for t in s.timesteps[:3].tolist() + s.timesteps[-2:].tolist():
            eps = rng.standard_normal(x.shape)
            want = s.step(torch.tensor(eps), t, torch.tensor(x)).prev_sample.numpy()
            np.testing.assert_allclose(ddim_step(eps, t, x, alphas, 100, steps), want, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="1..100"):
        ddim_timesteps(100, 101)


def test_diffusion_runner_reproduces_the_pytorch_policy_from_the_same_noise(diffusion_policy, bundles, obs):
    noise = np.random.default_rng(9).standard_normal((1, 8, 3))
    for steps in (10, 100):
        r = open_runner(bundles["diffusion"], denoise_steps=steps)
        assert isinstance(r, DiffusionRunner) and r.info["denoise_steps"] == steps
        want = diffusion_policy.predict(obs[None], steps=steps, noise=noise)[0].numpy()
        got, st = r.act(obs, noise=noise, return_stats=True)
        np.testing.assert_allclose(got, want, atol=2e-4)
        assert st["denoise_steps"] == steps and np.abs(want - got).max() < 2e-4
    # seeded noise: reproducible, and different seeds give different chunks
    r = open_runner(bundles["diffusion"])
    np.testing.assert_array_equal(r.act(obs, seed=3), r.act(obs, seed=3))
    assert not np.allclose(r.act(obs, seed=3), r.act(obs, seed=4))


def test_runners_reject_bad_bundles_and_inputs_with_clear_errors(bundles, tmp_path, obs):
    with pytest.raises(BundleError, match="expected a baseline bundle"):
        open_runner(tmp_path)
    (tmp_path / "baseline.json").write_text("{not json")
    with pytest.raises(BundleError, match="not a readable JSON"):
        open_runner(tmp_path)
    (tmp_path / "baseline.json").write_text(
        '{"format": "oat_edge.baseline", "kind": "fast", "files": {"step": "../x.onnx"}, '
        '"horizon": 8, "action_dim": 3, "n_obs_steps": 2, "obs_dim": 5, '
        '"n_action_steps": 4, "normalization": {}}')
    with pytest.raises(BundleError, match="plain file name"):
        open_runner(tmp_path)
    r = open_runner(bundles["fast"])
    with pytest.raises(InputError, match=r"expected shape \[2, 5\]"):
        r.act(obs[:, :4])
    with pytest.raises(InputError, match="finite"):
        r.act(np.full_like(obs, np.nan))
    with pytest.raises(InputError, match="no anytime mode"):
        open_runner(bundles["diffusion"]).act(obs, latency_budget_ms=3.0)

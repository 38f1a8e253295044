"""Tiny baseline policies of every class, exported by the real exporter (shared by the tests)."""
import motions  # tests/fixtures/motions.py (on the path through tests/conftest.py)
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

H, D, OBS, T = 8, 3, 5, 2


def smooth_chunks(n=200, seed=0):
    """Low-frequency random motions [n, H, D] in raw units (not already normalized)."""
    return motions.smooth_chunks(n, H, D, seed)


def _randomize(module, std=0.3):
    # default init gives near-constant outputs; random weights make a wrong axis or unit visible
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, std)


def _obs_normalizer(seed=0):
    from oat_edge.train.normalizer import Normalizer
    return Normalizer.fit(np.random.default_rng(seed).normal(0.0, 2.0, size=(64, OBS)))


@pytest.fixture(scope="session")
def fast_policy():
    from oat_edge.baselines.fast_policy import FASTPolicy
    from oat_edge.train.fast_tokenizer import FASTTokenizer
    from oat_edge.train.policy import ARPolicy, PolicyConfig
    torch.manual_seed(0)
    tok = FASTTokenizer(D, H, scale=10.0, vocab_size=64, max_tokens=H * D).fit(smooth_chunks())
    pol = ARPolicy(PolicyConfig(obs_dim=OBS, n_obs_steps=T, codebook_size=tok.vocab_size + 1,
                                num_tokens=tok.max_tokens + 1, width=32, n_layers=2, n_heads=2, n_action_steps=4))
    _randomize(pol)
    return FASTPolicy(tok, pol.eval(), _obs_normalizer())


@pytest.fixture(scope="session")
def bin_policy():
    from oat_edge.train.bin_tokenizer import BinTokenizer
    from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
    torch.manual_seed(1)
    tok = BinTokenizer(action_dim=D, horizon=H, bins=16).fit(smooth_chunks())
    pol = ARPolicy(PolicyConfig(obs_dim=OBS, n_obs_steps=T, codebook_size=16, num_tokens=H * D, width=32,
                                n_layers=2, n_heads=2, n_action_steps=4))
    _randomize(pol)
    return TokenPolicy(tok, pol, _obs_normalizer()).eval()


@pytest.fixture(scope="session")
def diffusion_policy():
    from oat_edge.baselines.diffusion_policy import DiffusionChunkPolicy, DiffusionConfig, DiffusionPolicy
    from oat_edge.train.normalizer import Normalizer
    torch.manual_seed(2)
    net = DiffusionPolicy(DiffusionConfig(obs_dim=OBS, action_dim=D, horizon=H, n_obs_steps=T, width=32,
                                          n_layers=2, n_heads=2, n_action_steps=4))
    _randomize(net, 0.2)
    with torch.no_grad():
        net.out.weight.normal_(0.0, 0.2)
    return DiffusionChunkPolicy(net.eval(), _obs_normalizer(), Normalizer.fit(smooth_chunks()))


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, fast_policy, bin_policy, diffusion_policy):
    from oat_export.baselines import export_bin, export_diffusion, export_fast
    root = tmp_path_factory.mktemp("baselines")
    out = {"fast": str(root / "fast"), "bin": str(root / "bin"), "diffusion": str(root / "diffusion")}
    export_fast(fast_policy, out["fast"], tasks=("tiny-v0",))
    export_bin(bin_policy, out["bin"], tasks=("tiny-v0",))
    export_diffusion(diffusion_policy, out["diffusion"], tasks=("tiny-v0",))
    return out


@pytest.fixture
def obs():
    return np.random.default_rng(5).normal(0.0, 2.0, size=(T, OBS)).astype(np.float32)

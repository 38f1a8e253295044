"""Shared pytest setup: import paths for an uninstalled checkout, and one tiny exported bundle."""
import importlib.util
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# An installed (or editable-installed) package wins; a bare checkout still runs the pure-Python
# tests. The compiled oat_edge._core only exists after the build (make setup).
for _pkg, _dir in (("oat_edge", "python"), ("oat_export", "export")):
    if importlib.util.find_spec(_pkg) is None:
        sys.path.insert(0, os.path.join(_ROOT, _dir))

# Small enough to export in a few seconds, but every dimension distinct so a transposed axis
# shows up as a shape error: K=4 tokens, H_a=8, D_a=3, obs [2, 5], 2 layers x 2 heads x 16.
TINY = dict(num_tokens=4, horizon=8, action_dim=3, obs_dim=5, n_obs_steps=2,
            n_layers=2, n_heads=2, width=32, n_action_steps=4)


def _tiny_token_policy(seed=0):
    import numpy as np
    import torch

    from oat_edge.train.normalizer import Normalizer
    from oat_edge.train.policy import ARPolicy, PolicyConfig, TokenPolicy
    from oat_edge.train.tokenizer import OATConfig, OATTokenizer

    torch.manual_seed(seed)
    t = TINY
    tok = OATTokenizer(OATConfig(action_dim=t["action_dim"], horizon=t["horizon"],
                                 num_tokens=t["num_tokens"], enc_width=32, enc_depth=1, enc_heads=2,
                                 dec_width=32, dec_depth=1, dec_heads=2, dec_ff=64))
    pol = ARPolicy(PolicyConfig(obs_dim=t["obs_dim"], n_obs_steps=t["n_obs_steps"],
                                num_tokens=t["num_tokens"], width=t["width"], n_layers=t["n_layers"],
                                n_heads=t["n_heads"], n_action_steps=t["n_action_steps"]))
    # Zero-initialised heads would make every chunk identical, and default-scale policy weights
    # make greedy tokens barely depend on the observation: randomise both, so a wrong prefix,
    # normalization, batch row or token shows up in the outputs.
    with torch.no_grad():
        for p in tok.parameters():
            if p.ndim >= 1 and not p.any():
                p.normal_(0.0, 0.5)
        for p in pol.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.3)
    rng = np.random.default_rng(seed)
    tok.set_normalizer(Normalizer.fit(rng.uniform(-2.0, 3.0, size=(64, t["action_dim"]))))
    obs_norm = Normalizer.fit(rng.normal(0.0, 2.0, size=(64, t["obs_dim"])))
    return TokenPolicy(tok, pol, obs_norm).eval()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """Directory of a random-weight fp32 bundle written by the real exporter (needs torch)."""
    try:
        import torch  # noqa: F401

        import oat_export  # noqa: F401
    except ImportError as err:
        pytest.skip(f"tiny_bundle needs the exporter (torch + oat_export): {err}")
    return write_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


def write_tiny_bundle(out_dir):
    """Export the tiny random policy to out_dir (also used by `make test` for the C++ e2e test)."""
    from oat_export import export_bundle

    export_bundle(_tiny_token_policy(), str(out_dir), tasks=("tiny-v0",), check_parity=False)
    return str(out_dir)


@pytest.fixture(scope="session")
def tiny_token_policy():
    """The PyTorch TokenPolicy that `tiny_bundle` was exported from (same seed, same weights)."""
    pytest.importorskip("torch")
    return _tiny_token_policy()


@pytest.fixture(scope="session")
def child_env():
    """Environment for a child interpreter that imports the same oat_edge as this one."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def _edit_manifest(bundle_dir, edit):
    import json

    onnx = pytest.importorskip("onnx")
    from oat_edge.manifest import MANIFEST_KEY

    path = os.path.join(bundle_dir, "model.onnx")
    m = onnx.load(path)
    (prop,) = [p for p in m.metadata_props if p.key == MANIFEST_KEY]
    d = json.loads(prop.value)
    out = edit(d)
    prop.value = out if isinstance(out, str) else json.dumps(d)
    onnx.save(m, path)
    return bundle_dir


@pytest.fixture(scope="session")
def edit_manifest():
    """edit_manifest(bundle_dir, edit) -> bundle_dir: rewrite the manifest embedded in the bundle's
    model.onnx in place; edit(dict) mutates it, or returns a replacement JSON string (needs onnx)."""
    return _edit_manifest


@pytest.fixture(scope="session")
def tiny_config():
    """The dimensions of `tiny_bundle` (a copy: tests may not edit it)."""
    return dict(TINY)


def _write_synthetic_demos(path, n_eps=6, lengths=(10, 16), seed=0):
    import numpy as np

    from oat_edge.train.demos import Demos, save_demos
    rng = np.random.default_rng(seed)
    ns = rng.integers(lengths[0], lengths[1], size=n_eps)
    obs, act = [], []
    for n in ns:
        t = np.linspace(0, 1, n)[:, None]
        act.append(np.tanh(np.sin(6 * t + rng.normal(size=4))).astype(np.float32))
        obs.append((rng.normal(size=(1, 39)) + t).astype(np.float32))
    save_demos(Demos(np.concatenate(obs), np.concatenate(act), np.cumsum(ns).astype(np.int64),
                     np.arange(n_eps, dtype=np.int64) % 2, ["reach-v3", "push-v3"],
                     {"seed": seed}), path)
    return str(path)


@pytest.fixture(scope="session")
def write_demos():
    """write_demos(path, n_eps=6, lengths=(10, 16), seed=0) -> path: smooth synthetic episodes
    of two Meta-World-shaped tasks in a demos .npz, so that no simulator is needed."""
    pytest.importorskip("torch")
    return _write_synthetic_demos

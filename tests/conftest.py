"""Shared pytest setup: import paths for an uninstalled checkout, and one tiny exported bundle."""

import importlib.util
import os
import signal
import sys

import pytest

# Started with SIGINT ignored (nohup, `make test &` from a script), Python installs no Ctrl-C
# handler and every child inherits the ignore, so the tests that interrupt a command would test
# nothing. Ctrl-C behaviour is part of what the suite checks: restore the default handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# An installed (or editable-installed) package wins; a bare checkout still runs the pure-Python
# tests. The compiled oat_edge._core only exists after the build (make setup).
for _pkg, _dir in (("oat_edge", "python"), ("oat_export", "export")):
    if importlib.util.find_spec(_pkg) is None:
        sys.path.insert(0, os.path.join(_ROOT, _dir))

# The tiny bundle itself is defined in tests/fixtures/tiny_bundle.py, a script the C++ tests run too.
sys.path.insert(0, os.path.join(_ROOT, "tests", "fixtures"))
from tiny_bundle import TINY, write_tiny_bundle  # noqa: E402,F401
from tiny_bundle import tiny_token_policy as _tiny_token_policy  # noqa: E402


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """Directory of a random-weight fp32 bundle written by the real exporter (needs torch)."""
    try:
        import oat_export  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        pytest.skip(f"tiny_bundle needs the exporter (torch + oat_export): {err}")
    return write_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


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
def pixel_bundle(tmp_path_factory):
    """A random-weight camera bundle (tests/fixtures/tiny_pixel_bundle.py's defaults:
    observation.state [5], uint8 cameras corner and topview [32, 32, 3], 2 steps of history)."""
    try:
        import oat_export  # noqa: F401
        import torch  # noqa: F401
    except ImportError as err:
        pytest.skip(f"pixel_bundle needs the exporter (torch + oat_export): {err}")
    from tiny_pixel_bundle import write_tiny_pixel_bundle

    return write_tiny_pixel_bundle(tmp_path_factory.mktemp("pixel") / "tiny_pixel")


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
    save_demos(
        Demos(
            np.concatenate(obs),
            np.concatenate(act),
            np.cumsum(ns).astype(np.int64),
            np.arange(n_eps, dtype=np.int64) % 2,
            ["reach-v3", "push-v3"],
            {"seed": seed},
        ),
        path,
    )
    return str(path)


@pytest.fixture(scope="session")
def write_demos():
    """write_demos(path, n_eps=6, lengths=(10, 16), seed=0) -> path: smooth synthetic episodes
    of two Meta-World-shaped tasks in a demos .npz, so that no simulator is needed."""
    pytest.importorskip("torch")
    return _write_synthetic_demos

"""The optimized-graph cache is keyed by the graph's content: new weights are never served from a
stale cache entry, even when the file keeps its size and modification time, and a damaged entry is
re-made instead of failing the load."""
import os
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from oat_edge import Policy  # noqa: E402


def _chunk(bundle, obs, **kw):
    return Policy(bundle, **kw).act(obs, seed=5)


def _tweak_weights_in_place(path):
    """Change one float initializer's values without changing the file's size or mtime."""
    from onnx import numpy_helper

    st = os.stat(path)
    m = onnx.load(path)
    init = max((i for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.raw_data),
               key=lambda i: len(i.raw_data))
    w = numpy_helper.to_array(init)
    init.raw_data = (w * np.float32(-1.5) + np.float32(0.25)).astype(np.float32).tobytes()
    onnx.save(m, path)
    assert os.path.getsize(path) == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("graph", ["decoder.onnx", "model.onnx"])
def test_new_weights_with_same_size_and_mtime_are_not_served_from_cache(tiny_bundle, tmp_path, tiny_config, graph):
    bundle, cache = tmp_path / "bundle", tmp_path / "cache"
    shutil.copytree(tiny_bundle, bundle)
    obs = np.random.default_rng(0).normal(size=(tiny_config["n_obs_steps"], tiny_config["obs_dim"])).astype(np.float32)
    before = _chunk(bundle, obs, optimized_model_dir=cache)
    assert np.array_equal(_chunk(bundle, obs, optimized_model_dir=cache), before)  # served from the cache
    _tweak_weights_in_place(str(bundle / graph))
    after = _chunk(bundle, obs, optimized_model_dir=cache)
    fresh = _chunk(bundle, obs)
    assert np.array_equal(after, fresh)
    assert not np.array_equal(after, before)
    stem = graph.split(".")[0]
    assert len([f for f in os.listdir(cache) if f.startswith(stem + ".")]) == 2  # one entry per content


def test_damaged_cache_entry_is_rebuilt(tiny_bundle, tmp_path, tiny_config):
    cache = tmp_path / "cache"
    obs = np.zeros((tiny_config["n_obs_steps"], tiny_config["obs_dim"]), np.float32)
    ref = _chunk(tiny_bundle, obs, optimized_model_dir=cache)
    for f in os.listdir(cache):
        data = (cache / f).read_bytes()
        (cache / f).write_bytes(data[: len(data) // 2])
    assert np.array_equal(_chunk(tiny_bundle, obs, optimized_model_dir=cache), ref)
    assert not [f for f in os.listdir(cache) if ".tmp" in f]  # entries are renamed into place
    assert np.array_equal(_chunk(tiny_bundle, obs, optimized_model_dir=cache), ref)

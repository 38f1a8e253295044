"""Graph inputs and outputs are bound by name, never by position: a manifest that lists the names
of any graph in another order, or a graph whose inputs/outputs are declared in another order, gives
bit-identical tokens and actions (or is rejected; here every order must load)."""
import itertools
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from oat_edge import Policy  # noqa: E402
from oat_edge.manifest import load_manifest  # noqa: E402

LISTS = [("step", "inputs"), ("step", "outputs"), ("prefill", "outputs"), ("decoder", "inputs")]


def _outputs(path, obs):
    p = Policy(path)
    acts = [p.act(obs, seed=s) for s in (1, 2, 3)] + [p.act(obs, temperature=0.0)]
    return np.stack(acts), p.generate(obs, seed=4), p.detokenize(np.arange(p.info["num_tokens"]) * 7)


def _orders(names):
    """Every order of a short list; for the 6 step inputs, each rotation and its reverse."""
    if len(names) <= 3:
        return [list(p) for p in itertools.permutations(names) if list(p) != names]
    rots = [names[i:] + names[:i] for i in range(len(names))]
    return [r for r in rots + [r[::-1] for r in rots] if r != names]


def test_manifest_name_lists_in_any_order_give_identical_actions(edit_manifest, tiny_bundle, tmp_path,
                                                                  tiny_config):
    shape = (3, tiny_config["n_obs_steps"], tiny_config["obs_dim"])
    obs = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    ref = _outputs(tiny_bundle, obs)
    base = load_manifest(tiny_bundle)
    n = 0
    for graph, side in LISTS:
        for order in _orders(base["io"][graph][side]):
            d = edit_manifest(shutil.copytree(tiny_bundle, tmp_path / f"b{n}"),
                              lambda m: m["io"][graph].update({side: order}))
            n += 1
            assert load_manifest(d)["io"][graph][side] == order  # inspect accepts it too
            got = _outputs(str(d), obs)
            for a, b in zip(ref, got):
                assert np.array_equal(a, b), (graph, side, order)
    assert n == 18  # 11 orders of the step inputs, 5 of its outputs, 1 each for prefill and decoder


def test_graph_declaring_its_inputs_in_another_order_gives_identical_actions(tiny_bundle, tmp_path, tiny_config):
    shape = (2, tiny_config["n_obs_steps"], tiny_config["obs_dim"])
    obs = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    ref = _outputs(tiny_bundle, obs)
    d = tmp_path / "reordered"
    shutil.copytree(tiny_bundle, d)
    for f in ("model.onnx", "decoder.onnx", "policy_prefill.onnx"):
        m = onnx.load(str(d / f))
        for vis in (m.graph.input, m.graph.output):
            items = list(vis)[::-1]
            del vis[:]
            vis.extend(items)
        onnx.save(m, str(d / f))
    assert [i.name for i in onnx.load(str(d / "model.onnx")).graph.input][0] == "mem_v"
    got = _outputs(str(d), obs)
    for a, b in zip(ref, got):
        assert np.array_equal(a, b)

import copy
import json

import numpy as np
import pytest

from oat_edge import manifest as mf
from oat_edge.errors import BundleError, InputError


def good(**kw):
    args = dict(kind="oat", num_tokens=8, fsq_levels=[8, 5, 5, 5], horizon=32, action_dim=4, n_layers=4,
                n_heads=4, head_dim=64, n_obs_steps=2, obs_dim=3, n_action_steps=16,
                obs_scale=np.ones(3), obs_offset=np.zeros(3), action_scale=[2.0] * 4, action_offset=[0.0] * 4,
                action_low=[-0.5] * 4, action_high=[0.5] * 4, tasks=["reach-v3"], obs_layout="test")
    args.update(kw)
    return mf.build_manifest(**args)


def test_build_manifest_fills_derived_fields_and_survives_json():
    d = good()
    assert d["format_version"] == 1 and d["tokenizer"]["codebook_size"] == 1000
    assert d["policy"]["vocab_size"] == 1001 and d["policy"]["bos_id"] == 1000
    assert d["files"]["step"] == "model.onnx" and d["io"]["step"]["inputs"][0] == "token"
    assert mf.validate(json.loads(mf.to_json(d))) == d


def test_wrong_format_version_names_both_versions():
    d = good()
    d["format_version"] = 2
    with pytest.raises(BundleError, match="bundle format_version 2, this runtime reads 1: re-export with oat_edge"):
        mf.validate(d)


@pytest.mark.parametrize("path", ["format", "tokenizer.fsq_levels", "policy.obs_dim", "normalization.action_low",
                                  "files.decoder", "io.step.outputs", "sampling.top_k", "precision", "tasks"])
def test_missing_field_is_named(path):
    d = copy.deepcopy(good())
    *parents, last = path.split(".")
    cur = d
    for p in parents:
        cur = cur[p]
    del cur[last]
    with pytest.raises(BundleError, match=f"missing field '{path}'"):
        mf.validate(d)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["normalization"]["obs_scale"].pop(), r"'normalization.obs_scale' expected length 3, got 2"),
    (lambda d: d["normalization"]["action_high"].append(1.0), r"'normalization.action_high' expected length 4, got 5"),
    (lambda d: d["normalization"]["action_scale"].__setitem__(1, 0.0), r"action_scale\[1\]' expected a non-zero"),
    (lambda d: d["normalization"]["obs_offset"].__setitem__(0, float("nan")), r"obs_offset\[0\]' expected a finite"),
    (lambda d: d["tokenizer"].__setitem__("codebook_size", 999), "codebook_size' expected prod.*1000, got 999"),
    (lambda d: d["policy"].__setitem__("vocab_size", 1000), "vocab_size' expected codebook_size \\+ 1 = 1001, got 1000"),
    (lambda d: d["policy"].__setitem__("n_layers", "4"), "'policy.n_layers' expected int, got str"),
    (lambda d: d.__setitem__("format", "other"), "'format' expected 'oat_edge.bundle', got 'other'"),
    (lambda d: d["tokenizer"].__setitem__("kind", "bin"), "'tokenizer.kind' expected one of"),
    (lambda d: d.__setitem__("precision", "fp8"), "'precision' expected one of"),
    (lambda d: d["io"]["decoder"].__setitem__("inputs", ["codes"]), "'io.decoder.inputs' expected"),
])
def test_bad_values_are_rejected_with_field_expected_given(mutate, match):
    d = copy.deepcopy(good())
    mutate(d)
    with pytest.raises(BundleError, match=match):
        mf.validate(d)


def test_encoder_is_optional():
    d = good()
    del d["files"]["encoder"], d["io"]["encoder"]
    assert mf.validate(d) is d


def test_bundle_dir_check_reports_missing_file(tmp_path):
    for f in ("model.onnx", "policy_prefill.onnx", "decoder.onnx"):
        (tmp_path / f).write_bytes(b"")
    with pytest.raises(BundleError, match="file 'encoder.onnx' \\(files.encoder\\) not found"):
        mf.validate(good(), tmp_path)
    (tmp_path / "encoder.onnx").write_bytes(b"")
    mf.validate(good(), tmp_path)


def _tiny_onnx(path, props):
    import onnx
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))


def test_load_manifest_accepts_directory_or_entry_file(tmp_path):
    for f in ("policy_prefill.onnx", "decoder.onnx", "encoder.onnx"):
        (tmp_path / f).write_bytes(b"")
    _tiny_onnx(tmp_path / "model.onnx", {mf.MANIFEST_KEY: mf.to_json(good())})
    assert mf.load_manifest(tmp_path) == good()
    assert mf.load_manifest(tmp_path / "model.onnx") == good()


def test_load_manifest_rejects_non_bundles(tmp_path):
    with pytest.raises(BundleError, match="entry file not found"):
        mf.load_manifest(tmp_path)
    _tiny_onnx(tmp_path / "model.onnx", {})
    with pytest.raises(BundleError, match="no metadata_props key 'oat_edge.manifest'"):
        mf.load_manifest(tmp_path)
    _tiny_onnx(tmp_path / "model.onnx", {mf.MANIFEST_KEY: "{not json"})
    with pytest.raises(BundleError, match="invalid JSON"):
        mf.load_manifest(tmp_path)


def test_error_classes_follow_runtime_contract():
    assert issubclass(BundleError, RuntimeError) and issubclass(InputError, ValueError)

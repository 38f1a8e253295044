import copy
import errno
import json
import os

import numpy as np
import pytest
from oat_edge import manifest as mf
from oat_edge.errors import BundleError, InputError

CASES_FILE = os.path.join(os.path.dirname(__file__), "manifest_cases.json")
with open(CASES_FILE) as _f:
    TABLE = json.load(_f)


def case_text(case, base=None):
    """The manifest text a case describes, applied to `base` (default: the table's manifest the case
    names, `good` unless it says); the C++ test applies the same ops to the same table."""
    if base is not None and case.get("base", "good") != "good":  # written for another kind of manifest
        raise KeyError(f"{case['name']}: a case for the table's {case['base']!r} manifest")
    d, text = copy.deepcopy(TABLE[case.get("base", "good")] if base is None else base), None
    for op in case["ops"]:
        if "set" in op:
            *parents, last = op["set"].split(".")
            cur = d
            for k in parents:
                cur = cur[int(k)] if isinstance(cur, list) else cur[k]
            v = op["value"]
            if isinstance(v, dict) and "repeat" in v:
                v = v["repeat"] * v["times"]
            if isinstance(cur, list):
                cur[int(last)] = v
            else:
                cur[last] = v
        elif "delete" in op:
            *parents, last = op["delete"].split(".")
            cur = d
            for k in parents:
                cur = cur[int(k)] if isinstance(cur, list) else cur[k]
            del cur[last]
        elif "text" in op:
            text = op["text"]
        elif "text_replace" in op:
            old, new = op["text_replace"]
            text = json.dumps(d, separators=(",", ":")).replace(old, new)
            assert text != json.dumps(d, separators=(",", ":")), f"{case['name']}: {old!r} not in the manifest"
        elif "nest" in op:
            text = "[" * op["nest"] + "]" * op["nest"]
        else:
            raise AssertionError(f"unknown op {op}")
    return json.dumps(d) if text is None else text


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_shared_manifest_table_python_validator(case):
    text = case_text(case)
    if case["error"] is None:
        assert mf.parse(text) == json.loads(text)
    else:
        with pytest.raises(BundleError) as e:
            mf.parse(text)
        assert case["error"] in str(e.value)


def test_table_covers_every_schema_rule_and_type():
    names = " ".join(c["name"] + " " + (c["error"] or "") for c in TABLE["cases"])
    for rule in mf.SCHEMA["fields"]:
        assert rule["path"] in names or rule["path"].split(".")[-1] in names, f"no case for {rule['path']}"


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
    assert mf.parse(mf.to_json(d)) == d


def test_build_manifest_rejects_a_scale_that_overflows_float32():
    with pytest.raises(BundleError, match=r"obs_scale\[1\]' expected a finite float32"):
        good(obs_scale=[1.0, 1e40, 1.0])


def test_schema_tables_agree_with_the_exported_names():
    assert mf.IO["step"]["inputs"] == ["token", "step", "past_k", "past_v", "mem_k", "mem_v"]
    assert set(mf.FILES) == set(mf.SCHEMA["graphs"]) and mf.FILES["step"] == mf.ENTRY_FILE
    assert mf.dims(good()) == dict(L=4, H=4, Dh=64, K=8, S=2, obs_dim=3, vocab=1001, Ha=32, Da=4, code_dim=4)


def test_schema_file_ships_inside_the_package():
    import oat_edge
    assert os.path.isfile(os.path.join(os.path.dirname(oat_edge.__file__), "bundle_schema.json"))


def test_bundle_dir_check_reports_missing_file(tmp_path):
    for f in ("model.onnx", "policy_prefill.onnx", "decoder.onnx"):
        (tmp_path / f).write_bytes(b"")
    with pytest.raises(BundleError, match="files.encoder = 'encoder.onnx' in .* not found"):
        mf.validate(good(), tmp_path)
    (tmp_path / "encoder.onnx").write_bytes(b"")
    mf.validate(good(), tmp_path)


# ---- a graph file that is not a readable file says what it is ---------------------------------

def _bundle_files(tmp_path):
    for f in ("model.onnx", "policy_prefill.onnx", "decoder.onnx", "encoder.onnx"):
        (tmp_path / f).write_bytes(b"x")


@pytest.mark.parametrize("graph,make,match", [
    ("decoder.onnx", os.mkdir, "decoder.onnx' in .* is a directory, expected an ONNX file"),
    ("policy_prefill.onnx", os.mkfifo, "is not a regular file \\(a FIFO"),  # reading it would block
    ("encoder.onnx", lambda p: os.symlink(os.path.join(os.path.dirname(p), "gone.onnx"), p),
     "dangling symbolic link .*gone.onnx"),
])
def test_graph_file_that_is_not_a_regular_file_says_what_it_is(tmp_path, graph, make, match):
    _bundle_files(tmp_path)
    os.remove(tmp_path / graph)
    make(str(tmp_path / graph))
    with pytest.raises(BundleError, match=match):
        mf.validate(good(), tmp_path)


@pytest.mark.parametrize("call,graph", [("open", "decoder.onnx"),  # a file other users cannot read
                                        ("stat", "encoder.onnx")])  # a directory they cannot search
def test_permission_denied_is_said_as_such(tmp_path, monkeypatch, call, graph):
    # Tests run as root, who reads anything: fake the EACCES the kernel gives other users.
    _bundle_files(tmp_path)
    real = getattr(os, call)

    def deny(path, *a, **kw):
        if str(path).endswith(graph):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(mf.os, call, deny)
    with pytest.raises(BundleError, match=f"{graph}' in .*: permission denied"):
        mf.validate(good(), tmp_path)


def test_entry_path_that_is_a_directory_without_model_says_so(tmp_path):
    with pytest.raises(BundleError, match="has no model.onnx"):
        mf.entry_path(tmp_path)
    with pytest.raises(BundleError, match="does not exist"):
        mf.entry_path(tmp_path / "nowhere")
    os.mkdir(tmp_path / "model.onnx")
    with pytest.raises(BundleError, match="is a directory, expected an ONNX file"):
        mf.entry_path(tmp_path)


# ---- load_manifest: reads model.onnx, checks the graphs --------------------------------------

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


def test_load_manifest_rejects_non_bundles(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(BundleError, match="has no model.onnx"):
        mf.load_manifest(tmp_path)
    _tiny_onnx(tmp_path / "model.onnx", {})
    with pytest.raises(BundleError, match="no 'oat_edge.manifest' metadata"):
        mf.load_manifest(tmp_path)
    _tiny_onnx(tmp_path / "model.onnx", {mf.MANIFEST_KEY: "{not json"})
    with pytest.raises(BundleError, match="not valid JSON"):
        mf.load_manifest(tmp_path)


def test_load_manifest_checks_the_graphs_not_only_the_manifest(tmp_path):
    pytest.importorskip("onnx")
    for f in ("policy_prefill.onnx", "decoder.onnx", "encoder.onnx"):
        _tiny_onnx(tmp_path / f, {})
    _tiny_onnx(tmp_path / "model.onnx", {mf.MANIFEST_KEY: mf.to_json(good())})
    with pytest.raises(BundleError, match=r"step graph I/O is \[x\] -> \[y\], the bundle contract says \[token"):
        mf.load_manifest(tmp_path)


def test_error_classes_follow_runtime_contract():
    assert issubclass(BundleError, RuntimeError) and issubclass(InputError, ValueError)


# ---- the graphs' FSQ levels (oat_edge.fsq_levels metadata) against the manifest -------------------

def _restamp(path, value):
    import onnx

    m = onnx.load(path)
    keep = [p for p in m.metadata_props if p.key != mf.SCHEMA["graph_metadata"]["key"]]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    if value is not None:
        m.metadata_props.add(key=mf.SCHEMA["graph_metadata"]["key"], value=value)
    onnx.save(m, path)


@pytest.mark.parametrize("graph,value,match", [
    ("decoder.onnx", "[5, 5, 5, 8]", r"decoder graph 'decoder.onnx' was exported with FSQ levels \[5, 5, 5, 8\] "
     r"\('oat_edge.fsq_levels'\), the manifest's tokenizer.fsq_levels is \[8, 5, 5, 5\]"),
    ("encoder.onnx", "[8, 5, 5]", r"encoder graph 'encoder.onnx' was exported with FSQ levels \[8, 5, 5\]"),
    ("decoder.onnx", "eight", r"decoder graph 'decoder.onnx' metadata 'oat_edge.fsq_levels' is 'eight', expected a "
     r"JSON list of integers"),
    ("encoder.onnx", None, r"encoder graph 'encoder.onnx' has no 'oat_edge.fsq_levels' metadata: re-export with this "
     r"oat_edge, or stamp it with `python -m oat_export.stamp BUNDLE`"),
])
def test_graph_fsq_levels_must_match_the_manifest_in_inspect_and_the_runtime(tiny_bundle, tmp_path, graph, value,
                                                                              match):
    pytest.importorskip("onnx")
    import shutil

    b = shutil.copytree(tiny_bundle, tmp_path / "b")
    mf.load_manifest(b)  # stamped by the exporter: accepted
    _restamp(str(b / graph), value)
    with pytest.raises(BundleError, match=match):
        mf.load_manifest(b)
    try:
        from oat_edge import Policy
        from oat_edge.policy import _load_core
        _load_core()
    except ImportError:
        return  # the C++ check needs the built core
    with pytest.raises(BundleError, match=match):
        Policy(str(b), warmup=False)


def test_named_input_cases_are_rejected_alike_by_inspect_and_the_runtime(tmp_path, edit_manifest):
    # The table's named-input edits applied to a real camera bundle: inspect (Python) and Policy()
    # (C++) must accept the same manifests and reject the others with the same words.
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import shutil

    from oat_edge import Policy
    from tiny_pixel_bundle import write_tiny_pixel_bundle

    bundle = write_tiny_pixel_bundle(tmp_path / "pixel")
    base = json.loads(next(p.value for p in onnx.load(os.path.join(bundle, "model.onnx")).metadata_props
                           if p.key == mf.MANIFEST_KEY))
    cases = [c for c in TABLE["cases"] if c.get("base") == "good_named"]
    assert len(cases) > 40
    rejected = 0
    for i, case in enumerate(cases):
        d = shutil.copytree(bundle, tmp_path / f"c{i}")
        text = case_text({**case, "base": "good"}, base)  # the same edits, on this bundle's manifest
        edit_manifest(str(d), lambda _, text=text: text)
        msgs = []
        for load in (mf.load_manifest, lambda p: Policy(p, warmup=False)):
            try:
                load(str(d))
                msgs.append(None)
            except BundleError as e:
                msgs.append(str(e))
        assert msgs[0] == msgs[1], (case["name"], msgs)
        rejected += msgs[0] is not None
        if case["error"] is not None:
            assert msgs[0] is not None, case["name"]
    assert rejected >= len([c for c in cases if c["error"]])

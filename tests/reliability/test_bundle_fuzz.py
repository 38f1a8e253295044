"""Bundle loader fuzz: truncated, bit-flipped, mislabelled and inconsistent bundles always end in
the right oat_edge exception (BundleError for a bad bundle), never a crash (that failing loads
leak no memory is test_failed_load_leaks.py). `oat-edge inspect` (manifest.load_manifest) and
`Policy()` judge every case alike: a bundle one accepts and the other rejects is a bug.

Every corrupted bundle is loaded in a child interpreter, so a segfault inside ONNX Runtime or the
loader shows up as a failed test naming the case and the signal, not as a dead test run.
(tests/runtime/test_bad_inputs.py already covers: missing path, missing decoder.onnx, model.onnx
cut to 1/3, directory without model.onnx, format_version 2.)
"""
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from oat_edge.manifest import MANIFEST_KEY  # noqa: E402

# Child: inspect each case (load_manifest), then load it as a Policy; if it loads, act + detokenize
# must give finite in-bounds chunks or raise an oat_edge error. One JSON line per case *before*
# (start) and after (result), so a crash names its case.
_CHILD = r"""
import json, sys
import numpy as np
from oat_edge import Policy
from oat_edge.errors import BundleError, InputError, RuntimeLoadError
from oat_edge.manifest import load_manifest
OURS = (BundleError, InputError, RuntimeLoadError)
for name, path in json.load(open(sys.argv[1])):
    print(json.dumps({"start": name}), flush=True)
    res = {"case": name, "inspect": None, "inspect_msg": ""}
    try:
        load_manifest(path)
    except OURS as e:
        res.update(inspect=type(e).__name__, inspect_msg=str(e))
    except BaseException as e:
        res.update(inspect="FOREIGN " + type(e).__name__, inspect_msg=str(e))
    try:
        p = Policy(path)
    except OURS as e:
        res.update(stage="load", exc=type(e).__name__, msg=str(e))
    except BaseException as e:
        res.update(stage="load", exc="FOREIGN " + type(e).__name__, msg=str(e))
    else:
        i = p.info
        lo, hi = i.normalization.action_low, i.normalization.action_high
        res.update(stage="run", exc=None, msg="loaded")
        try:
            a = p.act(np.zeros((i["n_obs_steps"], i["obs_dim"]), np.float32), seed=1)
            d = p.detokenize(np.zeros(i["num_tokens"], np.int64))
            for x in (a, d):
                if not (np.isfinite(x).all() and (x >= lo).all() and (x <= hi).all()):
                    res.update(exc="GARBAGE", msg=repr(x))
        except OURS as e:
            res.update(exc=type(e).__name__, msg=str(e))
        except BaseException as e:
            res.update(exc="FOREIGN " + type(e).__name__, msg=str(e))
    print(json.dumps(res), flush=True)
"""


def _agree(name, r):
    """inspect and Policy() judged the case alike: both loaded it, or both raised BundleError."""
    policy_rejected = r["stage"] == "load"
    assert r["inspect"] in (None, "BundleError"), (name, r)
    assert (r["inspect"] is not None) == policy_rejected, (
        f"{name}: inspect {'rejected' if r['inspect'] else 'accepted'} ({r['inspect_msg'][:300]}) but Policy() "
        f"{'rejected' if policy_rejected else 'accepted'} ({r['msg'][:300]})")


def _run_cases(cases, tmp_path, child_env):
    """cases: [(name, path)] -> {name: result dict}; fails naming the case if the child dies."""
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps([(n, str(p)) for n, p in cases]))
    r = subprocess.run([sys.executable, "-c", _CHILD, str(spec)], capture_output=True, text=True,
                       env=child_env, timeout=300)
    results, started = {}, None
    for line in r.stdout.splitlines():
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if "start" in d:
            started = d["start"]
        else:
            results[d["case"]] = d
    if r.returncode != 0:
        sig = f" = {signal.Signals(-r.returncode).name}" if r.returncode < 0 else ""
        pytest.fail(f"loader child died with exit {r.returncode}{sig} on case {started!r}:\n{r.stderr[-3000:]}")
    assert set(results) == {n for n, _ in cases}, r.stderr[-3000:]
    return results


# ---- truncation, bit flips, empty files ------------------------------------------------------------

GRAPHS = ["model.onnx", "policy_prefill.onnx", "decoder.onnx", "encoder.onnx"]


def test_truncated_graphs_raise_bundle_error_at_every_length(tiny_bundle, tmp_path, child_env):
    cases = []
    for graph in GRAPHS:
        size = os.path.getsize(os.path.join(tiny_bundle, graph))
        for n in sorted({0, 1, 7, 64, size // 10, size // 2, size - 100, size - 1}):
            d = shutil.copytree(tiny_bundle, tmp_path / f"{graph}_{n}")
            data = (d / graph).read_bytes()
            (d / graph).write_bytes(data[:n])
            cases.append((f"{graph}[:{n}]", d))
    results = _run_cases(cases, tmp_path, child_env)
    for name, r in results.items():
        assert r["stage"] == "load" and r["exc"] == "BundleError", (name, r)
        _agree(name, r)
        graph = name.split("[")[0]
        assert graph in r["msg"] and graph in r["inspect_msg"], (name, r)  # the message names the broken file


@pytest.mark.parametrize("graph", GRAPHS)
def test_bit_flipped_graphs_never_crash_or_return_garbage(tiny_bundle, tmp_path, child_env, graph):
    # 12 seeded corruptions per graph, 1..8 random bytes XOR-ed each. A flip may be harmless (a
    # weight changes: the chunk is still finite and in bounds), or must raise BundleError.
    rng = np.random.default_rng(sum(map(ord, graph)))
    src = (tmp_path / "src")
    shutil.copytree(tiny_bundle, src)
    data = (src / graph).read_bytes()
    cases = []
    for i in range(12):
        d = shutil.copytree(src, tmp_path / f"flip{i}")
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 9))):
            buf[pos] ^= int(rng.integers(1, 256))
        (d / graph).write_bytes(bytes(buf))
        cases.append((f"{graph} flip {i}", d))
    results = _run_cases(cases, tmp_path, child_env)
    outcomes = {}
    for name, r in results.items():
        assert r["exc"] in (None, "BundleError"), (name, r)
        _agree(name, r)
        outcomes[r["exc"]] = outcomes.get(r["exc"], 0) + 1
    print(graph, outcomes)


def test_empty_and_non_onnx_files_raise_bundle_error(edit_manifest, tiny_bundle, tmp_path, child_env):
    empty = shutil.copytree(tiny_bundle, tmp_path / "empty")
    (empty / "model.onnx").write_bytes(b"")
    text = shutil.copytree(tiny_bundle, tmp_path / "text")
    (text / "model.onnx").write_text("this is not an ONNX graph\n" * 50)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    zeros = shutil.copytree(tiny_bundle, tmp_path / "zeros")
    (zeros / "decoder.onnx").write_bytes(b"\0" * 4096)
    dir_entry = shutil.copytree(tiny_bundle, tmp_path / "direntry")
    os.remove(dir_entry / "model.onnx")
    os.mkdir(dir_entry / "model.onnx")
    dangling = shutil.copytree(tiny_bundle, tmp_path / "dangling")
    os.remove(dangling / "decoder.onnx")
    os.symlink(tmp_path / "nowhere.onnx", dangling / "decoder.onnx")
    dir_decoder = shutil.copytree(tiny_bundle, tmp_path / "dirdecoder")
    os.remove(dir_decoder / "decoder.onnx")
    os.mkdir(dir_decoder / "decoder.onnx")
    fifo = shutil.copytree(tiny_bundle, tmp_path / "fifo")  # reading a FIFO would block the loader forever
    os.remove(fifo / "policy_prefill.onnx")
    os.mkfifo(fifo / "policy_prefill.onnx")
    fifo_entry = shutil.copytree(tiny_bundle, tmp_path / "fifoentry")
    os.remove(fifo_entry / "model.onnx")
    os.mkfifo(fifo_entry / "model.onnx")
    utf = shutil.copytree(tiny_bundle, tmp_path / "utf")  # manifest bytes that are not UTF-8
    edit_manifest(utf, lambda d: d.update(obs_layout="QQQQ"))
    data = (utf / "model.onnx").read_bytes()
    (utf / "model.onnx").write_bytes(data.replace(b"QQQQ", b"\xff\xfe\xff\xfe"))
    cases = [
        ("manifest of ill-formed UTF-8", utf),
        ("empty model.onnx", empty),
        ("text model.onnx", text),
        ("path to a .txt file", notes),
        ("path to export_report.json", os.path.join(tiny_bundle, "export_report.json")),
        ("decoder.onnx all zero bytes", zeros),
        ("model.onnx is a directory", dir_entry),
        ("decoder.onnx is a directory", dir_decoder),
        ("decoder.onnx dangling symlink", dangling),
        ("policy_prefill.onnx is a FIFO", fifo),
        ("model.onnx is a FIFO", fifo_entry),
        ("entry is a graph without manifest (decoder.onnx)", os.path.join(tiny_bundle, "decoder.onnx")),
        ("entry is the prefill graph", os.path.join(tiny_bundle, "policy_prefill.onnx")),
    ]
    results = _run_cases(cases, tmp_path, child_env)
    for name, r in results.items():
        assert r["stage"] == "load" and r["exc"] == "BundleError", (name, r)
        _agree(name, r)
    assert "no 'oat_edge.manifest' metadata" in results["entry is a graph without manifest (decoder.onnx)"]["msg"]
    assert all("not valid JSON" in results["manifest of ill-formed UTF-8"][k] for k in ("msg", "inspect_msg"))
    # the real cause, in both loaders' words, not "corrupt or needs a newer ONNX Runtime"
    for name, cause in [("decoder.onnx dangling symlink", "'decoder.onnx' in .* is a dangling symbolic link"),
                        ("model.onnx is a directory", "'model.onnx' in .* is a directory, expected an ONNX file"),
                        ("decoder.onnx is a directory", "'decoder.onnx' in .* is a directory, expected an ONNX file"),
                        ("policy_prefill.onnx is a FIFO", "'policy_prefill.onnx' in .* is not a regular file"),
                        ("model.onnx is a FIFO", "'model.onnx' in .* is not a regular file")]:
        for msg in (results[name]["msg"], results[name]["inspect_msg"]):
            assert re.search(cause, msg) and "corrupt" not in msg, (name, msg)


# ---- manifests that disagree with the graphs, or break the contract ---------------------------------

def _resize(d, group, n):
    for k in ([f"{group}_scale", f"{group}_offset"] + (["action_low", "action_high"] if group == "action" else [])):
        v = d["normalization"][k]
        d["normalization"][k] = (v * n)[:n]


# Each manifest is valid on its own; only the graphs show it is wrong. One case per value that the
# graphs also encode (L, H, Dh, K, n_obs_steps, obs_dim, horizon, action_dim, code_dim, vocab).
GRAPH_CASES = [
    ("n_layers (L) disagrees", lambda d: d["policy"].update(n_layers=3), "step input 'past_k' has shape"),
    ("n_heads (H) disagrees", lambda d: d["policy"].update(n_heads=4), "step input 'past_k' has shape"),
    ("head_dim (Dh) disagrees", lambda d: d["policy"].update(head_dim=8), "step input 'past_k' has shape"),
    ("num_tokens (K) disagrees", lambda d: d["tokenizer"].update(num_tokens=3), "step input 'past_k' has shape"),
    ("n_obs_steps disagrees", lambda d: d["policy"].update(n_obs_steps=3), "step input 'mem_k' has shape"),
    ("obs_dim disagrees", lambda d: (d["policy"].update(obs_dim=6), _resize(d, "obs", 6)), "prefill input 'obs'"),
    ("horizon disagrees", lambda d: d["tokenizer"].update(horizon=9), "decoder output 'actions' has shape"),
    ("action_dim disagrees", lambda d: (d["tokenizer"].update(action_dim=4), _resize(d, "action", 4)),
     "decoder output 'actions' has shape"),
    ("code_dim (len fsq_levels) disagrees", lambda d: d["tokenizer"].update(fsq_levels=[8, 5, 25]),
     "decoder input 'codes' has shape"),
    ("vocab disagrees", lambda d: (d["tokenizer"].update(fsq_levels=[8, 5, 5, 4], codebook_size=800),
                                   d["policy"].update(vocab_size=801, bos_id=800)), "step output 'logits' has shape"),
    ("decoder file is the prefill graph", lambda d: d["files"].update(decoder="policy_prefill.onnx"),
     "decoder graph I/O is [obs]"),
    ("encoder file is the decoder graph", lambda d: d["files"].update(encoder="decoder.onnx"),
     "encoder graph I/O is [codes, num_tokens]"),
]


def _poison(path):
    """Fill the graph's largest float weight with NaN (a diverged training run, exported)."""
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = max((i for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.raw_data),
               key=lambda i: len(i.raw_data))
    init.raw_data = np.full(numpy_helper.to_array(init).shape, np.nan, np.float32).tobytes()
    onnx.save(m, str(path))


def test_graphs_that_load_but_compute_nan_are_rejected_by_both_loaders(tiny_bundle, tmp_path, child_env):
    cases = []
    for graph in ("model.onnx", "policy_prefill.onnx", "decoder.onnx"):
        d = shutil.copytree(tiny_bundle, tmp_path / graph)
        _poison(d / graph)
        cases.append((graph, d))
    results = _run_cases(cases, tmp_path, child_env)
    for name, r in results.items():
        assert r["stage"] == "load" and r["exc"] == "BundleError", (name, r)
        assert "non-finite" in r["msg"] and r["inspect_msg"] == r["msg"], (name, r)


def _shared_table():
    spec = importlib.util.spec_from_file_location(
        "manifest_table", os.path.join(os.path.dirname(__file__), os.pardir, "export", "test_manifest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_manifests_wrong_for_their_graphs_are_rejected_by_both_loaders(edit_manifest, tiny_bundle, tmp_path,
                                                                       child_env):
    cases = []
    for i, (name, edit, _) in enumerate(GRAPH_CASES):
        d = shutil.copytree(tiny_bundle, tmp_path / f"g{i}")
        edit_manifest(d, edit)
        cases.append((name, d))
    results = _run_cases(cases, tmp_path, child_env)
    for name, _, part in GRAPH_CASES:
        r = results[name]
        assert r["stage"] == "load" and r["exc"] == "BundleError", (name, r)
        assert part in r["msg"], f"{name}: {part!r} missing from: {r['msg']}"
        assert r["inspect_msg"] == r["msg"], (name, r)


def _same_words(a, b):
    """Equal messages, except the JSON parsers' own wording of a syntax error."""
    strip = lambda m: re.sub(r"not valid JSON \(.*\)\. Re-export", "not valid JSON (...). Re-export", m)  # noqa: E731
    return strip(a) == strip(b)


def test_every_bad_manifest_of_the_shared_table_is_rejected_alike_by_inspect_and_policy(
        edit_manifest, tiny_bundle, tmp_path, child_env):
    # The shared table's edits, applied to a real bundle's manifest: inspect and the C++ loader must
    # give the same BundleError, word for word, and the table's good variants must load in both.
    table = _shared_table()
    base = json.loads(next(p.value for p in onnx.load(os.path.join(tiny_bundle, "model.onnx")).metadata_props
                           if p.key == MANIFEST_KEY))
    cases, want = [], {}
    for i, case in enumerate(table.TABLE["cases"]):
        try:
            text = table.case_text(case, base)
        except (AssertionError, KeyError, IndexError):
            continue  # an edit of the table's own reference values (e.g. a text replacement)
        d = shutil.copytree(tiny_bundle, tmp_path / f"t{i}")
        edit_manifest(d, lambda _: text)
        cases.append((case["name"], d))
        want[case["name"]] = case["error"]
    assert len(cases) > 90
    results = _run_cases(cases, tmp_path, child_env)
    bad, rejected = [], 0
    for name, r in results.items():
        _agree(name, r)
        if want[name] is None:
            assert r["exc"] is None, (name, r)
        elif r["stage"] == "load":  # (an edit can be harmless on this bundle, e.g. a bound it already has)
            rejected += 1
            if not (r["exc"] == "BundleError" and _same_words(r["inspect_msg"], r["msg"])):
                bad.append(f"{name}:\n  inspect:  {r['inspect_msg'][:300]}\n  Policy(): {r['msg'][:300]}")
    assert not bad, "\n".join(bad)
    assert rejected >= 0.9 * sum(w is not None for w in want.values())


def test_inspect_reports_pathological_json_in_one_line(edit_manifest, tiny_bundle, tmp_path, capsys):
    from oat_edge.cli import main

    for name, text in [("deep", "[" * 200000 + "]" * 200000), ("dup", '{"format": 1, "format": 2}'),
                       ("nan", '{"format": NaN}')]:
        d = shutil.copytree(tiny_bundle, tmp_path / name)
        edit_manifest(d, lambda _: text)
        assert main(["inspect", str(d)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("oat-edge: error: invalid bundle manifest") and "Traceback" not in err, err
        assert err.count("\n") == 1, err


def test_model_without_manifest_metadata_raises_bundle_error(tiny_bundle, tmp_path, child_env):
    d = shutil.copytree(tiny_bundle, tmp_path / "nometa")
    m = onnx.load(str(d / "model.onnx"))
    del m.metadata_props[:]
    onnx.save(m, str(d / "model.onnx"))
    r = _run_cases([("no metadata", d)], tmp_path, child_env)["no metadata"]
    assert r["exc"] == "BundleError" and "oat_edge.manifest" in r["msg"], r
    _agree("no metadata", r)

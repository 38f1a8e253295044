"""Bundle manifest (DESIGN.md §6): written by the exporter, validated by `inspect` and the loaders.

The rules live in one declarative file, `bundle_schema.json`, which this module interprets and the
C++ core embeds at build time and interprets the same way (cpp/src/manifest.cpp); one table of good
and bad manifests (tests/export/manifest_cases.json) is run against both. numpy/json only; `onnxruntime`
is imported lazily by `load_manifest`.
"""
import json
import math
import os
import re
import stat
import sys

import numpy as np

from .errors import BundleError

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundle_schema.json"), encoding="utf-8") as _f:
    SCHEMA = json.load(_f)

FORMAT = SCHEMA["format"]
FORMAT_VERSION = SCHEMA["format_version"]
MANIFEST_KEY = SCHEMA["manifest_key"]
ENTRY_FILE = SCHEMA["entry_file"]
MAX_JSON_BYTES = SCHEMA["limits"]["max_json_bytes"]
MAX_DEPTH = SCHEMA["limits"]["max_depth"]
_RULES = {r["path"]: r for r in SCHEMA["fields"]}
OAT_KINDS = tuple(_RULES["tokenizer.kind"]["one_of"])
PRECISIONS = tuple(_RULES["precision"]["one_of"])
IO = {g: {side: [t[0] for t in spec[side]] for side in ("inputs", "outputs")} for g, spec in SCHEMA["graphs"].items()}
FILES = {"step": ENTRY_FILE, "prefill": "policy_prefill.onnx", "decoder": "decoder.onnx", "encoder": "encoder.onnx"}
_F32_MIN_NORMAL = float(np.finfo(np.float32).tiny)


def _version():
    return getattr(sys.modules.get("oat_edge"), "__version__", "0.1.0")


def build_manifest(*, kind, num_tokens, fsq_levels, horizon, action_dim,
                   n_layers, n_heads, head_dim, n_obs_steps, obs_dim, n_action_steps,
                   obs_scale, obs_offset, action_scale, action_offset, action_low, action_high,
                   has_encoder=True, temperature=1.0, top_k=10, precision="fp32",
                   tasks=(), obs_layout="", control_hz=None, observation=None):
    """Assemble a manifest dict from plain numbers/lists and validate it (no file check).

    observation: a named-input bundle's spec (`ObservationSpec.to_dict()`); its prefill graph takes one
    input per entry and normalizes them itself, so obs_scale/obs_offset must then be None."""
    levels = [int(l) for l in fsq_levels]
    cb = math.prod(levels)
    fl = lambda v: [float(x) for x in v]  # noqa: E731  (numpy / torch lists -> JSON floats)
    d = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "producer": f"oat_edge {_version()}",
        "tokenizer": {"kind": str(kind), "num_tokens": int(num_tokens), "fsq_levels": levels,
                      "codebook_size": cb, "horizon": int(horizon), "action_dim": int(action_dim)},
        "policy": {"vocab_size": cb + 1, "bos_id": cb, "n_layers": int(n_layers), "n_heads": int(n_heads),
                   "head_dim": int(head_dim), "n_obs_steps": int(n_obs_steps), "obs_dim": int(obs_dim),
                   "n_action_steps": int(n_action_steps)},
        "normalization": {"action_scale": fl(action_scale), "action_offset": fl(action_offset),
                          "action_low": fl(action_low), "action_high": fl(action_high)},
        "files": {k: v for k, v in FILES.items() if has_encoder or k != "encoder"},
        "io": {k: {"inputs": list(v["inputs"]), "outputs": list(v["outputs"])}
               for k, v in IO.items() if has_encoder or k != "encoder"},
        "sampling": {"temperature": float(temperature), "top_k": int(top_k)},
        "precision": str(precision),
        "tasks": [str(t) for t in tasks],
        "obs_layout": str(obs_layout),
    }
    if control_hz is not None:  # the rate the training data was recorded at (dataset fps)
        d["control_hz"] = float(control_hz)
    if observation is None:
        d["normalization"].update(obs_scale=fl(obs_scale), obs_offset=fl(obs_offset))
    else:
        if obs_scale is not None or obs_offset is not None:
            raise ValueError("build_manifest: a bundle with an observation spec normalizes inside its prefill "
                             "graph; pass obs_scale=None and obs_offset=None")
        d["observation"] = observation
        inputs = observation.get("inputs") if isinstance(observation, dict) else None
        names = [i.get("name") for i in inputs if isinstance(i, dict)] if isinstance(inputs, list) else []
        d["io"]["prefill"]["inputs"] = names  # a malformed spec is named by validate() below
    return validate(d)


# ---------------------------------------------------------------------------------------------
# parsing: the JSON text itself


def _fail(detail):
    raise BundleError(f"invalid bundle manifest: {detail}. Re-export the bundle with oat_edge's exporter.")


def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            _fail(f"duplicate key '{k}' in the manifest JSON")
        d[k] = v
    return d


def _reject_constant(name):
    _fail(f"not valid JSON ({name} is not a JSON number)")


def _json_float(text):
    v = float(text)
    if math.isinf(v):  # a literal beyond double range: what strict JSON parsers (and the C++ one) reject
        _fail(f"not valid JSON (number overflow parsing '{text[:80]}')")
    return v


def _json_int(text):
    v = int(text)
    if abs(v) > 2**63:  # beyond 64 bits the C++ parser reads it as a double: keep the same range
        _json_float(text)
    return v


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _depth(text):
    """Deepest bracket nesting of JSON text (brackets inside strings do not count), in C loops."""
    b = np.frombuffer(_NOT_BRACKET.sub("", _STRING.sub("", text)).encode("ascii"), np.uint8)
    if b.size == 0:
        return 0
    return int(np.cumsum(np.where((b == ord("[")) | (b == ord("{")), 1, -1)).max())


def parse(text):
    """Manifest JSON text -> validated dict. Size, nesting depth, duplicate keys and NaN/Infinity
    literals are checked here, so hostile text is a BundleError, never a RecursionError."""
    if not isinstance(text, str):
        _fail(f"expected JSON text, got {type(text).__name__}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_JSON_BYTES:
        _fail(f"manifest JSON is {size} bytes, more than the {MAX_JSON_BYTES} allowed")
    if text.startswith("\ufeff"):  # some JSON parsers skip it, others refuse it: refuse it everywhere
        _fail("not valid JSON (it starts with a byte order mark)")
    if _depth(text) > MAX_DEPTH:
        _fail(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        d = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                       parse_float=_json_float, parse_int=_json_int)
    except (json.JSONDecodeError, RecursionError) as e:
        _fail(f"not valid JSON ({e})")
    try:  # a lone UTF-16 surrogate escape ("\ud800") decodes in Python but is not text
        json.dumps(d, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        _fail("not valid JSON (a \\u escape of a lone UTF-16 surrogate)")
    return validate(d)


# ---------------------------------------------------------------------------------------------
# validation: the schema's field rules


def _show(v):
    try:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False)[:80]  # as the C++ parser writes it
    except (TypeError, ValueError):
        return repr(v)[:80]


def _lookup(d, path):
    """(value, None) for a present field, else (None, the first missing part of `path`)."""
    cur, parent = d, ""
    for key in path.split("."):
        if not isinstance(cur, dict):
            _fail(f"field '{parent}' expected an object, got {_show(cur)}")
        here = f"{parent}.{key}" if parent else key
        if key not in cur:
            return None, here
        cur, parent = cur[key], here
    return cur, None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bound(d, spec):
    """A schema number, or {"field": path, "plus": n} / {"product_of": path} (already validated)."""
    if not isinstance(spec, dict):
        return spec, str(spec)
    if "product_of" in spec:
        return math.prod(_lookup(d, spec["product_of"])[0]), f"prod({spec['product_of']})"
    v = _lookup(d, spec["field"])[0] + spec["plus"]
    return v, spec["field"] + (f" + {spec['plus']}" if spec["plus"] else "")


def _check_int(d, path, v, rule):
    if not _is_int(v):
        _fail(f"field '{path}' expected an integer, got {_show(v)}")
    lo, _ = _bound(d, rule["min"])
    hi, hi_name = _bound(d, rule["max"])
    if not lo <= v <= hi:
        _fail(f"field '{path}' expected an integer in [{lo}, {hi}]"
              + (f" (max = {hi_name})" if isinstance(rule["max"], dict) else "") + f", got {v}")
    if "equals" in rule:
        want, name = _bound(d, rule["equals"])
        if v != want:
            _fail(f"field '{path}' expected {name} = {want}, got {v}")


def _to_f32(x):
    try:
        with np.errstate(over="ignore", under="ignore"):
            return float(np.float32(x))
    except OverflowError:  # a Python int beyond any float
        return math.inf


def _check_f32(path, x, nonzero):
    """A number the runtime uses as float32: finite there, and not silently flushed to 0."""
    if not _is_num(x):
        _fail(f"field '{path}' expected a number, got {_show(x)}")
    f = _to_f32(x)
    if not math.isfinite(f):
        _fail(f"field '{path}' expected a finite float32 number, got {_show(x)}")
    if x != 0 and abs(f) < _F32_MIN_NORMAL:
        _fail(f"field '{path}' underflows float32 (got {_show(x)}, which float32 rounds to 0 or a subnormal)")
    if nonzero and f == 0:
        _fail(f"field '{path}' expected a non-zero number, got {_show(x)}")
    return f


def _check_list(path, v, what, lo_len, hi_len):
    if not isinstance(v, list):
        _fail(f"field '{path}' expected a list of {what}, got {_show(v)}")
    if not lo_len <= len(v) <= hi_len:
        _fail(f"field '{path}' expected {lo_len}..{hi_len} entries, got {len(v)}")


def _check_version(d, path, v, rule):
    if not _is_int(v):
        _fail(f"field '{path}' expected an integer, got {_show(v)}")
    if v != FORMAT_VERSION:
        raise BundleError(f"bundle format_version {v}, this runtime reads {FORMAT_VERSION}: re-export the bundle "
                          f"with the oat_edge exporter that matches this runtime, or install an oat_edge runtime "
                          f"that reads version {v}")


def _check_string(d, path, v, rule):
    if not isinstance(v, str):
        _fail(f"field '{path}' expected a string, got {_show(v)}")
    if "equals" in rule and v != rule["equals"]:
        _fail(f"field '{path}' expected '{rule['equals']}', got '{v[:80]}'")
    if "one_of" in rule and v not in rule["one_of"]:
        _fail(f"field '{path}' expected one of [{', '.join(rule['one_of'])}], got '{v[:80]}'")
    if rule["type"] == "file_name" and (not v or v in (".", "..") or "/" in v or "\\" in v or "\0" in v):
        _fail(f"field '{path}' expected a plain file name next to {ENTRY_FILE}, got '{v[:80]}'")


def _check_int_list(d, path, v, rule):
    _check_list(path, v, "integers", rule["min_len"], rule["max_len"])
    prod = 1
    for i, x in enumerate(v):
        if not _is_int(x) or not rule["min"] <= x <= rule["max"]:
            _fail(f"field '{path}[{i}]' expected an integer in [{rule['min']}, {rule['max']}], got {_show(x)}")
        prod *= x
        if prod > rule["product_max"]:
            _fail(f"field '{path}' expected a product of at most {rule['product_max']}, got {prod} (entries 0..{i})")


def _check_float32(d, path, v, rule):
    f = _check_f32(path, v, False)
    if f < rule["min"]:
        _fail(f"field '{path}' expected a number >= {rule['min']}, got {_show(v)}")


def _check_float32_list(d, path, v, rule):
    n = _lookup(d, rule["length"])[0]
    if not isinstance(v, list):
        _fail(f"field '{path}' expected a list of numbers, got {_show(v)}")
    if len(v) != n:
        _fail(f"field '{path}' expected length {n} (= {rule['length']}), got {len(v)}")
    vals = [_check_f32(f"{path}[{i}]", x, rule.get("nonzero", False)) for i, x in enumerate(v)]
    if "unnormalized_by" in rule:  # x = (x_norm - offset) / scale must stay finite for x_norm in [-1, 1]
        other = rule["unnormalized_by"]
        scales = np.asarray(_lookup(d, other)[0], np.float64).astype(np.float32)
        with np.errstate(over="ignore"):
            ends = (np.float32([-1, 1])[:, None] - np.asarray(vals, np.float32)) / scales
        for i in np.flatnonzero(~np.isfinite(ends).all(axis=0)):
            _fail(f"field '{path}[{i}]' expected (x - offset) / {other}[{i}] finite in float32 for x in [-1, 1], "
                  f"got offset {_show(v[i])} with scale {_show(_lookup(d, other)[0][i])}")
    if "not_above" in rule:
        other = rule["not_above"]
        for i, (a, b) in enumerate(zip(vals, _lookup(d, other)[0])):
            if a > _to_f32(b):
                _fail(f"field '{path}[{i}]' expected <= {other}[{i}] = {_show(b)}, got {_show(v[i])}")


def _check_string_list(d, path, v, rule):
    _check_list(path, v, "strings", 0, rule["max_len"])
    seen = set()
    for i, x in enumerate(v):
        if not isinstance(x, str):
            _fail(f"field '{path}[{i}]' expected a string, got {_show(x)}")
        if rule.get("unique") and x in seen:
            _fail(f"field '{path}' expected unique entries, got '{x[:80]}' twice")
        seen.add(x)


def graph_inputs(d, graph):
    """[(name, dtype, dims)] of a graph's inputs for a validated manifest: the schema's table, or for a
    graph with `named_inputs` in a manifest that has that block, one input per spec entry (spec order)
    shaped [B, S, *shape]."""
    spec = SCHEMA["graphs"][graph]
    named = spec.get("named_inputs")
    block = _lookup(d, named)[0] if named else None
    if block is None:
        return [tuple(t) for t in spec["inputs"]]
    return [(i["name"], i["dtype"], ["B", "S", *i["shape"]]) for i in block["inputs"]]


def io_names(d, graph, side):
    """A graph's input or output names for a manifest whose named-input block (if any) is checked."""
    if side == "inputs":
        return [t[0] for t in graph_inputs(d, graph)]
    return IO[graph][side]


def _check_io_names(d, path, v, rule):
    want = io_names(d, rule["graph"], rule["side"])
    if not (isinstance(v, list) and all(isinstance(x, str) for x in v) and sorted(v) == sorted(want)):
        _fail(f"field '{path}' expected the names [{', '.join(want)}] in any order, got {_show(v)}")


def _check_keys(path, v, required, optional=()):
    if not isinstance(v, dict):
        _fail(f"field '{path}' expected an object, got {_show(v)}")
    for k in required:
        if k not in v:
            _fail(f"missing field '{path}.{k}'")
    for k in v:
        if k not in required and k not in optional:
            _fail(f"field '{path}' has the unknown key '{k[:80]}' (expected {', '.join([*required, *optional])})")


def _check_shape(path, v, rank, lo, hi, what):
    if not (isinstance(v, list) and len(v) == rank and all(_is_int(x) and lo <= x <= hi for x in v)):
        _fail(f"field '{path}' expected {what} ({rank} integers in [{lo}, {hi}]), got {_show(v)}")


def _check_f32_entries(path, v, n, length_name, nonzero=False, positive=False):
    if not isinstance(v, list):
        _fail(f"field '{path}' expected a list of numbers, got {_show(v)}")
    if len(v) != n:
        _fail(f"field '{path}' expected length {n} (= {length_name}), got {len(v)}")
    for i, x in enumerate(v):
        f = _check_f32(f"{path}[{i}]", x, nonzero)
        if positive and not f > 0:
            _fail(f"field '{path}[{i}]' expected a number > 0, got {_show(x)}")


def _check_state_input(path, item, rule):
    _check_keys(path, item, ("name", "dtype", "shape", "normalize"))
    if item["dtype"] != rule["dtype"]:
        _fail(f"field '{path}.dtype' expected '{rule['dtype']}' for {rule['name']}, got {_show(item['dtype'])}")
    _check_shape(f"{path}.shape", item["shape"], 1, 1, rule["max_dim"], "[state_dim]")
    n = item["shape"][0]
    _check_keys(f"{path}.normalize", item["normalize"], ("scale", "offset"))
    _check_f32_entries(f"{path}.normalize.scale", item["normalize"]["scale"], n, "shape[0]", nonzero=True)
    _check_f32_entries(f"{path}.normalize.offset", item["normalize"]["offset"], n, "shape[0]")


def _check_camera_input(path, item, rule):
    _check_keys(path, item, ("name", "dtype", "shape", "crop", "normalize"))
    if item["dtype"] != rule["dtype"]:
        _fail(f"field '{path}.dtype' expected '{rule['dtype']}' for a camera (raw frames: the graph scales them), "
              f"got {_show(item['dtype'])}")
    shape, c, side = item["shape"], rule["channels"], rule["max_side"]
    if isinstance(shape, list) and len(shape) == 3 and shape[0] == c and shape[2] != c:
        _fail(f"field '{path}.shape' expected [height, width, {c}] (channels last), "
              f"got {_show(shape)} (channels first)")
    _check_shape(f"{path}.shape", shape, 3, 1, side, f"[height, width, {c}]")
    if shape[2] != c:
        _fail(f"field '{path}.shape' expected [height, width, {c}] (channels last), got {_show(shape)}")
    crop = item["crop"]
    if not (isinstance(crop, list) and len(crop) == 2 and all(_is_int(x) for x in crop)
            and 1 <= crop[0] <= shape[0] and 1 <= crop[1] <= shape[1]):
        _fail(f"field '{path}.crop' expected [height, width] within the frame [{shape[0]}, {shape[1]}], "
              f"got {_show(crop)}")
    _check_keys(f"{path}.normalize", item["normalize"], ("mean", "std"))
    _check_f32_entries(f"{path}.normalize.mean", item["normalize"]["mean"], c, "channels")
    _check_f32_entries(f"{path}.normalize.std", item["normalize"]["std"], c, "channels", positive=True)


def _check_observation_spec(d, path, v, rule):
    """The named-input block (= ObservationSpec.to_dict()): at most one state, cameras channels last."""
    _check_keys(path, v, ("n_obs_steps", "inputs"))
    _check_int(d, f"{path}.n_obs_steps", v["n_obs_steps"], rule["n_obs_steps"])
    inputs = v["inputs"]
    _check_list(f"{path}.inputs", inputs, "inputs", 1, rule["max_inputs"])
    state, cam, seen = rule["state"], rule["camera"], set()
    for i, item in enumerate(inputs):
        at = f"{path}.inputs[{i}]"
        if not isinstance(item, dict):
            _fail(f"field '{at}' expected an object, got {_show(item)}")
        if "name" not in item:
            _fail(f"missing field '{at}.name'")
        name = item["name"]
        camera = name[len(cam["prefix"]):] if isinstance(name, str) and name.startswith(cam["prefix"]) else None
        if name == state["name"]:
            _check_state_input(at, item, state)
        elif camera and _CAMERA_NAME.fullmatch(camera):
            _check_camera_input(at, item, cam)
        else:
            _fail(f"field '{at}.name' expected '{state['name']}' or '{cam['prefix']}<camera>' (camera: letters, "
                  f"digits, '_' or '-'), got {_show(name)}")
        if name in seen:
            _fail(f"field '{path}.inputs' expected unique names, got '{name}' twice")
        seen.add(name)


_CAMERA_NAME = re.compile(r"[A-Za-z0-9_-]+")

# the schema's field types -> their check (d, path, value, rule)
_CHECKS = {"version": _check_version, "string": _check_string, "file_name": _check_string,
           "int": _check_int, "int_list": _check_int_list, "float32": _check_float32,
           "float32_list": _check_float32_list, "string_list": _check_string_list,
           "io_names": _check_io_names, "observation_spec": _check_observation_spec}


def _check_rule(d, rule):
    path, typ = rule["path"], rule["type"]
    v, missing = _lookup(d, path)
    without = rule.get("only_without")
    if without and not _lookup(d, without)[1]:  # the other block is present: this field must not be
        if not missing:
            _fail(f"field '{path}' must be absent when '{without}' is present (that bundle's prefill graph "
                  f"normalizes its inputs itself)")
        return
    if missing:
        cond = rule.get("required_if")
        if rule.get("optional") or (cond and _lookup(d, cond)[1]):
            return
        _fail(f"missing field '{missing}'")
    if typ not in _CHECKS:  # pragma: no cover - a schema typo, caught by the tests
        raise AssertionError(f"bundle_schema.json: unknown type {typ!r} for {path}")
    _CHECKS[typ](d, path, v, rule)


def validate(d, bundle_dir=None):
    """Check a manifest dict against the schema; return it unchanged or raise BundleError naming the
    field, what was expected and what was given. With `bundle_dir`, also check that every listed
    graph file is a readable regular file there."""
    if not isinstance(d, dict):
        _fail(f"top level expected a JSON object, got {_show(d)}")
    for rule in SCHEMA["fields"]:
        _check_rule(d, rule)
    if bundle_dir is not None:
        for role, name in graph_files(d).items():
            check_graph_file(bundle_dir, name, role)
    return d


def graph_files(d):
    """{role: file name} of the graphs a validated manifest lists (encoder only when present)."""
    return {g: d["files"][g] for g in SCHEMA["graphs"] if g in d["files"]}


def dims(d):
    """The schema's named dimensions (L, H, K, ...) resolved against a validated manifest."""
    out = {}
    for name, path in SCHEMA["dims"].items():
        v = _lookup(d, path)[0]
        out[name] = len(v) if isinstance(v, list) else v
    return out


def check_graph_file(bundle_dir, name, role):
    """The graph file must be a regular file we can read: say what it is when it is not."""
    path = os.path.join(bundle_dir, name)
    where = f"bundle file files.{role} = '{name}' in {bundle_dir}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise BundleError(f"{where} is a dangling symbolic link (to '{os.readlink(path)}'): "
                              "copy the whole bundle directory, not links into it") from None
        raise BundleError(f"{where} not found: copy the whole bundle directory (model.onnx and its sibling "
                          "graphs) together") from None
    except OSError as e:
        raise BundleError(_open_error(where, e)) from None
    if stat.S_ISDIR(st.st_mode):
        raise BundleError(f"{where} is a directory, expected an ONNX file")
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{where} is not a regular file (a FIFO, socket or device), expected an ONNX file")
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        raise BundleError(_open_error(where, e)) from None


def _open_error(where, e):
    """What a failed stat/open of a bundle file means, in the C++ loader's words."""
    if isinstance(e, PermissionError):
        return f"{where}: permission denied; make it readable by this user (chmod a+r, or run as its owner)"
    return f"{where} cannot be opened: {e.strerror}"


def to_json(d):
    return json.dumps(d, sort_keys=True)


def entry_path(path):
    """Directory or entry file -> (bundle_dir, path of model.onnx)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        bundle_dir, name = os.path.abspath(path), ENTRY_FILE
        if not os.path.lexists(os.path.join(bundle_dir, name)):
            raise BundleError(f"bundle directory {path} has no {ENTRY_FILE}: pass a directory written by "
                              "oat_edge export")
    elif os.path.lexists(path):
        bundle_dir, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    else:
        raise BundleError(f"bundle path '{path}' does not exist: pass the bundle directory or its {ENTRY_FILE}")
    check_graph_file(bundle_dir, name, "step")
    return bundle_dir, os.path.join(bundle_dir, name)


def load_manifest(path):
    """Read + validate the manifest of a bundle (its directory or its model.onnx) and check every
    graph against it with ONNX Runtime, exactly as the C++ loader does."""
    bundle_dir, model = entry_path(path)
    from .bundle_graphs import load_checked

    return load_checked(bundle_dir, os.path.basename(model))

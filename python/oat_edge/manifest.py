"""Bundle manifest schema (DESIGN.md §6): the one source of truth in Python.

The exporter writes the manifest with `build_manifest` as a JSON string in `model.onnx`
metadata_props["oat_edge.manifest"]; `validate` is mirrored by the C++ `Manifest::parse`.
numpy/json only; `onnx` is imported lazily by `load_manifest`.
"""
import json
import math
import os
import sys

from .errors import BundleError

FORMAT = "oat_edge.bundle"
FORMAT_VERSION = 1
MANIFEST_KEY = "oat_edge.manifest"
ENTRY_FILE = "model.onnx"
OAT_KINDS = ("oat", "oatx", "oat_nocausal", "oatx_nocausal")
PRECISIONS = ("fp32", "fp16", "int8")
IO = {
    "step": {"inputs": ["token", "step", "past_k", "past_v", "mem_k", "mem_v"],
             "outputs": ["logits", "new_k", "new_v"]},
    "prefill": {"inputs": ["obs"], "outputs": ["mem_k", "mem_v"]},
    "decoder": {"inputs": ["codes", "num_tokens"], "outputs": ["actions"]},
    "encoder": {"inputs": ["actions"], "outputs": ["ids"]},
}
FILES = {"step": ENTRY_FILE, "prefill": "policy_prefill.onnx", "decoder": "decoder.onnx", "encoder": "encoder.onnx"}


def _version():
    return getattr(sys.modules.get("oat_edge"), "__version__", "0.1.0")


def build_manifest(*, kind, num_tokens, fsq_levels, horizon, action_dim,
                   n_layers, n_heads, head_dim, n_obs_steps, obs_dim, n_action_steps,
                   obs_scale, obs_offset, action_scale, action_offset, action_low, action_high,
                   has_encoder=True, temperature=1.0, top_k=10, precision="fp32",
                   tasks=(), obs_layout=""):
    """Assemble a manifest dict from plain numbers/lists and validate it (no file check)."""
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
        "normalization": {"obs_scale": fl(obs_scale), "obs_offset": fl(obs_offset),
                          "action_scale": fl(action_scale), "action_offset": fl(action_offset),
                          "action_low": fl(action_low), "action_high": fl(action_high)},
        "files": {k: v for k, v in FILES.items() if has_encoder or k != "encoder"},
        "io": {k: {"inputs": list(v["inputs"]), "outputs": list(v["outputs"])}
               for k, v in IO.items() if has_encoder or k != "encoder"},
        "sampling": {"temperature": float(temperature), "top_k": int(top_k)},
        "precision": str(precision),
        "tasks": [str(t) for t in tasks],
        "obs_layout": str(obs_layout),
    }
    return validate(d)


# ---------------------------------------------------------------------------------------------
# validation


def _get(d, path, typ):
    cur = d
    for i, key in enumerate(path.split(".")):
        if not isinstance(cur, dict) or key not in cur:
            raise BundleError(f"manifest: missing field '{path}'")
        cur = cur[key]
    ok = isinstance(cur, typ) and not (isinstance(cur, bool) and typ is not bool)
    if not ok:
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise BundleError(f"manifest: field '{path}' expected {names}, got {type(cur).__name__} ({cur!r:.60})")
    return cur


def _int(d, path, lo=1):
    v = _get(d, path, int)
    if v < lo:
        raise BundleError(f"manifest: field '{path}' expected an int >= {lo}, got {v}")
    return v


def _floats(d, path, n, nonzero=False):
    v = _get(d, path, list)
    if len(v) != n:
        raise BundleError(f"manifest: field '{path}' expected length {n}, got {len(v)}")
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise BundleError(f"manifest: field '{path}[{i}]' expected a finite number, got {x!r}")
        if nonzero and x == 0:
            raise BundleError(f"manifest: field '{path}[{i}]' expected a non-zero number, got 0")
    return v


def validate(d, bundle_dir=None):
    """Check a manifest dict; return it unchanged or raise BundleError naming the field.
    With `bundle_dir`, also check that every listed file exists there."""
    if not isinstance(d, dict):
        raise BundleError(f"manifest: expected a JSON object, got {type(d).__name__}")
    fmt = _get(d, "format", str)
    if fmt != FORMAT:
        raise BundleError(f"manifest: field 'format' expected '{FORMAT}', got '{fmt}'")
    ver = _get(d, "format_version", int)
    if ver != FORMAT_VERSION:
        raise BundleError(f"bundle format_version {ver}, this runtime reads {FORMAT_VERSION}: "
                          f"re-export with oat_edge {_version()}")
    _get(d, "producer", str)
    kind = _get(d, "tokenizer.kind", str)
    if kind not in OAT_KINDS:
        raise BundleError(f"manifest: field 'tokenizer.kind' expected one of {list(OAT_KINDS)}, got '{kind}'")
    K = _int(d, "tokenizer.num_tokens")
    levels = _get(d, "tokenizer.fsq_levels", list)
    if not levels or any(isinstance(l, bool) or not isinstance(l, int) or l < 2 for l in levels):
        raise BundleError(f"manifest: field 'tokenizer.fsq_levels' expected a non-empty list of ints >= 2, got {levels}")
    cb = _int(d, "tokenizer.codebook_size")
    if cb != math.prod(levels):
        raise BundleError(f"manifest: field 'tokenizer.codebook_size' expected prod(fsq_levels) = "
                          f"{math.prod(levels)}, got {cb}")
    _int(d, "tokenizer.horizon")
    D = _int(d, "tokenizer.action_dim")
    vocab = _int(d, "policy.vocab_size")
    if vocab != cb + 1:
        raise BundleError(f"manifest: field 'policy.vocab_size' expected codebook_size + 1 = {cb + 1}, got {vocab}")
    bos = _int(d, "policy.bos_id", 0)
    if bos != cb:
        raise BundleError(f"manifest: field 'policy.bos_id' expected codebook_size = {cb}, got {bos}")
    for f in ("n_layers", "n_heads", "head_dim", "n_obs_steps", "n_action_steps"):
        _int(d, "policy." + f)
    obs_dim = _int(d, "policy.obs_dim")
    _floats(d, "normalization.obs_scale", obs_dim, nonzero=True)
    _floats(d, "normalization.obs_offset", obs_dim)
    _floats(d, "normalization.action_scale", D, nonzero=True)
    _floats(d, "normalization.action_offset", D)
    lo = _floats(d, "normalization.action_low", D)
    hi = _floats(d, "normalization.action_high", D)
    for i, (a, b) in enumerate(zip(lo, hi)):
        if a > b:
            raise BundleError(f"manifest: field 'normalization.action_low[{i}]' expected <= action_high[{i}] = {b}, got {a}")
    files = _get(d, "files", dict)
    io = _get(d, "io", dict)
    for g in ("step", "prefill", "decoder") + (("encoder",) if "encoder" in files else ()):
        name = _get(d, f"files.{g}", str)
        if os.path.basename(name) != name or not name:
            raise BundleError(f"manifest: field 'files.{g}' expected a plain file name, got '{name}'")
        for side in ("inputs", "outputs"):
            got = _get(d, f"io.{g}.{side}", list)
            if got != IO[g][side]:
                raise BundleError(f"manifest: field 'io.{g}.{side}' expected {IO[g][side]}, got {got}")
        if bundle_dir is not None and not os.path.isfile(os.path.join(bundle_dir, name)):
            raise BundleError(f"bundle: file '{name}' (files.{g}) not found in {bundle_dir}")
    if files.get("step") != ENTRY_FILE:
        raise BundleError(f"manifest: field 'files.step' expected '{ENTRY_FILE}', got '{files.get('step')}'")
    t = _get(d, "sampling.temperature", (int, float))
    if not math.isfinite(t) or t < 0:
        raise BundleError(f"manifest: field 'sampling.temperature' expected a finite number >= 0, got {t}")
    _int(d, "sampling.top_k", 0)
    prec = _get(d, "precision", str)
    if prec not in PRECISIONS:
        raise BundleError(f"manifest: field 'precision' expected one of {list(PRECISIONS)}, got '{prec}'")
    tasks = _get(d, "tasks", list)
    if not all(isinstance(x, str) for x in tasks):
        raise BundleError(f"manifest: field 'tasks' expected a list of strings, got {tasks}")
    _get(d, "obs_layout", str)
    return d


def to_json(d):
    return json.dumps(d, sort_keys=True)


def entry_path(path):
    """Directory or entry file -> (bundle_dir, path of model.onnx)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, ENTRY_FILE)
    if not os.path.isfile(path):
        raise BundleError(f"bundle: entry file not found: {path}")
    return os.path.dirname(os.path.abspath(path)), path


def load_manifest(path):
    """Read + validate the manifest of a bundle (its directory or its model.onnx)."""
    bundle_dir, model = entry_path(path)
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the install
        raise BundleError("load_manifest needs the 'onnx' package (pip install onnx)") from e
    try:
        m = onnx.load(model, load_external_data=False)
    except Exception as e:
        raise BundleError(f"bundle: cannot read {model} as ONNX: {e}") from e
    props = {p.key: p.value for p in m.metadata_props}
    if MANIFEST_KEY not in props:
        raise BundleError(f"bundle: {model} has no metadata_props key '{MANIFEST_KEY}' (not an oat_edge bundle)")
    try:
        d = json.loads(props[MANIFEST_KEY])
    except json.JSONDecodeError as e:
        raise BundleError(f"manifest: invalid JSON in '{MANIFEST_KEY}': {e}") from e
    return validate(d, bundle_dir)

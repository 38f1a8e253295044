"""oat_edge.Policy: the Python face of the C++ runtime (DESIGN.md §8).

Every argument is checked here, with numpy, before it reaches C++: wrong dtype, shape, NaN/Inf or
an out-of-range option raises InputError naming what was expected and what was given. The C++
core only ever sees contiguous float32/int64 arrays of the right shape, and runs with the GIL
released.
"""
from __future__ import annotations

import json
import operator
import os
from typing import Any

import numpy as np

from oat_edge.errors import BundleError, InputError, RuntimeLoadError
from oat_edge.ort_library import ENV_VAR, find_ort_library

_DEVICES = ("cpu", "cuda", "tensorrt")
_BUILD_HINT = (
    "oat_edge._core (the compiled C++ runtime) is not built or not importable: {err}. "
    "Build it from the repository root with `make setup` or "
    "`pip install --no-build-isolation -e .` (needs a C++17 compiler and cmake)."
)


def _load_core():
    # Imported lazily so `import oat_edge` (manifest, sampling, errors) works before the build.
    try:
        from oat_edge import _core
    except ImportError as err:
        raise ImportError(_BUILD_HINT.format(err=err)) from err
    return _core


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}: expected an int, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(f"{name}: expected an int, got {type(value).__name__} {value!r}") from None


def _as_bool(name: str, value: Any) -> bool:
    # bool("no") is True: a flag given as a string or a number is a mistake, not a truthy value
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise InputError(f"{name}: expected a finite number, got {value!r}")
    return value


def _float32_array(name: str, value: Any, inner: tuple[int, ...], inner_names: str) -> tuple[np.ndarray, bool]:
    """value as contiguous float32 [B, *inner]; also whether the caller passed an unbatched array."""
    try:
        arr = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise InputError(f"{name}: expected a rectangular float array, got {type(value).__name__}: {err}") from None
    if arr.dtype not in (np.float32, np.float64):
        raise InputError(
            f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}; "
            f"convert with np.asarray({name}, dtype=np.float32) if the values are meant as floats")
    want = f"[{inner_names}] = {list(inner)} or [B, {inner_names}]"
    if arr.ndim == len(inner) and arr.shape == inner:
        single, arr = True, arr[None]
    elif arr.ndim == len(inner) + 1 and arr.shape[1:] == inner:
        single = False
    else:
        raise InputError(f"{name}: expected shape {want}, got {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{name}: empty batch (shape {arr.shape}): pass at least one row")
    if arr.dtype == np.float32:
        out = np.ascontiguousarray(arr)  # the control-loop fast path: no copy, no errstate
    else:
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf, reported just below
            out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = ~np.isfinite(out)
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        if single:
            idx = idx[1:]
        orig = arr[(0,) + idx if single else idx]
        raise InputError(
            f"{name}: expected finite values, got {float(orig)} at index {idx}"
            + (" (too large for float32)" if np.isfinite(orig) else "")
            + f"; {int(bad.sum())} non-finite value(s) in total")
    return out, single


class Policy:
    """A loaded bundle: `Policy(path).act(obs)` -> action chunk in raw units.

    path: the bundle directory or its entry file model.onnx. device: "cpu" | "cuda" | "tensorrt"
    (allow_cpu_fallback=True: fall back to CPU instead of raising RuntimeLoadError). threads: ORT
    intra-op threads (1-2 on a robot: leave cores to the controller). max_batch: the batch the KV
    cache is preallocated for. ort_library: path of libonnxruntime.so* (see oat_edge.ort_library).
    warmup: the constructor runs greedy and sampled acts per bound batch size, so the first act()
    in a control loop does not pay ORT's first-run allocations and page faults (default True).
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", threads: int = 1,
                 allow_cpu_fallback: bool = False, max_batch: int = 1,
                 ort_library: str | os.PathLike | None = None, *, spin_wait: bool = False,
                 optimized_model_dir: str | os.PathLike | None = None,
                 trt_cache_dir: str | os.PathLike | None = None, trt_fp16: bool = True,
                 warmup: bool = True):
        core = _load_core()
        path = os.fspath(path)
        if not os.path.exists(path):
            raise BundleError(
                f"bundle {path!r} does not exist: expected a bundle directory or its model.onnx "
                "(write one with `oat-edge export` / oat_export.export_bundle)")
        if device not in _DEVICES:
            raise InputError(f"device: expected one of {_DEVICES}, got {device!r}")
        threads = _as_int("threads", threads)
        if threads < 0:
            raise InputError(f"threads: expected >= 1 (or 0 for ORT's default), got {threads}")
        max_batch = _as_int("max_batch", max_batch)
        if max_batch < 1:
            raise InputError(f"max_batch: expected >= 1, got {max_batch}")
        flags = {name: _as_bool(name, value) for name, value in (
            ("allow_cpu_fallback", allow_cpu_fallback), ("spin_wait", spin_wait),
            ("trt_fp16", trt_fp16), ("warmup", warmup))}
        lib = find_ort_library(ort_library)
        try:
            self._core = core.Policy(
                path, ort_library=lib, device=device, threads=threads, max_batch=max_batch,
                optimized_model_dir=os.fspath(optimized_model_dir) if optimized_model_dir else "",
                trt_cache_dir=os.fspath(trt_cache_dir) if trt_cache_dir else "", **flags)
        except RuntimeLoadError as err:
            if lib:
                raise
            raise RuntimeLoadError(
                f"{err} (oat_edge found no onnxruntime/onnxruntime-gpu wheel and ${ENV_VAR} is unset, "
                f"so only the system was searched; `pip install onnxruntime` is the simplest fix)") from err
        self._info = dict(self._core.info)
        self._info["manifest"] = json.loads(self._info.pop("manifest_json"))
        i = self._info
        self._obs_shape = (i["n_obs_steps"], i["obs_dim"])
        self._chunk_shape = (i["horizon"], i["action_dim"])
        self.last_stats: dict | None = None

    # ---- introspection -------------------------------------------------------------------
    @property
    def info(self) -> dict:
        """Shapes, K, H_a, FSQ levels, provider, ORT version/library, manifest (a copy)."""
        return dict(self._info)

    @property
    def step_runs(self) -> int:
        """Step-graph runs since load (benchmarks: one per generated token)."""
        return self._core.step_runs

    def __repr__(self) -> str:
        i = self._info
        return (f"oat_edge.Policy({i['bundle_dir']!r}, provider={i['provider']!r}, K={i['num_tokens']}, "
                f"obs={list(self._obs_shape)}, chunk={list(self._chunk_shape)})")

    # ---- argument checks -----------------------------------------------------------------
    def _k(self, name: str, value: Any) -> int:
        k, K = _as_int(name, value), self._info["num_tokens"]
        if not 1 <= k <= K:
            raise InputError(f"{name}: expected a token count in 1..{K} (K of this bundle), got {k}")
        return k

    def _options(self, max_tokens, temperature, top_k, seed, latency_budget_ms, min_tokens) -> dict:
        opt = {"max_tokens": 0 if max_tokens is None else self._k("max_tokens", max_tokens)}
        if temperature is None:
            opt["temperature"] = -1.0
        else:
            opt["temperature"] = _as_float("temperature", temperature)
            if opt["temperature"] < 0:
                raise InputError(f"temperature: expected >= 0 (0 = greedy), got {opt['temperature']}")
        if top_k is None:
            opt["top_k"] = -1
        else:
            opt["top_k"] = _as_int("top_k", top_k)
            cb = self._info["codebook_size"]
            if not 0 <= opt["top_k"] <= cb:
                raise InputError(f"top_k: expected 0..{cb} (0 = no cut; {cb} = codebook size), got {opt['top_k']}")
        if seed is not None:
            seed = _as_int("seed", seed)
            if not 0 <= seed < 2**64:
                raise InputError(f"seed: expected an int in [0, 2**64), got {seed}")
        opt["seed"] = seed
        if latency_budget_ms is None:
            opt["latency_budget_ms"] = 0.0
        else:
            opt["latency_budget_ms"] = _as_float("latency_budget_ms", latency_budget_ms)
            if opt["latency_budget_ms"] <= 0:
                raise InputError(f"latency_budget_ms: expected > 0 (None = no budget), got {latency_budget_ms}")
        opt["min_tokens"] = 1 if min_tokens is None else self._k("min_tokens", min_tokens)
        if opt["max_tokens"] and opt["min_tokens"] > opt["max_tokens"]:
            raise InputError(f"min_tokens: expected <= max_tokens = {opt['max_tokens']}, got {opt['min_tokens']}")
        return opt

    def _obs(self, obs) -> tuple[np.ndarray, bool]:
        return _float32_array("obs", obs, self._obs_shape, "n_obs_steps, obs_dim")

    # ---- inference ----------------------------------------------------------------------
    def act(self, obs, max_tokens: int | None = None, temperature: float | None = None,
            top_k: int | None = None, seed: int | None = None,
            latency_budget_ms: float | None = None, return_stats: bool = False,
            min_tokens: int | None = None):
        """obs [n_obs_steps, obs_dim] -> [H_a, D_a]; [B, n_obs_steps, obs_dim] -> [B, H_a, D_a].

        Raw units in and out. max_tokens: prefix length k (None = K). temperature/top_k: None =
        the bundle's defaults; temperature 0 = greedy. seed: reproducible sampling. With
        latency_budget_ms, generation stops early (never below min_tokens) to meet the budget.
        return_stats=True returns (actions, stats); stats are also kept in `last_stats`.
        """
        return self._run(self._core.act, obs, max_tokens, temperature, top_k, seed,
                         latency_budget_ms, min_tokens, return_stats)

    def generate(self, obs, max_tokens: int | None = None, temperature: float | None = None,
                 top_k: int | None = None, seed: int | None = None,
                 latency_budget_ms: float | None = None, return_stats: bool = False,
                 min_tokens: int | None = None):
        """Token ids only: obs as in act -> int64 [K] or [B, K]; entries past tokens_used are -1."""
        return self._run(self._core.generate, obs, max_tokens, temperature, top_k, seed,
                         latency_budget_ms, min_tokens, return_stats)

    def _run(self, core_fn, obs, max_tokens, temperature, top_k, seed, latency_budget_ms,
             min_tokens, return_stats):
        """act/generate: validate in numpy, run the C++ loop (GIL released), unbatch."""
        x, single = self._obs(obs)
        opt = self._options(max_tokens, temperature, top_k, seed, latency_budget_ms, min_tokens)
        out, stats = core_fn(x, **opt)
        self.last_stats = stats
        out = out[0] if single else out
        return (out, stats) if return_stats else out

    def detokenize(self, ids, k: int | None = None) -> np.ndarray:
        """ids [k'] or [B, k'] (ints in [0, codebook_size)) -> [H_a, D_a] or [B, H_a, D_a].

        k: use the prefix ids[..., :k] (default: all k' given). 1 <= k <= K.
        """
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise InputError(f"ids: expected an integer array, got dtype {arr.dtype}")
        if arr.ndim not in (1, 2):
            raise InputError(f"ids: expected shape [k] or [B, k], got {arr.shape}")
        single = arr.ndim == 1
        if single:
            arr = arr[None]
        if arr.shape[0] == 0:
            raise InputError(f"ids: empty batch (shape {arr.shape}): pass at least one row")
        given = arr.shape[1]
        if k is None:
            k = self._k("number of ids (ids.shape[-1])", given)
        else:
            k = self._k("k", k)
            if k > given:
                raise InputError(f"k: expected <= ids.shape[-1] = {given}, got {k}")
        arr = arr[:, :k]
        cb = self._info["codebook_size"]
        bad = (arr < 0) | (arr >= cb)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            idx = idx[1:] if single else idx
            raise InputError(
                f"ids: expected token ids in [0, {cb}), got {int(arr[(0,) + idx if single else idx])} "
                f"at index {idx} (a -1 marks a token that generate() did not produce: pass k=tokens_used)")
        out = self._core.detokenize(np.ascontiguousarray(arr, dtype=np.int64))
        return out[0] if single else out

    def tokenize(self, actions) -> np.ndarray:
        """Raw action chunks [H_a, D_a] or [B, H_a, D_a] -> ids int64 [K] or [B, K] (needs encoder.onnx)."""
        if "encoder" not in self._info["manifest"].get("files", {}):
            raise BundleError(
                "tokenize needs the encoder graph, and this bundle's manifest lists none in 'files': "
                "re-export with the encoder included")
        x, single = _float32_array("actions", actions, self._chunk_shape, "H_a, D_a")
        ids = self._core.tokenize(x)
        return ids[0] if single else ids

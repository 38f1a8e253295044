"""oat_edge.Policy: the Python face of the C++ runtime (DESIGN.md §8).

This layer only converts: array-likes into C-contiguous float32/int64 arrays (and camera frames into
C-contiguous arrays of their own dtype: a float image is never cast to uint8), an unbatched
observation into a batch of one (and back). Every rule about the arguments themselves (shapes,
dtypes, NaN, option ranges, batch limits) is the C++ core's, which raises `InputError` naming the
argument, what was expected and what was given; `check_options` asks the core the same question
act() would, without running anything.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from oat_edge.errors import InputError, RuntimeLoadError
from oat_edge.ort_library import ENV_VAR, find_ort_library
from oat_edge.policy_info import PolicyInfo

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


def _path(name: str, value: Any) -> str:
    try:
        return os.fspath(value)
    except TypeError:
        got = f"{type(value).__name__} {value!r}"
        raise InputError(f"{name}: expected a path (str or os.PathLike), got {got}") from None


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise InputError(f"{name}: expected a rectangular numeric array, got {type(value).__name__}: {err}") from None


def _float32(name: str, arr: np.ndarray) -> np.ndarray:
    """Other float dtypes become float32 (the core reads float32 only); a value too large for it is refused."""
    if arr.dtype == np.float32:
        return np.ascontiguousarray(arr)  # the control-loop fast path: no copy
    if arr.dtype.kind != "f":
        return np.ascontiguousarray(arr)  # the core names the dtype it expected
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    overflow = np.isinf(out) & np.isfinite(arr)
    if overflow.any():
        idx = tuple(int(i) for i in np.argwhere(overflow)[0])
        raise InputError(f"{name}: {float(arr[idx])} at index {idx} is too large for float32; "
                         "expected values within float32 range")
    return out


class Policy:
    """A loaded bundle: `Policy(path).act(obs)` -> action chunk in raw units.

    path: the bundle directory or its entry file model.onnx. The options are the C++
    `RuntimeOptions` (cpp/include/oat_edge/policy.h), which also hold their defaults (None here
    means "the core's default"): device "cpu" | "cuda" | "tensorrt" (allow_cpu_fallback=True falls
    back to CPU instead of raising RuntimeLoadError); threads: ORT intra-op threads, default 1
    (0 = one per core); max_batch: rows allocated at load (default 1); batch_limit: the largest
    batch any call accepts (default 1024); warmup: the constructor runs acts so the first act() in
    a control loop pays no first-run cost (default True). ort_library: path of libonnxruntime.so*
    (see oat_edge.ort_library).
    """

    def __init__(self, path: str | os.PathLike, device: str | None = None, threads: int | None = None,
                 allow_cpu_fallback: bool | None = None, max_batch: int | None = None,
                 ort_library: str | os.PathLike | None = None, *, batch_limit: int | None = None,
                 spin_wait: bool | None = None, optimized_model_dir: str | os.PathLike | None = None,
                 trt_cache_dir: str | os.PathLike | None = None, trt_fp16: bool | None = None,
                 warmup: bool | None = None):
        core = _load_core()
        options = dict(device=device, threads=threads, allow_cpu_fallback=allow_cpu_fallback,
                       max_batch=max_batch, batch_limit=batch_limit, spin_wait=spin_wait,
                       trt_fp16=trt_fp16, warmup=warmup)
        options = {k: v for k, v in options.items() if v is not None}
        for name, value in (("optimized_model_dir", optimized_model_dir), ("trt_cache_dir", trt_cache_dir)):
            if value is not None:
                options[name] = _path(name, value)
        lib = find_ort_library(ort_library)
        try:
            self._core = core.Policy(_path("path", path), ort_library=lib, **options)
        except RuntimeLoadError as err:
            if lib:
                raise
            raise RuntimeLoadError(
                f"{err} (oat_edge found no onnxruntime/onnxruntime-gpu wheel and ${ENV_VAR} is unset, "
                f"so only the system was searched; `pip install onnxruntime` is the simplest fix)") from err
        self._info = PolicyInfo.from_core(self._core.info)
        self._obs_rank = len(self._info.inputs[0].shape)
        self._inputs = {i.name: i for i in self._info.inputs}
        self.last_stats: dict | None = None

    # ---- introspection -------------------------------------------------------------------
    @property
    def info(self) -> PolicyInfo:
        """Shapes, K, H_a, FSQ levels, normalization, tasks, sampling defaults, provider, ORT (typed)."""
        return self._info

    @property
    def step_runs(self) -> int:
        """Step-graph runs since load (benchmarks: one per generated token)."""
        return self._core.step_runs

    def __repr__(self) -> str:
        i = self._info
        return (f"oat_edge.Policy({i.bundle_dir!r}, provider={i.provider!r}, K={i.num_tokens}, "
                f"obs={[i.n_obs_steps, i.obs_dim]}, chunk={[i.horizon, i.action_dim]})")

    def check_options(self, max_tokens: int | None = None, min_tokens: int | None = None,
                      temperature: float | None = None, top_k: int | None = None, seed: int | None = None,
                      latency_budget_ms: float | None = None) -> None:
        """Raise the InputError act() would raise for these options; return None when act() accepts them."""
        self._core.check_options(max_tokens=max_tokens, min_tokens=min_tokens, temperature=temperature,
                                 top_k=top_k, seed=seed, latency_budget_ms=latency_budget_ms)

    # ---- inference ----------------------------------------------------------------------
    def act(self, obs, max_tokens: int | None = None, temperature: float | None = None,
            top_k: int | None = None, seed: int | None = None,
            latency_budget_ms: float | None = None, return_stats: bool = False,
            min_tokens: int | None = None):
        """obs [n_obs_steps, obs_dim] -> [H_a, D_a]; [B, n_obs_steps, obs_dim] -> [B, H_a, D_a].

        A named-input (camera) bundle takes a dict {name: array} with exactly the names of
        `info.inputs`, each [n_obs_steps, *shape] (or [B, n_obs_steps, *shape]): e.g.
        {"observation.state": float [S, state_dim], "observation.images.corner": uint8 [S, H, W, 3]}.
        Raw units in and out. max_tokens: prefix length k, 1..K (None = K). temperature (>= 0,
        0 = greedy) / top_k (0..codebook_size, 0 = no cut): None = the bundle's defaults. seed:
        reproducible sampling. latency_budget_ms (> 0): generation stops early, never below
        min_tokens (1..max_tokens), to meet the budget. return_stats=True returns (actions, stats);
        stats are also kept in `last_stats`.
        """
        return self._run(self._core.act, obs, return_stats, max_tokens=max_tokens, min_tokens=min_tokens,
                         temperature=temperature, top_k=top_k, seed=seed, latency_budget_ms=latency_budget_ms)

    def generate(self, obs, max_tokens: int | None = None, temperature: float | None = None,
                 top_k: int | None = None, seed: int | None = None,
                 latency_budget_ms: float | None = None, return_stats: bool = False,
                 min_tokens: int | None = None):
        """Token ids only: obs as in act -> int64 [K] or [B, K]; entries past tokens_used are -1."""
        return self._run(self._core.generate, obs, return_stats, max_tokens=max_tokens, min_tokens=min_tokens,
                         temperature=temperature, top_k=top_k, seed=seed, latency_budget_ms=latency_budget_ms)

    def _run(self, core_fn, obs, return_stats: bool, **options):
        if isinstance(obs, Mapping):
            x, single = self._named(obs)
        else:
            x, single = self._batched("obs", obs, self._obs_rank)
            x = _float32("obs", x)
        out, stats = core_fn(x, **options)
        self.last_stats = stats
        out = out[0] if single else out
        return (out, stats) if return_stats else out

    def _named(self, obs: Mapping) -> tuple[dict, bool]:
        """{name: array-like} -> {name: C-contiguous array with a batch axis}, and whether every input
        came unbatched. Names, dtypes and shapes are the core's to check (InputError naming the key);
        float state arrays become float32, nothing else changes its dtype."""
        out, single = {}, True
        for name, value in obs.items():
            want = self._inputs.get(name) if isinstance(name, str) else None
            if want is None:  # unknown key: the core names it (with what the bundle reads)
                out[name] = np.ascontiguousarray(_as_array(str(name), value))
                continue
            arr, added = self._batched(name, value, len(want.shape))
            single = single and added
            out[name] = _float32(name, arr) if want.dtype == "float32" else np.ascontiguousarray(arr)
        return out, single and bool(out)

    @staticmethod
    def _batched(name: str, value, row_rank: int) -> tuple[np.ndarray, bool]:
        """value with a leading batch axis (added when it has the rank of one row), and whether it was added."""
        arr = _as_array(name, value)
        return (arr[None], True) if arr.ndim == row_rank else (arr, False)

    def detokenize(self, ids, k: int | None = None) -> np.ndarray:
        """ids [k'] or [B, k'] (ints in [0, codebook_size)) -> [H_a, D_a] or [B, H_a, D_a].

        k: use the prefix ids[..., :k] (default: all k' given); 1 <= k <= K.
        """
        arr, single = self._batched("ids", ids, 1)
        if arr.dtype.kind in "iu" and arr.dtype != np.int64:
            arr = arr.astype(np.int64)
        if k is not None:
            if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
                raise InputError(f"k: expected an int, got {type(k).__name__} {k!r}")
            if arr.ndim == 2:  # other ranks: the core names the shape it expected
                if not 1 <= k <= arr.shape[1]:
                    raise InputError(f"k: expected 1..ids.shape[-1] = 1..{arr.shape[1]}, got {k}")
                arr = arr[:, :int(k)]
        out = self._core.detokenize(np.ascontiguousarray(arr))
        return out[0] if single else out

    def tokenize(self, actions) -> np.ndarray:
        """Raw action chunks [H_a, D_a] or [B, H_a, D_a] -> ids int64 [K] or [B, K] (needs encoder.onnx)."""
        x, single = self._batched("actions", actions, 2)
        ids = self._core.tokenize(_float32("actions", x))
        return ids[0] if single else ids

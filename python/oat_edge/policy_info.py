"""What a loaded bundle is: the Python mirror of the C++ `oat_edge::PolicyInfo` (cpp/include/oat_edge/policy.h).

`Policy(path).info` returns a `PolicyInfo`. Read its typed fields (`info.normalization.action_low`,
`info.tasks`, `info.inputs[0].shape`) instead of parsing the manifest JSON: the runtime has checked
them already. `info["num_tokens"]` also works, for code written against the earlier dict.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np


def _frozen(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float32)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Normalization:
    """Per dimension, x_norm = x * scale + offset (DESIGN.md §4); actions always lie in [action_low, action_high]."""

    obs_scale: np.ndarray      # float32 [obs_dim]; empty for a named-input bundle (its graph normalizes)
    obs_offset: np.ndarray     # float32 [obs_dim]; empty for a named-input bundle
    action_scale: np.ndarray   # float32 [action_dim]
    action_offset: np.ndarray  # float32 [action_dim]
    action_low: np.ndarray     # float32 [action_dim]
    action_high: np.ndarray    # float32 [action_dim]

    @classmethod
    def from_core(cls, d: dict) -> Normalization:
        return cls(**{f.name: _frozen(d[f.name]) for f in fields(cls)})

    def __getitem__(self, key: str):
        return _item(self, key)


@dataclass(frozen=True)
class InputInfo:
    """One input act() reads: name, element type and the shape of one batch row.

    A state bundle has one, `obs` float32 (n_obs_steps, obs_dim); a named-input bundle one per
    entry of its observation spec: `observation.state` float32 (n_obs_steps, state_dim),
    `observation.images.<camera>` uint8 (n_obs_steps, height, width, 3)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class PolicyInfo:
    # tokenizer
    num_tokens: int
    codebook_size: int
    horizon: int
    action_dim: int
    fsq_levels: tuple[int, ...]
    tokenizer_kind: str
    # policy
    n_obs_steps: int
    obs_dim: int
    n_action_steps: int
    vocab_size: int
    bos_id: int
    n_layers: int
    n_heads: int
    head_dim: int
    inputs: tuple[InputInfo, ...]
    observation: dict | None  # a named-input bundle's spec (ObservationSpec.to_dict()); None for a state bundle
    normalization: Normalization
    tasks: tuple[str, ...]
    obs_layout: str
    default_temperature: float
    default_top_k: int
    has_encoder: bool
    # runtime
    provider: str
    ort_version: str
    ort_library: str
    bundle_dir: str
    precision: str
    control_hz: float | None  # the rate the training data was recorded at; None when the bundle does not say
    max_batch: int
    batch_limit: int
    manifest_json: str  # verbatim, for display and archiving; read the typed fields instead

    @classmethod
    def from_core(cls, d: dict) -> PolicyInfo:
        """From the dict `oat_edge._core.Policy.info` returns."""
        d = dict(d)
        d["normalization"] = Normalization.from_core(d["normalization"])
        d["inputs"] = tuple(InputInfo(i["name"], i["dtype"], tuple(i["shape"])) for i in d["inputs"])
        d["fsq_levels"] = tuple(d["fsq_levels"])
        d["tasks"] = tuple(d["tasks"])
        d["observation"] = None if d["observation"] is None else json.loads(d["observation"])
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def neutral_observation(self):
        """One unbatched observation that the bundle normalizes to 0 (what Policy() warms up on): a
        state bundle's obs [n_obs_steps, obs_dim]; a named-input bundle's dict with its state at
        -offset / scale and black camera frames. For probes and benchmarks, not for control."""
        if self.observation is None:
            n = self.normalization
            row = -n.obs_offset / n.obs_scale
            return np.ascontiguousarray(np.broadcast_to(row, (self.n_obs_steps, self.obs_dim)), np.float32)
        out = {}
        for spec, info in zip(self.observation["inputs"], self.inputs):
            if info.dtype == "uint8":
                out[info.name] = np.zeros(info.shape, np.uint8)
            else:
                row = -np.float32(spec["normalize"]["offset"]) / np.float32(spec["normalize"]["scale"])
                out[info.name] = np.ascontiguousarray(np.broadcast_to(row, info.shape), np.float32)
        return out

    # dict-style reading, for code written against the earlier dict
    def __getitem__(self, key: str):
        return _item(self, key)

    def get(self, key: str, default=None):
        try:
            return _item(self, key)
        except KeyError:
            return default


def _item(obj, key: str):
    if not isinstance(key, str) or key.startswith("_") or key not in {f.name for f in fields(obj)}:
        raise KeyError(key)
    return getattr(obj, key)

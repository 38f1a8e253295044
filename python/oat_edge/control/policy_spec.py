"""What the loop needs from a policy, read once, and its act() options checked up front.

`policy.info` may be a dict or a typed object: fields are read either way. The act() options
are checked by the policy itself (`check_options`, which raises exactly what act() would), so
an impossible option stops a `ControlLoop` at construction, before the robot moves, with the
same `InputError` act() would have given on every replan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


def info_field(obj, name: str):
    """obj[name] for a dict, obj.name for a typed info object; None when absent."""
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def info_bounds(policy):
    """Action bounds declared by the bundle (info fields, else its normalization), or (None, None)."""
    info = getattr(policy, "info", None)
    low, high = info_field(info, "action_low"), info_field(info, "action_high")
    if low is None or high is None:
        norm = info_field(info, "normalization") or info_field(info_field(info, "manifest"), "normalization")
        low, high = info_field(norm, "action_low"), info_field(norm, "action_high")
    return (low, high) if low is not None and high is not None else (None, None)


def _as_count(name: str, value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"policy.info[{name!r}]: expected an int, got {value!r}") from None


@dataclass(frozen=True)
class PolicySpec:
    horizon: int
    action_dim: int
    n_action_steps: int                       # the bundle's receding horizon
    obs_shape: tuple[int, int] | None         # None: the policy does not declare it (or reads named inputs)
    # a camera bundle's named inputs, from its manifest: ((name, dtype, (n_obs_steps, *shape)), ...)
    inputs: tuple | None = None

    @classmethod
    def of(cls, policy) -> "PolicySpec":
        info = getattr(policy, "info", None)
        if info is None or not callable(getattr(policy, "act", None)):
            raise TypeError(f"policy: expected an object with `info` and `act()` (the "
                            f"oat_edge.Policy API), got {type(policy).__name__}")
        dims = {}
        for name in ("horizon", "action_dim"):
            if info_field(info, name) is None:
                raise InputError(f"policy.info lacks {name!r}: expected the oat_edge.Policy info fields")
            dims[name] = _as_count(name, info_field(info, name))
        steps = info_field(info, "n_action_steps")
        n_obs, obs_dim = info_field(info, "n_obs_steps"), info_field(info, "obs_dim")
        obs_shape = inputs = None
        observation = info_field(info, "observation")
        if observation:  # named inputs (cameras): each checked apart, by name
            t = _as_count("n_obs_steps", observation["n_obs_steps"])
            inputs = tuple((i["name"], i["dtype"], (t, *(int(d) for d in i["shape"])))
                           for i in observation["inputs"])
        elif n_obs is not None and obs_dim is not None:
            obs_shape = (_as_count("n_obs_steps", n_obs), _as_count("obs_dim", obs_dim))
        return cls(dims["horizon"], dims["action_dim"],
                   dims["horizon"] if steps is None else _as_count("n_action_steps", steps),
                   obs_shape, inputs)

    def check_n_action_steps(self, n) -> int:
        if isinstance(n, bool) or not (isinstance(n, int) and 1 <= n <= self.horizon):
            raise InputError(f"n_action_steps: expected an int in 1..{self.horizon} (the bundle's "
                             f"horizon; it declares {self.n_action_steps}), got {n!r}")
        return n


def check_act_options(policy, spec: PolicySpec, options: dict) -> None:
    """Raise what act() would raise for these options (None values are left out).

    Policies with `check_options` answer directly. Others get one dry-run act() on a zero
    observation of the declared shape, with a fixed seed so that an unseeded policy's random
    stream is not advanced; without a declared shape nothing can be checked up front.
    """
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return
    check = getattr(policy, "check_options", None)
    if callable(check):
        check(**given)
        return
    if spec.obs_shape is None:
        return
    given.setdefault("seed", 0)
    policy.act(np.zeros(spec.obs_shape, dtype=np.float32), **given)

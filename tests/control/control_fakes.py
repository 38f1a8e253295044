"""Test doubles for the control loop: a scripted policy and a fake clock."""

import time

import numpy as np


class FakeClock:
    """Virtual time: every read advances `tick` (like a real clock), sleep adds `overshoot`."""

    def __init__(self, tick=1e-6, overshoot=0.0):
        self.t = 100.0
        self.tick, self.overshoot = tick, overshoot
        self.sleeps = []

    def clock(self):
        self.t += self.tick
        return self.t

    def sleep(self, d):
        self.sleeps.append(d)
        self.t += d + self.overshoot


class FakePolicy:
    """act() returns chunk_fn(call_index, obs) after `delay_s`; records every call."""

    def __init__(self, horizon=8, action_dim=2, n_action_steps=4, chunk_fn=None, delay_s=0.0,
                 raise_on=(), tokens=8, bounds=(-1e9, 1e9)):
        self.info = {"horizon": horizon, "action_dim": action_dim, "n_obs_steps": 1,
                     "obs_dim": 1, "n_action_steps": n_action_steps, "num_tokens": 8,
                     "tasks": [], "action_low": [bounds[0]] * action_dim,
                     "action_high": [bounds[1]] * action_dim}
        self.chunk_fn = chunk_fn or (lambda i, obs: np.zeros((horizon, action_dim)))
        self.delay_s, self.raise_on, self.tokens = delay_s, set(raise_on), tokens
        self.calls = []

    def check_options(self, max_tokens=None, temperature=None, top_k=None, seed=None,
                      latency_budget_ms=None, min_tokens=None):
        """The two rules the loop tests need; the real rules are tested against oat_edge.Policy."""
        from oat_edge.errors import InputError
        if max_tokens is not None and not 1 <= max_tokens <= self.info["num_tokens"]:
            raise InputError(f"max_tokens: expected 1..{self.info['num_tokens']}, got {max_tokens}")
        if latency_budget_ms is not None and not latency_budget_ms > 0:
            raise InputError(f"latency_budget_ms: expected > 0, got {latency_budget_ms}")

    def act(self, obs, max_tokens=None, temperature=None, top_k=None, seed=None,
            latency_budget_ms=None, return_stats=False):
        i = len(self.calls)
        self.calls.append({"obs": np.array(obs), "max_tokens": max_tokens, "seed": seed,
                           "latency_budget_ms": latency_budget_ms})
        if self.delay_s:
            time.sleep(self.delay_s)
        if i in self.raise_on:
            raise RuntimeError(f"boom in call {i}")
        chunk = np.asarray(self.chunk_fn(i, obs), dtype=np.float32)
        tokens = self.tokens if max_tokens is None else min(self.tokens, max_tokens)
        stats = {"tokens_used": tokens, "total_ms": 0.0}
        return (chunk, stats) if return_stats else chunk

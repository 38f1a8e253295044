"""A policy checkpoint as the exporter reads it: the TokenPolicy, and for a policy with named
(camera) inputs its ObservationEncoder.

A pixel policy's checkpoint is `TokenPolicy.checkpoint()` plus `observation_encoder`
(`ObservationEncoder.checkpoint()`: spec, config, weights). The encoder normalizes the state itself,
so the TokenPolicy's own observation normalization must be the identity over the encoder's
features; anything else would be dropped by a bundle whose runtime passes buffers untouched.
"""
from __future__ import annotations

import torch


def _identity(normalizer) -> bool:
    return bool(torch.all(normalizer.scale == 1) and torch.all(normalizer.offset == 0))


def check_pixel_policy(token_policy, encoder) -> None:
    """ValueError unless `encoder` feeds `token_policy` exactly (widths, history, identity norm)."""
    c = token_policy.policy.cfg
    if c.obs_dim != encoder.feature_dim or c.n_obs_steps != encoder.spec.n_obs_steps:
        raise ValueError(f"observation_encoder: expected features of width {c.obs_dim} over {c.n_obs_steps} steps "
                         f"(the policy's obs_dim, n_obs_steps), got {encoder.feature_dim} over "
                         f"{encoder.spec.n_obs_steps} (the checkpoint's encoder and policy do not belong together)")
    if not _identity(token_policy.obs_normalizer):
        raise ValueError("obs_normalizer: expected the identity (scale 1, offset 0) for a policy with an "
                         "observation_encoder, which normalizes the state itself; got a fitted normalizer, which a "
                         "named-input bundle cannot apply: retrain with oat_edge's pixel policy training")


def encoder_from_checkpoint(entry):
    """`ck["observation_encoder"]` -> ObservationEncoder (eval mode); ValueError saying what is wrong."""
    from oat_edge.train.observation import ObservationEncoder

    if not isinstance(entry, dict) or sorted(entry) != ["config", "spec", "state"]:
        got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"observation_encoder: expected a dict with keys ['config', 'spec', 'state'] "
                         f"(ObservationEncoder.checkpoint()), got {got}")
    if not isinstance(entry["config"], dict):
        raise ValueError(f"observation_encoder.config: expected a dict, got {type(entry['config']).__name__}")
    try:
        return ObservationEncoder.from_checkpoint(entry).eval()
    except TypeError as exc:  # unknown keys in the config dict
        raise ValueError(f"observation_encoder.config: {exc}") from None
    except RuntimeError as exc:  # load_state_dict: weights of another architecture
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()] or [type(exc).__name__]
        detail = lines[1] if len(lines) > 1 else lines[0]  # the first names the module, the next what differs
        raise ValueError(f"observation_encoder.state: the weights do not fit the encoder its spec and config "
                         f"describe ({detail[:200]})") from None


def policy_from_checkpoint(ck: dict):
    """Checkpoint dict -> (TokenPolicy in eval mode, ObservationEncoder or None)."""
    from oat_edge.train.policy import TokenPolicy

    tp = TokenPolicy.from_checkpoint(ck).eval()
    tp.control_hz = ck.get("control_hz")  # a dataset's fps, recorded by train_policy
    if ck.get("observation_encoder") is None:
        return tp, None
    enc = encoder_from_checkpoint(ck["observation_encoder"])
    check_pixel_policy(tp, enc)
    return tp, enc

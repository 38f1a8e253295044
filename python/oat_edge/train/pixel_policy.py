"""A token policy that sees: frozen tokenizer + observation encoder (cameras and state) + AR policy.

    named observation {observation.state: [B, T, S], observation.images.<camera>: uint8 [B, T, H, W, 3]}
      --ObservationEncoder--> features [B, T, obs_dim] --ARPolicy.prefill--> mem_k, mem_v
      --ARPolicy.step (as for a state policy)--> tokens --tokenizer--> actions

`EncodedPolicy` (encoder + AR policy) is what training optimizes and averages (EMA);
`PixelTokenPolicy` adds the frozen tokenizer and is what a checkpoint holds. The checkpoint is a
state policy's (`TokenPolicy.checkpoint()`: tokenizer, policy config and weights, observation
normalizer) plus `observation_encoder` (`ObservationEncoder.checkpoint()`: spec, config, weights).
The encoder normalizes the state itself (the spec's scale/offset), so the observation normalizer
stored beside it is the identity over the encoder's feature width. The exported prefill is
`prefill_module()`: raw state and uint8 frames in, the AR policy's memory out.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
import torch.nn as nn

from oat_edge.train.checkpoint import load_checkpoint, save_checkpoint
from oat_edge.train.normalizer import Normalizer
from oat_edge.train.observation import ObservationEncoder, ObservationPrefill
from oat_edge.train.policy import ARPolicy, PolicyConfig, tokenizer_from_checkpoint

OBSERVATION_ENCODER = "observation_encoder"


def _check_match(encoder: ObservationEncoder, policy: ARPolicy) -> None:
    c = policy.cfg
    if c.obs_dim != encoder.feature_dim or c.n_obs_steps != encoder.spec.n_obs_steps:
        raise ValueError(f"policy.cfg: expected obs_dim={encoder.feature_dim}, n_obs_steps="
                         f"{encoder.spec.n_obs_steps} (from the observation encoder), got "
                         f"obs_dim={c.obs_dim}, n_obs_steps={c.n_obs_steps}")


class EncodedPolicy(nn.Module):
    """Observation encoder + AR policy: raw named observations and token ids in, loss out.

    aux_dim > 0 adds a linear head that predicts `aux_dim` features of the scene (normalized, e.g.
    the simulator's object and goal positions) from the newest step's encoded observation; its
    squared error joins the loss with weight `aux_weight`. It is training-time supervision of
    the image encoder only: the head is not part of the checkpoint or the exported graphs."""

    def __init__(self, encoder: ObservationEncoder, policy: ARPolicy, aux_dim: int = 0,
                 aux_weight: float = 1.0):
        super().__init__()
        _check_match(encoder, policy)
        self.encoder, self.policy = encoder, policy
        self.aux_head = nn.Linear(encoder.feature_dim, aux_dim) if aux_dim > 0 else None
        self.aux_weight = float(aux_weight)

    def loss(self, obs, ids, generator: torch.Generator | None = None, aux=None):
        """Teacher-forced cross-entropy (+ aux_weight x the aux head's mean squared error on
        `aux` [B, aux_dim] when given); random crops while training (the module's mode)."""
        feats = self.encoder(obs, generator)
        loss, info = self.policy.loss(feats, ids)
        if self.aux_head is not None and aux is not None:
            aux_mse = torch.nn.functional.mse_loss(self.aux_head(feats[:, -1]), aux)
            loss = loss + self.aux_weight * aux_mse
            info = dict(info, aux_mse=aux_mse.detach())
        return loss, info

    def param_groups(self, obs_lr_scale: float):
        """The observation path (image encoders and the policy's input projection) in its own
        group, as a state policy's input projection is."""
        obs, rest = [], []
        for name, p in self.named_parameters():
            top = name.split(".")
            is_obs = top[0] == "encoder" or top[1] in ("obs_in", "obs_pos", "obs_mlp")
            (obs if is_obs else rest).append(p)
        return [{"params": rest, "lr_scale": 1.0}, {"params": obs, "lr_scale": obs_lr_scale}]


class PixelTokenPolicy(nn.Module):
    """Frozen tokenizer + observation encoder + AR policy: named raw observations in, raw actions
    out."""

    def __init__(self, tokenizer, encoder: ObservationEncoder, policy: ARPolicy):
        super().__init__()
        c = policy.cfg
        if tokenizer.num_tokens != c.num_tokens or tokenizer.codebook_size != c.codebook_size:
            raise ValueError(f"policy.cfg: expected num_tokens={tokenizer.num_tokens}, codebook_size="
                             f"{tokenizer.codebook_size} (from the tokenizer), got {c.num_tokens}, "
                             f"{c.codebook_size}")
        _check_match(encoder, policy)
        self.tokenizer = tokenizer.eval().requires_grad_(False)
        self.encoder, self.policy = encoder, policy

    @property
    def spec(self):
        return self.encoder.spec

    def train(self, mode=True):
        super().train(mode)
        self.tokenizer.eval()  # frozen: no dropout, ever
        return self

    @torch.no_grad()
    def predict(self, obs, max_tokens=None, temperature=1.0, top_k=10, seed=None):
        """obs {name: [T, *shape]} or {name: [B, T, *shape]} (numpy or torch) -> raw actions
        [H, D] or [B, H, D]. Frames are centre-cropped (inference mode)."""
        if not isinstance(obs, dict):
            raise ValueError(f"obs: expected a dict {{name: array}} with keys {self.spec.names}, "
                             f"got {type(obs).__name__}")
        x = {k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v)
             for k, v in obs.items()}
        state = x.get(self.spec.state.name)
        single = state is not None and state.ndim == 2
        if single:
            x = {k: v.unsqueeze(0) for k, v in x.items()}
        was = self.training
        self.eval()
        try:
            feats = self.encoder(x)
            if not torch.isfinite(feats).all():
                raise ValueError(f"{self.spec.state.name}: expected finite values, got NaN/Inf")
            ids = self.policy.generate(feats, max_tokens, temperature, top_k, seed)
        finally:
            self.train(was)
        act = self.tokenizer.detokenize(ids, ids.shape[1])
        return act[0] if single else act

    def prefill_module(self) -> ObservationPrefill:
        """The module exported as the bundle's prefill graph (inputs in spec order)."""
        return ObservationPrefill(self.encoder, self.policy)

    def checkpoint(self) -> dict:
        identity = Normalizer(self.policy.cfg.obs_dim)  # the encoder normalizes the state itself
        return {"tokenizer": self.tokenizer.checkpoint(), "policy_config": asdict(self.policy.cfg),
                "policy_state": self.policy.state_dict(), "obs_normalizer": identity.to_dict(),
                OBSERVATION_ENCODER: self.encoder.checkpoint()}

    @classmethod
    def from_checkpoint(cls, ck) -> "PixelTokenPolicy":
        if OBSERVATION_ENCODER not in ck:
            raise ValueError(f"checkpoint: expected a camera policy's {OBSERVATION_ENCODER!r} entry "
                             f"(a state policy has none; load it with TokenPolicy), got keys "
                             f"{sorted(ck)}")
        pol = ARPolicy(PolicyConfig(**ck["policy_config"]))
        pol.load_state_dict(ck["policy_state"])
        enc = ObservationEncoder.from_checkpoint(ck[OBSERVATION_ENCODER])
        return cls(tokenizer_from_checkpoint(ck["tokenizer"]), enc, pol)

    def save(self, path) -> None:
        save_checkpoint(self.checkpoint(), path)

    @classmethod
    def load(cls, path, map_location="cpu") -> "PixelTokenPolicy":
        return cls.from_checkpoint(load_checkpoint(path, map_location, what="policy checkpoint"))

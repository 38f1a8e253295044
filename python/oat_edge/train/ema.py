"""Exponential moving average of model weights (used for evaluation and export).

Warm-up schedule as in the reference (diffusers-style EMAModel):
    decay(step) = clip(1 - (1 + step / inv_gamma) ** -power, min_value, max_value)
with step counted from 0 at the first update (decay 0 there: the EMA starts as a copy), power
0.75 and max 0.9999. Early on the average follows the fast-moving weights closely; later it
averages over ~1 / (1 - decay) steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class EMAConfig:
    power: float = 0.75
    inv_gamma: float = 1.0
    min_value: float = 0.0
    max_value: float = 0.9999


def ema_decay(step: int, cfg: EMAConfig = EMAConfig()) -> float:
    if step <= 0:
        return 0.0
    value = 1.0 - (1.0 + step / cfg.inv_gamma) ** -cfg.power
    return max(cfg.min_value, min(value, cfg.max_value))


class EMA:
    def __init__(self, model: nn.Module, cfg: EMAConfig = EMAConfig()):
        self.cfg = cfg
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)
        self.step = 0  # number of update() calls so far

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        d = ema_decay(self.step, self.cfg)
        for pe, p in zip(self.model.parameters(), model.parameters()):
            if p.requires_grad:
                pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
            else:
                pe.copy_(p.detach())  # frozen parts (e.g. a frozen tokenizer) are just mirrored
        for be, b in zip(self.model.buffers(), model.buffers()):
            be.copy_(b)  # normalizer statistics etc. are not averaged
        self.step += 1
        return d

    def state_dict(self):
        return {"model": self.model.state_dict(), "step": self.step}

    def load_state_dict(self, sd):
        self.model.load_state_dict(sd["model"])
        self.step = int(sd["step"])

"""Finite scalar quantization (DESIGN.md §3). No learned codebook: the codebook is the
product grid of `levels`, so every id in [0, prod(levels)) is a valid code."""
import math

import torch
import torch.nn as nn


def _check_levels(levels):
    levels = tuple(int(l) for l in levels)
    if len(levels) == 0 or any(l < 2 for l in levels):
        raise ValueError(f"fsq_levels: expected a non-empty list of ints >= 2, got {list(levels)}")
    return levels


class FSQ(nn.Module):
    def __init__(self, levels=(8, 5, 5, 5)):
        super().__init__()
        self.levels = _check_levels(levels)
        self.dim = len(self.levels)
        self.codebook_size = math.prod(self.levels)
        basis = [1]
        for l in self.levels[:-1]:
            basis.append(basis[-1] * l)
        lv = torch.tensor(self.levels, dtype=torch.float32)
        # buffers (not parameters): fixed, but they follow .to(device) and appear in the graph
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_half", torch.floor(lv / 2), persistent=False)
        self.register_buffer("_basis", torch.tensor(basis, dtype=torch.int64), persistent=False)
        # bound() constants, precomputed so the exported graph holds plain numbers
        half_l = (lv - 1) * (1 + 1e-3) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l), persistent=False)

    def bound(self, z):
        # tanh(z + shift) * half_l - offset: even levels get offset 0.5 so that rounding
        # yields exactly `levels` integers; shift makes z = 0 map to 0 after the offset
        return torch.tanh(z + self._shift) * self._half_l - self._offset

    def forward(self, z):
        """z [..., dim] -> (codes in [-1, 1] with straight-through gradient, ids int64 [...])."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"z: expected last dim {self.dim} (len(fsq_levels)), got {z.shape[-1]}")
        b = self.bound(z)
        q = b + (torch.round(b) - b).detach()  # straight-through round
        codes = q / self._half
        return codes, self.codes_to_ids(codes)

    def codes_to_ids(self, codes):
        digits = torch.round(codes * self._half) + self._half
        return (digits.to(torch.int64) * self._basis).sum(-1)

    def ids_to_codes(self, ids):
        ids = ids.to(torch.int64).unsqueeze(-1)
        digits = torch.div(ids, self._basis, rounding_mode="floor") % self._levels.to(torch.int64)
        return (digits.to(torch.float32) - self._half) / self._half

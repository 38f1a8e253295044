"""Checkpoint files: tensors and plain data only, written atomically.

A `.pt` file is a pickle, and unpickling can run arbitrary code. Every checkpoint oat_edge writes
holds only tensors and dicts/lists of str/int/float/bool (configs are stored with
`dataclasses.asdict`), so every load uses `torch.load(weights_only=True)`, which refuses anything
else: a checkpoint from an untrusted source cannot execute code here.
"""

from __future__ import annotations

import os
import pickle

import torch

from oat_edge.atomic import atomic_path


def save_checkpoint(obj: dict, path) -> None:
    """torch.save under a temporary name, then rename: a crash never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, map_location="cpu", what: str = "checkpoint") -> dict:
    """Load a checkpoint of tensors and plain data; anything else is a one-line ValueError."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{what} {path}: is a directory, expected a .pt file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{what} {path}: refused: it holds Python objects other than tensors and plain data, "
            f"and loading them could run code ({first[:160]}); oat_edge only loads checkpoints "
            f"written by its own training commands") from None
    except PermissionError:
        raise ValueError(f"{what} {path}: permission denied") from None
    except Exception as exc:  # torch reports a damaged file in many ways (zip, pickle, EOF...)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ValueError(f"{what} {path}: not a readable PyTorch checkpoint (truncated or not a "
                         f".pt file: {detail})") from None
    if not isinstance(ck, dict):
        raise ValueError(f"{what} {path}: expected a dict, got {type(ck).__name__}")
    return ck

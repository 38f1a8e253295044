"""robomimic / LIBERO HDF5 reader (h5py).

Layout: data/demo_<i>/{actions [T, A], obs/<key> [T, ...], states [T, S], rewards, dones}, each
demo with a `num_samples` attribute; `data` carries `env_args` (JSON) and LIBERO's
`problem_info` (JSON with `language_instruction`); mask/<filter> lists demo names (e.g. train,
valid). Features are named `actions`, `obs/<key>` and `states`; obs keys holding uint8
[T, H, W, 3] are cameras (already decoded frames, no video). Demos are ordered by their number.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from oat_edge.data.episodes import EpisodeDataset, Feature, check_not_empty
from oat_edge.data.errors import DatasetError, where

DEFAULT_FPS = 20.0  # robomimic's robosuite control rate when env_args does not say


def _h5py():
    try:
        import h5py
    except ModuleNotFoundError:
        raise DatasetError("reading robomimic HDF5 needs h5py: pip install h5py "
                           "(or pip install 'oat_edge[train]')") from None
    return h5py


@dataclass
class RobomimicDataset(EpisodeDataset):
    demos: list = field(default_factory=list, repr=False)

    def _read(self, key):
        h5py = _h5py()
        out = []
        with h5py.File(self.path, "r") as f:
            for e, name in enumerate(self.demos):
                g = f["data"][name]
                if key not in g:
                    raise DatasetError(f"{where(self.path, e)} ({name}): feature {key!r} missing; "
                                       f"demo_0 has it - every demo needs the same keys")
                x = g[key][()]
                n = int(self.episode_lengths[e])
                if len(x) != n:
                    raise DatasetError(f"{where(self.path, e)} ({name}): {key}: expected "
                                       f"{n} frames (num_samples / actions), given {len(x)}")
                out.append(x)
        return np.concatenate(out)

    def _read_column(self, f: Feature) -> np.ndarray:
        x = self._read(f.key)
        if x.dtype.kind != np.dtype(f.dtype).kind:
            raise DatasetError(f"{self.path}: {f.key}: expected dtype {f.dtype} (demo_0), given "
                               f"{x.dtype}")
        return x

    def _read_frames(self, f: Feature, progress) -> np.ndarray:
        x = self._read(f.key)
        if x.dtype != np.uint8:
            raise DatasetError(f"{self.path}: {f.key}: expected uint8 frames, given {x.dtype}")
        return x


def _demo_number(name):
    m = re.fullmatch(r"demo_(\d+)", name)
    return int(m.group(1)) if m else None


def open_robomimic(path, filter_key=None) -> RobomimicDataset:
    h5py = _h5py()
    path = os.path.abspath(str(path))
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc}); truncated or corrupt?") \
            from None
    with f:
        if "data" not in f:
            raise DatasetError(f"{path}: group 'data' missing; expected robomimic's layout "
                               f"data/demo_<i>/{{actions, obs/<key>}}")
        data = f["data"]
        names = sorted((n for n in data if _demo_number(n) is not None), key=_demo_number)
        if filter_key is not None:
            if "mask" not in f or filter_key not in f["mask"]:
                have = sorted(f["mask"]) if "mask" in f else []
                raise DatasetError(f"{path}: filter key mask/{filter_key} missing; the file has "
                                   f"{have or 'no mask/ group'}")
            keep = {x.decode() if isinstance(x, bytes) else str(x)
                    for x in f["mask"][filter_key][()]}
            names = [n for n in names if n in keep]
        check_not_empty(path, len(names), 1 if names else 0)
        first = data[names[0]]
        if "actions" not in first:
            raise DatasetError(f"{where(path, 0)} ({names[0]}): dataset 'actions' missing")
        features = {"actions": _feature("actions", first["actions"])}
        if "obs" in first:
            for k in first["obs"]:
                features[f"obs/{k}"] = _feature(f"obs/{k}", first["obs"][k])
        if "states" in first:
            features["states"] = _feature("states", first["states"])
        lengths = []
        for e, n in enumerate(names):
            g = data[n]
            if "actions" not in g:
                raise DatasetError(f"{where(path, e)} ({n}): dataset 'actions' missing")
            t = int(g.attrs.get("num_samples", len(g["actions"])))
            if t != len(g["actions"]):
                raise DatasetError(f"{where(path, e)} ({n}): num_samples {t} but actions has "
                                   f"{len(g['actions'])} rows")
            lengths.append(t)
        lengths = np.asarray(lengths, np.int64)
        check_not_empty(path, len(names), int(lengths.sum()))
        env_args = _json_attr(data, "env_args")
        problem = _json_attr(data, "problem_info")
        fps = DEFAULT_FPS
        ctrl = (env_args.get("env_kwargs") or {}).get("control_freq")
        if ctrl:
            fps = float(ctrl)
        task = problem.get("language_instruction") or env_args.get("env_name") or \
            os.path.splitext(os.path.basename(path))[0]
    ds = RobomimicDataset(path=path, format="robomimic hdf5", fps=fps, features=features,
                          episode_ends=np.cumsum(lengths),
                          episode_ids=np.array([_demo_number(n) for n in names], np.int64),
                          episode_task=np.zeros(len(names), np.int64), tasks=[str(task)],
                          stats=None, action_key="actions", demos=names)
    return ds


def _feature(key, dset):
    shape = tuple(int(d) for d in dset.shape[1:])
    dtype = dset.dtype
    if dtype == np.uint8 and len(shape) == 3 and shape[-1] == 3:
        return Feature(key, "image", shape)
    return Feature(key, str(dtype), shape)


def _json_attr(group, name):
    v = group.attrs.get(name)
    if v is None:
        return {}
    try:
        return json.loads(v if isinstance(v, str) else v.decode())
    except (ValueError, AttributeError):
        return {}

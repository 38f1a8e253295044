"""What every reader returns: a dataset of episodes with typed features, read lazily.

Frames of all episodes are stacked in one row order, episode after episode; `episode_ends[e]` is
the exclusive end row of episode e. Numeric features are read on first use (`column`), camera
features are decoded on first use (`frames`) into a memory-mapped cache, so an actions-only user
never touches a video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from oat_edge.data.errors import DatasetError, where

CAMERA_DTYPES = ("video", "image")


@dataclass(frozen=True)
class Feature:
    key: str
    dtype: str              # float32, float64, int64, bool, video, image, string, ...
    shape: tuple            # per frame; cameras are (H, W, 3)
    names: object = None

    @property
    def is_camera(self) -> bool:
        return self.dtype in CAMERA_DTYPES

    @property
    def is_numeric(self) -> bool:
        return self.dtype.startswith(("float", "int", "uint", "bool"))


@dataclass
class EpisodeDataset:
    """Base class of the readers. Subclasses fill the fields and implement `_read_column` and
    `_read_frames`."""
    path: str
    format: str                     # e.g. "lerobot v3.0"
    fps: float
    features: dict                  # key -> Feature
    episode_ends: np.ndarray        # int64 [E], exclusive, cumulative
    episode_ids: np.ndarray         # int64 [E], the dataset's own episode numbers
    episode_task: np.ndarray        # int64 [E], index into `tasks`
    tasks: list                     # task strings
    stats: dict | None = None       # key -> {min, max, mean, std, count}, as declared
    action_key: str = "action"      # the feature a policy should predict
    meta_keys: tuple = ()           # bookkeeping columns (timestamp, index, ...), not features
    _columns: dict = field(default_factory=dict, repr=False)
    _frames: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ shape of the data
    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def num_frames(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def episode_starts(self) -> np.ndarray:
        return np.concatenate([[0], self.episode_ends[:-1]]).astype(np.int64)

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    def episode_of_row(self) -> tuple[np.ndarray, np.ndarray]:
        """(episode id, frame within the episode) of every row."""
        ep = np.repeat(np.arange(self.num_episodes), self.episode_lengths)
        frame = np.arange(self.num_frames) - self.episode_starts[ep]
        return self.episode_ids[ep], frame

    @property
    def camera_keys(self) -> list:
        return [k for k, f in self.features.items() if f.is_camera]

    @property
    def state_keys(self) -> list:
        """Numeric observation features (everything a policy may read besides cameras)."""
        return [k for k, f in self.features.items()
                if f.is_numeric and k != self.action_key and k not in self.meta_keys
                and _is_observation(k)]

    def feature(self, key: str) -> Feature:
        if key not in self.features:
            raise DatasetError(f"{self.path}: feature {key!r} not in the dataset; it declares "
                               f"{sorted(self.features)}")
        return self.features[key]

    # ------------------------------------------------------------------ data
    def column(self, key: str) -> np.ndarray:
        """A numeric feature for every row, [num_frames, *shape], checked against its declared
        shape and for NaN/Inf (the error names file, episode and frame)."""
        f = self.feature(key)
        if f.is_camera:
            raise DatasetError(f"{self.path}: {key!r} is a camera feature; use frames({key!r})")
        if key not in self._columns:
            x = self._read_column(f)
            self._check_shape(f, x)
            if x.dtype.kind == "f":
                self._check_finite(key, x)
            self._columns[key] = x
        return self._columns[key]

    def frames(self, key: str, progress=None) -> np.ndarray:
        """A camera feature for every row: uint8 [num_frames, H, W, 3] (memory-mapped)."""
        f = self.feature(key)
        if not f.is_camera:
            raise DatasetError(f"{self.path}: {key!r} is not a camera feature (dtype {f.dtype})")
        if key not in self._frames:
            x = self._read_frames(f, progress)
            self._check_shape(f, x)
            self._frames[key] = x
        return self._frames[key]

    def _read_column(self, f: Feature) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _read_frames(self, f: Feature, progress) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def source_of_row(self, row: int) -> str:
        """The file a row comes from, for error messages (readers refine it)."""
        return self.path

    # ------------------------------------------------------------------ checks
    def _row_where(self, row: int) -> str:
        ep, fr = self.episode_of_row()
        return where(self.source_of_row(row), ep[row], fr[row])

    def _check_shape(self, f: Feature, x: np.ndarray):
        if len(x) != self.num_frames:
            raise DatasetError(f"{self.path}: {f.key}: expected {self.num_frames} rows (one per "
                               f"frame), given {len(x)}")
        if tuple(x.shape[1:]) != tuple(f.shape):
            raise DatasetError(f"{self.path}: {f.key}: expected shape {list(f.shape)} per frame "
                               f"as declared, given {list(x.shape[1:])}")

    def _check_finite(self, key: str, x: np.ndarray):
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{self._row_where(row)}: {key}: expected finite values, given "
                               f"NaN/Inf ({int(bad.sum())} frames in all); clean or drop those "
                               f"episodes before training")

    def summary(self) -> dict:
        lengths = self.episode_lengths
        return {"path": self.path, "format": self.format, "fps": self.fps,
                "episodes": self.num_episodes, "frames": self.num_frames,
                "episode_length": {"min": int(lengths.min()), "mean": float(lengths.mean()),
                                   "max": int(lengths.max())} if len(lengths) else None,
                "features": {k: {"dtype": f.dtype, "shape": list(f.shape)}
                             for k, f in self.features.items()},
                "action_key": self.action_key, "state_keys": self.state_keys,
                "camera_keys": self.camera_keys, "tasks": list(self.tasks)}


def _is_observation(key: str) -> bool:
    return key.startswith(("observation.", "obs/", "observation/"))


def check_not_empty(path, num_episodes: int, num_frames: int):
    if num_episodes == 0 or num_frames == 0:
        raise DatasetError(f"{path}: expected at least one episode with frames, given "
                           f"{num_episodes} episodes / {num_frames} frames (empty dataset)")

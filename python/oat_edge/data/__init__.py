"""Datasets a user brings: LeRobot (v3.0, v2.1) directories and robomimic/LIBERO HDF5 files,
read without torch into one `EpisodeDataset`; plus a LeRobot v3.0 writer."""

from oat_edge.data.errors import DatasetError
from oat_edge.data.open import open_dataset

__all__ = ["DatasetError", "open_dataset"]

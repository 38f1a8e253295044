"""One entry point for every dataset format: a LeRobot directory or a robomimic HDF5 file."""

from __future__ import annotations

import os

from oat_edge.data.errors import DatasetError


def open_dataset(path, filter_key=None):
    """Open a LeRobot dataset directory (v3.0 / v2.1) or a robomimic/LIBERO .hdf5 file."""
    path = str(path)
    if os.path.isdir(path):
        if filter_key is not None:
            raise DatasetError(f"{path}: filter keys (mask/<name>) exist only in robomimic HDF5 "
                               f"files; this is a directory")
        from oat_edge.data.lerobot import open_lerobot
        return open_lerobot(path)
    if os.path.isfile(path) and path.endswith((".hdf5", ".h5", ".hdf")):
        from oat_edge.data.robomimic import open_robomimic
        return open_robomimic(path, filter_key=filter_key)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: not found; expected a LeRobot dataset directory (with "
                           f"meta/info.json) or a robomimic .hdf5 file")
    raise DatasetError(f"{path}: expected a LeRobot dataset directory (with meta/info.json) or "
                       f"a robomimic .hdf5 file, given a file of another kind")

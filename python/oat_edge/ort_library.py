"""Find the ONNX Runtime shared library that the C++ core dlopen()s.

Search order: explicit argument -> $OAT_EDGE_ORT_LIBRARY -> the installed `onnxruntime` or
`onnxruntime-gpu` wheel (both install the `onnxruntime` package) -> "" (the C++ loader then tries
the system: ld.so paths, /usr/lib, ...). The wheel is located with importlib.util.find_spec,
never imported: importing it would load a second copy of ORT into the process for nothing.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import re

from oat_edge.errors import RuntimeLoadError

ENV_VAR = "OAT_EDGE_ORT_LIBRARY"
_LIB_GLOB = "libonnxruntime.so*"


def _version_key(path: str) -> tuple:
    # libonnxruntime.so.1.31.1 > libonnxruntime.so.1 > libonnxruntime.so
    return tuple(int(x) for x in re.findall(r"\d+", os.path.basename(path).split(".so", 1)[1]))


def _newest_in(directory: str) -> str | None:
    candidates = [p for p in glob.glob(os.path.join(directory, _LIB_GLOB)) if os.path.isfile(p)]
    return max(candidates, key=_version_key) if candidates else None


def _checked(path: str, source: str) -> str:
    """An explicitly named library (argument or env var) must exist: never fall back silently."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        found = _newest_in(path)
        if found is None:
            raise RuntimeLoadError(
                f"{source} names the directory {path!r}, which holds no {_LIB_GLOB}: expected the "
                "path of libonnxruntime.so.<version> (or a directory holding it)")
        return os.path.abspath(found)
    if not os.path.isfile(path):
        raise RuntimeLoadError(
            f"{source} names {path!r}, which does not exist: expected the path of "
            f"libonnxruntime.so.<version>; fix the path, or unset it to use the onnxruntime wheel")
    return os.path.abspath(path)


def wheel_library() -> str | None:
    """libonnxruntime.so* shipped inside the installed onnxruntime(-gpu) wheel, if any."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        found = _newest_in(os.path.join(root, "capi"))
        if found:
            return os.path.abspath(found)
    return None


def find_ort_library(explicit: str | os.PathLike | None = None) -> str:
    """Path of the ORT library to load, or "" to let the C++ loader search the system."""
    if explicit is not None and os.fspath(explicit) != "":
        return _checked(os.fspath(explicit), "ort_library")
    env = os.environ.get(ENV_VAR, "")
    if env:
        return _checked(env, f"${ENV_VAR}")
    return wheel_library() or ""

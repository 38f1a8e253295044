"""What an ONNX Runtime library offers, asked of the library itself (ctypes, no bundle needed).

`oat-edge doctor` needs the version, the C API level and the execution providers of the very
library the C++ core will dlopen, which may be a Jetson build that no Python package describes.
The answer comes from its C API: OrtGetApiBase() gives the version string and GetApi(n), and the
OrtApi function table gives GetAvailableProviders. ORT only ever appends to that table, so the
slot numbers below hold for every release from the one that introduced them.

Loading an unknown file can crash the process (a truncated library once did), so `probe_in_child`
runs `python -m oat_edge.ort_probe PATH` and reads one JSON line back.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

MIN_API = 21  # the C API level the core is compiled against (ORT 1.21)
# Slots in the OrtApi function table (onnxruntime_c_api.h, `struct OrtApi`), append-only.
_SLOT_GET_ERROR_MESSAGE = 2
_SLOT_RELEASE_STATUS = 93
_SLOT_GET_AVAILABLE_PROVIDERS = 125
_SLOT_RELEASE_AVAILABLE_PROVIDERS = 126
# Where the C++ loader looks when neither an explicit path nor $OAT_EDGE_ORT_LIBRARY names one.
SYSTEM_NAMES = ("libonnxruntime.so.1", "libonnxruntime.so")


class _ApiBase(ctypes.Structure):
    _fields_ = [("GetApi", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint32)),
                ("GetVersionString", ctypes.CFUNCTYPE(ctypes.c_char_p))]


def _slot(api: int, index: int, restype, *argtypes):
    table = ctypes.cast(api, ctypes.POINTER(ctypes.c_void_p))
    return ctypes.CFUNCTYPE(restype, *argtypes)(table[index])


def _providers(api: int) -> list[str]:
    names = ctypes.POINTER(ctypes.c_char_p)()
    count = ctypes.c_int(0)
    status = _slot(api, _SLOT_GET_AVAILABLE_PROVIDERS, ctypes.c_void_p,
                   ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p)), ctypes.POINTER(ctypes.c_int))(
        ctypes.byref(names), ctypes.byref(count))
    if status:
        msg = _slot(api, _SLOT_GET_ERROR_MESSAGE, ctypes.c_char_p, ctypes.c_void_p)(status)
        _slot(api, _SLOT_RELEASE_STATUS, None, ctypes.c_void_p)(status)
        raise OSError(f"GetAvailableProviders failed: {msg.decode(errors='replace')}")
    out = [names[i].decode() for i in range(count.value)]
    _slot(api, _SLOT_RELEASE_AVAILABLE_PROVIDERS, ctypes.c_void_p,
          ctypes.POINTER(ctypes.c_char_p), ctypes.c_int)(names, count)
    return out


def probe(path: str) -> dict:
    """Load `path` (or search SYSTEM_NAMES when empty) and describe it.

    Returns {path, version, api, providers}; `api` is None and `providers` empty when the library
    is older than MIN_API. Raises OSError when nothing loads or the file is not ONNX Runtime.
    """
    if path and os.path.exists(path):
        path = os.path.abspath(path)  # a file, not a name for dlopen's library search
    tried = [path] if path else list(SYSTEM_NAMES)
    errors = []
    for name in tried:
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOW | os.RTLD_LOCAL)
            break
        except OSError as exc:
            errors.append(str(exc))
    else:
        raise OSError("no ONNX Runtime library loads: " + "; ".join(errors))
    try:
        get_base = lib.OrtGetApiBase
    except AttributeError:
        raise OSError(f"{name} loads but has no OrtGetApiBase: it is not ONNX Runtime") from None
    get_base.restype = ctypes.POINTER(_ApiBase)
    base = get_base().contents
    version = base.GetVersionString().decode()
    resolved = _resolved_path(name)
    api = base.GetApi(MIN_API)
    if not api:
        return {"path": resolved, "version": version, "api": None, "providers": []}
    parts = version.split(".")
    level = int(parts[1]) if len(parts) > 1 and parts[0] == "1" and parts[1].isdigit() else MIN_API
    return {"path": resolved, "version": version, "api": level, "providers": _providers(api)}


def _resolved_path(name: str) -> str:
    """The file a soname resolved to (from /proc/self/maps), else the name given."""
    if os.sep in name:
        return os.path.realpath(name)
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                if "/libonnxruntime.so" in line:
                    return line.split(None, 5)[-1].strip()
    except OSError:
        pass
    return name


def probe_in_child(path: str, timeout: float = 60.0) -> dict:
    """probe() in a fresh interpreter: a library that crashes the loader becomes an error, not a crash."""
    try:
        res = subprocess.run([sys.executable, "-m", "oat_edge.ort_probe", path], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise OSError(f"loading {path or 'the system ONNX Runtime'} did not finish in {timeout:.0f} s") from None
    lines = res.stdout.strip().splitlines()
    if res.returncode < 0:
        raise OSError(f"loading {path or 'the system ONNX Runtime'} killed the process with signal "
                      f"{-res.returncode}: the file is damaged or not a library for this machine")
    try:
        out = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise OSError(f"ort_probe gave no answer (exit {res.returncode}): {res.stderr.strip()[-500:]}") from None
    if "error" in out:
        raise OSError(out["error"])
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        print(json.dumps(probe(argv[0] if argv else "")))
        return 0
    except OSError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1


if __name__ == "__main__":
    sys.exit(main())

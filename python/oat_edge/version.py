"""The package version, from its one source: pyproject.toml's [project] version.

An installed package (wheel or editable) reads it from its metadata, which the build wrote from
pyproject.toml; a bare checkout reads pyproject.toml itself. The C++ core gets the same string as
OAT_EDGE_VERSION_STRING (CMakeLists.txt parses the same line), so `oat_edge._core.__version__`
always equals it.
"""
import os
import re


def _version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("oat-edge")
    except PackageNotFoundError:
        # the line CMakeLists.txt reads too (tomllib only exists from Python 3.11)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(os.path.join(root, "pyproject.toml")) as f:
            m = re.search(r'^version *= *"([0-9]+\.[0-9]+\.[0-9]+)"', f.read(), re.M)
        return m.group(1) if m else "0+unknown"


__version__ = _version()

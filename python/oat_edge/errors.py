"""Exception types shared by the Python runtime, the manifest loader and the exporter.

They mirror the C++ `oat_edge::Error` subclasses (DESIGN.md §8).
"""


class InputError(ValueError):
    """Bad call arguments (wrong shape, NaN, k out of range, id out of range...)."""


class BundleError(RuntimeError):
    """Missing, corrupt or incompatible bundle (manifest or graph files)."""


class RuntimeLoadError(RuntimeError):
    """The ONNX Runtime library is missing / too old, or an execution provider is unavailable."""

"""oat_edge: Ordered Action Tokenization policies on the edge (runtime package).

`oat_edge.Policy(path).act(obs)` runs an exported bundle through the C++ core (`oat_edge._core`)
on ONNX Runtime. Importing this package needs only numpy: no torch, no metaworld, and not even the
compiled core (it is loaded when the first Policy is created, with a build hint if missing).
"""
from oat_edge import errors
from oat_edge.errors import BundleError, InputError, RuntimeLoadError
from oat_edge.policy import Policy
from oat_edge.realtime import prepare_realtime_memory, thread_faults
from oat_edge.version import __version__

__all__ = [
    "Policy", "prepare_realtime_memory", "thread_faults", "errors", "InputError", "BundleError", "RuntimeLoadError",
    "__version__",
]

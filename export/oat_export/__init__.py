"""oat_export: PyTorch TokenPolicy -> oat_edge ONNX bundle (DESIGN.md §5-6)."""
from .export import export_bundle  # noqa: F401
from .parity import check_parity  # noqa: F401

"""sarfuse: self-supervised SAR-optical data fusion and few-label land-cover mapping."""

from sarfuse.errors import SarfuseError

__version__ = "0.1.0"

__all__ = ["SarfuseError", "__version__"]

"""sarfuse: self-supervised SAR-optical data fusion and few-label land-cover mapping."""

from sarfuse.errors import SarfuseError

__version__ = "0.1.0"

__all__ = ["SarfuseError", "__version__", "features"]


def features(checkpoint, s1, s2, normalised: bool = False):
    """Frozen per-pixel features (B, D, H, W); see :func:`sarfuse.checkpoint.features`."""
    from sarfuse.checkpoint import features as _features  # lazy: keeps `import sarfuse` light

    return _features(checkpoint, s1, s2, normalised)

"""sarfuse: self-supervised SAR-optical data fusion and few-label land-cover mapping."""

import os

# OpenMP threads that wait for work by sleeping, not spinning: on a shared or oversubscribed
# machine (a 2-core VM, DataLoader workers, other jobs) spinning threads steal each other's
# cores and a training step ran 4-7x slower (benchmarks/README.md). Only takes effect when
# sarfuse is imported before torch (always true for the CLI); an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sarfuse.errors import SarfuseError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["SarfuseError", "__version__", "features"]


def features(checkpoint, s1, s2, normalised: bool = False):
    """Frozen per-pixel features (B, D, H, W); see :func:`sarfuse.checkpoint.features`."""
    from sarfuse.checkpoint import features as _features  # lazy: keeps `import sarfuse` light

    return _features(checkpoint, s1, s2, normalised)

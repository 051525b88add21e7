"""Where the embedded demo data lives: generated once on first use, then reused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from sarfuse.data.synth import generate

DEMO_SIZE = 1024  # pixels per side of the demo scene (10 m pixels, about 10 x 10 km)
DEMO_SEED = 0


def demo_root() -> Path:
    base = os.environ.get("SARFUSE_DEMO") or os.environ.get("SARFUSE_CACHE")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "sarfuse"


def demo_data(
    layout: Literal["dfc2020", "scene"] = "dfc2020", size: int = DEMO_SIZE, seed: int = DEMO_SEED
) -> Path:
    """Path of the demo dataset in ``layout``, generating it when absent (deterministic by seed)."""
    out = demo_root() / f"demo-{layout}-{size}-s{seed}"
    marker = out / ".complete"
    if not marker.exists():
        generate(out, size=size, seed=seed, layout=layout)
        marker.write_text("ok\n")
    return out

"""Shared fixtures: paths to the real Sentinel samples in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real Sentinel samples not found at {SHARED_DATA} (only in the dev workspace)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep superpixel caches of tests out of the user's home."""
    monkeypatch.setenv("SARFUSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))

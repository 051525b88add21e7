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


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep superpixel caches and demo data of tests out of the user's home (session-wide, so
    module-scoped fixtures that compute superpixels are covered too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SARFUSE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test tensors run faster on one thread, and a busy 2-core CI box does not stall them."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CodeRunner:
    """Unpickling this runs code (it creates ``marker``): the payload of a crafted file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture
def payload(tmp_path) -> CodeRunner:
    """Put it in a checkpoint or probe file; ``payload.marker`` exists if loading ran it."""
    return CodeRunner(tmp_path / "payload-ran")

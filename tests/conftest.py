"""Shared fixtures: paths to the real Sentinel samples in ../shared/data (skipped when absent),
and synthetic datasets generated once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real Sentinel samples not found at {SHARED_DATA} (only in the dev workspace)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> Callable[..., Path]:
    """``synthetic(size=256, seed=0, layout="dfc2020")``: a generated S1 + S2 + label dataset,
    made once per session and shared by every test that asks for the same one. Read it only:
    copy it (``shutil.copytree``) before changing anything in it."""
    from sarfuse.data.synth import generate

    made: dict[tuple, Path] = {}

    def make(size: int = 256, seed: int = 0, layout: str = "dfc2020") -> Path:
        key = (size, seed, layout)
        if key not in made:
            folder = tmp_path_factory.mktemp(f"synth-{layout}-{size}-s{seed}")
            made[key] = generate(folder / "data", size=size, seed=seed, layout=layout)
        return made[key]

    return make


@pytest.fixture
def file_error(tmp_path) -> Callable[..., str]:
    """``file_error(load, name, text)``: the problem ``load`` reports for a file ``name`` holding
    ``text`` (no file for None), checked to be one line that starts with the file's path."""
    from sarfuse.errors import SarfuseError

    def run(load: Callable, name: str, text: str | None) -> str:
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(SarfuseError) as err:
            load(path)
        line = str(err.value)
        assert line.startswith(f"{path}: ") and "\n" not in line, line
        return line.removeprefix(f"{path}: ")

    return run


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

"""Fuzzing the readers: a small real GeoTIFF truncated, with flipped bytes or an edited header,
read by ``stats`` and ``probe`` in-process. Each run works or raises SarfuseError; no other
exception escapes and nothing hangs. A few examples in the default suite, more in the slow one.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sarfuse.data.normalise import compute_stats
from sarfuse.data.raster import RasterInfo, write_geotiff
from sarfuse.errors import SarfuseError
from sarfuse.mapping.workflow import ProbeConfig, run_probe
from sarfuse.runtime import resolve_source

SIZE = 64
PROBE = ProbeConfig(labels=1, patch_size=32, epochs=1, features="raw", classifier="linear")


def _write_scene(folder: Path) -> dict[str, Path]:
    """S1 (dB), S2 (4 bands) and DFC2020 labels on one 64 x 64 grid, and a samples.csv."""
    rng = np.random.default_rng(0)
    grid = RasterInfo.make(SIZE, SIZE)
    files = {"s1": folder / "s1.tif", "s2": folder / "s2.tif", "label": folder / "label.tif"}
    s1 = rng.normal(-12, 3, (2, SIZE, SIZE)).astype("float32")
    write_geotiff(files["s1"], s1, grid, band_names=["VV", "VH"])
    s2 = rng.integers(1, 4000, (4, SIZE, SIZE)).astype("uint16")
    write_geotiff(files["s2"], s2, grid, band_names=["B2", "B3", "B4", "B8"])
    label = np.where(np.arange(SIZE)[None, :] < SIZE // 2, 1, 10) * np.ones((SIZE, 1))
    write_geotiff(files["label"], label.astype("uint8"), grid)
    (folder / "samples.csv").write_text("s1,s2,label\ns1.tif,s2.tif,label.tif\n")
    return files


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz")
    return {role: path.read_bytes() for role, path in _write_scene(folder).items()}


mutations = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 0.999), st.integers(1, 255)),
                                         min_size=1, max_size=8)),
    st.tuples(st.just("header"), st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)),
                                           min_size=1, max_size=6)),
)  # fmt: skip


def _mutate(data: bytes, mutation) -> bytes:
    kind, how = mutation
    if kind == "truncate":
        return data[: int(len(data) * how)]
    out = bytearray(data)
    if kind == "flip":  # xor bytes anywhere in the file
        for where, mask in how:
            out[int(len(out) * where)] ^= mask
    else:  # overwrite bytes of the header and the first IFD (tags, offsets, counts)
        for where, value in how:
            out[min(where, len(out) - 1)] = value
    return bytes(out)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang


def _run_readers(files: dict[str, bytes], role: str, mutation) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_scene(folder)
        (folder / f"{role}.tif").write_bytes(_mutate(files[role], mutation))
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(60)
        try:
            source = resolve_source(folder / "samples.csv", labels=False)
            compute_stats(source, s2_bands=("B2", "B3", "B4", "B8"), progress=False)
            run_probe(resolve_source(folder / "samples.csv"), folder / "probe", PROBE,
                      progress=False)  # fmt: skip
        except SarfuseError as err:
            assert "\n" not in str(err) and str(err).strip()
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


ROLES = st.sampled_from(["s1", "s2", "label"])
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # the pristine bytes are only read


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(role=ROLES, mutation=mutations)
def test_damaged_files_work_or_fail_in_one_line(pristine, role, mutation) -> None:
    _run_readers(pristine, role, mutation)


@pytest.mark.slow
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(role=ROLES, mutation=mutations)
def test_damaged_files_work_or_fail_in_one_line_many(pristine, role, mutation) -> None:
    _run_readers(pristine, role, mutation)

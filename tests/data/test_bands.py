"""Band names, stack orders and name -> position resolution."""

from __future__ import annotations

import pytest

from sarfuse.data.bands import (
    RESOLUTION,
    S1_BANDS,
    S2_10M_BANDS,
    S2_BANDS,
    S2_L2A_BANDS,
    S2_STACKS,
    band_name,
    canonical_bands,
    means_all,
    network_s2_bands,
    resolve_bands,
    without_cirrus,
)
from sarfuse.errors import SarfuseError


def test_stack_orders():
    assert S1_BANDS == ("VV", "VH")
    assert S2_BANDS[7:10] == ("B8", "B8A", "B9") and len(S2_BANDS) == 13
    assert "B10" not in S2_L2A_BANDS and len(S2_L2A_BANDS) == 12
    assert all(len(names) == count for count, names in S2_STACKS.items())
    assert set(RESOLUTION) == set(S1_BANDS) | set(S2_BANDS)
    assert [RESOLUTION[b] for b in ("B2", "B5", "B8A", "B9", "B11")] == [10, 20, 20, 60, 20]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("B02", "B2"), ("b8a", "B8A"), ("B08A", "B8A"), (" B12 ", "B12"), ("vh", "VH"),
     ("B13", None), ("B0", None), ("red", None)],
)  # fmt: skip
def test_band_name(raw, expected):
    assert band_name(raw) == expected


def test_resolve_bands_positions():
    assert resolve_bands(["B2", "B3", "B4", "B8"], "s2") == (1, 2, 3, 7)
    assert resolve_bands(["B11", "B1"], "s2", S2_L2A_BANDS) == (10, 0)
    assert resolve_bands(["VH"], "s1") == (1,)
    assert canonical_bands(["b08", "B02"], "s2") == ("B8", "B2")


@pytest.mark.parametrize(
    ("names", "sensor", "available", "message"),
    [
        (["B13"], "s2", None, "unknown S2 band 'B13'"),
        (["VV"], "s2", None, "unknown S2 band 'VV'"),
        (["B10"], "s2", S2_L2A_BANDS, "S2 band B10 is not available"),
        (["B2", "B02"], "s2", None, "B2 is asked for twice"),
        (["HH"], "s1", None, "unknown S1 band 'HH'"),
    ],
)
def test_resolve_bands_errors(names, sensor, available, message):
    with pytest.raises(SarfuseError, match=message):
        resolve_bands(names, sensor, available)


def test_network_s2_bands_all_means_every_band_but_cirrus() -> None:
    assert network_s2_bands(["all"], S2_BANDS) == S2_L2A_BANDS
    assert network_s2_bands(("ALL",), ("B2", "B8", "B11")) == ("B2", "B8", "B11")
    assert network_s2_bands(("B8", "B2"), S2_BANDS) == ("B8", "B2")  # a list is kept, in order
    assert network_s2_bands(("all",), ()) == ()  # no S2 in the data


def test_band_groups_are_worked_out_from_the_band_table():
    assert S2_10M_BANDS == ("B2", "B3", "B4", "B8")  # the paper's optical bands
    assert without_cirrus(("B11", "B10", "B2")) == ("B11", "B2")
    assert means_all(["All"]) and not means_all(["all", "B2"]) and not means_all([])

"""Tiles predicted in batches with reads ahead: same results, in order, bounded reads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sarfuse.errors import SarfuseError
from sarfuse.mapping.batching import TileBatcher

WINDOWS = [(r, c, 4, 4) for r in (0, 3) for c in (0, 3, 6)]


def _read(window):
    r, c, h, w = window
    return {"x": np.full((1, h, w), r * 10 + c, np.float32), "thread": threading.get_ident()}


def test_batched_predictions_equal_one_by_one():
    calls = []

    def many(tiles):
        calls.append(len(tiles))
        return np.stack([t["x"] * 2 for t in tiles])

    with TileBatcher(WINDOWS, _read, many, batch=4) as batcher:
        for window in WINDOWS:
            proba, inputs = batcher(window)
            np.testing.assert_array_equal(proba, _read(window)["x"] * 2)
            assert inputs["thread"] != threading.get_ident()  # read in the reader thread
    assert calls == [4, 2]


def test_reads_stay_bounded_ahead_of_predictions():
    read = []

    def counting_read(window):
        read.append(window)
        return _read(window)

    with TileBatcher(WINDOWS, counting_read, lambda t: np.stack([x["x"] for x in t]),
                     batch=1, ahead=1) as batcher:  # fmt: skip
        batcher(WINDOWS[0])
        assert len(read) <= 3  # the tile predicted + batch + ahead queued


def test_tiles_out_of_order_are_refused():
    with TileBatcher(WINDOWS, _read, lambda t: np.stack([x["x"] for x in t])) as batcher:
        with pytest.raises(SarfuseError, match="out of order"):
            batcher(WINDOWS[2])

"""Tiles predicted several at a time, the next ones read in a thread while a batch computes.

Done one tile at a time, reading (GDAL decoding, normalising) and predicting (the network) take
turns and the cores idle during reads. Here a reader thread keeps up to ``ahead`` tiles read in
front of the predictor, and ``batch`` tiles go through the network in one call. Tiles are
predicted in the order the mapper will ask for them, which it gives up front; memory is bounded
by ``batch + ahead`` tiles, whatever the scene's size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from sarfuse.errors import SarfuseError

Window = tuple[int, int, int, int]  # (row, col, height, width)
Inputs = dict[str, np.ndarray]
ReadFn = Callable[[Window], Inputs]
# a list of tiles' inputs (all of one size) -> their (N, K, h, w) probabilities
PredictManyFn = Callable[[list[Inputs]], np.ndarray]


class TileBatcher:
    """``batcher(window)`` -> ``(probabilities (K, h, w), inputs)`` of the next tile in ``order``.

    Use as a context manager, so the reader thread stops when the map ends or fails.
    """

    def __init__(
        self,
        order: Sequence[Window],
        read_fn: ReadFn,
        predict_many: PredictManyFn,
        batch: int = 4,
        ahead: int | None = None,
    ) -> None:
        if batch < 1:
            raise SarfuseError(None, f"tiles per batch must be >= 1, got {batch}")
        self.order, self.read_fn, self.predict_many = list(order), read_fn, predict_many
        self.batch, self.ahead = batch, ahead if ahead is not None else batch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sarfuse-read")
        self._reads: deque[Future] = deque()  # reads of order[_predicted + len(_ready) ...]
        self._read = 0  # tiles of ``order`` whose read was submitted
        self._predicted = 0  # tiles of ``order`` predicted (handed out or waiting in _ready)
        self._ready: dict[Window, tuple[np.ndarray, Inputs]] = {}

    def __enter__(self) -> TileBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __call__(self, window: Window) -> tuple[np.ndarray, Inputs]:
        if window not in self._ready:
            expected = self.order[self._predicted] if self._predicted < len(self.order) else None
            if window != expected:
                raise SarfuseError(None, f"tile {window} asked out of order (next is {expected})")
            self._predict_next()
        return self._ready.pop(window)

    def _submit_reads(self) -> None:
        """Keep ``batch + ahead`` reads queued or done beyond what was predicted."""
        while self._read < len(self.order) and len(self._reads) < self.batch + self.ahead:
            self._reads.append(self._pool.submit(self.read_fn, self.order[self._read]))
            self._read += 1

    def _predict_next(self) -> None:
        self._submit_reads()
        n = min(self.batch, len(self.order) - self._predicted)
        inputs = [self._reads.popleft().result() for _ in range(n)]
        self._submit_reads()  # the next tiles are read while this batch computes
        proba = np.asarray(self.predict_many(inputs))
        for k in range(n):
            self._ready[self.order[self._predicted + k]] = (proba[k], inputs[k])
        self._predicted += n

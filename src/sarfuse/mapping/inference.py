"""Map a whole scene to a GeoTIFF, tile by tile, with memory flat in the scene's size.

Tiles (:mod:`sarfuse.mapping.tiling`) are predicted row by row, left to right, and their
probabilities blended with smooth weights. Scene rows above the next tile row's start and
columns left of the next tile's start are then final: each such segment is normalised, turned
into classes (argmax; invalid pixels -> ``nodata``) and written to its window at once. Only two
things are held: the current tile (plus its overlap to the right) and a full-width strip of the
rows the next tile row overlaps, so memory grows with ``overlap x width``, not with the scene.

Resume: with ``resume=True`` every finished band of rows is also kept in ``<out>.partial/``
(``job.json`` plus one ``.npz`` per band, each renamed into place when complete). An
interrupted run leaves no file under the final name (the GeoTIFF is written to a temporary
name and renamed on success); the next run replays the kept bands and predicts only the tile
rows that reach past them. The sidecar is removed when the map is complete.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window as RioWindow
from tqdm.auto import tqdm

from sarfuse.data.raster import RasterInfo, open_writer
from sarfuse.data.schemes import BYTE_MAX, IGNORE_INDEX
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_path, atomic_write_text
from sarfuse.mapping.batching import PredictManyFn, TileBatcher
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.tiling import Window, normalise, tile_windows, window_weights

ReadFn = Callable[[Window], dict[str, np.ndarray]]  # (row, col, h, w) -> inputs incl. "valid"
PredictFn = Callable[[dict[str, np.ndarray]], np.ndarray]  # inputs -> (K, h, w) probabilities
Emit = Callable[[int, np.ndarray, np.ndarray | None], None]  # (col, classes, probabilities)


@dataclass
class _Acc:
    """Blending sums over a region: ``total`` (K, h, w), ``weight`` and ``valid`` (h, w)."""

    total: np.ndarray
    weight: np.ndarray
    valid: np.ndarray

    @classmethod
    def zeros(cls, k: int, h: int, w: int) -> _Acc:
        return cls(
            np.zeros((k, h, w), np.float32), np.zeros((h, w), np.float32), np.zeros((h, w), bool)
        )

    def part(self, rows: slice, cols: slice) -> _Acc:
        """A view on a sub-region (writes go through to this accumulator)."""
        return _Acc(self.total[:, rows, cols], self.weight[rows, cols], self.valid[rows, cols])

    def add(self, other: _Acc) -> None:
        self.total += other.total
        self.weight += other.weight
        self.valid |= other.valid

    def shift_left(self, n: int) -> None:
        """Drop the first ``n`` columns; the rest move left, zero columns come in on the right."""
        for a in (self.total, self.weight[None], self.valid[None]):
            a[..., : a.shape[-1] - n] = a[..., n:].copy()
            a[..., a.shape[-1] - n :] = 0

    def finish(self, nodata: int, with_proba: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Classes ``(h, w)`` uint8 (``nodata`` where invalid) and probabilities ``(K, h, w)``."""
        proba = normalise(self.total, self.weight)
        classes = np.where(self.valid, proba.argmax(0), nodata).astype(np.uint8)
        return classes, np.where(self.valid, proba, np.nan).astype(
            np.float32
        ) if with_proba else None


def _checked_tile(
    window: Window, proba: np.ndarray, inputs: dict, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    valid = np.asarray(inputs["valid"], dtype=bool)
    proba = np.asarray(proba, dtype=np.float32)
    if proba.shape != (num_classes, window[2], window[3]) or valid.shape != window[2:]:
        raise SarfuseError(
            None,
            f"tile {window}: expected probabilities {(num_classes, *window[2:])} and valid "
            f"{window[2:]}, got {proba.shape} and {valid.shape}",
        )
    return np.where(valid & np.isfinite(proba), proba, 0.0), valid


def _blend_tile_row(
    tiles: list[Window],
    carry: _Acc,
    n: int,
    predict: Callable[[Window], _Acc],
    emit: Callable[[int, _Acc], None] | None,
    width: int,
) -> _Acc:
    """Blend one tile row; returns the strip carried into the next tile row.

    ``carry`` (K, c, W) holds earlier tile rows' sums for the first ``c`` rows of this one;
    ``n`` rows (up to the next tile row's start) become final: ``emit(col, segment)`` gets
    them segment by segment as the tiles move right. The other ``h - n`` rows are returned.
    """
    k, c = carry.total.shape[:2]
    h, w = tiles[0][2:]
    local = _Acc.zeros(k, h, w)  # scene columns [left, left + w) of this tile row
    strip = _Acc.zeros(k, h - n, width)

    def release(a: int, b: int) -> None:  # scene columns [a, b) are done with this tile row
        segment = local.part(slice(None), slice(0, b - a))
        segment.part(slice(0, c), slice(None)).add(carry.part(slice(None), slice(a, b)))
        if emit is not None:
            emit(a, segment.part(slice(0, n), slice(None)))
        strip.part(slice(None), slice(a, b)).add(segment.part(slice(n, h), slice(None)))

    left = 0
    for window in tiles:
        col = window[1]
        if col > left:
            release(left, col)
            local.shift_left(col - left)
            left = col
        local.add(predict(window))
    release(left, width)
    return strip


class _Outputs:
    """The class GeoTIFF and the optional probability GeoTIFF being written; class pixel counts."""

    def __init__(
        self,
        stack: ExitStack,
        info: RasterInfo,
        path: Path,
        proba_path: str | Path | None,
        names: list[str],
        nodata: int,
        colormap: Mapping[int, Sequence[int]] | None,
    ) -> None:
        self.counts = np.zeros(BYTE_MAX + 1, dtype=np.int64)
        tags = {"class_names": json.dumps(names), "nodata_meaning": "no valid input"}
        cmap = None if colormap is None else {nodata: (0, 0, 0, 0), **dict(colormap)}
        self.classes = stack.enter_context(
            open_writer(path, info, 1, "uint8", nodata=nodata, colormap=cmap, tags=tags)
        )
        self.proba = None
        if proba_path is not None:
            self.proba = stack.enter_context(open_writer(
                proba_path, info, len(names), "float32", nodata=float("nan"), tags=tags,
                band_names=names,
            ))  # fmt: skip

    def write(self, row: int, col: int, classes: np.ndarray, proba: np.ndarray | None) -> None:
        """Write ``(h, w)`` classes (and ``(K, h, w)`` probabilities) at ``(row, col)``."""
        window = RioWindow(col, row, classes.shape[1], classes.shape[0])
        self.classes.write(classes, 1, window=window)
        if self.proba is not None:
            self.proba.write(proba, window=window)
        self.counts += np.bincount(classes.ravel(), minlength=BYTE_MAX + 1)


class _Sidecar:
    """``<out>.partial/``: the finished bands of an interrupted map and what job they belong to.

    A band is a zip of ``.npy`` segments (``<col>_classes``, ``<col>_proba``), as ``np.savez``.
    """

    def __init__(self, directory: Path, job: dict[str, Any]) -> None:
        self.dir = directory
        job_file = self.dir / "job.json"
        if self.dir.exists() and (
            not job_file.is_file() or json.loads(job_file.read_text()) != job
        ):
            shutil.rmtree(self.dir)  # left by another job: start over
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job_file, json.dumps(job))

    def replay(self, out: _Outputs) -> int:
        """Write the kept bands that continue each other from row 0; returns the rows done."""
        done = 0
        for path in sorted(self.dir.glob("band_*_*.npz")):
            start, end = (int(x) for x in path.stem.split("_")[1:])
            if start != done:
                break
            with np.load(path) as band:
                for key in sorted(k for k in band.files if k.endswith("_classes")):
                    col = int(key.split("_")[0])
                    proba = band[f"{col:07d}_proba"] if out.proba is not None else None
                    out.write(start, col, band[key], proba)
            done = end
        return done

    @contextmanager
    def band(self, start: int, end: int) -> Iterator[Emit]:
        """Collect one band's segments; the band file appears only once it is complete."""
        with atomic_path(self.dir / f"band_{start:07d}_{end:07d}.npz") as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:

                def put(col: int, classes: np.ndarray, proba: np.ndarray | None) -> None:
                    for name, array in (("classes", classes), ("proba", proba)):
                        if array is not None:
                            with zf.open(f"{col:07d}_{name}.npy", "w", force_zip64=True) as f:
                                np.lib.format.write_array(f, array)

                yield put

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _job(
    info: RasterInfo,
    num_classes: int,
    config: MapConfig,
    nodata: int,
    probabilities: bool,
    key: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a map's kept rows belong to: its grid, classes, tiling and ``key``."""
    return {
        "height": info.height, "width": info.width, "crs": str(info.crs),
        "transform": list(info.transform)[:6], "num_classes": num_classes, "tile": config.tile,
        "overlap": config.overlap, "nodata": nodata, "probabilities": probabilities,
        "key": json.loads(json.dumps(key or {})),  # as read back from job.json
    }  # fmt: skip


@dataclass
class _Plan:
    """A scene's tiles by tile row (in order); rows above the next tile row's start are final
    once that tile row is blended."""

    windows: list[Window]
    rows: dict[int, list[Window]]  # tile row start -> its windows, left to right
    starts: list[int]
    ends: list[int]  # the next tile row's start (the scene's height for the last)

    @classmethod
    def of(cls, info: RasterInfo, config: MapConfig) -> _Plan:
        windows = tile_windows(info.height, info.width, config.tile, config.overlap)
        rows: dict[int, list[Window]] = {}
        for window in windows:
            rows.setdefault(window[0], []).append(window)
        starts = list(rows)
        return cls(windows, rows, starts, starts[1:] + [info.height])

    def todo(self, done: int) -> list[int]:
        """The tile rows that reach past the ``done`` rows kept from an earlier run."""
        th = self.windows[0][2]  # tile height, the same for every tile
        return [i for i, s in enumerate(self.starts) if s + th > done]

    def skipped(self, todo: list[int]) -> int:
        """Tiles of the tile rows not to predict again."""
        return sum(len(self.rows[s]) for s in self.starts[: todo[0] if todo else len(self.starts)])


def map_scene(
    predict_fn: PredictFn,
    read_fn: ReadFn,
    info: RasterInfo,
    out_path: str | Path,
    num_classes: int,
    config: MapConfig | None = None,
    colormap: Mapping[int, Sequence[int]] | None = None,
    class_names: Sequence[str] | None = None,
    probabilities_path: str | Path | None = None,
    nodata: int = IGNORE_INDEX,
    progress: bool = True,
    resume: bool = True,
    key: Mapping[str, Any] | None = None,
    predict_many: PredictManyFn | None = None,
) -> dict[str, Any]:
    """Predict a scene tile by tile with ``config``'s tiling (default: :class:`MapConfig`'s)
    and write a uint8 class GeoTIFF on ``info``'s grid, with ``class_names`` in a tag, and
    optionally ``probabilities_path`` (float32, NaN where invalid). ``predict_many`` predicts
    ``config.batch_tiles`` tiles a call (else ``predict_fn`` one) while the next are read. Rows
    kept by a job of another ``key`` (JSON: inputs, models) are discarded, never spliced in.
    Returns a summary with the pixel count per class."""
    config, out_path = config or MapConfig(), Path(out_path)
    names = _class_names(out_path, class_names, num_classes, nodata)
    plan = _Plan.of(info, config)
    job = _job(info, num_classes, config, nodata, probabilities_path is not None, key)
    sidecar = _sidecar(out_path, job, resume)
    many = predict_many or (lambda tiles: np.stack([predict_fn(t) for t in tiles]))
    with ExitStack() as stack:
        out = _Outputs(stack, info, out_path, probabilities_path, names, nodata, colormap)
        done = sidecar.replay(out) if sidecar else 0
        todo = plan.todo(done)
        predict = _predictor(stack, plan, todo, info, config, read_fn, many, num_classes, progress)
        _blend_rows(plan, todo, done, predict, out, sidecar, nodata, num_classes)
    if sidecar:
        sidecar.remove()
    proba = probabilities_path and str(probabilities_path)  # None stays None
    return {"path": str(out_path), "probabilities": proba, "tiles": len(plan.windows),
            "resumed_at_row": done, "invalid_pixels": int(out.counts[nodata]),
            "class_pixels": {n: int(out.counts[i]) for i, n in enumerate(names)}}  # fmt: skip


def _predictor(
    stack: ExitStack,
    plan: _Plan,
    todo: list[int],
    info: RasterInfo,
    config: MapConfig,
    read_fn: ReadFn,
    many: PredictManyFn,
    num_classes: int,
    progress: bool,
) -> Callable[[Window], _Acc]:
    """``predict(window)``: a tile's weighted probabilities, the tiles of ``todo`` read ahead
    and predicted ``config.batch_tiles`` at a time; a progress bar counts them."""
    bar = stack.enter_context(
        tqdm(total=len(plan.windows), initial=plan.skipped(todo), disable=not progress,
             desc="map", unit="tile", leave=False)
    )  # fmt: skip
    order = [w for i in todo for w in plan.rows[plan.starts[i]]]
    batcher = stack.enter_context(TileBatcher(order, read_fn, many, config.batch_tiles))

    def predict(window: Window) -> _Acc:
        proba, valid = _checked_tile(window, *batcher(window), num_classes)
        weight = window_weights(window, *info.shape, config.overlap)
        bar.update()
        return _Acc(proba * weight, weight, valid)

    return predict


def _class_names(
    out_path: Path, class_names: Sequence[str] | None, num_classes: int, nodata: int
) -> list[str]:
    """The class names (default: the class indices), refused unless one per class and
    ``nodata`` fits a byte above the classes."""
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes or not num_classes <= nodata <= BYTE_MAX:
        raise SarfuseError(
            out_path,
            f"need {num_classes} class names and nodata in {num_classes}..{BYTE_MAX}, got "
            f"{len(names)} names and nodata {nodata}",
        )
    return names


def _sidecar(out_path: Path, job: dict[str, Any], resume: bool) -> _Sidecar | None:
    """The kept rows of ``out_path``'s job (None, and any kept rows removed, unless
    ``resume``)."""
    partial = out_path.with_name(out_path.name + ".partial")
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
        return None
    return _Sidecar(partial, job)


def _blend_rows(
    plan: _Plan,
    todo: list[int],
    done: int,
    predict: Callable[[Window], _Acc],
    out: _Outputs,
    sidecar: _Sidecar | None,
    nodata: int,
    num_classes: int,
) -> None:
    """Blend the tile rows ``todo`` and write the rows each finishes (kept in ``sidecar``);
    rows up to ``done`` are only recomputed for the strip carried past them."""
    width = out.classes.width
    carry = _Acc.zeros(num_classes, 0, width)
    for i in todo:
        row, end = plan.starts[i], plan.ends[i]
        tiles, n = plan.rows[row], end - row
        if end <= done:  # recomputed only to rebuild the strip carried past ``done``
            carry = _blend_tile_row(tiles, carry, n, predict, None, width)
            continue
        with sidecar.band(row, end) if sidecar else _no_band() as keep:

            def emit(col: int, segment: _Acc, row: int = row, keep: Emit = keep) -> None:
                classes, proba = segment.finish(nodata, out.proba is not None)
                out.write(row, col, classes, proba)
                keep(col, classes, proba)

            carry = _blend_tile_row(tiles, carry, n, predict, emit, width)


@contextmanager
def _no_band() -> Iterator[Emit]:
    yield lambda col, classes, proba: None

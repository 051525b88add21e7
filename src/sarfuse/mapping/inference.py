"""Map a whole scene to a GeoTIFF, tile by tile, with memory flat in the scene's height.

Tiles (:mod:`sarfuse.mapping.tiling`) are predicted one tile row at a time. Their probabilities
are blended with smooth weights into a band of accumulated sums over full scene width; as soon
as no later tile row can touch a band of scene rows, it is normalised, turned into classes
(argmax; invalid pixels -> ``nodata``) and written to the output window, then dropped. So the
memory held is about one tile row of probabilities, whatever the scene height.

Resume: with ``resume=True`` every finished band of rows is also kept in ``<out>.partial/``
(``job.json`` plus one ``.npz`` per band, each written atomically). An interrupted run leaves
no file under the final name (the GeoTIFF is written to a temporary name and renamed on
success); the next run replays the kept bands and predicts only the tile rows that reach past
them. The sidecar is removed when the map is complete.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window as RioWindow
from tqdm.auto import tqdm

from sarfuse.data.raster import RasterInfo, open_writer
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_path, atomic_write_text
from sarfuse.mapping.tiling import Window, normalise, tile_windows, window_weights

_CHUNK = 1024  # columns finished at a time
ReadFn = Callable[[Window], dict[str, np.ndarray]]  # (row, col, h, w) -> inputs incl. "valid"
PredictFn = Callable[[dict[str, np.ndarray]], np.ndarray]  # inputs -> (K, h, w) probabilities


class _RowBand:
    """Weighted probability sums over scene rows ``[top, top + rows)`` and the full width.

    Tile row ``i`` starts where band ``i - 1`` ended, so ``rows`` = tile height is always enough.
    """

    def __init__(self, num_classes: int, rows: int, width: int, top: int) -> None:
        self.top = top
        self.acc = np.zeros((num_classes, rows, width), dtype=np.float32)  # (K, rows, W)
        self.weight = np.zeros((rows, width), dtype=np.float32)  # (rows, W)
        self.valid = np.zeros((rows, width), dtype=bool)  # (rows, W)

    def add(self, window: Window, proba: np.ndarray, weight: np.ndarray, valid: np.ndarray) -> None:
        r, c, h, w = window
        rows = slice(r - self.top, r - self.top + h)
        self.acc[:, rows, c : c + w] += proba * weight
        self.weight[rows, c : c + w] += weight
        self.valid[rows, c : c + w] |= valid

    def finished(self, n: int, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Blended ``(K, n, w)`` probabilities and ``(n, w)`` validity of the top ``n`` rows."""
        return normalise(self.acc[:, :n, cols], self.weight[:n, cols]), self.valid[:n, cols]

    def drop(self, n: int) -> None:
        """Forget the top ``n`` rows; the rest move up, fresh zero rows come in below."""
        for a in (self.acc[:, :], self.weight[None], self.valid[None]):
            a[:, :-n] = a[:, n:].copy()
            a[:, -n:] = 0
        self.top += n


class _Sidecar:
    """``<out>.partial/``: the finished bands of an interrupted map and what job they belong to."""

    def __init__(self, directory: Path, job: dict[str, Any]) -> None:
        self.dir = directory
        job_file = self.dir / "job.json"
        if self.dir.exists() and (
            not job_file.is_file() or json.loads(job_file.read_text()) != job
        ):
            shutil.rmtree(self.dir)  # left by another job: start over
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job_file, json.dumps(job))

    def bands(self) -> list[tuple[int, int, Path]]:
        """Kept bands ``(start, end, file)`` that continue each other from row 0."""
        found = sorted(
            (int(p.stem.split("_")[1]), int(p.stem.split("_")[2]), p)
            for p in self.dir.glob("band_*_*.npz")
        )
        chain, done = [], 0
        for start, end, path in found:
            if start != done:
                break
            chain.append((start, end, path))
            done = end
        return chain

    def keep(self, start: int, classes: np.ndarray, proba: np.ndarray | None) -> None:
        buf = io.BytesIO()
        np.savez(buf, classes=classes, **({} if proba is None else {"proba": proba}))
        with atomic_path(self.dir / f"band_{start:07d}_{start + len(classes):07d}.npz") as tmp:
            tmp.write_bytes(buf.getvalue())

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


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
        self.width = info.width
        self.counts = np.zeros(256, dtype=np.int64)
        tags = {"class_names": json.dumps(names), "nodata_meaning": "no valid input"}
        cmap = None if colormap is None else {nodata: (0, 0, 0, 0), **dict(colormap)}
        self.classes = stack.enter_context(
            open_writer(path, info, 1, "uint8", nodata=nodata, colormap=cmap, tags=tags)
        )
        self.proba = None
        if proba_path is not None:
            bands = [f"p_{n}" for n in names]
            self.proba = stack.enter_context(open_writer(
                proba_path, info, len(names), "float32", nodata=float("nan"), tags=tags,
                band_names=bands,
            ))  # fmt: skip

    def write(self, top: int, classes: np.ndarray, proba: np.ndarray | None) -> None:
        """Write ``(n, W)`` classes (and ``(K, n, W)`` probabilities) at scene row ``top``."""
        window = RioWindow(0, top, self.width, len(classes))
        self.classes.write(classes, 1, window=window)
        if self.proba is not None:
            self.proba.write(proba, window=window)
        self.counts += np.bincount(classes.ravel(), minlength=256)


def _job(
    info: RasterInfo, num_classes: int, tile: int, overlap: int, nodata: int, probabilities: bool
) -> dict[str, Any]:
    return {
        "height": info.height,
        "width": info.width,
        "crs": str(info.crs),
        "transform": list(info.transform)[:6],
        "num_classes": num_classes,
        "tile": tile,
        "overlap": overlap,
        "nodata": nodata,
        "probabilities": probabilities,
    }


def _predict_tile(
    predict_fn: PredictFn, read_fn: ReadFn, window: Window, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    inputs = read_fn(window)
    valid = np.asarray(inputs["valid"], dtype=bool)
    proba = np.asarray(predict_fn(inputs), dtype=np.float32)
    if proba.shape != (num_classes, window[2], window[3]) or valid.shape != window[2:]:
        raise SarfuseError(
            None,
            f"tile {window}: expected probabilities {(num_classes, *window[2:])} and valid "
            f"{window[2:]}, got {proba.shape} and {valid.shape}",
        )
    return np.where(valid & np.isfinite(proba), proba, 0.0), valid


def _finish(
    band: _RowBand, n: int, nodata: int, with_proba: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Classes ``(n, W)`` uint8 (and probabilities ``(K, n, W)``) of the band's top ``n`` rows.

    Done in column chunks so that no full-width float copy of the band is made.
    """
    k, _, width = band.acc.shape
    classes = np.empty((n, width), dtype=np.uint8)
    kept = np.empty((k, n, width), dtype=np.float32) if with_proba else None
    for c in range(0, width, _CHUNK):
        cols = slice(c, c + _CHUNK)
        proba, valid = band.finished(n, cols)
        classes[:, cols] = np.where(valid, proba.argmax(0), nodata)
        if kept is not None:
            kept[:, :, cols] = np.where(valid, proba, np.nan)
    return classes, kept


def map_scene(
    predict_fn: PredictFn,
    read_fn: ReadFn,
    info: RasterInfo,
    out_path: str | Path,
    num_classes: int,
    tile: int = 512,
    overlap: int = 64,
    colormap: Mapping[int, Sequence[int]] | None = None,
    class_names: Sequence[str] | None = None,
    probabilities_path: str | Path | None = None,
    nodata: int = 255,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, Any]:
    """Predict a scene tile by tile and write a uint8 class GeoTIFF on ``info``'s grid.

    ``read_fn(window)`` returns the tile's inputs with a ``"valid"`` ``(h, w)`` mask;
    ``predict_fn(inputs)`` returns ``(K, h, w)`` probabilities. Writes ``out_path`` (classes,
    colour table, class names in the ``class_names`` tag) and optionally ``probabilities_path``
    (float32, K bands, NaN where invalid). Returns a summary with the pixel count per class.
    """
    out_path = Path(out_path)
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes or not num_classes <= nodata <= 255:
        raise SarfuseError(
            out_path,
            f"need {num_classes} class names and nodata in {num_classes}..255, got "
            f"{len(names)} names and nodata {nodata}",
        )
    windows = tile_windows(info.height, info.width, tile, overlap)
    tile_rows: dict[int, list[Window]] = {}
    for window in windows:
        tile_rows.setdefault(window[0], []).append(window)
    starts = list(tile_rows)
    ends = starts[1:] + [info.height]  # rows above the next tile row's start are then final
    partial = out_path.with_name(out_path.name + ".partial")
    job = _job(info, num_classes, tile, overlap, nodata, probabilities_path is not None)
    if not resume:
        shutil.rmtree(partial, ignore_errors=True)
    sidecar = _Sidecar(partial, job) if resume else None
    th = windows[0][2]  # tile height, the same for every tile

    with ExitStack() as stack:
        out = _Outputs(stack, info, out_path, probabilities_path, names, nodata, colormap)
        done = 0
        for start, end, path in sidecar.bands() if sidecar else []:
            with np.load(path) as kept:
                out.write(start, kept["classes"], kept["proba"] if out.proba is not None else None)
            done = end
        todo = [i for i, s in enumerate(starts) if s + th > done]
        skipped = sum(len(tile_rows[s]) for s in starts[: todo[0] if todo else len(starts)])
        bar = stack.enter_context(
            tqdm(total=len(windows), initial=skipped, disable=not progress, desc="map",
                 unit="tile", leave=False)
        )  # fmt: skip
        band = _RowBand(num_classes, th, info.width, top=starts[todo[0]] if todo else 0)
        for i in todo:
            for window in tile_rows[starts[i]]:
                proba, valid = _predict_tile(predict_fn, read_fn, window, num_classes)
                band.add(window, proba, window_weights(window, *info.shape, overlap), valid)
                bar.update()
            top, n = band.top, ends[i] - band.top
            if ends[i] > done:  # else recomputed only to complete rows after ``done``
                classes, kept = _finish(band, n, nodata, out.proba is not None)
                out.write(top, classes, kept)
                if sidecar:
                    sidecar.keep(top, classes, kept)
            band.drop(n)
    if sidecar:
        sidecar.remove()
    return {
        "path": str(out_path),
        "probabilities": None if probabilities_path is None else str(probabilities_path),
        "tiles": len(windows),
        "resumed_at_row": done,
        "class_pixels": {n: int(out.counts[i]) for i, n in enumerate(names)},
        "invalid_pixels": int(out.counts[nodata]),
    }

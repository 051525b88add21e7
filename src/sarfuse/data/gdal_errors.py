"""How GDAL's write failures reach the user: as one error naming the output, nothing else.

Two holes let a failed write through (seen with a full disk, ``ulimit -f``):

* GDAL's TIFF I/O layer reports a short write or seek with libtiff's *global* error handler.
  GDAL (built on libtiff >= 4.5) routes libtiff's errors through per-file handlers only, so the
  global one is still libtiff's default, which prints ``_tiffWriteProc: File too large.`` to
  the process's stderr from C, past Python's logging. The same failure also reaches GDAL's own
  error handler (``TIFFAppendToStrip: Write error ...``) and so rasterio and sarfuse, so
  :func:`quiet_libtiff_stderr` clears libtiff's default global handler; ``--debug`` keeps it.
* rasterio ignores errors while a dataset closes, so blocks that GDAL flushes from its cache at
  the close fail silently and leave a truncated file. rasterio logs each GDAL failure (at INFO,
  as ``GDAL signalled an error``); :func:`checked_writer` collects those while a writer closes
  and raises one :class:`SarfuseError`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rasterio.io import DatasetWriter

from sarfuse.errors import SarfuseError

_MAPS = Path("/proc/self/maps")  # Linux: the shared libraries loaded, with their addresses
_GDAL_FAILURE = "GDAL signalled an error"  # how rasterio logs a GDAL CE_Failure


def _libtiff_mappings() -> tuple[str | None, list[tuple[int, int]]]:
    """The loaded libtiff's path and address ranges (Linux), else ``(None, [])``."""
    try:
        lines = _MAPS.read_text().splitlines()
    except OSError:
        return None, []
    path, ranges = None, []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and Path(parts[5]).name.startswith("libtiff"):
            path = path or parts[5]
            if parts[5] == path:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((start, end))
    return path, ranges


def quiet_libtiff_stderr() -> bool:
    """Clear libtiff's global error and warning handlers if they are libtiff's own defaults
    (which print to stderr); keep any other (an older GDAL installs its own there).

    Needs rasterio imported (GDAL and libtiff loaded). Returns True when a handler was cleared;
    off Linux, or without a libtiff loaded, it changes nothing.
    """
    import rasterio  # noqa: F401  (loads GDAL and its libtiff)

    path, ranges = _libtiff_mappings()
    if path is None:
        return False
    lib = ctypes.CDLL(path)  # the library already loaded: the same instance GDAL uses
    cleared = False
    for name in ("TIFFSetErrorHandler", "TIFFSetWarningHandler"):
        setter = getattr(lib, name)
        setter.restype, setter.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        old = setter(None)
        if old and not any(start <= old < end for start, end in ranges):
            setter(old)  # not libtiff's default: someone routes messages there, keep it
        else:
            cleared = True
    return cleared


class _Failures(logging.Handler):
    """Collects the text of GDAL failures that rasterio logs in this thread (another thread
    may be reading inputs meanwhile)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        if isinstance(record.msg, str) and record.msg.startswith(_GDAL_FAILURE):
            args = record.args if isinstance(record.args, tuple) else ()
            self.messages.append(str(args[-1]) if args else record.getMessage())


@contextmanager
def write_failures(path: str | Path) -> Iterator[None]:
    """Raise :class:`SarfuseError` naming ``path`` when GDAL reported a failure (in this thread)
    during the block, which rasterio may not have raised (while a dataset closes)."""
    logger = logging.getLogger("rasterio")
    handler, level = _Failures(), logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    if handler.messages:
        first = " ".join(handler.messages[0].split())
        raise SarfuseError(
            path, f"cannot write it completely (is the disk full?): GDAL says {first!r}"
        )


@contextmanager
def checked_writer(dataset: DatasetWriter, path: str | Path) -> Iterator[DatasetWriter]:
    """``dataset`` (open for writing), closed when the block ends; GDAL failing to write while
    it closes (blocks flushed from its cache) raises :class:`SarfuseError` naming ``path``.
    Only the close is watched: writes in the block raise on their own."""
    try:
        yield dataset
    except BaseException:
        dataset.close()
        raise
    with write_failures(path):
        dataset.close()

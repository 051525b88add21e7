"""Small file helpers: every output is written atomically so an interruption never loses work,
and torch files are read as tensors and plain data only, so a shared file cannot run code."""

from __future__ import annotations

import csv
import os
import pickle
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_error(path: str | Path, err: OSError) -> Exception:
    """A one-line error for an output that cannot be written (read-only, no space, too big)."""
    from sarfuse.errors import SarfuseError

    text = str(err).strip()
    cause = err.__cause__ or err.__context__
    if "previous exception" in text and cause is not None and str(cause).strip():
        text = str(cause).strip()  # GDAL's "Write failed. See previous exception": say why
    reason = err.strerror or (text.splitlines()[0] if text else type(err).__name__)
    return SarfuseError(path, f"cannot write: {reason}")


def make_parent(path: str | Path) -> None:
    """Create the folder ``path`` goes into (and its parents), or say in one line why not."""
    from sarfuse.errors import SarfuseError

    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [parent, *parent.parents] if p.exists()), parent)
        raise SarfuseError(path, f"cannot write: {blocker} is a file, not a folder") from None
    except OSError as err:
        raise write_error(path, err) from None


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds.

    The result gets the permissions of a plain new file (0666 less the umask), not the 0600 of
    a temporary file; a write that fails (read-only folder, disk full) is one-line
    :class:`SarfuseError` naming ``path``, and whatever ``path`` held before is kept.
    """
    path = Path(path)
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix
        )
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
    except OSError as err:
        raise write_error(path, err) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_save(path: str | Path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        try:
            writer(tmp)
        except RuntimeError as err:  # torch.save reports a failed write as a RuntimeError
            if "writ" not in str(err).lower():
                raise
            raise write_error(path, OSError(str(err).strip().splitlines()[0])) from None
    return Path(path)


def atomic_write_csv(path: str | Path, rows: list[dict], columns: list[str]) -> Path:
    """Write ``rows`` (dicts) with a header of ``columns``; keys not in ``columns`` are dropped."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in blocks), to tell whether two jobs used the same file."""
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_tensors(path: str | Path, unreadable: str) -> Any:
    """``torch.load`` that builds tensors and plain data only, never other Python objects.

    A pickle can run any code while it is read, so a shared checkpoint or probe file is read
    with ``weights_only=True``; a file that needs more is refused. Errors are one
    :class:`SarfuseError` naming ``path``: ``unreadable`` plus the cause for a damaged file.
    """
    import torch

    from sarfuse.errors import SarfuseError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:
            raise SarfuseError(path, f"{unreadable} (UnpicklingError)") from None
        raise SarfuseError(
            path,
            f"refused: it holds a Python object ({found.group(1)}) besides tensors and plain "
            "data, and loading that could run code",
        ) from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise SarfuseError(path, f"{unreadable} ({type(exc).__name__})") from None


def local_stamp(path: str | Path) -> tuple[int, int] | None:
    """(size, mtime in ns) of a local file; None for a GDAL virtual path or URL
    (``/vsizip/...``, ``/vsicurl/...``), which has no local stamp."""
    local = Path(path)
    if not local.is_file():
        return None
    stat = local.stat()
    return stat.st_size, stat.st_mtime_ns

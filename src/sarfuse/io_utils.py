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


@contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
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
        writer(tmp)
    return Path(path)


def atomic_write_csv(path: str | Path, rows: list[dict], columns: list[str]) -> Path:
    """Write ``rows`` (dicts) with a header of ``columns``; keys not in ``columns`` are dropped."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


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

"""One writer per output: a lock file holding the owner's pid, so two runs never interleave.

The lock is created with ``O_EXCL`` (atomic on local file systems). A lock whose pid is no
longer running was left by a killed run and is taken over; a live owner makes the second run
stop at once with a one-line :class:`SarfuseError`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sarfuse.errors import SarfuseError
from sarfuse.io_utils import make_parent, write_error

LOCK_NAME = ".sarfuse.lock"
_HELD: set[Path] = set()  # locks this process holds: taking one again nests instead of failing


def lock_path(output: str | Path, folder: bool) -> Path:
    """The lock of an output folder (inside it) or of an output file (beside it)."""
    output = Path(output)
    return output / LOCK_NAME if folder else output.with_name(f".{output.name}.lock")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a zombie or another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> dict | None:
    """The lock's owner record, or None when the file vanished or is unreadable (stale)."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _mine(path: Path) -> bool:
    """Whether this process is the lock's recorded owner."""
    return (_owner(path) or {}).get("pid") == os.getpid()


def _stale(owner: dict | None) -> bool:
    if owner is None:
        return True
    if owner.get("host") not in (None, socket.gethostname()):
        return False  # another machine's pid cannot be checked from here: assume it runs
    return not pid_alive(owner["pid"])


def _try_create(path: Path, output: str | Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as err:  # named by the output the user gave, not the lock beside it
        raise write_error(output, err) from None
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": os.getpid(), "host": socket.gethostname()}, handle)
    return True


RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # torchrun, Lightning, SLURM


def secondary_rank() -> bool:
    """Whether this process is a rank other than 0 of a distributed run: its rank 0 holds the
    lock for the whole run (Lightning starts the other ranks by running the command again)."""
    return any(os.environ.get(name, "0").strip() not in ("", "0") for name in RANK_VARIABLES)


@contextmanager
def output_lock(output: str | Path, folder: bool = True) -> Iterator[Path]:
    """Hold the lock of ``output`` for the block; raise when another live run holds it.

    A secondary rank of a distributed run takes no lock: rank 0 holds it for all ranks. A lock
    this process already holds nests (a library call inside a command that locked the output)."""
    path = lock_path(output, folder)
    if secondary_rank() or (
        path.resolve() in _HELD and (_owner(path) or {}).get("pid") == os.getpid()
    ):
        yield path
        return
    created = not path.parent.exists()
    try:
        make_parent(path)
    except SarfuseError as err:  # name the output the user gave, not the lock inside it
        raise SarfuseError(output, err.problem) from None
    for _ in range(3):  # a stale lock is removed, then created again (another run may race us)
        if _try_create(path, output):
            break
        owner = _owner(path)
        if not _stale(owner):
            raise SarfuseError(
                output,
                f"another sarfuse run (pid {owner['pid']}) is writing here; wait for it to "
                f"finish or choose another output (remove {path} if that run is gone)",
            )
        path.unlink(missing_ok=True)
    else:
        raise SarfuseError(output, f"cannot take the lock {path}: other runs keep taking it")
    _HELD.add(path.resolve())
    try:
        yield path
    finally:
        _HELD.discard(path.resolve())
        if _mine(path):
            path.unlink(missing_ok=True)
        if created and not any(path.parent.iterdir()):
            path.parent.rmdir()  # a run that failed before writing leaves no empty folder

"""One error type for bad input, so the CLI can report it as a single line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SarfuseError(Exception):
    """Bad input or an impossible request; ``str()`` is ``"<path>: <problem>"`` on one line."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")

    def __reduce__(self):  # picklable, so errors cross process pools intact
        return type(self), (self.path, self.problem)


class SarfuseWarning(UserWarning):
    """Input that works but may not be what the user meant; the CLI prints it as one line."""


def warn(path: str | Path | None, problem: str) -> None:
    """Emit a one-line :class:`SarfuseWarning` ``"<path>: <problem>"``."""
    import warnings

    text = " ".join(str(problem).split())
    warnings.warn(text if path is None else f"{path}: {text}", SarfuseWarning, stacklevel=2)


class Interrupted(SarfuseError):
    """A run stopped by Ctrl-C; ``problem`` says what was saved and how to resume."""


def check(condition: object, path: str | Path | None, problem: str) -> None:
    """Raise :class:`SarfuseError` when ``condition`` is false."""
    if not condition:
        raise SarfuseError(path, problem)


@contextmanager
def naming(path: str | Path | None) -> Iterator[None]:
    """Inside the block, a :class:`SarfuseError` raised without a file is given ``path``
    (the data it concerns), so that no message leaves the user guessing which input."""
    try:
        yield
    except SarfuseError as err:
        if err.path is not None or path is None:
            raise
        raise type(err)(path, err.problem) from None

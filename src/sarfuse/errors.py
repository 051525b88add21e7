"""One error type for bad input, so the CLI can report it as a single line."""

from __future__ import annotations

from pathlib import Path


class SarfuseError(Exception):
    """Bad input or an impossible request; ``str()`` is ``"<path>: <problem>"`` on one line."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")

    def __reduce__(self):  # picklable, so errors cross process pools intact
        return type(self), (self.path, self.problem)


def check(condition: object, path: str | Path | None, problem: str) -> None:
    """Raise :class:`SarfuseError` when ``condition`` is false."""
    if not condition:
        raise SarfuseError(path, problem)

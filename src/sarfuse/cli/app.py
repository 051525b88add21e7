"""The Typer app of ``sarfuse``, and how it reports: errors and warnings become one line each."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sarfuse import __version__
from sarfuse.errors import Interrupted, SarfuseError, SarfuseWarning

app = typer.Typer(
    help="Self-supervised SAR-optical (Sentinel-1/-2) fusion and few-label land-cover mapping.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: long paths must stay whole when the output is piped or the terminal is narrow;
# no markup on stdout, so that paths such as "runs/[v2]/map.tif" print as they are
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True, markup=False)
_python_showwarning = warnings.showwarning


def _close_progress_bars() -> None:
    """Close the bars an error interrupted, so that the error starts on a line of its own."""
    from tqdm import tqdm

    for bar in list(tqdm._instances):
        bar.close()


_DEBUG = {"on": False}  # --debug: let exceptions through with their traceback


def friendly(fn):
    """Turn library errors into one red line and exit code 2 (130 for an interruption).

    Nothing prints a traceback without ``--debug``: an unexpected exception is one line too.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Interrupted as exc:
            _fail(f"[yellow]interrupted[/]: {escape(str(exc))}", 130)
        except KeyboardInterrupt:
            _fail("[yellow]interrupted[/]: no half-written file is left; rerun to finish", 130)
        except SarfuseError as exc:
            _fail(f"[bold red]error:[/] {escape(str(exc))}", 2)
        except OSError as exc:  # a file system refusal the library did not name itself
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", 2)
        except Exception as exc:
            if _DEBUG["on"]:
                raise
            text = " ".join(str(exc).split())[:300]
            _fail(
                f"[bold red]internal error:[/] {type(exc).__name__}: {escape(text)} "
                "(rerun with --debug for the traceback)",
                1,
            )

    return wrapper


class _ConsoleLog(logging.Handler):
    """Log records as plain lines on stderr (whole paths, never wrapped), above progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _show_sarfuse_log() -> None:
    """sarfuse's own notes (S1 units chosen, S2 product offsets, automatic fusion) on stderr."""
    logger = logging.getLogger("sarfuse")
    if not any(isinstance(h, _ConsoleLog) for h in logger.handlers):
        logger.addHandler(_ConsoleLog())
        logger.setLevel(logging.INFO)


def _fail(message: str, code: int):
    """Print one line (the traceback too with ``--debug``) and exit with ``code``."""
    _close_progress_bars()
    if _DEBUG["on"]:
        console.print_exception()
    console.print(message, highlight=False)
    raise typer.Exit(code) from None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Every warning is one yellow line (a library's names its category); with ``--debug``
    others keep Python's format, with the source line."""
    if _DEBUG["on"] and not issubclass(category, SarfuseWarning):
        _python_showwarning(message, category, filename, lineno, file, line)
        return
    _close_progress_bars()
    kind = "" if issubclass(category, SarfuseWarning) else f"{category.__name__}: "
    text = " ".join(str(message).split())
    console.print(f"[yellow]warning:[/] {escape(kind + text)}", highlight=False)


def _quiet_unraisable(report) -> None:
    """An exception a C library's callback could not raise (say, GDAL logging undecodable bytes
    of a damaged file) is no concern of the user's; ``--debug`` shows it."""
    if _DEBUG["on"]:
        sys.__unraisablehook__(report)


def _quiet_libraries() -> None:
    """Keep the terminal for sarfuse's own progress: no library warnings of no use to a user."""
    warnings.filterwarnings("ignore", message=".*weights_only.*")
    # a file without a CRS or transform is reported once by the data check, in its own words
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    warnings.showwarning = _show_warning
    sys.unraisablehook = _quiet_unraisable
    if not _DEBUG["on"]:  # a failed write is our one line; --debug shows libtiff's own too
        from sarfuse.data.gdal_errors import quiet_libtiff_stderr

        quiet_libtiff_stderr()


def _version(value: bool) -> None:
    if value:
        out.print(f"sarfuse {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an error.")
    ] = False,
) -> None:
    """Self-supervised SAR-optical fusion and land-cover mapping (Chen & Bruzzone, TGRS 2022)."""
    _DEBUG["on"] = debug
    _quiet_libraries()
    _show_sarfuse_log()

"""Options shared by the commands, and how their values become a config dataclass.

Options that set a config field default to None, so that a value is applied only when given
(dataclass default < ``--config`` file < explicit option); their help shows the dataclass's
default. Choices come from the registries and Literal types, never from a list typed here.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer

from sarfuse.errors import SarfuseError
from sarfuse.runconfig import field_default, load_config

C = TypeVar("C")
AUTO = "auto"  # the choice that lets sarfuse decide (from the data, or by cross-validation)


def shown(value: Any) -> str:
    """A default as a user would type it (a tuple as a comma list)."""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def field_option(cls: type, name: str, help: str, *decls: str) -> Any:
    """A typer option for field ``name`` of ``cls``, showing the dataclass's default."""
    default = field_default(cls, name)
    return typer.Option(*decls, help=help + default_note(default), show_default=False)


def default_note(default: Any) -> str:
    """`` [default: 16]`` as the help shows it (nothing for None: the help says what happens)."""
    from rich.markup import escape

    return "" if default is None else escape(f" [default: {shown(default)}]")


def choices_text(choices: tuple[str, ...] | list[str]) -> str:
    names = [str(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_choice(flag: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise SarfuseError(None, f"{flag} must be {choices_text(choices)}, got {value!r}")


def csv_words(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(x.strip() for x in text.split(",") if x.strip())


def csv_ints(text: str | None, what: str) -> tuple[int, ...] | None:
    try:
        return None if text is None else tuple(int(x) for x in csv_words(text) or ())
    except ValueError:
        raise SarfuseError(None, f"{what} must be comma-separated integers, got {text!r}") from None


def data_arg(data: list[Path] | None):
    """One path as itself, several as a list, none as None (the demo data)."""
    if not data:
        return None
    return data[0] if len(data) == 1 else data


def given(cls: type, options: dict) -> dict:
    """The options that were given (not None) and name a field of ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in options.items() if k in names and v is not None}


def layered(base: C, config: Path | None, options: dict) -> C:
    """``base`` < the ``--config`` file < the options given on the command line."""
    if config is not None:
        base = load_config(config, base)
    return replace(base, **given(type(base), options))  # type: ignore[type-var]


def split_modes() -> tuple[str, ...]:
    from sarfuse.mapping.spatial import SplitMode

    return get_args(SplitMode)


# --- options shared by several commands -----------------------------------------------------

DataArg = Annotated[
    list[Path] | None,
    typer.Argument(help="Dataset folder, samples.csv or GeoTIFF scenes (default: the demo data)."),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="YAML (or JSON) file of settings, e.g. the config a run folder saved; options given "
        "on the command line win over it.",
    ),
]
ClassesOpt = Annotated[
    Path | None, typer.Option("--classes", help="Class scheme JSON for your own labels.")
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help="auto | cpu | cuda" + default_note(AUTO))
]
S2OffsetOpt = Annotated[
    float | None,
    typer.Option(
        "--s2-offset",
        help="Added to S2 values of files that do not state their offset (bare GeoTIFFs): "
        "-1000 for GeoTIFFs cut from processing baseline 04.00+ products (from 25 Jan 2022) "
        "without correction. Default 0. .SAFE products and STAC items use their own metadata.",
    ),
]
S2_BANDS_HELP = (
    "S2 bands fed to the network: 'all' (every band the data has but the cirrus band B10) or a "
    "list, e.g. the paper's B2,B3,B4,B8."
)
SPLIT_MODE_HELP = (
    "random (evaluation patches anywhere else) | blocks (training and evaluation patches in "
    "separate blocks of the scene, a buffer apart: neighbouring patches share context, which "
    "flatters a random split)"
)
BLOCK_SIZE_HELP = "blocks: block side in pixels (default: 4 patches)."
BUFFER_HELP = "blocks: pixels kept free between training and evaluation (default: 1 patch)."

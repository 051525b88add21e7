"""Options shared by the commands, and how their values become a config dataclass.

Options that set a config field default to None, so that a value is applied only when given
(dataclass default < ``--config`` file < explicit option); their help shows the dataclass's
default. Choices come from the registries and Literal types, never from a list typed here.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from types import SimpleNamespace
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


def field_option(default: Any, help: str, *decls: str) -> Any:
    """A typer option for a config field whose default is ``default`` (shown in its help)."""
    return typer.Option(*decls, help=help + default_note(default), show_default=False)


def default_note(default: Any) -> str:
    """`` [default: 16]`` as the help shows it (nothing for None: the help says what happens)."""
    from rich.markup import escape

    return "" if default is None else escape(f" [default: {shown(default)}]")


def field_comments(cls: type) -> dict[str, str]:
    """The comment of each field of dataclass ``cls`` (the lines above it and the one beside
    it, or beside the closing bracket of a default written over several lines)."""
    names = {f.name for f in fields(cls)}
    notes: dict[str, list[str]] = {}
    above: list[str] = []
    last = None
    for line in inspect.getsource(cls).splitlines()[1:]:
        code, _, comment = line.partition("  # ")
        field = re.match(r"    (\w+): ", code)
        if re.match(r"    # ", line):
            above.append(line.strip()[2:])
        elif field and field.group(1) in names:
            last = field.group(1)
            notes[last] = [*above, comment] if comment else above
            above = []
        elif comment and last is not None and not notes[last]:
            notes[last] = [comment]
    return {k: " ".join(v) for k, v in notes.items() if v}


def field_options(
    cls: type, choices: dict | None = None, flags: dict | None = None, defaults: Any = None
) -> SimpleNamespace:
    """``.field = Annotated[type | None, typer.Option]`` for every field of ``cls`` that a CLI
    can take: help from the field's comment (+ its ``choices``), the default from the class (or
    the instance ``defaults``), the flag ``--field-name`` unless ``flags`` names another."""
    choices, flags = choices or {}, flags or {}
    comments, hints = field_comments(cls), typing.get_type_hints(cls)
    made = {}
    for name, hint in hints.items():
        kind = option_type(hint)
        if kind is None:
            continue
        text = comments.get(name, name.replace("_", " "))
        text = text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
        if name in choices:
            text += f" One of: {' | '.join(choices[name])}."
        default = field_default(cls, name) if defaults is None else getattr(defaults, name)
        made[name] = Annotated[kind | None, field_option(default, text, *flags.get(name, ()))]
    return SimpleNamespace(**made)


def takes(spec: SimpleNamespace, names: str) -> Callable:
    """Decorator: the command also takes the field options of ``spec`` named in ``names``
    (space-separated), after its own parameters; their values arrive in its ``**fields``."""

    def add(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        kind = inspect.Parameter.KEYWORD_ONLY
        extra = [inspect.Parameter(n, kind, default=None, annotation=getattr(spec, n))
                 for n in names.split()]  # fmt: skip
        fn.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        return fn

    return add


def option_type(hint: Any) -> type | None:
    """What a command line gives for a field of type ``hint``: the type itself for a number or
    a flag, text for names and lists (comma-separated); None for nested configs."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return option_type(args[0])
    if hint in (int, float, bool):
        return hint
    if hint is str or origin in (typing.Literal, tuple, typing.Union, types.UnionType):
        return str
    return None


def from_text(value: Any, hint: Any, flag: str) -> Any:
    """An option's value as field type ``hint``: comma lists become tuples (of ints where the
    field holds ints), a number where a field takes a number or a word (``--devices``)."""
    if not isinstance(value, str):
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and int in args and value.isdigit():
        return int(value)
    if origin is not tuple:
        return value
    words = csv_words(value) or ()
    if args[0] is not int:
        return words
    try:
        return tuple(int(w) for w in words)
    except ValueError:
        problem = f"{flag} must be comma-separated integers, got {value!r}"
        raise SarfuseError(None, problem) from None


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


def data_arg(data: list[Path] | None):
    """One path as itself, several as a list, none as None (the demo data)."""
    if not data:
        return None
    return data[0] if len(data) == 1 else data


def given(cls: type, options: dict) -> dict:
    """The options that were given (not None) and name a field of ``cls``, as field values."""
    hints = typing.get_type_hints(cls)
    return {
        k: from_text(v, hints[k], "--" + k.replace("_", "-"))
        for k, v in options.items()
        if k in hints and v is not None
    }


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

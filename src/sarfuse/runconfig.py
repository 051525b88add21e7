"""Config files: a YAML (or JSON) file filled into the typed config dataclasses, and back.

Every run folder keeps the resolved config it ran with in a form :func:`load_config` reads, so
``--config RUN/config.yaml`` (or a pretraining's ``config.json``) reruns it. Loading is strict: an
unknown key or a value of the wrong type is a one-line error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from sarfuse.errors import SarfuseError

C = TypeVar("C")


class _Mismatch(ValueError):
    """A value that does not fit a field's type; the message names what was expected."""


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _union(value: Any, options: tuple, where: str) -> Any:
    if value is None and type(None) in options:
        return None
    for hint in (h for h in options if h is not type(None)):
        try:
            return coerce(value, hint, where)
        except _Mismatch:
            continue
    raise _Mismatch(" or ".join(_type_name(h) for h in options))


def _scalar(value: Any, hint: type) -> Any:
    if hint is float:
        # YAML 1.1 reads "3e-4" (no dot) as a string: take what float() takes
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _Mismatch("float") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint in (bool, str, dict) and isinstance(value, hint):
        return value
    raise _Mismatch(_type_name(hint))


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` (as YAML/JSON gives it) as the field type ``hint``; :class:`_Mismatch` if not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union(value, args, where)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _Mismatch(_type_name(hint))
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _Mismatch("a list")
        return tuple(coerce(v, args[0], where) for v in value)
    if origin is dict:
        return _scalar(value, dict)
    if is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Mismatch(f"a mapping of {hint.__name__} keys")
        return fill(hint(), value, where)
    return _scalar(value, hint)


def fill(base: C, data: dict, where: str, prefix: str = "") -> C:
    """``base`` with the keys of ``data`` set (checked against the dataclass's field types)."""
    hints = typing.get_type_hints(type(base))
    known = [f.name for f in fields(base)]  # type: ignore[arg-type]
    changes = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise SarfuseError(
                where, f"unknown key {name!r}; {type(base).__name__} has {', '.join(known)}"
            )
        try:
            if is_dataclass(hints[key]) and isinstance(value, dict):
                changes[key] = fill(getattr(base, key), value, where, f"{name}.")
            else:
                changes[key] = coerce(value, hints[key], where)
        except _Mismatch as err:
            raise SarfuseError(where, f"{name}: expected {err}, got {value!r}") from None
    return replace(base, **changes)  # type: ignore[type-var]


def load_config(path: str | Path, base: C) -> C:
    """``base`` with the settings of the YAML/JSON file ``path`` (safe loading: no objects)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SarfuseError(path, "config file not found") from None
    except yaml.YAMLError as err:
        raise SarfuseError(path, f"not valid YAML: {' '.join(str(err).split())}") from None
    if data is None:
        return base
    if not isinstance(data, dict):
        raise SarfuseError(path, "a config file is a mapping of setting: value")
    return fill(base, data, str(path))


def plain(cfg: Any) -> dict:
    """The dataclass ``cfg`` as plain YAML/JSON values (tuples become lists)."""

    def lists(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [lists(v) for v in value]
        if isinstance(value, dict):
            return {k: lists(v) for k, v in value.items()}
        return value

    return lists(asdict(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as YAML at ``path`` (atomically), loadable by :func:`load_config`."""
    import yaml

    from sarfuse.io_utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(plain(cfg), sort_keys=False))
    return Path(path)


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (its factory's value for a factory)."""
    field = {f.name: f for f in fields(cls)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


# what a resumed pretraining may change; everything else stays as the run's config.json says
RESUMABLE = ("device", "steps", "ckpt_every", "devices", "num_nodes", "strategy", "precision")


def resume_config(run_dir: str | Path, changes: dict):
    """The config a pretraining in ``run_dir`` started with, for ``--resume``: its own settings,
    with ``changes`` applied where they are :data:`RESUMABLE` (the device is the default one
    unless given, as a resumed run may be on another machine); None without a config.json."""
    from sarfuse.ssl.config import PretrainConfig

    saved = Path(run_dir) / "config.json"
    if not saved.exists():
        return None
    cfg = replace(load_config(saved, PretrainConfig()), device=PretrainConfig.device)
    return replace(cfg, **{k: v for k, v in changes.items() if k in RESUMABLE})

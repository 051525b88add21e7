"""Class schemes: how raw label values map to class indices ``0..K-1``, with names and colours.

Models and metrics only ever see indices ``0..K-1`` and :data:`IGNORE_INDEX` (255); the scheme
is the one place that knows a dataset's raw codes (DFC2020 1..10, IGBP 1..17, Sen1Floods11 -1/0/1
or a user's own JSON).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sarfuse.errors import SarfuseError

IGNORE_INDEX = 255  # the class index of pixels without a (usable) label
BYTE_MAX = int(np.iinfo(np.uint8).max)  # a byte's largest value: 8-bit colours, opaque alpha
# no-data codes of the DFC2020 / IGBP label files themselves (raw values, before the lookup)
DFC_NO_DATA_CODES = (0, 255)


@dataclass(frozen=True)
class PseudoRule:
    """A spectral-index condition that marks a pixel as confidently of one class.

    ``index`` names an index of :mod:`sarfuse.data.indices`; the pixel must lie ``above`` and/or
    ``below`` the given thresholds (raw index units: dB for ``mean_sar``).
    """

    index: str
    above: float | None = None
    below: float | None = None

    def __post_init__(self) -> None:
        if self.above is None and self.below is None:
            raise SarfuseError(None, f"pseudo rule on {self.index!r} needs 'above' or 'below'")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PseudoRule:
        extra = set(data) - {"index", "above", "below"}
        if extra:
            raise SarfuseError(None, f"pseudo rule: unknown keys {sorted(extra)}")
        return cls(
            str(data["index"]),
            None if data.get("above") is None else float(data["above"]),
            None if data.get("below") is None else float(data["below"]),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index}
        out.update(
            {k: v for k, v in (("above", self.above), ("below", self.below)) if v is not None}
        )
        return out


@dataclass(frozen=True)
class ClassDef:
    """One class: its raw value in label files, its name, a ``#rrggbb`` colour and, optionally,
    index rules that give it sparse pseudo labels (all rules whose index is available must hold).
    """

    value: int
    name: str
    color: str
    pseudo: tuple[PseudoRule, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", self.color):
            raise SarfuseError(None, f"class {self.name!r}: colour {self.color!r} is not #rrggbb")
        object.__setattr__(self, "pseudo", tuple(self.pseudo))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "name": self.name, "color": self.color}
        if self.pseudo:
            out["pseudo"] = [r.to_json() for r in self.pseudo]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClassDef:
        missing = [k for k in ("value", "name", "color") if k not in data]
        if missing:
            raise SarfuseError(None, f"class {dict(data)!r:.60} has no {', '.join(missing)}")
        rules = data.get("pseudo") or []
        rules = [rules] if isinstance(rules, Mapping) else list(rules)
        return cls(
            int(data["value"]),
            str(data["name"]),
            str(data["color"]),
            tuple(PseudoRule.from_json(r) for r in rules),
        )

    @property
    def rgb(self) -> tuple[int, int, int]:
        return tuple(int(self.color[i : i + 2], 16) for i in (1, 3, 5))


@dataclass(frozen=True)
class ClassScheme:
    """Classes ``0..K-1`` plus the raw values that map to them (``lookup``) or to ignore.

    ``lookup`` defaults to ``{class.value: index}``; give it to merge raw codes (IGBP -> DFC).
    ``target`` names the class whose IoU judges a map (water, for flood mapping); without one
    maps are judged by the mean IoU over classes (what the probe's IoU decision maximises).
    """

    name: str
    classes: tuple[ClassDef, ...]
    ignore: tuple[int, ...] = (IGNORE_INDEX,)
    lookup: Mapping[int, int] = field(default_factory=dict)
    target: str | None = None

    def __post_init__(self) -> None:
        ignore = (self.ignore,) if isinstance(self.ignore, int) else tuple(self.ignore)
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "ignore", ignore)
        values = [c.value for c in self.classes]
        _check_classes(self.name, self.classes)
        lookup = dict(self.lookup) or {v: i for i, v in enumerate(values)}
        if any(not 0 <= i < len(values) for i in lookup.values()):
            raise SarfuseError(None, f"scheme {self.name!r}: lookup maps to unknown classes")
        both = sorted(set(lookup) & set(ignore))
        if both:
            raise SarfuseError(
                None, f"scheme {self.name!r}: value {both[0]} is both a class and an ignore value"
            )
        object.__setattr__(self, "lookup", lookup)
        if self.target is not None and self.target not in self.names:
            raise SarfuseError(None, f"scheme {self.name!r}: target {self.target!r} is no class")

    @property
    def target_index(self) -> int | None:
        """The index of the ``target`` class (None: the mean IoU judges)."""
        return None if self.target is None else self.names.index(self.target)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def encode(
        self, raw: np.ndarray, path: str | Path | None = None, ignore: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw label values (H, W) -> int64 class indices, IGNORE_INDEX where ignored.

        ``ignore`` (H, W) bool marks extra pixels to ignore (nodata). Raises naming ``path``
        when a value is not in the scheme.
        """
        raw = np.asarray(raw)
        skip = np.zeros(raw.shape, bool) if ignore is None else np.asarray(ignore, bool).copy()
        if raw.dtype.kind == "f":
            skip |= ~np.isfinite(raw)
            fractional = ~skip & (raw != np.round(raw))
            if fractional.any():
                raise SarfuseError(
                    path, f"label values must be whole numbers, found {raw[fractional][0]}"
                )
        values = np.where(skip, 0, raw).astype(np.int64)
        codes = {**self.lookup, **{v: IGNORE_INDEX for v in self.ignore}}
        keys = np.array(sorted(codes), dtype=np.int64)
        targets = np.array([codes[k] for k in keys], dtype=np.int64)
        pos = np.searchsorted(keys, values).clip(0, len(keys) - 1)
        known = keys[pos] == values
        outside = ~known & ~skip
        if outside.any():
            found = ", ".join(str(v) for v in np.unique(values[outside])[:8])
            expected = ", ".join(str(k) for k in keys)
            raise SarfuseError(
                path, f"label values outside the {self.name} scheme: {found} (expected {expected})"
            )
        return np.where(known & ~skip, targets[pos], IGNORE_INDEX)

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """GeoTIFF colour table of class indices (opaque; IGNORE_INDEX is transparent)."""
        table = {i: (*c.rgb, BYTE_MAX) for i, c in enumerate(self.classes)}
        table[IGNORE_INDEX] = (0, 0, 0, 0)
        return table

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ignore": list(self.ignore),
            "classes": [c.to_json() for c in self.classes],
            "lookup": {str(k): v for k, v in self.lookup.items()},
            **({"target": self.target} if self.target is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], name: str = "custom") -> ClassScheme:
        """Build from ``{"ignore": 255, "classes": [{"value", "name", "color"}, ...]}``.

        A class may add ``"pseudo": {"index": "ndwi", "above": 0.3}`` (or a list of such rules);
        ``"target": "Water"`` names the class whose IoU judges the maps.
        """
        classes = [ClassDef.from_json(c) for c in data["classes"]]
        ignore = data.get("ignore", IGNORE_INDEX)
        return cls(
            name=str(data.get("name", name)),
            classes=tuple(classes),
            ignore=(int(ignore),) if isinstance(ignore, int) else tuple(int(v) for v in ignore),
            lookup={int(k): int(v) for k, v in data.get("lookup", {}).items()},
            target=data.get("target"),
        )


def _check_classes(scheme: str, classes: Sequence[ClassDef]) -> None:
    """Fewer classes than IGNORE_INDEX (the nodata of a map), each value and each name used
    once: a repeated name would merge two classes' rows in the metrics."""
    if not 0 < len(classes) < IGNORE_INDEX:
        raise SarfuseError(
            None,
            f"scheme {scheme!r}: {len(classes)} classes; need 1 to {IGNORE_INDEX - 1} (a map "
            f"stores classes in one byte, {IGNORE_INDEX} = nodata)",
        )
    for what in ("value", "name"):
        seen: set = set()
        for c in classes:
            key = getattr(c, what)
            if key in seen:
                raise SarfuseError(None, f"scheme {scheme!r}: class {what} {key!r} used twice")
            seen.add(key)


def load_scheme(path: str | Path) -> ClassScheme:
    """Read a class scheme JSON file; any problem is a one-line :class:`SarfuseError`."""
    path = Path(path)
    if not path.is_file():
        raise SarfuseError(path, "class scheme file not found")
    try:
        data = json.loads(path.read_text())
        return ClassScheme.from_json(data, name=path.stem)
    except json.JSONDecodeError as err:
        raise SarfuseError(path, f"not valid JSON ({err.msg}, line {err.lineno})") from err
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise SarfuseError(
            path,
            'expected {"ignore": 255, "classes": [{"value": 1, "name": "...", "color": "#rrggbb"}]}'
            f" ({type(err).__name__}: {err})",
        ) from err
    except SarfuseError as err:
        raise SarfuseError(path, err.problem) from err


def _classes(spec: Sequence[tuple]) -> tuple[ClassDef, ...]:
    return tuple(ClassDef(*c) for c in spec)


# Pseudo-label rules (raw index units). Water: open water is dark in SAR (< -18 dB mean VV/VH)
# and has a positive NDWI; land is brighter than -15 dB and has NDWI < -0.1. Dense vegetation
# (NDVI > 0.7) is taken as forest and bare soil (DBSI > 0.2, NDVI < 0.1) as barren land; the
# other DFC classes are not separable by an index alone and get pseudo labels only from
# self-training. Rules of one class must all hold where their index can be computed.
WATER_RULES = (PseudoRule("ndwi", above=0.2), PseudoRule("mean_sar", below=-18.0))
LAND_RULES = (PseudoRule("ndwi", below=-0.1), PseudoRule("mean_sar", above=-15.0))


DFC2020 = ClassScheme(
    "dfc2020",
    _classes([
        (1, "Forest", "#009900", (PseudoRule("ndvi", above=0.7), *LAND_RULES)),
        (2, "Shrubland", "#c6b044"),
        (3, "Savanna", "#fbff13"),
        (4, "Grassland", "#b6ff05"),
        (5, "Wetlands", "#27ff87"),
        (6, "Croplands", "#c24f44"),
        (7, "Urban/Built-up", "#a5a5a5"),
        (8, "Snow/Ice", "#69fff8"),
        (9, "Barren", "#f9ffa4", (PseudoRule("dbsi", above=0.2), PseudoRule("ndvi", below=0.1))),
        (10, "Water", "#1c0dff", WATER_RULES),
    ]),
    ignore=DFC_NO_DATA_CODES,
)  # fmt: skip

# IGBP land-cover codes (SEN12MS / DFC2020 ``lc`` band 1) -> DFC2020 raw values
IGBP_TO_DFC: dict[int, int] = {
    1: 1, 2: 1, 3: 1, 4: 1, 5: 1,  # forests
    6: 2, 7: 2,  # closed / open shrublands
    8: 3, 9: 3,  # woody savannas / savannas
    10: 4, 11: 5, 12: 6, 13: 7, 14: 6, 15: 8, 16: 9, 17: 10,
}  # fmt: skip

IGBP = ClassScheme(
    "igbp",
    DFC2020.classes,
    ignore=DFC_NO_DATA_CODES,
    lookup={igbp: DFC2020.lookup[dfc] for igbp, dfc in IGBP_TO_DFC.items()},
)

SEN1FLOODS11 = ClassScheme(
    "sen1floods11",
    _classes([(0, "Not water", "#d9d9a0", LAND_RULES), (1, "Water", "#1c0dff", WATER_RULES)]),
    ignore=(-1,),
    target="Water",  # flood maps are judged by the IoU of water (the dataset's metric)
)

SCHEMES: dict[str, ClassScheme] = {s.name: s for s in (DFC2020, IGBP, SEN1FLOODS11)}

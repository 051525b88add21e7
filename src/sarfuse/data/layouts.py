"""Find the samples of a dataset from a folder, an index file or a list of scenes.

Supported layouts (detected in this order):

- ``samples.csv`` (a file, or a folder holding one): columns ``s1,s2,label`` (optional ``name``),
  paths relative to the CSV, an empty cell means absent; an ``s2`` cell may name a folder of
  band files. Labels use ``classes`` (a scheme JSON), else DFC2020 codes.
- Sen1Floods11: ``S1/*_S1Hand.tif``, ``S2/*_S2Hand.tif``, ``Labels/*_LabelHand.tif`` (also the
  original ``S1Hand/``, ``S2Hand/``, ``LabelHand/`` folder names); either sensor may be absent.
- DFC2020 (``s1_*/``, ``s2_*/``, ``dfc_*/``, ``lc_*/`` with files ``ROIs0000_test_s1_0_p1.tif``)
  and SEN12MS (the same inside ``ROIsXXXX_season/`` folders); labels from ``dfc`` when present,
  else IGBP ``lc`` band 1 mapped to the DFC2020 classes.
- BigEarthNet-style S2 patches: a folder of band files ``*_B01.tif`` ... (or folders of them).
- Plain GeoTIFF scenes (a file, a list of files or a flat folder), without labels: 2 bands or
  VV/VH band names -> S1, 4 or more bands -> S2, otherwise decided by the file name.
- Products as downloaded (:mod:`sarfuse.data.products`): Sentinel-2 ``.SAFE`` folders or zips
  (or a folder of them), and STAC JSON files (an item, a catalogue or a collection).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sarfuse.data.bands import band_name
from sarfuse.data.offset import S2Offset
from sarfuse.data.raster import band_descriptions, s2_band_names
from sarfuse.data.schemes import DFC2020, IGBP, SEN1FLOODS11, ClassScheme, load_scheme
from sarfuse.errors import SarfuseError, warn

SENSORS = ("s1", "s2")
S2Files = Path | str | dict[str, Path | str]  # str: a GDAL virtual path or URL
_TIF = (".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    """One scene or patch: its S1 file, its S2 stack or band-name -> file mapping, its label."""

    name: str
    s1: Path | None = None
    s2: S2Files | None = None
    label: Path | None = None
    s2_offset: S2Offset = None  # added to S2 numbers (product metadata, else --s2-offset)
    origin: str = ""  # where an index file lists it ("samples.csv line 3"), for messages

    def get(self, role: str) -> S2Files | None:
        return {"s1": self.s1, "s2": self.s2, "label": self.label}[role]


@dataclass(frozen=True)
class DataSource:
    """Samples of one dataset, how they were found, and the class scheme of their labels."""

    layout: str
    samples: list[Sample]
    scheme: ClassScheme | None
    root: Path

    @property
    def sensors(self) -> tuple[str, ...]:
        """The sensors every sample has, in order ``("s1", "s2")``."""
        return tuple(s for s in SENSORS if all(x.get(s) is not None for x in self.samples))

    @property
    def has_labels(self) -> bool:
        return bool(self.samples) and all(x.label is not None for x in self.samples)

    def s2_bands(self) -> tuple[str, ...]:
        """The S2 bands the first sample holds, in stack order (empty without S2)."""
        first = self.samples[0].s2 if self.samples else None
        if first is None:
            return ()
        return tuple(first) if isinstance(first, dict) else s2_band_names(first)


def discover(
    data: str | Path | Sequence[str | Path], classes: str | Path | None = None
) -> DataSource:
    """Detect the layout of ``data`` and list its samples; ``classes`` overrides the scheme."""
    from sarfuse.data.products import product_source  # products builds on this module

    paths = [Path(data)] if isinstance(data, (str, Path)) else [Path(p) for p in data]
    if not paths:
        raise SarfuseError(None, "no data given")
    for path in paths:
        if not path.exists():
            raise SarfuseError(path, "no such file or folder")
    source = product_source(paths)
    if source is None:
        source = _discover_path(paths[0]) if len(paths) == 1 else _scenes(paths, paths[0].parent)
    if classes is not None and source.has_labels:
        source = DataSource(source.layout, source.samples, load_scheme(classes), source.root)
    _check_consistent(source)
    return source


def _discover_path(path: Path) -> DataSource:
    if not path.exists():
        raise SarfuseError(path, "no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return _csv(path)
        if path.suffix.lower() in _TIF:
            return _scenes([path], path.parent)
        raise SarfuseError(path, "unknown layout: expected a GeoTIFF scene or a samples.csv")
    if not any(p for p in path.iterdir() if not p.name.startswith(".")):
        raise SarfuseError(path, "empty folder")
    if (path / "samples.csv").is_file():
        return _csv(path / "samples.csv")
    for finder in (_sen1floods11, _dfc_like, _band_folders):
        source = finder(path)
        if source is not None:
            return source
    scenes = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _TIF)
    if scenes:
        return _scenes(scenes, path)
    raise SarfuseError(
        path,
        "unknown layout: expected DFC2020 (s1_*/, s2_*/, dfc_*/), SEN12MS (ROIs*/s1_*/), "
        "Sen1Floods11 (S1/, S2/, Labels/), band files (*_B02.tif), a samples.csv or GeoTIFF scenes",
    )


def _check_consistent(source: DataSource) -> None:
    """Every sample must have the same sensors, and all or none a label."""
    for role in (*SENSORS, "label"):
        missing = [x for x in source.samples if x.get(role) is None]
        if missing and len(missing) < len(source.samples):
            what = role.upper() if role in SENSORS else "a label"
            raise SarfuseError(
                source.root,
                f"{what} present in some samples but not others (e.g. not for {missing[0].name})",
            )


def _missing(name: str, role: str, have: Path, expected: Path) -> SarfuseError:
    what = role.upper() if role in SENSORS else "label"
    return SarfuseError(have, f"missing {what} partner for {name} (expected {expected})")


# --- Sen1Floods11 -------------------------------------------------------------------------------

_FLOODS_DIRS = {"s1": ("S1", "S1Hand"), "s2": ("S2", "S2Hand"), "label": ("Labels", "LabelHand")}
_FLOODS_SUFFIX = {"s1": "_S1Hand", "s2": "_S2Hand", "label": "_LabelHand"}


def _floods_files(folder: Path, role: str) -> dict[str, Path]:
    end = f"{_FLOODS_SUFFIX[role]}.tif"
    return {p.name[: -len(end)]: p for p in sorted(folder.glob(f"*{end}"))}


def _sen1floods11(root: Path) -> DataSource | None:
    dirs = {
        role: next((root / d for d in names if (root / d).is_dir()), root / names[0])
        for role, names in _FLOODS_DIRS.items()
    }
    files = {role: _floods_files(folder, role) for role, folder in dirs.items()}
    if not any(files[s] for s in SENSORS):
        return None
    roles = [r for r in (*SENSORS, "label") if files[r]]
    samples = []
    for name in sorted(set().union(*(files[s] for s in SENSORS))):
        have = next(files[r][name] for r in SENSORS if name in files[r])
        for role in roles:
            if name not in files[role]:
                expected = dirs[role] / f"{name}{_FLOODS_SUFFIX[role]}.tif"
                raise _missing(name, role, have, expected)
        samples.append(Sample(name, **{r: files[r][name] for r in roles}))
    return DataSource("sen1floods11", samples, SEN1FLOODS11 if files["label"] else None, root)


# --- DFC2020 / SEN12MS --------------------------------------------------------------------------

_KIND_DIR = re.compile(r"(s1|s2|dfc|lc)_(.+)")


def _kind_dirs(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        match = _KIND_DIR.fullmatch(d.name)
        if match:
            found.setdefault(match.group(1), []).append(d)
    return found if "s1" in found or "s2" in found else {}


def _swap(path: Path, kind: str, other: str) -> Path:
    """The partner of ``.../s1_0/X_s1_0_p1.tif`` of kind ``other``: ``.../s2_0/X_s2_0_p1.tif``."""
    folder = f"{other}_{path.parent.name.split('_', 1)[1]}"
    head, _, tail = path.name.rpartition(f"_{kind}_")
    return path.parent.parent / folder / f"{head}_{other}_{tail}"


def _sample_name(path: Path, kind: str) -> str:
    head, _, tail = path.stem.rpartition(f"_{kind}_")
    return f"{head}_{tail}"


def _dfc_like(root: Path) -> DataSource | None:
    flat = _kind_dirs(root)
    folders = [d for d in sorted(root.iterdir()) if d.is_dir()]
    kinds = {root: flat} if flat else {g: k for g in folders if (k := _kind_dirs(g))}
    if not kinds:
        return None
    present = set().union(*kinds.values())
    label_kind = "dfc" if "dfc" in present else "lc" if "lc" in present else None
    roles = {s: s for s in SENSORS if s in present} | ({"label": label_kind} if label_kind else {})
    primary = "s1" if "s1" in present else "s2"
    samples: dict[Path, Sample] = {}
    for found in kinds.values():
        for sensor in (s for s in SENSORS if s in found):
            for path in (p for d in found[sensor] for p in sorted(d.glob(f"*_{sensor}_*.tif"))):
                parts = {role: _swap(path, sensor, kind) for role, kind in roles.items()}
                name = _sample_name(parts[primary], primary)
                for role, partner in parts.items():
                    if not partner.is_file():
                        raise _missing(name, role, path, partner)
                samples[parts[primary]] = Sample(name, **parts)
    if not samples:
        return None
    layout = "dfc2020" if label_kind == "dfc" or flat else "sen12ms"
    scheme = {"dfc": DFC2020, "lc": IGBP, None: None}[label_kind]
    return DataSource(layout, list(samples.values()), scheme, root)


# --- band files (BigEarthNet) ------------------------------------------------------------------

_BAND_FILE = re.compile(r".*_(B\d{1,2}A?)\.tiff?", re.IGNORECASE)


def band_files(folder: Path) -> dict[str, Path] | None:
    """``{band: file}`` when every GeoTIFF in ``folder`` is named ``*_B02.tif`` etc., else None."""
    tifs = sorted(p for p in folder.iterdir() if p.suffix.lower() in _TIF)
    matches = [_BAND_FILE.fullmatch(p.name) for p in tifs]
    if not tifs or not all(matches):
        return None
    names = [band_name(m.group(1)) for m in matches if m]
    if None in names or len(set(names)) != len(names):
        return None
    return dict(zip(names, tifs, strict=True))


def _band_folders(root: Path) -> DataSource | None:
    folders = [root] if band_files(root) else [d for d in sorted(root.iterdir()) if d.is_dir()]
    samples = [Sample(d.name, s2=files) for d in folders if (files := band_files(d))]
    return DataSource("bands", samples, None, root) if samples else None


# --- samples.csv --------------------------------------------------------------------------------


def _csv(path: Path) -> DataSource:
    try:  # utf-8-sig: an Excel export starts with a byte-order mark that must not rename "s1"
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise SarfuseError(path, f"cannot read the index file ({err})") from err
    if not columns & {"s1", "s2"}:
        raise SarfuseError(path, "expected a header with columns s1,s2,label (and optional name)")
    unique = _unique_rows(path, rows)
    samples = [_csv_row(path, line, row) for line, row in unique]
    if not samples:
        raise SarfuseError(path, "no samples listed")
    return DataSource("csv", samples, _csv_scheme(samples), path.parent)


def _unique_rows(path: Path, rows: list[dict]) -> list[tuple[int, dict]]:
    """Rows with their line numbers, each (s1, s2, label) once: a repeated row would put the
    same patches into training and evaluation. Says how many were dropped."""
    seen: dict[tuple[str, ...], int] = {}
    unique = []
    for line, row in enumerate(rows, start=2):
        key = tuple((row.get(role) or "").strip() for role in (*SENSORS, "label"))
        if key not in seen:
            seen[key] = line
            unique.append((line, row))
    dropped = len(rows) - len(unique)
    if dropped:
        warn(path, f"{dropped} duplicate row(s) ignored ({len(unique)} distinct samples)")
    return unique


def _csv_scheme(samples: list[Sample]) -> ClassScheme | None:
    """Sen1Floods11 label files (``*_LabelHand.tif``) imply its scheme; other labels DFC2020."""
    labels = [x.label for x in samples if x.label]
    if not labels:
        return None
    if all(p.name.endswith(f"{_FLOODS_SUFFIX['label']}.tif") for p in labels):
        return SEN1FLOODS11
    return DFC2020


def _csv_row(index: Path, line: int, row: dict[str, str | None]) -> Sample:
    cells = {role: (row.get(role) or "").strip() for role in (*SENSORS, "label")}
    if not cells["s1"] and not cells["s2"]:
        raise SarfuseError(index, f"line {line}: neither s1 nor s2 given")
    paths: dict[str, S2Files] = {}
    for role, cell in cells.items():
        if not cell:
            continue
        file = index.parent / cell  # relative to the index; an absolute cell stays as given
        where = f"listed in {index.name} line {line} as {cell!r}"
        if not file.exists():
            raise SarfuseError(file, f"{where} but not found")
        if file.is_dir():
            bands = band_files(file) if role == "s2" else None
            if bands is None:
                raise SarfuseError(file, f"{where}: a folder, not a raster file")
            paths[role] = bands
        else:
            paths[role] = file
    name = (row.get("name") or "").strip() or Path(cells["s1"] or cells["s2"]).stem
    return Sample(name, **paths, origin=f"{index.name} line {line}")


# --- plain scenes -------------------------------------------------------------------------------

_S1_NAME = re.compile(r"(^|[^a-z0-9])(s1|vv|vh|grd|sar)([^a-z0-9]|hand|$)", re.IGNORECASE)
_S2_NAME = re.compile(r"(^|[^a-z0-9])(s2|msi|l1c|l2a)([^a-z0-9]|hand|$)", re.IGNORECASE)


def scene_sensor(path: Path) -> str:
    """``"s1"`` or ``"s2"`` from the band names/count of a scene file, else from its name."""
    bands = band_descriptions(path)
    if "VV" in bands or "VH" in bands or len(bands) == 2:
        return "s1"
    if len(bands) >= 4:
        return "s2"
    if _S1_NAME.search(path.stem) and not _S2_NAME.search(path.stem):
        return "s1"
    if _S2_NAME.search(path.stem) and not _S1_NAME.search(path.stem):
        return "s2"
    raise SarfuseError(
        path,
        f"cannot tell whether it is Sentinel-1 (2 bands VV, VH) or Sentinel-2 (4+ bands): "
        f"it has {len(bands)} band(s)",
    )


def _scenes(paths: list[Path], root: Path) -> DataSource:
    samples = []
    for path in paths:
        if not path.exists():
            raise SarfuseError(path, "no such file or folder")
        if not path.is_file():
            raise SarfuseError(path, "a list of scenes must name GeoTIFF files, not folders")
        samples.append(Sample(path.stem, **{scene_sensor(path): path}))
    sensors = {x.s1 is not None for x in samples}
    if len(sensors) > 1:
        raise SarfuseError(
            root,
            "S1 and S2 scenes given together; to pair S1 and S2 files, list them in a samples.csv",
        )
    return DataSource("scenes", samples, None, root)

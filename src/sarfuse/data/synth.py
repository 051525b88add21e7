"""Synthetic Sentinel-1/-2 scenes with DFC2020 labels: the demo data of every command.

A scene is drawn from smooth random fields (cubic B-spline value noise at several scales):
elevation places snow, barren rock and lakes; the zero line of a river field carves meandering
rivers with wetlands along them; an agriculture field turns a brick pattern of parcels into
croplands and pastures; a moisture field splits the rest into forest, shrubland, savanna and
grassland; an urban field adds towns. Each class has a 13-band S2 spectrum and a VV/VH
backscatter chosen so that some pairs differ only in S2 (grassland / croplands) and others only
in S1 (grassland / wetlands, urban / barren); clouds and their shadows touch S2 only, so fusion
has something to win. Fields can be evaluated on any window and pixel noise is seeded per row,
so a scene is rendered strip by strip in bounded memory, identically in every layout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from sarfuse import __version__
from sarfuse.data.bands import S1_BANDS, S2_BANDS
from sarfuse.data.raster import RasterInfo, open_writer, write_geotiff
from sarfuse.data.schemes import BYTE_MAX, DFC2020
from sarfuse.errors import check
from sarfuse.io_utils import atomic_write_text

Layout = Literal["dfc2020", "scene"]
CRS_EPSG = 32633  # UTM zone 33N
ORIGIN = (399960.0, 5100000.0)  # upper-left corner (x, y) in metres: a Sentinel-2 tile corner
PIXEL = 10.0  # metres
MARGIN = 64  # pixels of field support beyond the scene edge (cloud shadows sample outside)
SHADOW_SHIFT = (28, 40)  # (rows, cols) from a cloud to its shadow
STRIP = 256  # rows rendered at once when writing one big scene

FOREST, SHRUB, SAVANNA, GRASS, WETLAND, CROP, URBAN, SNOW, BARREN, WATER = range(10)
# top-of-atmosphere reflectance x 10000 in S2_BANDS order:
#   B1    B2    B3    B4    B5    B6    B7    B8   B8A   B9  B10   B11   B12
SPECTRA = np.array([
    [1250,  950,  800,  600,  900, 1900, 2300, 2500, 2700,  800, 15, 1400,  700],  # forest
    [1300, 1050, 1000, 1000, 1300, 1900, 2200, 2300, 2450,  750, 15, 2200, 1400],  # shrubland
    [1300, 1050, 1020,  980, 1320, 2000, 2350, 2500, 2650,  800, 15, 2350, 1500],  # savanna
    [1300, 1000, 1000,  850, 1300, 2300, 2800, 3000, 3200,  900, 15, 2200, 1300],  # grassland
    [1300, 1000,  990,  830, 1270, 2250, 2700, 2900, 3100,  870, 15, 2100, 1200],  # wetlands
    [1300,  950,  950,  650, 1200, 2800, 3600, 3900, 4100, 1100, 15, 2100, 1100],  # green crop
    [1500, 1400, 1400, 1500, 1650, 1800, 1900, 2000, 2050,  700, 20, 2300, 2000],  # urban
    [7800, 8000, 7900, 7700, 7500, 7300, 7100, 6900, 6700, 2900, 50, 1200,  900],  # snow
    [1500, 1450, 1450, 1550, 1700, 1850, 1950, 2050, 2100,  720, 20, 2400, 2050],  # barren
    [1300, 1100,  900,  600,  450,  350,  320,  280,  250,  150, 10,  150,  100],  # water
], dtype=np.float32)  # fmt: skip
BARE_FIELD = np.array(
    [1400, 1300, 1450, 1650, 1850, 2050, 2200, 2300, 2450, 800, 15, 3000, 2400], np.float32
)  # ploughed parcels; croplands mix it with the green crop by a per-parcel greenness
CLOUD = np.array(
    [6500, 6800, 6700, 6700, 6600, 6600, 6500, 6500, 6400, 3000, 900, 4500, 3200], np.float32
)
# mean backscatter in dB (VV, VH)
BACKSCATTER = np.array([
    [-8.0, -14.0], [-10.0, -17.0], [-11.0, -18.0], [-12.0, -19.0], [-16.0, -24.0],
    [-11.5, -18.5], [-5.0, -12.0], [-14.0, -21.0], [-16.5, -25.0], [-20.0, -27.0],
], dtype=np.float32)  # fmt: skip
LOOKS = 4  # speckle: linear power times Gamma(LOOKS, 1 / LOOKS)

# (name, cell sizes in pixels of its octaves); amplitudes halve per octave
FIELDS: dict[str, tuple[int, ...]] = {
    "elevation": (640, 320, 160, 80, 40),
    "river": (768, 384),
    "moisture": (256, 128, 64, 32, 16),
    "urban": (160, 80, 40, 20),
    "agriculture": (512, 256),
    "texture": (48, 12),
    "texture_sar": (64, 16),
    "cloud": (192, 96, 48, 24),
}


def _basis(pix: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Knot indices (n, 4) and cubic B-spline weights (n, 4) at pixel coordinates ``pix`` (n,)."""
    x = (np.asarray(pix, np.float64) + MARGIN) / cell + 1.0
    i = np.floor(x).astype(np.int64)
    t = x - i
    w = np.stack([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3])
    return i[:, None] + np.arange(-1, 3), (w.T / 6.0).astype(np.float32)


def _dense(pix: np.ndarray, cell: float, knots: int) -> np.ndarray:
    """Interpolation matrix (n, knots) so that ``B @ grid`` samples a knot grid along one axis."""
    idx, w = _basis(pix, cell)
    out = np.zeros((len(idx), knots), np.float32)
    np.put_along_axis(out, idx, w, axis=1)
    return out


@dataclass(frozen=True)
class Field:
    """A smooth random field, evaluable on any window; standardised to mean 0, std 1."""

    grids: tuple[tuple[np.ndarray, float], ...]  # (knot grid (k, k) times amplitude, cell size)
    mean: float = 0.0
    std: float = 1.0

    def columns(self, cols: np.ndarray) -> list[np.ndarray]:
        """Per octave, the knot grid interpolated along ``cols``: (knots, len(cols)) float32."""
        return [grid @ _dense(cols, cell, len(grid)).T for grid, cell in self.grids]

    def rows(self, columns: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """Values (len(rows), w) from :meth:`columns`.

        Each row is summed on its own, so its values are bit-identical whichever other rows
        are rendered with it (a matmul's rounding depends on the matrix shape).
        """
        out = np.zeros((len(rows), columns[0].shape[1]), np.float32)
        for (_, cell), part in zip(self.grids, columns, strict=True):
            idx, weights = _basis(rows, cell)
            for a in range(4):
                out += weights[:, a, None] * part[idx[:, a]]
        return (out - self.mean) / self.std

    def window(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values on the grid ``rows`` x ``cols`` -> float32 (len(rows), len(cols))."""
        return self.rows(self.columns(cols), rows)

    def points(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values at the points (rows[i], cols[i]) -> float32 (n,)."""
        out = np.zeros(len(rows), np.float32)
        for grid, cell in self.grids:
            (ri, rw), (ci, cw) = _basis(rows, cell), _basis(cols, cell)
            out += np.einsum("na,nb,nab->n", rw, cw, grid[ri[:, :, None], ci[:, None, :]])
        return (out - self.mean) / self.std


def smooth_field(rng: np.random.Generator, size: int, cells: tuple[int, ...]) -> Field:
    """Sum of value-noise octaves with the given cell sizes, standardised over the scene."""
    grids = []
    for octave, cell in enumerate(cells):
        knots = int((size + 2 * MARGIN) / cell) + 4
        grids.append((rng.standard_normal((knots, knots), np.float32) * 0.5**octave, float(cell)))
    raw = Field(tuple(grids))
    sample = raw.window(*[np.arange(0, size, max(1, size // 256))] * 2)
    return Field(raw.grids, float(sample.mean()), float(sample.std()) or 1.0)


@dataclass(frozen=True)
class Parcels:
    """Brick pattern of agricultural parcels: column bands, each cut into rows of its own."""

    col_edges: np.ndarray  # (J + 1,) pixel columns where bands start
    row_edges: np.ndarray  # (J, I + 1) pixel rows where parcels start, per band
    farmed: np.ndarray  # (J, I) bool: parcel lies in farmland
    crop: np.ndarray  # (J, I) bool: cropland (else pasture, i.e. grassland)
    green: np.ndarray  # (J, I) crop greenness in [0, 1]
    tone: np.ndarray  # (J, I, 3) per-parcel brightness, VV and VH offsets (standard normal)

    def index(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Band and parcel index (h, w) of every pixel of the window ``rows`` x ``cols``."""
        band = np.searchsorted(self.col_edges, cols, side="right") - 1
        parcel = np.empty((len(rows), len(cols)), np.int64)
        for j in np.unique(band):
            cut = np.searchsorted(self.row_edges[j], rows, side="right") - 1
            parcel[:, band == j] = cut[:, None]
        return np.broadcast_to(band, parcel.shape), parcel


def _parcels(
    rng: np.random.Generator, size: int, agri: Field, elev: Field, cuts: dict[str, float]
) -> Parcels:
    """Column bands 24-72 px wide, each cut into parcels 20-64 px high.

    A parcel is farmed when, at its centre, the agriculture field is high and the land is low.
    """
    widths = rng.integers(24, 72, size // 24 + 2)
    col_edges = np.concatenate([[0], np.cumsum(widths)])
    bands = int(np.searchsorted(col_edges, size)) + 1
    col_edges = col_edges[: bands + 1]
    heights = rng.integers(20, 64, (bands, size // 20 + 2))
    row_edges = np.concatenate(
        [-rng.integers(0, 40, (bands, 1)), -40 + np.cumsum(heights, 1)], axis=1
    )
    centre_r = (row_edges[:, :-1] + row_edges[:, 1:]) / 2
    centre_c = np.broadcast_to(((col_edges[:-1] + col_edges[1:]) / 2)[:, None], centre_r.shape)
    at = (centre_r.ravel().clip(0, size - 1), centre_c.ravel().clip(0, size - 1))
    farmed = (agri.points(*at) > cuts["farm"]) & (elev.points(*at) < cuts["e80"])
    shape = centre_r.shape
    return Parcels(
        col_edges=col_edges,
        row_edges=row_edges,
        farmed=farmed.reshape(shape),
        crop=rng.random(shape) < 0.8,
        green=rng.random(shape).astype(np.float32),
        tone=rng.standard_normal((*shape, 3)).astype(np.float32),
    )


@dataclass(frozen=True)
class Scene:
    """Everything random about a scene except per-pixel noise (which is seeded per row)."""

    size: int
    seed: int
    fields: dict[str, Field]
    cuts: dict[str, float]
    parcels: Parcels
    _columns: dict[tuple[str, int], list[np.ndarray]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def field_rows(
        self, name: str, rows: np.ndarray, shift: tuple[int, int] = (0, 0)
    ) -> np.ndarray:
        """Field ``name`` on ``rows`` x all columns, moved down-right by ``shift`` (rows, cols).

        The column interpolation is shared by every strip of the scene, so it is cached.
        """
        key = (name, shift[1])
        if key not in self._columns:
            self._columns[key] = self.fields[name].columns(np.arange(self.size) - shift[1])
        return self.fields[name].rows(self._columns[key], rows - shift[0])


def make_scene(size: int, seed: int) -> Scene:
    """Draw fields, class thresholds (quantiles, so every class gets its share) and parcels."""
    check(size >= 64, None, f"synthetic scene size must be >= 64 pixels, got {size}")
    rng = np.random.default_rng(seed)
    fields = {name: smooth_field(rng, size, cells) for name, cells in FIELDS.items()}
    grid = np.arange(0, size, max(1, size // 256))
    sample = {name: f.window(grid, grid).ravel() for name, f in fields.items()}
    elev, moist, river = sample["elevation"], sample["moisture"], np.abs(sample["river"])
    q = np.quantile
    cuts = {
        "lake": q(elev, 0.035), "marsh": q(elev, 0.07), "e60": q(elev, 0.6),
        "e80": q(elev, 0.8), "rock": q(elev, 0.93), "snow": q(elev, 0.97),
        "river": q(river, 0.02), "riverbank": q(river, 0.06),
        "forest": q(moist, 0.62), "shrub": q(moist, 0.48), "savanna": q(moist, 0.36),
        "dry": q(moist, 0.03), "town": q(sample["urban"], 0.94),
        "farm": q(sample["agriculture"], 0.58),
        "cloud": q(sample["cloud"], 0.86), "cloud_core": q(sample["cloud"], 0.92),
    }  # fmt: skip
    cuts = {k: float(v) for k, v in cuts.items()}
    parcels = _parcels(rng, size, fields["agriculture"], fields["elevation"], cuts)
    return Scene(size, seed, fields, cuts, parcels)


def classify(
    f: dict[str, np.ndarray], farmed: np.ndarray, crop: np.ndarray, cuts: dict[str, float]
) -> np.ndarray:
    """Class indices 0..9 (h, w) uint8 from field values (h, w); later rules override earlier."""
    elev, moist, river = f["elevation"], f["moisture"], np.abs(f["river"])
    cls = np.full(elev.shape, GRASS, np.uint8)
    cls[moist > cuts["savanna"]] = SAVANNA
    cls[moist > cuts["shrub"]] = SHRUB
    cls[moist > cuts["forest"]] = FOREST
    cls[farmed] = np.where(crop, CROP, GRASS)[farmed]
    cls[(f["urban"] > cuts["town"]) & (elev < cuts["e80"])] = URBAN
    cls[((river < cuts["riverbank"]) & (elev < cuts["e60"])) | (elev < cuts["marsh"])] = WETLAND
    cls[(river < cuts["river"]) | (elev < cuts["lake"])] = WATER
    cls[((moist < cuts["dry"]) & (elev > cuts["e60"])) | (elev > cuts["rock"])] = BARREN
    cls[elev > cuts["snow"]] = SNOW
    return cls


@dataclass(frozen=True)
class Strip:
    """Rendered rows: S1 dB float32 (2, h, W), S2 uint16 (13, h, W), labels uint8 1..10 (h, W)."""

    s1: np.ndarray
    s2: np.ndarray
    label: np.ndarray
    cloud: np.ndarray  # (h, W) float32 cloud opacity in [0, 1]


def _row_noise(seed: int, rows: range, width: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Per-row pixel noise, seeded by (seed, row) so any strip height gives the same pixels."""
    for row in rows:
        rng = np.random.default_rng([seed, 7, row])
        yield (
            rng.standard_normal((len(S2_BANDS), width), np.float32),
            rng.gamma(LOOKS, 1.0 / LOOKS, (2, width)).astype(np.float32),
            rng.random(width, np.float32),
        )


def _cloud_alpha(cloud: np.ndarray, cuts: dict[str, float]) -> np.ndarray:
    """Soft cloud opacity: 0 below the cloud quantile, 1 in the core, smoothstep in between."""
    a = np.clip((cloud - cuts["cloud"]) / (cuts["cloud_core"] - cuts["cloud"]), 0.0, 1.0)
    return a * a * (3 - 2 * a)


def render(scene: Scene, row0: int, row1: int, clouds: bool = True) -> Strip:
    """Render rows ``row0:row1`` of ``scene`` over its full width."""
    rows, cols = np.arange(row0, row1), np.arange(scene.size)
    f = {name: scene.field_rows(name, rows) for name in scene.fields}
    p = scene.parcels
    band, parcel = p.index(rows, cols)
    farmed = p.farmed[band, parcel]
    tone = np.where(farmed, p.tone[band, parcel].transpose(2, 0, 1), 0.0)  # (3, h, W)
    cls = classify(f, farmed, p.crop[band, parcel], scene.cuts)
    per_row = zip(*_row_noise(scene.seed, range(row0, row1), scene.size), strict=True)
    noise, speckle, scatter = (np.stack(a, axis=-2) for a in per_row)  # (13|2, h, W), (h, W)

    s2 = SPECTRA.T[:, cls]  # (13, h, W)
    cropped = cls == CROP
    green = p.green[band, parcel][cropped]
    s2[:, cropped] = SPECTRA[CROP][:, None] * green + BARE_FIELD[:, None] * (1 - green)
    noise *= 0.03
    noise += 1.0
    s2 *= noise
    gain = 1 + 0.07 * f["texture"] + 0.06 * tone[0]  # (h, W)
    alpha = np.zeros_like(gain)
    if clouds:
        alpha = _cloud_alpha(f["cloud"], scene.cuts)
        shifted = scene.field_rows("cloud", rows, SHADOW_SHIFT)
        gain *= (1 - 0.6 * _cloud_alpha(shifted, scene.cuts)) * (1 - alpha)
        s2 *= gain
        s2 += CLOUD[:, None, None] * (alpha * (0.9 + 0.1 * f["cloud"].clip(-1, 1)))
    else:
        s2 *= gain
    np.rint(s2, out=s2)

    db = BACKSCATTER.T[:, cls] + f["texture_sar"] + 1.2 * tone[1:]  # (2, h, W)
    db += np.where((cls == URBAN) & (scatter < 0.05), 8.0, 0.0)  # strong corner reflectors
    db += 10 * np.log10(np.maximum(speckle, 1e-6))  # multiplicative speckle on linear power
    return Strip(
        s1=db.astype(np.float32),
        s2=s2.clip(1, 65535).astype(np.uint16),  # 0 is S2 nodata: never a valid value
        label=(cls + 1).astype(np.uint8),
        cloud=alpha.astype(np.float32),
    )


class Stats:
    """Class pixel counts and mean cloud cover, accumulated strip by strip for ``synth.json``."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(SPECTRA) + 1, np.int64)
        self.cloud = 0.0

    def add(self, strip: Strip) -> None:
        self.counts += np.bincount(strip.label.ravel(), minlength=len(self.counts))
        self.cloud += float(strip.cloud.sum())

    def summary(self) -> dict:
        total = int(self.counts.sum())
        fractions = {c.name: round(self.counts[c.value] / total, 4) for c in DFC2020.classes}
        return {"class_fractions": fractions, "cloud_fraction": round(self.cloud / total, 4)}


def _strips(scene: Scene, height: int, clouds: bool) -> Iterator[tuple[int, Strip]]:
    for row in range(0, scene.size, height):
        yield row, render(scene, row, min(row + height, scene.size), clouds)


def _write_patches(scene: Scene, info: RasterInfo, out: Path, patch: int, clouds: bool) -> Stats:
    """DFC2020 layout: ``s1_0/ROIs0000_test_s1_0_p{k}.tif`` etc., k = 1.. in row-major order."""
    check(scene.size % patch == 0, out, f"size {scene.size} is not a multiple of patch {patch}")
    stats, k = Stats(), 0
    for row, strip in _strips(scene, patch, clouds):
        stats.add(strip)
        for col in range(0, scene.size, patch):
            k += 1
            sub = info.sub(Window(col, row, patch, patch))
            part = np.s_[..., col : col + patch]
            for sensor, array in (("s1", strip.s1), ("s2", strip.s2), ("dfc", strip.label)):
                path = out / f"{sensor}_0" / f"ROIs0000_test_{sensor}_0_p{k}.tif"
                write_geotiff(path, array[part], sub, **_profile(sensor, scene.seed))
    return stats


def _write_scene(scene: Scene, info: RasterInfo, out: Path, clouds: bool) -> Stats:
    """One scene (``scene_s1.tif``, ``scene_s2.tif``, ``scene_label.tif``) written by strips."""
    stats = Stats()
    counts = {"s1": len(S1_BANDS), "s2": len(S2_BANDS), "dfc": 1}
    dtypes = {"s1": "float32", "s2": "uint16", "dfc": "uint8"}
    names = {"s1": "scene_s1.tif", "s2": "scene_s2.tif", "dfc": "scene_label.tif"}
    with ExitStack() as stack:
        writers = {
            sensor: stack.enter_context(
                open_writer(
                    out / names[sensor], info, counts[sensor], dtypes[sensor],
                    **_profile(sensor, scene.seed),
                )
            )
            for sensor in names
        }  # fmt: skip
        for row, strip in _strips(scene, STRIP, clouds):
            stats.add(strip)
            window = Window(0, row, scene.size, strip.label.shape[0])
            writers["s1"].write(strip.s1, window=window)
            writers["s2"].write(strip.s2, window=window)
            writers["dfc"].write(strip.label[None], window=window)
    atomic_write_text(out / "samples.csv", "s1,s2,label\n" + ",".join(names.values()) + "\n")
    return stats


def _profile(sensor: str, seed: int) -> dict:
    """nodata, band names, colour table and tags of each output file."""
    tags = {"source": f"sarfuse {__version__} synthetic scene, seed {seed}"}
    if sensor == "s1":
        return {"band_names": S1_BANDS, "tags": {**tags, "units": "dB"}}
    if sensor == "s2":
        return {
            "band_names": S2_BANDS,
            "nodata": 0,
            "tags": {**tags, "units": "reflectance x 10000"},
        }
    colours = {c.value: (*c.rgb, BYTE_MAX) for c in DFC2020.classes}
    return {"colormap": colours, "tags": {**tags, "scheme": "dfc2020"}}


def generate(
    out: str | Path,
    size: int = 1024,
    seed: int = 0,
    layout: Layout = "dfc2020",
    patch: int = 256,
    clouds: bool = True,
) -> Path:
    """Write a georeferenced (UTM 33N, 10 m) synthetic S1 + S2 + DFC2020-label dataset to ``out``.

    ``layout="dfc2020"``: ``size`` x ``size`` cut into ``patch`` x ``patch`` DFC2020-named files;
    ``"scene"``: one scene of each sensor plus ``samples.csv``. Also writes ``synth.json`` with
    the parameters and the class mix. Deterministic by ``seed``. Returns ``out``.
    """
    out = Path(out)
    check(layout in ("dfc2020", "scene"), out, f"unknown layout {layout!r} (dfc2020 or scene)")
    check(patch >= 1, out, f"patch size must be >= 1, got {patch}")
    scene = make_scene(size, seed)
    transform = Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])
    info = RasterInfo(CRS.from_epsg(CRS_EPSG), transform, size, size)
    out.mkdir(parents=True, exist_ok=True)
    if layout == "dfc2020":
        stats = _write_patches(scene, info, out, patch, clouds)
    else:
        stats = _write_scene(scene, info, out, clouds)
    meta = {
        "generator": "sarfuse.data.synth", "sarfuse_version": __version__,
        "size": size, "seed": seed, "layout": layout,
        "patch": patch if layout == "dfc2020" else None, "clouds": clouds,
        "crs": f"EPSG:{CRS_EPSG}", "transform": list(transform)[:6], "pixel_size_m": PIXEL,
        **stats.summary(),
    }  # fmt: skip
    atomic_write_text(out / "synth.json", json.dumps(meta, indent=2) + "\n")
    return out

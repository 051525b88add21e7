"""Scenes as users get them: Sentinel-2 ``.SAFE`` products (folder or zip) and STAC JSON.

The glue between :mod:`sarfuse.data.safe` / :mod:`sarfuse.data.stac` and the samples every
command reads: a product given as DATA becomes a :class:`DataSource`, one given to ``map`` as
``--s1`` / ``--s2`` a :class:`Sample`. ``--s2-offset`` fills in the S2 offset of samples whose
files say nothing about it (bare GeoTIFFs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from sarfuse.data.layouts import DataSource, Sample
from sarfuse.data.safe import is_safe, read_safe
from sarfuse.data.stac import read_stac
from sarfuse.errors import SarfuseError

ProductKind = Literal["safe", "stac"]


def product_kind(path: Path) -> ProductKind | None:
    """``"safe"`` for a ``.SAFE`` folder or zip, ``"stac"`` for a ``.json`` file, else None."""
    if path.is_file() and path.suffix.lower() == ".json":
        return "stac"
    return "safe" if is_safe(path) else None


def product_samples(path: Path) -> list[Sample]:
    """The samples of one product: a SAFE product is one S2 scene, a STAC file one per item."""
    if product_kind(path) == "safe":
        product = read_safe(path)
        return [Sample(product.name, s2=product.bands, s2_offset=product.offsets)]
    return [
        Sample(s.name, s1=s.s1, s2=s.s2, label=s.label, s2_offset=s.s2_offsets or None)
        for s in read_stac(path)
    ]  # type: ignore[arg-type]


def product_source(paths: Sequence[Path]) -> DataSource | None:
    """The samples of ``paths`` when every one is a product (a folder of them counts), else None."""
    if len(paths) == 1 and paths[0].is_dir() and product_kind(paths[0]) is None:
        inside = sorted(p for p in paths[0].iterdir() if not p.name.startswith("."))
        paths = inside if inside and all(product_kind(p) == "safe" for p in inside) else paths
    kinds = {product_kind(p) for p in paths}
    if None in kinds:
        return None
    samples = [sample for p in paths for sample in product_samples(p)]
    root = paths[0].parent if len(paths) > 1 or paths[0].is_file() else paths[0]
    return DataSource("stac" if kinds == {"stac"} else "safe", samples, None, root)


def with_s2_offset(source: DataSource, offset: float | None) -> DataSource:
    """``source`` with ``offset`` as the S2 offset of every sample that states none."""
    if offset is None:
        return source
    samples = [
        x if x.s2_offset is not None else replace(x, s2_offset=offset) for x in source.samples
    ]
    return DataSource(source.layout, samples, source.scheme, source.root)


def scene_sample(s1: Path | None, s2: Path | None, s2_offset: float | None = None) -> Sample:
    """The scene ``map`` works on, from ``--s1`` / ``--s2`` GeoTIFFs, products or STAC items."""
    if s1 is None and s2 is None:
        raise SarfuseError(None, "give the scene as --s1 and/or --s2")
    parts: dict = {}
    for sensor, path in (("s1", s1), ("s2", s2)):
        if path is None:
            continue
        if product_kind(path) is None:
            parts[sensor] = path
            continue
        found = product_samples(path)
        if len(found) != 1 or found[0].get(sensor) is None:
            raise SarfuseError(
                path, f"expected one scene with {sensor.upper()} bands, found {len(found)} item(s)"
                f"{'' if len(found) != 1 else ' without them'}",
            )  # fmt: skip
        parts[sensor] = found[0].get(sensor)
        if sensor == "s2":
            parts["s2_offset"] = found[0].s2_offset
    sample = Sample(Path(str(s1 or s2)).stem, **parts)
    if sample.s2_offset is None and s2_offset is not None:  # the file states none
        sample = replace(sample, s2_offset=s2_offset)
    return sample

"""The data contract of a pretrained network: which sensors and bands it reads, how they are
normalised and which superpixels it was trained with. Stored in every checkpoint and used to open
data for probing and mapping exactly as the network saw it in pretraining."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sarfuse.data.layouts import DataSource
from sarfuse.data.normalise import PAPER_STATS, Normaliser, load_stats
from sarfuse.errors import SarfuseError
from sarfuse.superpixels import SuperpixelParams

CONTRACT_VERSION = 1


def make_contract(
    sensors: Sequence[str],
    s1_bands: Sequence[str],
    s2_bands: Sequence[str],
    stats: str | Path | dict | None,
    superpixels: Sequence[SuperpixelParams],
    patch_size: int,
    fusion: str,
    method: str,
) -> dict:
    """A JSON-friendly description of what the network expects as input."""
    if stats is None:
        stats_dict = PAPER_STATS
    elif isinstance(stats, dict):
        stats_dict = stats
    else:
        stats_dict = load_stats(stats)
    return {
        "version": CONTRACT_VERSION,
        "sensors": list(sensors),
        "s1_bands": list(s1_bands) if "s1" in sensors else [],
        "s2_bands": list(s2_bands) if "s2" in sensors else [],
        "stats": stats_dict,
        "superpixels": [
            {"scale": p.scale, "sigma": p.sigma, "min_size": p.min_size} for p in superpixels
        ],
        "patch_size": patch_size,
        "fusion": fusion,
        "method": method,
    }


def normaliser_from_contract(contract: dict) -> Normaliser:
    return Normaliser.from_stats(contract["stats"])


def superpixels_from_contract(contract: dict) -> list[SuperpixelParams]:
    return [SuperpixelParams(**p) for p in contract["superpixels"]]


def check_source(contract: dict, source: DataSource, what: str = "checkpoint") -> None:
    """Refuse data that lacks a sensor the network was trained on."""
    missing = [s.upper() for s in contract["sensors"] if s not in source.sensors]
    if missing:
        have = "+".join(s.upper() for s in source.sensors) or "no sensor"
        raise SarfuseError(
            source.root,
            f"the {what} was trained on {'+'.join(s.upper() for s in contract['sensors'])} "
            f"but this data has {have} (missing {', '.join(missing)})",
        )

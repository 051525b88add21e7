"""The data contract of a pretrained network: which sensors and bands it reads, how they are
normalised and which superpixels it was trained with. Stored in every checkpoint (as the plain
dict of :meth:`DataContract.to_dict`) and used to open data for probing and mapping exactly as
the network saw it in pretraining."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sarfuse.data.bands import S1_BANDS, S2_L2A_BANDS, network_s2_bands
from sarfuse.data.layouts import DataSource
from sarfuse.data.normalise import PAPER_STATS, Normaliser, load_stats
from sarfuse.errors import SarfuseError
from sarfuse.superpixels import SuperpixelParams

if TYPE_CHECKING:
    from sarfuse.data.dataset import PatchDataset
    from sarfuse.ssl.config import PretrainConfig

CONTRACT_VERSION = 1
# what a network's features depend on: two networks that differ here give other features
FEATURE_KEYS = ("sensors", "s1_bands", "s2_bands", "stats", "fusion", "method")


@dataclass(frozen=True)
class DataContract:
    """What a network expects as input, and how it was pretrained on it."""

    sensors: tuple[str, ...]
    s1_bands: tuple[str, ...]  # empty unless "s1" is a sensor
    s2_bands: tuple[str, ...]  # empty unless "s2" is a sensor
    stats: dict = field(hash=False)  # normalisation statistics (see sarfuse.data.normalise)
    superpixels: tuple[SuperpixelParams, ...] = ()
    patch_size: int | None = None  # pretraining patch side; None for raw bands (no network)
    fusion: str = "none"
    method: str = "raw"
    version: int = CONTRACT_VERSION

    @classmethod
    def build(
        cls,
        sensors: Sequence[str],
        s1_bands: Sequence[str],
        s2_bands: Sequence[str],
        stats: str | Path | dict | None,
        superpixels: Sequence[SuperpixelParams],
        patch_size: int | None,
        fusion: str,
        method: str,
    ) -> DataContract:
        """A contract with a sensor's bands kept only when the sensor is there and ``stats``
        read from a ``sarfuse stats`` file (None: the paper's statistics)."""
        return cls(
            sensors=tuple(sensors),
            s1_bands=tuple(s1_bands) if "s1" in sensors else (),
            s2_bands=tuple(s2_bands) if "s2" in sensors else (),
            stats=_stats(stats),
            superpixels=tuple(superpixels),
            patch_size=patch_size,
            fusion=fusion,
            method=method,
        )

    @classmethod
    def for_pretraining(cls, source: DataSource, config: PretrainConfig) -> DataContract:
        """The contract a pretraining run of ``config`` on ``source`` trains under: the
        config's bands (``all`` = every S2 band of the data but B10), statistics, superpixels,
        patch size, fusion and method."""
        s2_bands = network_s2_bands(config.s2_bands, source.s2_bands())
        return cls.build(
            source.sensors, config.s1_bands, s2_bands, config.stats, config.superpixels,
            config.patch_size, config.fusion, config.method,
        )  # fmt: skip

    @classmethod
    def for_raw_bands(cls, source: DataSource, like: DataContract | None = None) -> DataContract:
        """The inputs of raw-band features: S1 VV, VH and every S2 band of the data but the
        cirrus band B10 (absent from L2A), normalised with ``like``'s statistics (a
        checkpoint's) or the paper's."""
        names = source.s2_bands() if "s2" in source.sensors else ()
        s2_bands = [b for b in S2_L2A_BANDS if b in names]
        if like is not None:
            return replace(like, s2_bands=tuple(s2_bands))
        return cls.build(source.sensors, S1_BANDS, s2_bands, None, [], None, "none", "raw")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataContract:
        """The contract stored in a checkpoint or a probe (other keys, like ``model``, ignored)."""
        return cls(
            sensors=tuple(data["sensors"]),
            s1_bands=tuple(data["s1_bands"]),
            s2_bands=tuple(data["s2_bands"]),
            stats=dict(data["stats"]),
            superpixels=tuple(SuperpixelParams(**p) for p in data.get("superpixels", [])),
            patch_size=data.get("patch_size"),
            fusion=data.get("fusion", "none"),
            method=data.get("method", "raw"),
            version=data.get("version", CONTRACT_VERSION),
        )

    @classmethod
    def coerce(cls, contract: DataContract | Mapping[str, Any]) -> DataContract:
        """``contract``, or the contract of a dict as probe metadata stores it."""
        return contract if isinstance(contract, DataContract) else cls.from_dict(contract)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict, as checkpoints and probes store it."""
        return {
            "version": self.version,
            "sensors": list(self.sensors),
            "s1_bands": list(self.s1_bands),
            "s2_bands": list(self.s2_bands),
            "stats": self.stats,
            "superpixels": [
                {"scale": p.scale, "sigma": p.sigma, "min_size": p.min_size}
                for p in self.superpixels
            ],
            "patch_size": self.patch_size,
            "fusion": self.fusion,
            "method": self.method,
        }

    def bands(self, sensor: str) -> tuple[str, ...]:
        """The bands of ``sensor`` ("s1" or "s2") the network reads."""
        return self.s1_bands if sensor == "s1" else self.s2_bands

    def normaliser(self) -> Normaliser:
        return Normaliser.from_stats(self.stats)

    def open_patches(
        self,
        source: DataSource,
        patch_size: int | None = None,
        superpixels: bool = False,
        **kw: Any,
    ) -> PatchDataset:
        """Open ``source`` exactly as the network expects its inputs, in patches of
        ``patch_size`` (default: the contract's); with ``superpixels``, with the contract's
        superpixels (one set, or one per scale). Other keywords go to ``PatchDataset``."""
        from sarfuse.data.dataset import PatchDataset

        if superpixels:
            sp = self.superpixels
            kw["superpixels"] = list(sp) if len(sp) > 1 else sp[0]
        return PatchDataset(
            source,
            patch_size=patch_size or self.patch_size,
            s1_bands=self.s1_bands,
            s2_bands=self.s2_bands,
            normaliser=self.normaliser(),
            **kw,
        )

    def check(self, source: DataSource, what: str = "checkpoint") -> None:
        """Refuse data that lacks a sensor the network was trained on."""
        missing = [s.upper() for s in self.sensors if s not in source.sensors]
        if missing:
            have = "+".join(s.upper() for s in source.sensors) or "no sensor"
            raise SarfuseError(
                source.root,
                f"the {what} was trained on {'+'.join(s.upper() for s in self.sensors)} "
                f"but this data has {have} (missing {', '.join(missing)})",
            )

    def differences(self, other: DataContract) -> list[str]:
        """What makes ``other``'s network give other features than this one's: the inputs,
        and the architecture and method (another fusion gives other features even when the
        inputs agree), each as ``"key <other's> vs <this one's>"``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k} {theirs[k]!r} vs {mine[k]!r}" for k in FEATURE_KEYS if mine[k] != theirs[k]]

    def matches(self, other: DataContract) -> bool:
        """Whether features of ``other``'s network can stand in for this one's."""
        return not self.differences(other)


def _stats(stats: str | Path | dict | None) -> dict:
    if stats is None:
        return PAPER_STATS
    return stats if isinstance(stats, dict) else load_stats(stats)

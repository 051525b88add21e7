"""The data contract: the dict checkpoints and probes store round-trips unchanged, data is opened
as the contract says, data missing a sensor is refused, and what makes two networks' features
differ is named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sarfuse.contract import DataContract
from sarfuse.data.bands import S2_L2A_BANDS
from sarfuse.data.layouts import discover
from sarfuse.data.normalise import PAPER_STATS
from sarfuse.data.synth import generate
from sarfuse.errors import SarfuseError
from sarfuse.ssl.config import PretrainConfig
from sarfuse.superpixels import SuperpixelParams

# a contract as checkpoints written before DataContract store it (make_contract's dict)
STORED = {
    "version": 1,
    "sensors": ["s1", "s2"],
    "s1_bands": ["VV", "VH"],
    "s2_bands": ["B2", "B3", "B4", "B8"],
    "stats": PAPER_STATS,
    "superpixels": [{"scale": 200.0, "sigma": 0.5, "min_size": 30}],
    "patch_size": 64,
    "fusion": "intermediate",
    "method": "pixel",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("contract") / "data"
    return discover(generate(out, size=128, seed=3, layout="dfc2020", patch=64))


def test_a_stored_contract_round_trips_unchanged() -> None:
    contract = DataContract.from_dict({**STORED, "model": {"width": 4}})  # a checkpoint's keys
    assert contract.to_dict() == STORED
    assert contract.s2_bands == ("B2", "B3", "B4", "B8") and contract.patch_size == 64
    assert contract.superpixels == (SuperpixelParams(200.0, 0.5, 30),)
    assert DataContract.coerce(STORED) == contract and DataContract.coerce(contract) is contract


def test_pretraining_contract_follows_the_config(source) -> None:
    cfg = replace(PretrainConfig(), patch_size=64, sp_scales=(100.0, 300.0), s2_bands=("all",))
    contract = DataContract.for_pretraining(source, cfg)
    assert contract.sensors == ("s1", "s2") and contract.stats == PAPER_STATS
    assert contract.s2_bands == tuple(b for b in source.s2_bands() if b != "B10")
    assert [p.scale for p in contract.superpixels] == [100.0, 300.0]
    assert (contract.fusion, contract.method, contract.patch_size) == ("auto", "pixel", 64)


def test_open_patches_reads_the_contracts_bands_normalised(source) -> None:
    contract = DataContract.from_dict(STORED)
    patches = contract.open_patches(source, superpixels=True)
    item = patches[0]
    assert patches.patch_size == 64 and patches.s2_bands == ("B2", "B3", "B4", "B8")
    assert item["s1"].shape == (2, 64, 64) and item["s2"].shape == (4, 64, 64)
    assert item["segments"].shape == (64, 64)  # the contract's one superpixel setting
    assert contract.open_patches(source, patch_size=32).patch_size == 32
    # the contract's statistics normalise: moving VV's mean by 1 dB moves VV by 1 / std
    s1 = dict(PAPER_STATS["s1"])
    s1["mean"] = {**s1["mean"], "VV": s1["mean"]["VV"] + 1.0}
    moved = replace(contract, stats={**PAPER_STATS, "s1": s1}).open_patches(source)[0]
    valid = item["valid"]
    shift = (item["s1"][0] - moved["s1"][0])[valid]
    torch.testing.assert_close(shift, torch.full_like(shift, 1.0 / s1["std"]["VV"]))
    torch.testing.assert_close(moved["s1"][1], item["s1"][1])


def test_data_missing_a_sensor_is_refused(source, tmp_path: Path) -> None:
    sample = source.samples[0]
    (tmp_path / "samples.csv").write_text(f"s1,s2,label\n,{sample.s2},{sample.label}\n")
    s2_only = discover(tmp_path / "samples.csv")
    with pytest.raises(SarfuseError, match="trained on S1\\+S2 but this data has S2 .missing S1"):
        DataContract.from_dict(STORED).check(s2_only)
    DataContract.from_dict(STORED).check(source)  # both sensors: accepted


def test_raw_band_contract(source) -> None:
    raw = DataContract.for_raw_bands(source)
    assert raw.s1_bands == ("VV", "VH") and raw.method == "raw" and raw.patch_size is None
    assert raw.s2_bands == tuple(b for b in S2_L2A_BANDS if b in source.s2_bands())
    like = DataContract.from_dict(STORED)
    with_ckpt = DataContract.for_raw_bands(source, like)
    assert with_ckpt.s2_bands == raw.s2_bands and with_ckpt.fusion == like.fusion


def test_differences_name_what_changes_the_features() -> None:
    a = DataContract.from_dict(STORED)
    assert a.matches(replace(a, patch_size=128, superpixels=()))  # training details only
    b = replace(a, fusion="early", s2_bands=("B2",))
    assert not a.matches(b)
    assert a.differences(b) == [
        "s2_bands ['B2'] vs ['B2', 'B3', 'B4', 'B8']",
        "fusion 'early' vs 'intermediate'",
    ]

"""Dataset layout discovery: DFC2020, SEN12MS, Sen1Floods11, samples.csv, scenes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sarfuse.data.layouts import discover
from sarfuse.data.raster import RasterInfo, write_geotiff
from sarfuse.data.schemes import DFC2020, IGBP, SEN1FLOODS11
from sarfuse.errors import SarfuseError

GRID = RasterInfo.make(8, 8)
BANDS = {"s1": 2, "s2": 13, "dfc": 1, "lc": 4}


def _tif(path: Path, bands: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_geotiff(path, np.ones((bands, 8, 8), np.float32), GRID)


def _dfc_tree(root: Path, kinds=("s1", "s2", "dfc"), patches=(1, 2)) -> None:
    for kind in kinds:
        for p in patches:
            _tif(root / f"{kind}_0" / f"ROIs0000_test_{kind}_0_p{p}.tif", BANDS[kind])


def _message(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


def test_dfc2020(tmp_path):
    _dfc_tree(tmp_path, ("s1", "s2", "dfc", "lc"))
    source = discover(tmp_path)
    assert source.layout == "dfc2020" and source.scheme is DFC2020
    assert source.sensors == ("s1", "s2") and source.has_labels
    assert [s.name for s in source.samples] == ["ROIs0000_test_0_p1", "ROIs0000_test_0_p2"]
    first = source.samples[0]
    assert first.s2 == tmp_path / "s2_0" / "ROIs0000_test_s2_0_p1.tif"
    assert first.label == tmp_path / "dfc_0" / "ROIs0000_test_dfc_0_p1.tif"


def test_dfc2020_lc_labels_map_igbp(tmp_path):
    _dfc_tree(tmp_path, ("s2", "lc"))
    source = discover(tmp_path)
    assert source.scheme is IGBP and source.sensors == ("s2",)
    assert source.samples[0].label.parent.name == "lc_0"


def test_sen12ms(tmp_path):
    for season, n in (("ROIs1158_spring", 1), ("ROIs1868_summer", 7)):
        for kind in ("s1", "s2", "lc"):
            _tif(tmp_path / season / f"{kind}_{n}" / f"{season}_{kind}_{n}_p30.tif", BANDS[kind])
    source = discover(tmp_path)
    assert source.layout == "sen12ms" and source.scheme is IGBP
    assert [s.name for s in source.samples] == ["ROIs1158_spring_1_p30", "ROIs1868_summer_7_p30"]
    assert source.samples[1].label.name == "ROIs1868_summer_lc_7_p30.tif"


@pytest.mark.parametrize(
    ("remove", "what"),
    [("s2_0/ROIs0000_test_s2_0_p2.tif", "S2"), ("dfc_0/ROIs0000_test_dfc_0_p2.tif", "label"),
     ("s1_0/ROIs0000_test_s1_0_p2.tif", "S1")],
)  # fmt: skip
def test_dfc2020_missing_partner(tmp_path, remove, what):
    _dfc_tree(tmp_path)
    (tmp_path / remove).unlink()
    with pytest.raises(SarfuseError) as err:
        discover(tmp_path)
    message = _message(err)
    assert (
        f"missing {what} partner for ROIs0000_test_0_p2 (expected {tmp_path / remove})" in message
    )


def test_sen1floods11_real(shared_data):
    full = discover(shared_data / "sen1floods11")
    assert full.layout == "sen1floods11" and full.scheme is SEN1FLOODS11
    assert full.sensors == ("s1", "s2") and full.has_labels
    assert full.samples[0].name == "Spain_7370579"
    s1_only = discover(shared_data / "sen1floods11-s1")
    assert s1_only.sensors == ("s1",) and s1_only.has_labels and len(s1_only.samples) == 12
    assert all(s.label.name == f"{s.name}_LabelHand.tif" for s in s1_only.samples)


def test_bigearthnet_band_folders(shared_data):
    source = discover(shared_data / "bigearthnet-s2")
    assert source.layout == "bands" and source.sensors == ("s2",) and not source.has_labels
    assert sorted(source.samples[0].s2) == sorted(
        ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
    )


def test_sen1floods11_original_names_and_missing_partner(tmp_path):
    for folder, suffix, bands in (("S1Hand", "S1Hand", 2), ("S2Hand", "S2Hand", 13)):
        for name in ("Bolivia_1", "Bolivia_2"):
            _tif(tmp_path / folder / f"{name}_{suffix}.tif", bands)
    source = discover(tmp_path)
    assert source.sensors == ("s1", "s2") and not source.has_labels and source.scheme is None
    (tmp_path / "S2Hand" / "Bolivia_2_S2Hand.tif").unlink()
    with pytest.raises(SarfuseError) as err:
        discover(tmp_path)
    expected = tmp_path / "S2Hand" / "Bolivia_2_S2Hand.tif"
    assert _message(err) == (
        f"{tmp_path / 'S1Hand' / 'Bolivia_2_S1Hand.tif'}: "
        f"missing S2 partner for Bolivia_2 (expected {expected})"
    )


def _csv_tree(root: Path) -> None:
    _tif(root / "a" / "s1.tif", 2)
    _tif(root / "a" / "s2.tif", 13)
    _tif(root / "a" / "y.tif")
    _tif(root / "b_s1.tif", 2)
    _tif(root / "b_s2.tif", 13)
    _tif(root / "b_y.tif")


def test_samples_csv_with_classes(tmp_path):
    _csv_tree(tmp_path)
    (tmp_path / "samples.csv").write_text(
        "s1,s2,label,name\na/s1.tif,a/s2.tif,a/y.tif,first\nb_s1.tif,b_s2.tif,b_y.tif,\n"
    )
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"classes": [{"value": 1, "name": "A", "color": "#000000"}]}))
    for data in (tmp_path / "samples.csv", tmp_path):
        source = discover(data, classes=classes)
        assert source.layout == "csv" and source.sensors == ("s1", "s2") and source.has_labels
        assert source.scheme.names == ("A",)
        assert [s.name for s in source.samples] == ["first", "b_s1"]
        assert source.samples[0].s2 == tmp_path / "a" / "s2.tif"
    assert discover(tmp_path).scheme is DFC2020  # no --classes: DFC2020 codes


def test_samples_csv_s2_only_without_labels(tmp_path):
    _csv_tree(tmp_path)
    (tmp_path / "samples.csv").write_text("s1,s2,label\n,a/s2.tif,\n,b_s2.tif,\n")
    source = discover(tmp_path)
    assert source.sensors == ("s2",) and not source.has_labels and source.scheme is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("s1,s2,label\na/s1.tif,a/s2.tif,a/y.tif\nb_s1.tif,,b_y.tif\n",
         "S2 present in some samples but not others (e.g. not for b_s1)"),
        ("s1,s2,label\na/s1.tif,a/s2.tif,a/y.tif\nb_s1.tif,b_s2.tif,\n",
         "a label present in some samples but not others"),
        ("s1,s2,label\n,,a/y.tif\n", "line 2: neither s1 nor s2 given"),
        ("path,kind\nx.tif,s1\n", "expected a header with columns s1,s2,label"),
        ("s1,s2,label\n", "no samples listed"),
    ],
)  # fmt: skip
def test_samples_csv_errors(tmp_path, text, problem):
    _csv_tree(tmp_path)
    (tmp_path / "samples.csv").write_text(text)
    with pytest.raises(SarfuseError) as err:
        discover(tmp_path / "samples.csv")
    assert problem in _message(err)
    assert str(tmp_path) in str(err.value)


def test_samples_csv_missing_file(tmp_path):
    (tmp_path / "samples.csv").write_text("s1,s2,label\nnone.tif,,\n")
    with pytest.raises(SarfuseError) as err:
        discover(tmp_path)
    expected = "listed in samples.csv line 2 as 'none.tif' but not found"
    assert _message(err) == f"{tmp_path / 'none.tif'}: {expected}"


def test_scenes_by_band_count_and_name(tmp_path):
    s2 = _tif(tmp_path / "scene.tif", 4)
    source = discover(s2)
    assert source.layout == "scenes" and source.sensors == ("s2",) and not source.has_labels
    s1_files = [_tif(tmp_path / "one.tif", 2), _tif(tmp_path / "two_s1.tif", 3)]
    source = discover(s1_files)
    assert source.sensors == ("s1",) and [s.name for s in source.samples] == ["one", "two_s1"]
    with pytest.raises(SarfuseError, match="S1 and S2 scenes given together"):
        discover([s2, s1_files[0]])
    odd = _tif(tmp_path / "odd.tif", 1)
    with pytest.raises(SarfuseError) as err:
        discover(odd)
    assert _message(err).startswith(f"{odd}: cannot tell whether it is Sentinel-1")


def test_flat_folder_of_scenes(tmp_path):
    _tif(tmp_path / "x.tif", 13)
    _tif(tmp_path / "y.tif", 13)
    source = discover(tmp_path)
    assert source.layout == "scenes" and [s.name for s in source.samples] == ["x", "y"]


def test_missing_empty_and_unknown(tmp_path):
    with pytest.raises(SarfuseError) as err:
        discover(tmp_path / "nowhere")
    assert _message(err) == f"{tmp_path / 'nowhere'}: no such file or folder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SarfuseError) as err:
        discover(tmp_path / "empty")
    assert _message(err) == f"{tmp_path / 'empty'}: empty folder"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(SarfuseError) as err:
        discover(tmp_path / "notes")
    assert _message(err).startswith(f"{tmp_path / 'notes'}: unknown layout")
    with pytest.raises(SarfuseError, match="readme.txt: unknown layout"):
        discover(tmp_path / "notes" / "readme.txt")
    with pytest.raises(SarfuseError, match="must name GeoTIFF files, not folders"):
        discover([tmp_path / "notes", tmp_path / "empty"])

"""Class schemes: raw label codes -> class indices, colours, JSON round trip, bad schemes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sarfuse.data.schemes import (
    DFC2020,
    IGBP,
    IGNORE_INDEX,
    SEN1FLOODS11,
    ClassScheme,
    load_scheme,
)
from sarfuse.errors import SarfuseError


def test_dfc2020_classes_and_codes():
    assert DFC2020.names == (
        "Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands",
        "Urban/Built-up", "Snow/Ice", "Barren", "Water",
    )  # fmt: skip
    raw = np.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 0, 255]], dtype=np.uint8)
    expected = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 255, 255]]
    encoded = DFC2020.encode(raw)
    assert encoded.dtype == np.int64
    np.testing.assert_array_equal(encoded, expected)


def test_igbp_maps_to_dfc():
    igbp = np.arange(1, 18)
    dfc_values = [1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10]
    np.testing.assert_array_equal(IGBP.encode(igbp), np.array(dfc_values) - 1)
    assert IGBP.names == DFC2020.names
    np.testing.assert_array_equal(IGBP.encode(np.array([0, 255])), [255, 255])


def test_sen1floods11_codes():
    raw = np.array([-1, 0, 1, 1], dtype=np.int16)
    np.testing.assert_array_equal(SEN1FLOODS11.encode(raw), [255, 0, 1, 1])
    assert SEN1FLOODS11.num_classes == 2


def test_values_outside_scheme_name_the_file():
    with pytest.raises(SarfuseError) as err:
        DFC2020.encode(np.array([[1, 11], [12, 3]]), path="/x/label.tif")
    message = str(err.value)
    assert message.startswith("/x/label.tif: label values outside the dfc2020 scheme: 11, 12")
    assert "\n" not in message


def test_float_labels_nan_ignored_and_fractions_refused():
    np.testing.assert_array_equal(
        SEN1FLOODS11.encode(np.array([0.0, np.nan, 1.0])), [0, IGNORE_INDEX, 1]
    )
    with pytest.raises(SarfuseError, match="whole numbers, found 0.5"):
        SEN1FLOODS11.encode(np.array([0.5, 1.0]), path="l.tif")


def test_ignore_mask_hides_values_outside_scheme():
    raw = np.array([1, -9999, 10])
    out = DFC2020.encode(raw, ignore=raw == -9999)
    np.testing.assert_array_equal(out, [0, 255, 9])


def test_colormap():
    table = DFC2020.colormap()
    assert table[0] == (0, 153, 0, 255)  # Forest #009900
    assert table[9] == (28, 13, 255, 255)  # Water #1c0dff
    assert table[IGNORE_INDEX][3] == 0 and len(table) == 11


def test_json_round_trip_keeps_merged_codes():
    again = ClassScheme.from_json(json.loads(json.dumps(IGBP.to_json())))
    assert again == IGBP
    np.testing.assert_array_equal(again.encode(np.arange(1, 18)), IGBP.encode(np.arange(1, 18)))


def test_target_class_round_trips_and_names_its_index():
    """Sen1Floods11 maps are judged by the IoU of water; a scheme without a target by the mean."""
    assert SEN1FLOODS11.target == "Water" and SEN1FLOODS11.target_index == 1
    assert DFC2020.target is None and DFC2020.target_index is None
    again = ClassScheme.from_json(json.loads(json.dumps(SEN1FLOODS11.to_json())))
    assert again == SEN1FLOODS11 and again.target_index == 1
    assert "target" not in DFC2020.to_json()


def test_load_scheme_user_json(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({
        "ignore": 255,
        "classes": [
            {"value": 1, "name": "Forest", "color": "#009900"},
            {"value": 7, "name": "Town", "color": "#a5a5a5"},
        ],
    }))  # fmt: skip
    scheme = load_scheme(path)
    assert scheme.name == "classes" and scheme.names == ("Forest", "Town")
    np.testing.assert_array_equal(scheme.encode(np.array([7, 1, 255])), [1, 0, 255])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "class scheme file not found"),
        ("{not json", "not valid JSON"),
        ('{"ignore": 255}', "expected {"),
        ('{"classes": [{"value": 1, "name": "A", "color": "green"}]}', "is not #rrggbb"),
        (
            '{"classes": [{"value": 1, "name": "A", "color": "#000000"},'
            ' {"value": 1, "name": "B", "color": "#ffffff"}]}',
            "class value 1 used twice",
        ),
        (
            '{"ignore": 1, "classes": [{"value": 1, "name": "A", "color": "#000000"}]}',
            "value 1 is both a class and an ignore value",
        ),
        (
            '{"target": "Water", "classes": [{"value": 1, "name": "A", "color": "#000000"}]}',
            "target 'Water' is no class",
        ),
    ],
)
def test_load_scheme_errors(file_error, text, problem):
    assert problem in file_error(load_scheme, "scheme.json", text)

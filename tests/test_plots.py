"""Every plot writes a PNG that opens; legends hold one entry per class or curve."""

from __future__ import annotations

import csv

import matplotlib.image as mpimg
import numpy as np
import pytest

from sarfuse import plots
from sarfuse.errors import SarfuseError

NAMES = ["forest", "water", "urban"]
COLORS = ["#009900", (0, 0, 255), (0.8, 0.8, 0.8)]


def _opens(path) -> tuple[int, ...]:
    assert path.is_file() and path.stat().st_size > 0
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image.shape


def test_confusion_png(tmp_path):
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 0]])
    path = plots.plot_confusion(cm, NAMES, tmp_path / "cm.png")
    _opens(path)
    _opens(plots.plot_confusion(cm, NAMES, tmp_path / "raw.png", normalise=False))
    with pytest.raises(SarfuseError, match="for 2 classes"):
        plots.plot_confusion(cm, NAMES[:2], tmp_path / "bad.png")


def test_confusion_rows_are_normalised():
    fig = plots._confusion_figure(np.array([[3, 1], [0, 0]]), ["a", "b"], normalise=True)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, [[0.75, 0.25], [0, 0]])


def test_map_quicklook_with_panels_and_legend(tmp_path):
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, (40, 60)).astype(np.uint8)
    classes[:5] = 255
    s2 = rng.uniform(100, 3000, (4, 40, 60)).astype(np.float32)
    s1 = rng.normal(-12, 3, (2, 40, 60)).astype(np.float32)
    panels = [
        ("RGB", plots.rgb_quicklook(s2, ("B2", "B3", "B4", "B8"))),
        ("SAR", plots.sar_quicklook(s1)),
        ("truth", rng.integers(0, 3, (40, 60))),
    ]
    path = plots.plot_map_quicklook(
        classes, COLORS, NAMES, tmp_path / "map.png", "map", extra_panels=panels
    )
    _opens(path)
    fig = plots._map_figure(classes, COLORS, NAMES, "map", 255, panels)
    assert len(fig.axes) == 4
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels == [*NAMES, "no data"]
    rgba = fig.axes[-1].images[0].get_array()
    assert rgba[0, 0, 3] == 0  # nodata transparent
    fig = plots._map_figure(classes[5:], COLORS, NAMES, "map", 255, [])
    assert len(fig.axes[-1].get_legend().get_texts()) == 3  # no nodata pixel, no entry


def test_class_colours_are_applied():
    image = plots._class_image(np.array([[0, 1], [2, 255]]), COLORS, 255)
    np.testing.assert_allclose(image[0, 0], [0, 0x99 / 255, 0, 1])
    np.testing.assert_allclose(image[0, 1], [0, 0, 1, 1])
    np.testing.assert_allclose(image[1, 0], [0.8, 0.8, 0.8, 1])
    assert image[1, 1, 3] == 0


def test_quicklooks_stretch_to_unit_range():
    s2 = np.zeros((3, 20, 20), dtype=np.float32)
    s2[:, 2:] = np.linspace(0, 5000, 18 * 20).reshape(18, 20)
    rgb = plots.rgb_quicklook(s2, ("B2", "B3", "B4"))
    assert rgb.shape == (20, 20, 3) and rgb.min() == 0 and rgb.max() == 1
    assert (rgb[:2] == 0).all()  # nodata stays black
    grey = plots.sar_quicklook(np.stack([np.linspace(-25, 0, 400).reshape(20, 20)] * 2))
    assert grey.shape == (20, 20) and grey.min() == 0 and grey.max() == 1
    with pytest.raises(SarfuseError, match="B4, B3, B2"):
        plots.rgb_quicklook(s2, ("B8", "B3", "B4"))


def test_rgb_stretch_is_set_by_clear_pixels_not_clouds():
    """Land 500..1500 with 30 % cloud at 8000: the stretch comes from the land alone."""
    land = np.linspace(500, 1500, 70 * 100).reshape(70, 100)
    s2 = np.stack([np.vstack([land, np.full((30, 100), 8000.0)])] * 3).astype(np.float32)
    rgb = plots.rgb_quicklook(s2, ("B2", "B3", "B4"))
    assert 0.45 < np.median(rgb[:70]) < 0.55  # land spans the grey range, not black
    assert (rgb[70:] == 1).all()  # clouds saturate white
    plain = plots._stretch(s2[0], s2[0] > 0)  # the old stretch over every pixel
    assert np.median(plain[:70]) < 0.15


def test_sar_quicklook_fixed_db_range():
    vv = np.array([[-30.0, -25.0, -12.5], [0.0, 5.0, np.nan]], dtype=np.float32)
    grey = plots.sar_quicklook(np.stack([vv, vv]))
    np.testing.assert_allclose(grey, [[0, 0, 0.5], [1, 1, 0]])


def test_sar_panel_has_a_db_colour_bar():
    panels = [("VV", np.full((10, 10), 0.5, np.float32), (-25.0, 0.0, "dB"))]
    fig = plots._map_figure(np.zeros((10, 10), np.uint8), COLORS, NAMES, "map", 255, panels)
    assert len(fig.axes) == 3  # SAR, map, colour bar
    assert fig.axes[-1].get_ylabel() == "dB"
    assert fig.axes[0].images[0].get_array()[0, 0] == -12.5


def test_loss_curve_from_csv_and_dicts(tmp_path):
    log = tmp_path / "loss.csv"
    with log.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["step", "epoch", "loss", "loss_image", "px_per_s"])
        writer.writeheader()
        for step in range(20):
            writer.writerow(
                {
                    "step": step,
                    "epoch": step // 10,
                    "loss": 5 / (step + 1),
                    "loss_image": 2 / (step + 1),
                    "px_per_s": 1e5,
                }
            )
    _opens(plots.plot_loss_curve(log, tmp_path / "loss.png"))
    rows = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(5)]
    _opens(plots.plot_loss_curve(rows, tmp_path / "loss2.png"))
    with pytest.raises(SarfuseError, match="'step' and 'loss'"):
        plots.plot_loss_curve([{"step": 1}], tmp_path / "bad.png")


def test_miou_vs_labels_one_curve_per_method_and_fusion(tmp_path):
    rows = [
        {"method": m, "fusion": f, "n_labels": n, "miou": 0.3 + 0.05 * np.log10(n) + 0.01 * s}
        for m, f in (("pixel", "early"), ("pixel", "late"), ("mcl", "early"))
        for n in (10, 50, 100)
        for s in range(3)
    ] + [{"method": "raw", "fusion": "", "n_labels": n, "miou": 0.2} for n in (10, 50, 100)]
    _opens(plots.plot_miou_vs_labels(rows, tmp_path / "miou.png"))
    fig = plots._miou_figure(rows)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["mcl (early)", "pixel (early)", "pixel (late)", "raw"]
    assert fig.axes[0].get_xscale() == "log"
    styles = [c.lines[0].get_linestyle() for c in fig.axes[0].containers]  # errorbar lines
    assert styles == ["--", "-", "-", "--"]  # the method solid, baselines dashed
    assert "pixel: superpixel contrast" in fig.axes[0].get_title()
    baselines = plots._miou_figure([r for r in rows if r["method"] != "pixel"])
    assert "baselines only" in baselines.axes[0].get_title()
    with pytest.raises(SarfuseError, match="no results"):
        plots.plot_miou_vs_labels([], tmp_path / "none.png")

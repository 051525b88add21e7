"""Figures of sarfuse: confusion matrix, map quicklook with legend, loss curve, mIoU vs labels.

Figures are built with matplotlib's object API (``Figure``, Agg canvas; no pyplot state, no
display needed) and saved atomically; every ``plot_*`` function returns the PNG path.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sarfuse.data.schemes import BYTE_MAX, IGNORE_INDEX
from sarfuse.errors import SarfuseError
from sarfuse.io_utils import atomic_path

Color = str | Sequence[float]  # "#rrggbb", a matplotlib name, or RGB(A) as 0..1 or byte numbers
# (title, image): (H, W, 3) RGB, (H, W) float grey, (H, W) int classes; a grey image in [0, 1]
# may carry its scale (title, image, (low, high, unit)), drawn as a colour bar from low to high
Panel = tuple[str, np.ndarray] | tuple[str, np.ndarray, tuple[float, float, str]]
SAR_RANGE_DB = (-25.0, 0.0)  # the fixed VV range of SAR quicklooks (the normaliser's S1 clip)
# mean visible reflectance (x 10000) above which a pixel counts as cloud (or snow) in RGB
# quicklooks: clouds would otherwise set the upper percentile and leave the land nearly black
CLOUD_BRIGHTNESS = 2500.0
# the method whose curves are solid in mIoU plots; the other rows are baselines (dashed)
METHOD_NAMES = {"pixel": "superpixel contrast (Chen & Bruzzone 2022)"}


def _save(fig: Figure, path: str | Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
    return Path(path)


def _rgba(color: Color) -> tuple[float, float, float, float]:
    if not isinstance(color, str) and max(color) > 1:
        color = [c / BYTE_MAX for c in color]
    return to_rgba(color)


def _stretch(
    x: np.ndarray,
    valid: np.ndarray | None = None,
    pct: tuple[float, float] = (2, 98),
    stats: np.ndarray | None = None,
):
    """Linear 2-98 % stretch of ``x`` to [0, 1], percentiles over valid finite pixels (or over
    the finite pixels of the mask ``stats``); invalid pixels are 0."""
    ok = np.isfinite(x) if valid is None else valid & np.isfinite(x)
    use = ok if stats is None else stats & np.isfinite(x)
    if not use.any():
        return np.zeros(x.shape, dtype=np.float32)
    lo, hi = np.percentile(x[use], pct)
    out = np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1)
    return np.where(ok, out, 0).astype(np.float32)


def rgb_quicklook(
    s2: np.ndarray, bands: Sequence[str], valid: np.ndarray | None = None
) -> np.ndarray:
    """True-colour ``(H, W, 3)`` image in [0, 1] from S2 reflectance ``(C, H, W)``.

    ``bands`` names the C channels (reflectance x 10000); B4, B3, B2 are used, each stretched
    2-98 % over the clear pixels (mean below :data:`CLOUD_BRIGHTNESS`) when at least half of
    the valid pixels are clear, else over all valid pixels. Clouds then show white.
    """
    names = list(bands)
    missing = [b for b in ("B4", "B3", "B2") if b not in names]
    if missing or len(names) != len(s2):
        raise SarfuseError(
            None, f"an RGB quicklook needs B4, B3, B2 among {len(s2)} named bands, got {names}"
        )
    rgb = np.stack([s2[names.index(b)] for b in ("B4", "B3", "B2")])
    valid = (s2 > 0).any(0) if valid is None else valid  # S2 nodata is 0
    clear = valid & (rgb.mean(0) < CLOUD_BRIGHTNESS)
    stats = clear if clear.sum() >= 0.5 * valid.sum() else valid
    return np.stack([_stretch(band, valid, stats=stats) for band in rgb], axis=-1)


def sar_quicklook(s1_db: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Grey ``(H, W)`` image in [0, 1] of the first S1 band (VV) in dB over the fixed range
    :data:`SAR_RANGE_DB`, so that scenes compare; invalid pixels are 0."""
    x = s1_db[0] if s1_db.ndim == 3 else s1_db
    low, high = SAR_RANGE_DB
    ok = np.isfinite(x) if valid is None else valid & np.isfinite(x)
    return np.where(ok, np.clip((x - low) / (high - low), 0, 1), 0).astype(np.float32)


def _class_image(classes: np.ndarray, colors: Sequence[Color], nodata: int) -> np.ndarray:
    """``(H, W)`` class indices -> ``(H, W, 4)`` RGBA, nodata (and unknown values) transparent."""
    lut = np.zeros((256, 4), dtype=np.float32)
    lut[: len(colors)] = [_rgba(c) for c in colors]
    lut[nodata] = 0
    idx = np.asarray(classes)
    return lut[np.where((idx >= 0) & (idx < 256), idx, nodata).astype(np.intp)]


def _map_figure(
    class_map: np.ndarray,
    colors: Sequence[Color],
    class_names: Sequence[str],
    title: str,
    nodata: int,
    extra_panels: Sequence[Panel],
) -> Figure:
    panels = [*extra_panels, (title, class_map)]
    fig = Figure(figsize=(4.2 * len(panels) + 2.2, 4.6), dpi=100)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, image, *scale) in zip(axes, panels, strict=True):
        image = np.asarray(image)
        if image.ndim == 2 and np.issubdtype(image.dtype, np.integer):
            ax.imshow(_class_image(image, colors, nodata), interpolation="nearest")
        elif image.ndim == 2 and scale:
            low, high, unit = scale[0]
            shown = ax.imshow(
                low + image * (high - low), cmap="gray", vmin=low, vmax=high,
                interpolation="nearest",
            )  # fmt: skip
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label=unit)
        elif image.ndim == 2:
            ax.imshow(image, cmap="gray", interpolation="nearest")
        else:
            ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
        ax.set_title(name)
        ax.set_axis_off()
    handles = [
        Patch(facecolor=_rgba(c), edgecolor="k", label=n)
        for c, n in zip(colors, class_names, strict=True)
    ]
    if (np.asarray(class_map) == nodata).any():
        handles.append(Patch(facecolor="none", edgecolor="k", label="no data"))
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return fig


def plot_map_quicklook(
    class_map: np.ndarray,
    colors: Sequence[Color],
    class_names: Sequence[str],
    path: str | Path,
    title: str = "map",
    nodata: int = IGNORE_INDEX,
    extra_panels: Sequence[Panel] = (),
) -> Path:
    """PNG of a class map ``(H, W)`` with a legend of class colours, after ``extra_panels``.

    Panels: ``(H, W, 3)`` RGB in [0, 1], ``(H, W)`` float grey, or ``(H, W)`` integer classes
    (drawn with the map's colours, e.g. the true labels).
    """
    if len(colors) != len(class_names):
        raise SarfuseError(path, f"{len(colors)} colours for {len(class_names)} classes")
    return _save(_map_figure(class_map, colors, class_names, title, nodata, extra_panels), path)


def _confusion_figure(cm: np.ndarray, class_names: Sequence[str], normalise: bool) -> Figure:
    cm = np.asarray(cm, dtype=np.float64)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm
    k = len(class_names)
    fig = Figure(figsize=(1.0 + 0.6 * k + 2, 0.6 * k + 2), dpi=100)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (rows normalised)" if normalise else ""))
    top = shown.max() if shown.size else 0
    for (i, j), v in np.ndenumerate(shown):
        text = f"{v:.2f}" if normalise else f"{int(v)}"
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=7,
            color="white" if v > 0.6 * top else "black",
        )
    return fig


def plot_confusion(
    cm: np.ndarray, class_names: Sequence[str], path: str | Path, normalise: bool = True
) -> Path:
    """PNG of a ``(K, K)`` confusion matrix (rows = truth), by default as per-row fractions."""
    cm = np.asarray(cm)
    if cm.shape != (len(class_names), len(class_names)):
        raise SarfuseError(path, f"confusion matrix {cm.shape} for {len(class_names)} classes")
    return _save(_confusion_figure(cm, class_names, normalise), path)


def _read_rows(source: str | Path | Sequence[Mapping[str, object]]) -> list[dict[str, float]]:
    if isinstance(source, str | Path):
        try:
            with Path(source).open(newline="") as fh:
                source = list(csv.DictReader(fh))
        except OSError as e:
            raise SarfuseError(source, f"cannot read the loss log ({e.strerror})") from None
    return [
        {k: v for k, v in ((k, _number(v)) for k, v in row.items()) if v is not None}
        for row in source
    ]


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def plot_loss_curve(history: str | Path | Sequence[Mapping[str, object]], path: str | Path) -> Path:
    """PNG of the loss per step from a CSV log (or a list of dicts) with ``step`` and ``loss``.

    Other columns whose name starts with ``loss`` (the loss terms) are drawn as thin lines.
    """
    rows = _read_rows(history)
    if not rows or any("step" not in r or "loss" not in r for r in rows):
        raise SarfuseError(path, "the loss log needs rows with 'step' and 'loss' columns")
    steps = np.array([r["step"] for r in rows])
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    names = [k for k in rows[0] if k.startswith("loss")]
    for name in names:
        values = np.array([r.get(name, np.nan) for r in rows])
        ax.plot(steps, values, label=name, lw=1.8 if name == "loss" else 0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if len(names) > 1:
        ax.legend()
    return _save(fig, path)


def _miou_figure(rows: Sequence[Mapping[str, object]]) -> Figure:
    groups: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        label = f"{row['method']} ({row['fusion']})" if row.get("fusion") else str(row["method"])
        groups[label][int(row["n_labels"])].append(float(row["miou"]))
    fig = Figure(figsize=(6.5, 4.5), dpi=100)
    ax = fig.subplots()
    ax.set_xscale("log")
    all_ns = sorted({n for by_n in groups.values() for n in by_n})
    ax.set_xticks(all_ns, [str(n) for n in all_ns])
    ax.minorticks_off()
    for label, by_n in sorted(groups.items()):
        ns = sorted(by_n)
        mean = np.array([np.mean(by_n[n]) for n in ns])
        std = np.array([np.std(by_n[n]) for n in ns])
        style = "-" if label.split(" ")[0] in METHOD_NAMES else "--"
        ax.errorbar(ns, mean, yerr=std, marker="o", capsize=3, label=label, linestyle=style)
    ax.set_xlabel("labelled patches (log scale)")
    ax.set_ylabel("mIoU (mean ± std over seeds)")
    ax.set_title(_miou_title({str(row["method"]) for row in rows}), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _miou_title(methods: set[str]) -> str:
    ours = [f"{m}: {METHOD_NAMES[m]}" for m in sorted(methods & set(METHOD_NAMES))]
    if not ours:
        return "mIoU against labelled patches (baselines only)"
    return f"mIoU against labelled patches\n{'; '.join(ours)} (solid) vs baselines (dashed)"


def plot_miou_vs_labels(rows: Sequence[Mapping[str, object]], path: str | Path) -> Path:
    """PNG of mIoU against the number of labelled patches, one curve per method and fusion.

    ``rows``: dicts with ``method``, ``fusion`` (may be empty, e.g. for the raw baseline),
    ``n_labels`` and ``miou``; seeds of the same point give the mean and the std error bar.
    """
    if not rows:
        raise SarfuseError(path, "no results to plot")
    missing = {"method", "n_labels", "miou"} - set(rows[0])
    if missing:
        raise SarfuseError(path, f"result rows lack {sorted(missing)}")
    return _save(_miou_figure(rows), path)

"""Data commands: ``synth``, ``stats`` and ``superpixels``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, get_args

import typer

import sarfuse.cli.options as o
from sarfuse.cli.app import app, friendly, out
from sarfuse.data.synth import Layout
from sarfuse.ssl.config import PretrainConfig

_PRE = PretrainConfig()  # the superpixels computed here are those pretraining uses


@app.command()
@friendly
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the dataset into.")],
    size: Annotated[int, typer.Option(help="Scene side in pixels (10 m).")] = 1024,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    layout: Annotated[
        str, typer.Option(help=f"{' or '.join(get_args(Layout))} (dfc2020: 256x256 patches).")
    ] = get_args(Layout)[0],
    clouds: Annotated[bool, typer.Option(help="Add clouds and shadows to S2.")] = True,
) -> None:
    """Generate a realistic synthetic, georeferenced S1+S2+label dataset."""
    from sarfuse.data.synth import generate

    o.check_choice("--layout", layout, get_args(Layout))
    path = generate(out_dir, size=size, seed=seed, layout=layout, clouds=clouds)
    out.print(f"wrote a {size}x{size} synthetic dataset ({layout} layout) to {path}")


@app.command()
@friendly
def stats(
    data: o.DataArg = None,
    out_file: Annotated[Path, typer.Option("--out", help="JSON file to write.")] = Path(
        "stats.json"
    ),
    s2_bands: Annotated[
        str, typer.Option(help="S2 bands to describe (default: every band the data has).")
    ] = "",
    s2_offset: o.S2OffsetOpt = None,
) -> None:
    """Per-band mean and std over a dataset (valid pixels only), for normalisation."""
    from sarfuse.data.normalise import compute_stats, save_stats
    from sarfuse.runtime import resolve_source

    source = resolve_source(o.data_arg(data), s2_offset=s2_offset, labels=False)
    bands = o.csv_words(s2_bands) or source.s2_bands()
    result = compute_stats(source, s2_bands=bands or ("B2",))
    save_stats(result, out_file)
    out.print(f"statistics of {len(source.samples)} scenes written to {out_file}")


@app.command()
@friendly
def superpixels(
    data: o.DataArg = None,
    workers: Annotated[int | None, typer.Option(help="Processes (default: all cores).")] = None,
    patch_size: Annotated[int, typer.Option(help="Patch side in pixels.")] = _PRE.patch_size,
    scale: Annotated[float, typer.Option(help="Felzenszwalb scale.")] = _PRE.sp_scales[0],
    sigma: Annotated[float, typer.Option(help="Felzenszwalb sigma.")] = _PRE.sp_sigma,
    min_size: Annotated[int, typer.Option(help="Felzenszwalb min_size.")] = _PRE.sp_min_size,
    s2_offset: o.S2OffsetOpt = None,
) -> None:
    """Compute (and cache) Felzenszwalb superpixels of every patch, in parallel."""
    from sarfuse.contract import DataContract
    from sarfuse.runtime import resolve_source
    from sarfuse.superpixels import compute_all

    source = resolve_source(o.data_arg(data), s2_offset=s2_offset, labels=False)
    cfg = replace(PretrainConfig(), patch_size=patch_size, sp_scales=(scale,), sp_sigma=sigma,
                  sp_min_size=min_size, stats=None)  # fmt: skip
    contract = DataContract.for_pretraining(source, cfg)
    result = compute_all(contract.open_patches(source, superpixels=True), workers=workers)
    out.print(
        f"superpixels: {result['computed']} computed, {result['cached']} from cache "
        f"in {result['seconds']:.1f} s"
    )

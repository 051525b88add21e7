"""The benchmark suite: every speed figure of issue 12, measured in one run against this device.

Run: ``python benchmarks/run_all.py [--device cpu|cuda|auto] [--quick] [--full-tile]``
(``make bench``). Prints one table and merges the figures into
``benchmarks/results/latest.json`` under the device's key (``cpu``, ``cuda``), so a GPU run adds
to the CPU figures instead of replacing them; a PNG of each figure against its target is
written beside it. Ratios (peak ratios, speed-ups, memory) are taken within this run, so they
hold on a noisy shared machine better than the absolute times. Nothing is asserted: figures
below their targets are marked in the table. See ``benchmarks/README.md`` for each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from bench_map_memory import ensure_scene, in_fresh_process, measure
from bench_pooling import bench_pooling
from bench_pretrain import bench_config, bench_step, matmul_rates
from bench_superpixels import bench_superpixels

import sarfuse  # noqa: F401  (first: its OpenMP setting must precede torch, as in the CLI)
from sarfuse.mapping.config import MapConfig
from sarfuse.runtime import native_bf16, resolve_precision

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Scale:
    """How much each section measures: timed steps, scene sides, labelled patches."""

    steps: int  # timed pretraining steps (default width)
    warmup: int
    w64_steps: int  # timed steps at width 64 (0: skipped)
    sp_size: int  # side of the synthetic superpixel scene
    map_small: int  # sides of the two mapped scenes (memory ratio; speed on the big one)
    map_big: int
    probe_labels: int


SCALES = {
    "full": Scale(8, 2, 3, 2048, 1024, 8192, 50),
    "quick": Scale(2, 1, 1, 1024, 1024, 2048, 50),
    "tiny": Scale(1, 0, 0, 512, 256, 512, 10),  # a smoke test of the suite, not a measurement
}
FULL_TILE_PX = 10980 * 10980  # one Sentinel-2 tile at 10 m
# figure -> (comparison, target) on the 2-core CPU (issue 12); None: reported, no target
TARGETS: dict[str, tuple[str, float] | None] = {
    "matmul_gflops": None,
    "matmul_cpu_gflops": None,
    "pretrain_step_ms": None,
    "pretrain_gflops": None,
    "pretrain_peak_ratio": None,
    "pretrain_cpu_peak_ratio": None,
    "pretrain_data_wait_fraction": ("<", 0.1),
    "pretrain_bf16_step_ms": None,
    "pretrain_w64_step_ms": None,
    "pretrain_w64_gflops": None,
    "pretrain_w64_peak_ratio": (">=", 0.5),
    "pretrain_w64_cpu_peak_ratio": None,
    "pretrain_w64_data_wait_fraction": ("<", 0.1),
    "pooling_speedup": (">=", 50.0),
    "pooling_cpu_speedup": None,
    "superpixel_parallel_speedup": (">=", 1.7),
    "superpixel_cache_speedup": (">=", 20.0),
    "map_mpx_per_s": None,
    "map_gflops": None,
    "map_peak_ratio": (">=", 0.5),
    "map_cpu_peak_ratio": None,
    "full_tile_minutes": ("<=", 3.0),
    "full_tile_minutes_measured": ("<=", 3.0),
    "map_memory_ratio": ("<=", 1.5),
    "matmul_bf16_gflops": None,
    "map_bf16_peak_share": None,
    "probe_seconds": None,
}


def machine(device: torch.device) -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "load_average": os.getloadavg()[0],
    }


def pretrain_figures(device: torch.device, scale: Scale) -> dict:
    """Step time, FLOP rate and data wait of the default config (fp32, bf16) and width 64."""
    out, details = {}, {}
    runs = [("", 16, "32-true", scale.steps), ("bf16_", 16, "bf16-mixed", scale.steps),
            ("w64_", 64, "32-true", scale.w64_steps)]  # fmt: skip
    for prefix, width, precision, steps in runs:
        if steps == 0 or (prefix == "bf16_" and not native_bf16(device.type)):
            continue
        r = bench_step(bench_config(32, 32, width, precision), device, steps, scale.warmup)
        key = f"pretrain_{prefix}"
        out[f"{key}step_ms"] = r["seconds"] * 1e3
        if prefix != "bf16_":  # bf16 FLOPs are not fp32 FLOPs: no peak ratio for them
            out[f"{key}gflops"] = r["gflops"]
            out[f"{key}data_wait_fraction"] = r["data_wait_fraction"]
            if device.type == "cpu":
                out[f"{key}cpu_gflops"] = r["cpu_gflops"]
        details[f"{key}losses"] = r["losses"]
        details[f"{key}gflop_per_step"] = r["gflop"]
    return {"figures": out, "details": details}


def pooling_figures() -> dict:
    r = bench_pooling()
    return {"figures": {"pooling_speedup": r["speedup"], "pooling_cpu_speedup": r["cpu_speedup"]},
            "details": {f"pooling_{k}": v for k, v in r.items()}}  # fmt: skip


def superpixel_figures(scale: Scale) -> dict:
    r = bench_superpixels(size=scale.sp_size, patch=256)
    return {
        "figures": {
            "superpixel_parallel_speedup": r["serial_s"] / r["parallel_s"],
            "superpixel_cache_speedup": r["serial_s"] / r["warm_s"],
        },
        "details": r,
    }


def _build_default_probe(workdir: str, device: str) -> str:
    """A default network (few steps) and a linear probe of its features on the demo data."""
    from sarfuse.mapping.workflow import ProbeConfig, run_probe
    from sarfuse.runtime import quiet_lightning, resolve_source
    from sarfuse.ssl.config import PretrainConfig
    from sarfuse.ssl.train import pretrain

    root = Path(workdir)
    ckpt = root / "pretrain-default" / "last.ckpt"
    if not ckpt.exists():
        quiet_lightning()
        pretrain(None, ckpt.parent, PretrainConfig(steps=3, device=device), progress=False)
    out = root / "probe-default-linear"
    if not (out / "probe.pt").exists():
        cfg = ProbeConfig(labels=5, features="pretrained", classifier="linear", device=device)
        run_probe(resolve_source(None), out, cfg, ckpt, progress=False)
    return str(out)


def map_flops_per_pixel(probe: str, device: str, side: int = 256) -> float:
    """FLOPs of the probe's feature network per mapped pixel (one ``side``^2 tile)."""
    from torch.utils.flop_counter import FlopCounterMode

    from sarfuse.mapping.scene import load_mapper

    _, meta, maker = load_mapper(probe, None, device)
    contract = meta["contract"]
    batch = {s: torch.zeros(1, len(contract[f"{s}_bands"]), side, side) for s in ("s1", "s2")}
    with FlopCounterMode(display=False) as counter:
        maker({k: v.to(device) for k, v in batch.items()})
    return counter.get_total_flops() / side**2


def map_figures(device: str, scale: Scale, workdir: Path, full_tile: bool) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = in_fresh_process(_build_default_probe, str(workdir), device)
    args = SimpleNamespace(tile=MapConfig.tile, overlap=MapConfig.overlap, device=device)
    small, big = scale.map_small, scale.map_big
    rows = {size: measure(workdir, probe, size, args) for size in (small, big)}
    rate = rows[big]["pixels"] / rows[big]["seconds"]  # px/s on the big scene
    flops = map_flops_per_pixel(probe, device)
    precision = resolve_precision(MapConfig.precision, device)
    figures = {
        "map_mpx_per_s": rate / 1e6,
        "map_gflops": flops * rate / 1e9,
        "map_cpu_gflops": flops * rows[big]["pixels"] / rows[big]["cpu_seconds"] / 1e9,
        "full_tile_minutes": FULL_TILE_PX / rate / 60,
        "map_memory_ratio": rows[big]["peak_mb"] / rows[small]["peak_mb"],
    }
    if precision == "bf16":  # the map's network runs in bfloat16: also its own peak
        bf16_peak = matmul_rates(torch.device(device), 2048, dtype=torch.bfloat16)[0]
        figures["matmul_bf16_gflops"] = bf16_peak
        figures["map_bf16_peak_share"] = figures["map_gflops"] / bf16_peak
    if full_tile:
        ensure_scene(workdir, 10980)
        tile = measure(workdir, probe, 10980, args)
        figures["full_tile_minutes_measured"] = tile["seconds"] / 60
        rows[10980] = tile
    details = {f"map_{k}": v for k, v in rows.items()}
    details = {**details, "map_gflop_per_mpx": flops / 1e3, "map_precision": precision}
    return {"figures": figures, "details": details}


def _fit_default_probe(checkpoint: str, out: str, device: str, labels: int) -> float:
    from sarfuse.mapping.workflow import ProbeConfig, run_probe
    from sarfuse.runtime import resolve_source

    tic = time.perf_counter()
    run_probe(resolve_source(None), out, ProbeConfig(labels=labels, device=device), checkpoint,
              progress=False)  # fmt: skip
    return time.perf_counter() - tic


def probe_figures(device: str, workdir: Path, labels: int) -> dict:
    """Fitting the default probe (automatic features and classifier) at N = 50 on the demo."""
    out = workdir / "probe-n50"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    ckpt = str(workdir / "pretrain-default" / "last.ckpt")
    in_fresh_process(_build_default_probe, str(workdir), device)  # the checkpoint, if absent
    seconds = in_fresh_process(_fit_default_probe, ckpt, str(out), device, labels)
    return {"figures": {"probe_seconds": seconds}, "details": {}}


def _order(name: str) -> int:
    """Figures in the order of TARGETS (the issue's), others last."""
    order = list(TARGETS)
    return order.index(name) if name in order else len(order)


def verdict(name: str, value: float) -> str:
    target = TARGETS.get(name)
    if target is None:
        return ""
    op, bound = target
    ok = {"<": value < bound, "<=": value <= bound, ">=": value >= bound}[op]
    return f"{op} {bound:g}: {'ok' if ok else 'MISSED'}"


def print_table(figures: dict, info: dict) -> None:
    print(f"\n{info['device']} ({info['cpu']}, {info['cores']} cores, {info['threads']} threads, "
          f"torch {info['torch']}, load {info['load_average']:.1f})")  # fmt: skip
    width = max(len(k) for k in figures)
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value:>10.3f}  {verdict(name, value)}")


def save(figures: dict, details: dict, info: dict, key: str, size: str, path: Path) -> None:
    """Merge this device's figures into ``path``, then plot them. Other devices' entries and
    this device's figures of sections not run this time (``--only``) are kept; ``measured``
    says when and at which size each figure was taken."""
    from sarfuse.io_utils import atomic_write_text

    data = json.loads(path.read_text()) if path.exists() else {}
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    before = data.setdefault("devices", {}).get(key, {})
    measured = {name: f"{before.get('date')} ({before.get('size')})"
                for name in before.get("figures", {})}  # fmt: skip
    data["devices"][key] = {
        "date": date,
        "size": size,
        "machine": info,
        "figures": {**before.get("figures", {}), **figures},
        "details": {**before.get("details", {}), **details},
        "measured": {
            **measured,
            **before.get("measured", {}),
            **dict.fromkeys(figures, f"{date} ({size})"),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, default=float))
    plot_targets(data["devices"], path.with_suffix(".png"))


def plot_targets(devices: dict, png: Path) -> None:
    """One bar per figure with a target: its value over the target (>= 1 means met)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, t in TARGETS.items() if t is not None]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    height = 0.8 / max(len(devices), 1)
    for i, (key, entry) in enumerate(devices.items()):
        scores = []
        for n in names:
            value, (op, bound) = entry["figures"].get(n), TARGETS[n]
            met = None if value is None else (value / bound if op == ">=" else bound / value)
            scores.append(met or 0.0)
        ax.barh([j + i * height for j in range(len(names))], scores, height, label=key)
    ax.axvline(1.0, color="k", lw=1)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(names))], names)
    ax.set_xlabel("value / target (>= 1: target met; bar 0: not measured)")
    ax.set_xscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--quick", action="store_true", help="fewer steps, smaller scenes")
    parser.add_argument("--tiny", action="store_true", help="smoke test: tiniest sizes")
    parser.add_argument(
        "--full-tile",
        action="store_true",
        help="also map a synthetic 10980^2 scene (slow: generation + mapping)",
    )
    parser.add_argument(
        "--only",
        default="pretrain,pooling,superpixels,map,probe",
        help="comma list of the sections to run",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--workdir", type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "sarfuse-bench-suite",
        help="scenes and probes, reused between runs",
    )  # fmt: skip
    args = parser.parse_args()
    from sarfuse.runtime import torch_device

    device = torch.device(torch_device(args.device))
    sections = {s.strip() for s in args.only.split(",")}
    info = machine(device)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    scale = SCALES[size]
    side = 512 if args.tiny else 2048 if args.quick or device.type == "cpu" else 8192
    before, cpu_peak = matmul_rates(device, side)
    figures, details = {}, {}
    runs = {
        "pretrain": lambda: pretrain_figures(device, scale),
        "pooling": pooling_figures,
        "superpixels": lambda: superpixel_figures(scale),
        "map": lambda: map_figures(device.type, scale, args.workdir, args.full_tile),
        "probe": lambda: probe_figures(device.type, args.workdir, scale.probe_labels),
    }
    for name, run in runs.items():
        if name not in sections:
            continue
        tic = time.perf_counter()
        result = run()
        figures.update(result["figures"])
        details.update(result["details"])
        print(f"  {name}: {time.perf_counter() - tic:.0f} s", flush=True)
        # saved after every section: a run stopped by a time limit keeps what it measured
        save(with_ratios(figures, before, cpu_peak), details, info, device.type, size, args.out)
    after, cpu_after = matmul_rates(device, side)
    details["matmul_gflops_before_after"] = [before, after]
    figures = with_ratios(figures, max(before, after), max(cpu_peak, cpu_after))
    save(figures, details, info, device.type, size, args.out)
    print_table(figures, info)
    print(f"written {args.out}")


def with_ratios(figures: dict, peak: float, cpu_peak: float) -> dict:
    """``figures`` with the matmul peak and every ``*_gflops`` over it as ``*_peak_ratio``;
    ``*_cpu_gflops`` (per second of CPU time) over the matmul's per CPU second likewise."""
    out = {**figures, "matmul_gflops": peak, "matmul_cpu_gflops": cpu_peak}
    for name in [k for k in figures if k.endswith("_gflops")]:
        ref = cpu_peak if name.endswith("_cpu_gflops") else peak
        out[name.replace("_gflops", "_peak_ratio")] = figures[name] / ref
    return {k: out[k] for k in sorted(out, key=_order)}


if __name__ == "__main__":
    main()

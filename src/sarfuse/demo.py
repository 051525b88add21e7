"""``sarfuse demo``: the whole chain on the embedded demo data, in a few minutes on a laptop.

Generate the data, compute superpixels, pretrain intermediate fusion briefly, probe with a few
labelled patches (beside the raw-band baseline), map an unseen demo scene and plot everything.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from sarfuse.data.demo import demo_data
from sarfuse.data.layouts import discover
from sarfuse.errors import SarfuseError
from sarfuse.mapping.config import MapConfig
from sarfuse.mapping.metrics import format_table
from sarfuse.mapping.scene import map_files
from sarfuse.mapping.workflow import ProbeConfig, run_probe
from sarfuse.runtime import torch_device
from sarfuse.ssl.config import PretrainConfig

DEMO_STEPS = 150  # pretraining steps of the demo (about two minutes on 2 CPU cores)
# the paper's protocol, the same for both rows: a linear probe on the features alone, with ten
# labelled patches of the default size
DEMO_PROBE = ProbeConfig(features="pretrained", classifier="linear", self_train=False)
DEMO_MAP = MapConfig(tile=256, overlap=32)  # smaller tiles than the default: a small scene


def _reusable(run_dir: Path, cfg: PretrainConfig, say) -> bool:
    """The demo's own finished pretraining, if trained as asked; else it is cleared to redo."""
    from sarfuse.ssl.train import changed_settings

    try:
        changed = changed_settings(run_dir, cfg)
    except SarfuseError as err:  # unreadable settings: as good as changed
        changed = err.problem
    if changed is None:
        return True
    say(escape(f"{run_dir} {changed}: training it again"))
    shutil.rmtree(run_dir)
    return False


def run_demo(
    out: str | Path = "demo_out",
    steps: int = DEMO_STEPS,
    device: str = "auto",
    console: Console | None = None,
) -> dict:
    """Run the demo into ``out``; a rerun reuses a finished pretraining."""
    say = (console or Console(stderr=True)).print
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = demo_data("dfc2020")
    say(f"[bold]1/4[/] demo data (synthetic Sentinel-1 + Sentinel-2, DFC2020 layout): {data}")
    cfg = PretrainConfig(fusion="intermediate", method="pixel", steps=steps, device=device)
    ckpt = _pretrain(data, out / "pretrain", cfg, say)
    where = torch_device(device)  # the probe and the map run where the pretraining ran
    metrics, raw = _probe(data, out, ckpt, where, say)
    say("[bold]4/4[/] mapping an unseen demo scene tile by tile")
    result = _map(out, ckpt, where)
    summary = {
        "map": str(out / "map.tif"),
        "quicklook": str(result["quicklook"]),
        "metrics": str(out / "metrics.json"),
        "confusion": str(out / "confusion.png"),
        "loss_curve": str(out / "pretrain" / "loss.png"),
        "checkpoint": str(ckpt),
        "mIoU": metrics["mIoU"],
        "mIoU_raw_baseline": raw["mIoU"],
        "tiles": result["tiles"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _pretrain(data: Path, run_dir: Path, cfg: PretrainConfig, say) -> Path:
    """Step 2: pretrain (or reuse the demo's own finished pretraining); its checkpoint."""
    from sarfuse.ssl.train import pretrain  # Lightning: only when training

    if (run_dir / "done").exists() and _reusable(run_dir, cfg, say):
        say(f"[bold]2/4[/] reusing the pretrained network in {run_dir}")
    else:
        say(
            f"[bold]2/4[/] superpixels + self-supervised pretraining ({cfg.steps} steps, no labels)"
        )
        pretrain(data, run_dir, cfg, resume=(run_dir / "last.ckpt").exists())
        (run_dir / "done").write_text("ok\n")
    return run_dir / "last.ckpt"


def _probe(data: Path, out: Path, ckpt: Path, where: str, say) -> tuple[dict, dict]:
    """Step 3: the pretrained features' probe beside the raw-band baseline."""
    probe_cfg = replace(DEMO_PROBE, device=where)
    say(f"[bold]3/4[/] linear probe with {probe_cfg.labels} labelled {probe_cfg.patch_size}x"
        f"{probe_cfg.patch_size} patches")  # fmt: skip
    source = discover(data)
    metrics = run_probe(source, out / "probe", probe_cfg, ckpt, progress=False)
    raw_cfg = replace(probe_cfg, features="raw")
    raw = run_probe(source, out / "probe_raw", raw_cfg, None, progress=False)
    say(format_table(metrics))
    say(
        f"mIoU: pretrained fused features {metrics['mIoU']:.3f} | "
        f"raw bands + indices {raw['mIoU']:.3f}"
    )
    for name in ("metrics.json", "confusion.png"):
        shutil.copyfile(out / "probe" / name, out / name)
    return metrics, raw


def _map(out: Path, ckpt: Path, where: str) -> dict:
    """Step 4: map an unseen demo scene with the probe."""
    sample = discover(demo_data("scene", seed=1)).samples[0]
    return map_files(
        out / "probe", out / "map.tif", s1=sample.s1, s2=sample.s2, checkpoint=ckpt,
        config=DEMO_MAP, device=where, label=sample.label,
    )  # fmt: skip

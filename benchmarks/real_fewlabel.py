"""Few-label mapping on every real chip in ../shared/data, against the raw-band baselines.

Two parts, each with the same evaluation patches for every row of a split:
- Sen1Floods11 Spain_7370579 (S1+S2, water): pretrain on the chip without labels, then probe with
  N = 2, 4, 8 labelled 64x64 patches, seeds 0..4.
- The Sen1Floods11 S1-only chips: pretrain ONCE on the S1 of all usable chips (no labels), then
  per chip probe with N = 2, 4, 8 patches of that chip, seeds 0..4 (`--s1-seeds`; the
  committed results add seeds 5..9).

In every split 32 patches of the chip are held out for evaluation (drawn by the seed), N others
carry labels, and the rest are unlabelled (self-training may use them; nothing else does).
Writes benchmarks/results/real_fewlabel.{csv,md,png}. Needs ../shared/data.

    python benchmarks/real_fewlabel.py [--part spain|s1|all] [--steps 300] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sarfuse.data.layouts import DataSource, discover
from sarfuse.data.raster import read_label, read_s1
from sarfuse.errors import SarfuseError
from sarfuse.mapping.features import PatchFeatures, feature_setup
from sarfuse.mapping.metrics import confusion_matrix, scores
from sarfuse.mapping.selection import Candidate, CrossValidation, choose
from sarfuse.mapping.splits import few_label_split
from sarfuse.mapping.workflow import ProbeConfig, open_patches, patch_labels, run_probe
from sarfuse.runtime import quiet_lightning
from sarfuse.ssl.config import PretrainConfig
from sarfuse.ssl.train import pretrain

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
N_EVAL = 32
PRETRAIN = {"steps": 300, "patch_size": 128, "crops_per_patch": 64}

# name -> ProbeConfig overrides; "net" rows need the pretrained checkpoint. Every row but the
# default and the IoU-decision rows decides by arg-max, as a user's forest or linear model does
ARGMAX = {"decision": "argmax"}
ROWS: dict[str, dict] = {
    "sarfuse default (auto, IoU decision)": {},
    "auto + self-training": {**ARGMAX, "self_train": True},
    "pretrained, linear": {"features": "pretrained", "classifier": "linear", **ARGMAX},
    "pretrained, rf": {"features": "pretrained", "classifier": "rf", **ARGMAX},
    "pretrained+raw, rf": {"features": "pretrained+raw", "classifier": "rf", **ARGMAX},
    "pretrained+raw, linear": {"features": "pretrained+raw", "classifier": "linear", **ARGMAX},
    "raw, rf + self-training": {"features": "raw", "classifier": "rf", **ARGMAX,
                                "self_train": True},
    "raw, rf + IoU decision": {"features": "raw", "classifier": "rf", "decision": "iou"},
    "raw, rf + IoU decision, CV-checked": {
        "features": "raw", "classifier": "rf", "decision": "iou", "decision_check": True,
    },
    "raw, linear": {"features": "raw", "classifier": "linear", **ARGMAX},
    "raw, rf": {"features": "raw", "classifier": "rf", **ARGMAX},
    "supervised (WSL), linear": {"features": "supervised", "classifier": "linear", **ARGMAX},
}  # fmt: skip
DEFAULT_ROW = next(iter(ROWS))  # the first row is sarfuse's default configuration
# other rules for the default's choice, scored without fitting anything again: the default row's
# cross-validation says what each would choose, and the chosen candidate's own (arg-max) row on
# the same split is what it would score (the same pixels, features, seed and fit)
RULE_ROWS: dict[str, dict] = {
    "auto, arg-max decision (the previous default)": {"margin": 0.02, "most_folds": True},
    "auto, CV margin 0.02 on the summed score only (an earlier default)": {
        "margin": 0.02, "most_folds": False,
    },
    "auto, arg-max CV (margin 0)": {"margin": 0.0, "most_folds": False},
}  # fmt: skip
# fusion/method pretrainings probed beside the default one (linear probe, the paper's protocol)
VARIANT_ROWS = ("pretrained, linear",)
BASELINE = "raw, rf"
ZERO_LABEL = ("Otsu on VV (no labels)", "NDWI > 0 (no labels)")


def water_iou(cm: np.ndarray) -> float:
    cm = np.asarray(cm)
    return float(cm[1, 1] / max(1, cm[1, :].sum() + cm[:, 1].sum() - cm[1, 1]))


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (1-D, finite): the split maximising between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.sum(hist * centres) - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def vv_threshold(source: DataSource) -> float | None:
    """Otsu's threshold of the chip's VV in dB (all valid pixels, no labels); None without S1."""
    sample = source.samples[0]
    if sample.s1 is None:
        return None
    s1, ok = read_s1(sample.s1)
    return otsu(s1[0][ok & np.isfinite(s1[0])])


def zero_label_rows(source: DataSource, feats: PatchFeatures, split, threshold) -> list[dict]:
    """Otsu on VV (``threshold``) and NDWI > 0, scored on the split's eval patches."""
    sample = source.samples[0]
    out = []
    names = feats.patches.indices
    for name, rule in zip(ZERO_LABEL, ("otsu", "ndwi"), strict=True):
        if rule == "otsu" and threshold is None or rule == "ndwi" and "ndwi" not in names:
            continue
        cm = torch.zeros(2, 2, dtype=torch.int64)
        for idx in split.eval:
            item = feats.patches[idx]
            if rule == "otsu":
                s1_db, _ = read_s1(sample.s1, feats.patches.patches[idx][1])
                vv = np.full(item["valid"].shape, np.nan, np.float32)
                vv[: s1_db.shape[1], : s1_db.shape[2]] = s1_db[0]
                pred = torch.from_numpy((vv < threshold).astype(np.int64))
            else:
                ndwi = item["indices"][list(names).index("ndwi")]
                pred = (ndwi > 0).long()
            cm += confusion_matrix(pred, item["label"], 2)
        out.append({"row": name, "cm": cm.numpy(), "seconds": 0.0, "dim": 1, "chosen": ""})
    return out


def probe_rows(
    source, feats, split, ckpt, n, seed, out: Path, rows: dict, device: str = "cpu"
) -> list[dict]:
    results = []
    for name, overrides in rows.items():
        cfg = replace(ProbeConfig(labels=n, seed=seed, n_eval=N_EVAL, device=device), **overrides)
        t0 = time.perf_counter()
        folder = out / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        res = run_probe(source, folder, cfg, ckpt, split=split, features=feats, progress=False)
        seconds = time.perf_counter() - t0
        cm, edge = np.asarray(res["confusion"]), res["edge"]
        results.append({
            "row": name, "cm": cm, "seconds": seconds, "dim": res["feature_dim"],
            "chosen": res["selection"]["chosen"], "edge_error": edge["edge_error"],
            "interior_error": edge["interior_error"], "selection": res["selection"],
        })  # fmt: skip
    return results + rule_rows(results)


def rule_rows(found: list[dict]) -> list[dict]:
    """The RULE_ROWS of one split, from its default row's cross-validation and its candidates'
    own rows (none unless all of them were computed)."""
    default = next((r for r in found if r["row"] == DEFAULT_ROW), None)
    own = {r["row"]: r for r in found}
    if default is None or not all(row in own for row in CANDIDATE_ROWS.values()):
        return []
    sel = default["selection"]
    cv = CrossValidation(sel["cv_miou"], sel["cv_fold_miou"])
    candidates = [Candidate(name.split("/")[0], (), name.split("/")[1]) for name in cv.miou]
    out = []
    for name, rule in RULE_ROWS.items():
        choice = choose(candidates, cv, rule["margin"], rule["most_folds"]).name
        line = {**own[CANDIDATE_ROWS[choice]], "row": name, "chosen": choice}
        out.append({**line, "seconds": default["seconds"]})  # the CV is most of the time
    return out


def run_chip(
    name,
    source,
    ckpt,
    ns,
    seeds,
    out: Path,
    rows: dict,
    writer,
    zero_label: bool = True,
    device: str = "cpu",
) -> None:
    """Every row on every (N, seed) split of one chip; one CSV line per row and split."""
    maker, contract = feature_setup("pretrained+raw", source, ckpt)
    cfg = ProbeConfig()
    feats = PatchFeatures(open_patches(source, contract, cfg), maker, cache=True)
    labels = patch_labels(feats.patches, progress=False)
    threshold = vv_threshold(source)  # one per chip, shared by its splits
    for n in ns:
        for seed in seeds:
            split = few_label_split(labels, n, seed, n_eval=N_EVAL, num_classes=2)
            found = probe_rows(
                source, feats, split, ckpt, n, seed, out / name / f"n{n}-s{seed}", rows, device
            )
            if zero_label:
                found += zero_label_rows(source, feats, split, threshold)
            for r in found:
                s = scores(r["cm"])
                writer({
                    "chip": name, "n": n, "seed": seed, "row": r["row"],
                    "water_iou": round(water_iou(r["cm"]), 4), "miou": round(s["mIoU"], 4),
                    "miou_all": round(s["miou_all"], 4), "edge_error": r.get("edge_error"),
                    "interior_error": r.get("interior_error"), "feature_dim": r["dim"],
                    "chosen": r["chosen"], "seconds": round(r["seconds"], 2),
                    "cv": cv_column(r.get("selection", {})),
                })  # fmt: skip
            base = next((r for r in found if r["row"] == BASELINE), found[0])
            default = found[0]
            got, ref = water_iou(default["cm"]), water_iou(base["cm"])
            print(f"{name} N={n} seed={seed}: {default['row']} {got:.3f} ({default['chosen']}) "
                  f"vs {base['row']} {ref:.3f}", flush=True)  # fmt: skip


def cv_column(selection: dict) -> str:
    """The cross-validation behind an auto row, as JSON (so other choice rules can be scored
    from the CSV alone); empty for rows that chose nothing."""
    if not selection.get("cv_miou"):
        return ""
    cv = {"miou": selection["cv_miou"], "folds": selection.get("cv_fold_miou", {})}
    return json.dumps(cv, separators=(",", ":"))


def usable_s1_chips(folder: Path) -> tuple[list[tuple[str, DataSource]], list[str]]:
    """The S1-only chips that can be evaluated, and a reason for each one skipped."""
    full = discover(folder)
    usable, skipped = [], []
    for sample in full.samples:
        try:
            s1, ok = read_s1(sample.s1)
        except SarfuseError as err:  # e.g. all NaN: the reader refuses it
            skipped.append(f"{sample.name}: {err}")
            continue
        label = read_label(sample.label, full.scheme)
        if not (ok & np.isfinite(s1).all(0)).any():
            skipped.append(f"{sample.name}: S1 is all NaN")
        elif (label == 255).all():
            skipped.append(f"{sample.name}: nothing labelled")
        elif not (label == 1).any():
            skipped.append(f"{sample.name}: no water in the labels")
        else:
            usable.append((sample.name, DataSource(full.layout, [sample], full.scheme, full.root)))
    return usable, skipped


def pretrained(data, run: Path, fusion: str, steps: int, **extra) -> Path:
    """Pretrain without labels (or finish an interrupted run) and return the checkpoint."""
    cfg = PretrainConfig.from_dict({**PRETRAIN, "steps": steps, "fusion": fusion, **extra})
    done = run / "done"
    if not done.exists():
        t0 = time.perf_counter()
        pretrain(data, run, cfg, resume=(run / "last.ckpt").exists(), progress=False)
        done.write_text(f"{time.perf_counter() - t0:.0f} s\n")
        print(f"pretrained {run.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return run / "last.ckpt"


PARTS = ("spain", "spain-s2", "s1")
S2_ONLY = " (S2 only)"  # suffix of the Spain chip read as S2 only (the spain-s2 part)
VOLUME_ROWS = ("pretrained, rf", "pretrained+raw, rf")
VOLUME_N = 4


def part_of(chip: str) -> str:
    """The benchmark part (PARTS) that writes the lines of ``chip``."""
    return "s1" if chip.startswith("S1:") else "spain-s2" if chip.endswith(S2_ONLY) else "spain"


def volume_row(row: str, chips: str) -> str:
    """The name of ``row`` probed on features pretrained on ``chips`` S1 chips (volume curve)."""
    return f"{row} [pretrained on {chips} chips]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "real_fewlabel")
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared/data folder")
    parser.add_argument("--csv", type=Path, default=RESULTS / "real_fewlabel.csv")
    parser.add_argument("--seeds", type=int, default=5, help="seeds on the Spain chip")
    parser.add_argument("--s1-seeds", type=int, default=5, help="seeds on each S1 chip")
    parser.add_argument(
        "--seed-from", type=int, default=0,
        help="first seed run (add seeds to an earlier run: its lines of lower seeds are kept)",
    )  # fmt: skip
    parser.add_argument("--ns", default="2,4,8")
    parser.add_argument("--rows", default="", help="row names separated by ; (default: all)")
    parser.add_argument("--chips", default="", help="S1 chips to probe, separated by , (all)")
    parser.add_argument(
        "--volumes", default="all,1,3", help="S1 chips pretrained on (data-volume curve)"
    )
    parser.add_argument(
        "--variants", default="", help="fusion/method pretrainings to probe too, e.g. early/pixel"
    )
    parser.add_argument("--pretrain-only", action="store_true", help="pretrain, do not probe")
    parser.add_argument("--probe-device", default="cpu", help="cpu | cuda, for the probes")
    parser.add_argument(
        "--summarise", action="store_true", help="only redo the table and plots from --csv"
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: the real samples are not here (dev workspace only)")
    quiet_lightning()
    rows = {k: v for k, v in ROWS.items() if not args.rows or k in args.rows.split(";")}
    if args.rows == "none":  # only the --variants
        rows = {}
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        summarise(_previous(args.csv, set(), args.part, []))
        return
    ns = [int(v) for v in args.ns.split(",")]
    lines = _previous(args.csv, _recomputed(args, rows), args.part, ns, args.seed_from)

    def writer(line: dict) -> None:  # rewrite the CSV after every split: nothing is lost
        lines.append(line)
        _write_csv(args.csv, lines)

    if args.part in ("spain", "all"):
        spain_part(args, rows, writer)
    if args.part in ("spain-s2", "all"):
        spain_s2_part(args, writer)
    if args.part in ("s1", "all"):
        s1_part(args, rows, writer)
    if args.pretrain_only:
        return
    print(f"wrote {args.csv}")
    if args.csv.parent == RESULTS and lines:
        summarise(lines)


def spain_part(args, rows: dict, writer) -> None:
    """Pretrain on the Spain chip (S1+S2, intermediate fusion), then probe it."""
    folder = args.data / "sen1floods11"
    ckpt = pretrained(folder, args.runs / "spain-intermediate", "intermediate", args.steps)
    variants = {}
    for v in (v for v in args.variants.split(",") if v):
        fusion, method = v.split("/")
        run = args.runs / f"spain-{fusion}-{method}"
        variants[v] = pretrained(folder, run, fusion, args.steps, method=method)
    if args.pretrain_only:
        return
    ns, seeds, probes = (
        [int(v) for v in args.ns.split(",")],
        range(args.seed_from, args.seeds),
        args.runs / "probes",
    )
    source = discover(folder)
    if rows:
        run_chip(
            "Spain_7370579", source, ckpt, ns, seeds, probes, rows, writer,
            device=args.probe_device,
        )  # fmt: skip
    for v, variant in variants.items():
        extra = {f"{r} [{v}]": ROWS[r] for r in VARIANT_ROWS}
        run_chip(
            "Spain_7370579", source, variant, ns, seeds, probes / v.replace("/", "-"), extra,
            writer, zero_label=False, device=args.probe_device,
        )  # fmt: skip


# the other real S2 data in ../shared that pretraining can read: one more Sen1Floods11 chip
# (the BigEarthNet patch is 120x120 px in one file per band, under 5 % of a chip: left out)
EXTRA_S2 = ("sen1floods11-s2-unlabelled/USA_430764_S2Hand.tif",)
S2_VOLUMES = ("1", str(1 + len(EXTRA_S2)))  # scenes pretrained on: the chip, the chip + extras


def spain_s2_part(args, writer) -> None:
    """The S1+S2 chip's data-volume point: S2 features of the Spain chip pretrained (no labels)
    on its own S2, and on it with the other real S2 chip, probed on its S2 at N = VOLUME_N.

    Only S2 data is there to add, so this compares S2-only pretrainings, each against the
    S2-only raw-band forest on the same splits."""
    spain = discover(args.data / "sen1floods11").samples[0].s2
    extra = [args.data / f for f in EXTRA_S2]
    scenes = dict(zip(S2_VOLUMES, ([spain], [spain, *extra]), strict=True))
    ckpts = {
        k: pretrained(files, args.runs / f"spain-s2-{k}-early", "early", args.steps)
        for k, files in scenes.items()
    }
    if args.pretrain_only:
        return
    source = discover(args.data / "sen1floods11")
    seeds, probes = range(args.seed_from, args.seeds), args.runs / "probes" / "spain-s2"
    for k, ckpt in ckpts.items():
        rows = {volume_row(r, k): ROWS[r] for r in VOLUME_ROWS}
        if k == "1":  # the S2-only reference; its features follow the checkpoint's sensors
            rows[BASELINE] = ROWS[BASELINE]
        run_chip(
            "Spain_7370579" + S2_ONLY, source, ckpt, [VOLUME_N], seeds, probes / k, rows,
            writer, zero_label=False, device=args.probe_device,
        )  # fmt: skip


def s1_part(args, rows: dict, writer) -> None:
    """Pretrain once on the S1 of all usable chips (and on the first 1, 3 of them for the
    data-volume curve), then probe every chip with N of its own patches."""
    chips, skipped = usable_s1_chips(args.data / "sen1floods11-s1")
    for reason in skipped:
        print(f"skipped {reason}")
    listed = [v for v in args.volumes.split(",") if v]
    volumes = {v: chips if v == "all" else chips[: int(v)] for v in listed}
    ckpts = {
        v: pretrained([src.samples[0].s1 for _, src in members], args.runs / f"s1-{v}-early",
                      "early", args.steps)
        for v, members in volumes.items()
    }  # fmt: skip
    if args.pretrain_only:
        return
    ns = [int(v) for v in args.ns.split(",")]
    wanted = [c for c in args.chips.split(",") if c]
    seeds, probes = range(args.seed_from, args.s1_seeds), args.runs / "probes"
    for name, source in chips:
        if wanted and name not in wanted:
            continue
        if "all" in ckpts and rows:
            run_chip(
                f"S1:{name}", source, ckpts["all"], ns, seeds, probes, rows, writer,
                device=args.probe_device,
            )  # fmt: skip
        for v in volumes:
            if v == "all":
                continue
            extra = {volume_row(r, v): ROWS[r] for r in VOLUME_ROWS}
            run_chip(
                f"S1:{name}", source, ckpts[v], [VOLUME_N], seeds, probes / f"s1-{v}", extra,
                writer, zero_label=False, device=args.probe_device,
            )  # fmt: skip


def _recomputed(args, rows: dict) -> set[str]:
    """The names of the rows this run computes (again): their earlier lines are dropped."""
    names = set(rows) | set(ZERO_LABEL)
    if DEFAULT_ROW in rows:
        names |= set(RULE_ROWS)
    names |= {f"{r} [{v}]" for v in args.variants.split(",") if v for r in VARIANT_ROWS}
    if args.part in ("s1", "all"):
        volumes = [v for v in args.volumes.split(",") if v and v != "all"]
        names |= {volume_row(r, v) for r in VOLUME_ROWS for v in volumes}
    if args.part in ("spain-s2", "all"):
        names |= {BASELINE} | {volume_row(r, k) for r in VOLUME_ROWS for k in S2_VOLUMES}
    return names


def _previous(
    path: Path, recomputed: set[str], part: str, ns: Sequence[int], seed_from: int = 0
) -> list[dict]:
    """Lines of an earlier run, but those of the rows computed again now on ``part``'s chips
    at the ``ns`` and seeds (from ``seed_from`` on) computed again."""
    if not path.exists():
        return []

    def again(r: dict) -> bool:
        on_part = part in ("all", part_of(r["chip"]))
        again_seed = int(r["seed"]) >= seed_from
        return on_part and again_seed and int(r["n"]) in ns and r["row"] in recomputed

    def known(row: str) -> bool:  # rows renamed since are dropped
        return row.split(" [")[0] in set(ROWS) | set(ZERO_LABEL) | set(RULE_ROWS)

    with path.open() as f:
        return [r for r in csv.DictReader(f) if known(r["row"]) and not again(r)]


def _write_csv(path: Path, lines: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        fields = list(dict.fromkeys(k for line in lines for k in line))  # older lines lack some
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(lines)
    tmp.replace(path)


def summarise(lines: list[dict]) -> None:
    """Mean water IoU per chip, row and N (Markdown table + PNG)."""
    for r in lines:
        r["n"], r["water_iou"], r["seconds"] = (
            int(r["n"]),
            float(r["water_iou"]),
            float(r["seconds"]),
        )
    chips = sorted({r["chip"] for r in lines})
    rows = list(dict.fromkeys([*ROWS, *RULE_ROWS, *(r["row"] for r in lines)]))
    ns = sorted({r["n"] for r in lines})
    md = ["| chip | row | " + " | ".join(f"N={n}" for n in ns) + " | s/probe | dim |",
          "|---|---|" + "---|" * (len(ns) + 2)]  # fmt: skip
    for chip in chips:
        for row in rows:
            cells = []
            sel = [r for r in lines if r["chip"] == chip and r["row"] == row]
            if not sel:
                continue
            for n in ns:
                v = [r["water_iou"] for r in sel if r["n"] == n]
                cells.append(f"{np.mean(v):.3f} ({' '.join(f'{x:.3f}' for x in v)})" if v else "-")
            secs = np.mean([r["seconds"] for r in sel])
            md.append(
                f"| {chip} | {row} | "
                + " | ".join(cells)
                + f" | {secs:.1f} | {sel[0]['feature_dim']} |"
            )
    md += ["", choice_accuracy(lines), "", *against_baseline(lines)]
    (RESULTS / "real_fewlabel.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    plot(lines, chips, [r for r in rows if "pretrained on" not in r], ns)
    plot_volume(lines)


def plot(lines: list[dict], chips: list[str], rows: list[str], ns: list[int]) -> None:
    """Mean water IoU against N, one panel per chip (the S1 chips averaged in one panel)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    tab20 = colormaps["tab20"]
    groups = {c: [c] for c in chips if part_of(c) == "spain"}
    s1 = [c for c in chips if part_of(c) == "s1"]
    if s1:
        groups["S1-only chips (mean)"] = s1
    fig = Figure(figsize=(6 * len(groups) + 4, 5))
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (title, members) in zip(axes, groups.items(), strict=True):
        for i, row in enumerate(rows):
            ys = [np.mean([r["water_iou"] for r in lines
                           if r["chip"] in members and r["row"] == row and r["n"] == n] or [np.nan])
                  for n in ns]  # fmt: skip
            dashed = row == BASELINE or row in ZERO_LABEL
            default = row == DEFAULT_ROW
            style = {"lw": 3, "color": "k", "zorder": 3} if default else {"color": tab20(i % 20)}
            ax.plot(ns, ys, "--" if dashed else "-", marker="o", label=row, **style)
        ax.set(xscale="log", xticks=ns, xticklabels=[str(n) for n in ns], title=title,
               xlabel="labelled 64x64 patches (N)", ylabel="water IoU")  # fmt: skip
        ax.minorticks_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 3.8 / fig.get_figwidth(), 1))
    fig.savefig(RESULTS / "real_fewlabel.png", dpi=90)


CANDIDATE_ROWS = {  # the default's candidates, by the name of their own row
    f"{f}/{c}": f"{f}, {c}"
    for f in ("raw", "pretrained", "pretrained+raw")
    for c in ("rf", "linear")
}


def choice_accuracy(lines: list[dict], tolerance: float = 0.005) -> str:
    """How often the default's cross-validated choice was (within ``tolerance`` of) the best of
    its candidates on the evaluation patches, over the splits where every candidate has a row."""
    score = {(r["chip"], r["n"], r["seed"], r["row"]): r["water_iou"] for r in lines}
    right = total = 0
    for r in lines:
        if r["row"] != DEFAULT_ROW or r["chosen"] not in CANDIDATE_ROWS:
            continue
        key = (r["chip"], r["n"], r["seed"])
        found = [score.get((*key, row)) for row in CANDIDATE_ROWS.values()]
        if None in found:
            continue
        total += 1
        right += r["water_iou"] >= max(found) - tolerance
    return (
        f"The default's choice was within {tolerance} water IoU of the best of its "
        f"{len(CANDIDATE_ROWS)} candidates on the evaluation patches in {right} of {total} splits."
    )


def against_baseline(lines: list[dict], tolerance: float = 0.005) -> list[str]:
    """The default minus the raw-band forest per chip and N, on the seeds where both ran (the
    same splits): mean, its standard error over seeds, the seeds, and a flag where the mean is
    more than ``tolerance`` below (the issue's "never below the forest beyond noise")."""
    forest = {(r["chip"], r["n"], r["seed"]): r["water_iou"] for r in lines if r["row"] == BASELINE}
    diffs: dict[tuple, list[float]] = {}  # (chip, n) -> default minus forest, per paired seed
    for r in lines:
        split = (r["chip"], r["n"], r["seed"])
        if r["row"] == DEFAULT_ROW and split in forest:
            diffs.setdefault(split[:2], []).append(r["water_iou"] - forest[split])
    chips = sorted({r["chip"] for r in lines if r["row"] == DEFAULT_ROW})  # "-" where unpaired
    ns = sorted({r["n"] for r in lines if r["row"] == DEFAULT_ROW})
    md = [
        f"Default minus `{BASELINE}` on the same splits: mean over seeds, standard error, seeds"
        f" (**bold**: mean more than {tolerance} below).",
        "",
        "| chip | " + " | ".join(f"N={n}" for n in ns) + " |",
        "|---|" + "---|" * len(ns),
    ]
    for chip in chips:
        cells = []
        for n in ns:
            d = diffs.get((chip, n))
            if not d:
                cells.append("-")
                continue
            mean = float(np.mean(d))
            se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            cell = f"{mean:+.3f}"
            cells.append(f"{f'**{cell}**' if mean < -tolerance else cell} ± {se:.3f} ({len(d)})")
        md.append(f"| {chip} | " + " | ".join(cells) + " |")
    return md


def plot_volume(lines: list[dict]) -> None:
    """Mean water IoU at N = VOLUME_N against the scenes pretrained on: the S1 chips (mean over
    them) and the Spain chip's S2."""
    from matplotlib.figure import Figure

    panels = {
        "S1-only chips: score against unlabelled data": "s1",
        "Spain chip, S2 only: score against unlabelled data": "spain-s2",
    }
    found = {t: [r for r in lines if part_of(r["chip"]) == p and r["n"] == VOLUME_N]
             for t, p in panels.items()}  # fmt: skip
    found = {t: v for t, v in found.items() if v}
    if not found:
        return
    fig = Figure(figsize=(6 * len(found), 4.5))
    for ax, (title, sel) in zip(fig.subplots(1, len(found), squeeze=False)[0], found.items(),
                                strict=True):  # fmt: skip
        _volume_panel(ax, sel, title)
    fig.tight_layout()
    fig.savefig(RESULTS / "real_fewlabel_volume.png", dpi=90)


def _volume_panel(ax, sel: list[dict], title: str) -> None:
    """One panel of plot_volume: each VOLUME_ROWS row against the number of scenes, with the
    forest (and on S1 the default) as horizontal lines."""

    def mean(row: str) -> float:
        return float(np.mean([r["water_iou"] for r in sel if r["row"] == row] or [np.nan]))

    s1 = part_of(sel[0]["chip"]) == "s1"
    tag = "[pretrained on "
    marks = sorted({r["row"].split(tag)[1].split()[0] for r in sel if tag in r["row"]})
    counts = [int(m) for m in marks]
    for row in VOLUME_ROWS:
        xs = [*counts, len({r["chip"] for r in sel})] if s1 else counts
        ys = [mean(volume_row(row, m)) for m in marks] + ([mean(row)] if s1 else [])
        order = np.argsort(xs)
        ax.plot(np.array(xs)[order], np.array(ys)[order], "-o", label=row)
    for row in (BASELINE, DEFAULT_ROW) if s1 else (BASELINE,):
        ax.axhline(mean(row), ls="--", color="grey" if row == BASELINE else "k", label=row)
    ax.set(xlabel="scenes pretrained on (no labels)", ylabel=f"mean water IoU, N={VOLUME_N}",
           title=title)  # fmt: skip
    ax.legend(fontsize=7)


if __name__ == "__main__":
    main()

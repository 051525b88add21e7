"""The real-data benchmark's bookkeeping: adding seeds to an earlier run keeps its other lines."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_fewlabel.py"


def _bench():
    spec = importlib.util.spec_from_file_location("real_fewlabel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_previous_keeps_lower_seeds_and_other_rows(tmp_path):
    bench = _bench()
    path = tmp_path / "runs.csv"
    lines = [
        {"chip": chip, "n": n, "seed": seed, "row": row, "water_iou": 0.5}
        for chip in ("S1:A", "Spain_7370579")
        for n in (2, 4)
        for seed in range(5)
        for row in ("raw, rf", "raw, linear")
    ]
    bench._write_csv(path, lines)
    kept = bench._previous(path, {"raw, rf"}, "s1", [2], seed_from=3)
    key = lambda r: (r["chip"], int(r["n"]), int(r["seed"]), r["row"])  # noqa: E731
    dropped = {key(r) for r in lines} - {key(r) for r in kept}
    assert sorted(dropped) == [("S1:A", 2, 3, "raw, rf"), ("S1:A", 2, 4, "raw, rf")]
    assert len(kept) == len(lines) - 2
    # without seed_from every seed of the recomputed row and N goes
    assert len(bench._previous(path, {"raw, rf"}, "s1", [2])) == len(lines) - 5


def test_against_baseline_pairs_seeds_and_flags_cells_below():
    bench = _bench()
    default = bench.DEFAULT_ROW
    scores = {  # (n, seed) -> (default, forest)
        (2, "0"): (0.50, 0.60), (2, "1"): (0.50, 0.50), (2, "2"): (0.70, None),
        (4, "0"): (0.62, 0.60), (4, "1"): (0.58, 0.56),
    }  # fmt: skip
    lines = []
    for (n, seed), pair in scores.items():
        for row, value in zip((default, bench.BASELINE), pair, strict=True):
            if value is not None:
                lines.append({"chip": "S1:A", "n": n, "seed": seed, "row": row, "water_iou": value})
    table = bench.against_baseline(lines)
    row = next(line for line in table if line.startswith("| S1:A"))
    # N=2: seed 2 has no forest line, so the mean is over (-0.10, 0.00): -0.050, se 0.050
    assert row == "| S1:A | **-0.050** ± 0.050 (2) | +0.020 ± 0.000 (2) |"

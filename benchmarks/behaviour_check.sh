#!/bin/bash
# Behaviour check for refactors (not part of make test; needs ../shared/data): run the demo and a
# short Sen1Floods11 chain (pretrain 60 steps, 4 probes, a map) through the CLI of the source tree
# $1 and write the numbers (metrics, CV choices, losses, map pixel hashes) to $2/summary.json.
# The chain is deterministic on CPU, so a refactor must leave the summary unchanged:
#   benchmarks/behaviour_check.sh . /tmp/before   (on the old commit)
#   benchmarks/behaviour_check.sh . /tmp/after    (on the new one)
#   diff <(python3 -m json.tool /tmp/before/summary.json) <(python3 -m json.tool /tmp/after/summary.json)
set -e
TREE=$(realpath "$1"); OUT=$(realpath -m "$2"); mkdir -p "$OUT"
export PYTHONPATH=$TREE/src
PY=${PYTHON:-$(realpath -s "$(dirname "$0")/../.venv/bin/python")}  # -s: the venv link, not its target
SF="$PY -m sarfuse"
CHIP=${CHIP:-$(realpath "$(dirname "$0")/../../shared/data/sen1floods11")}
cd "$OUT"
$SF demo --out demo --device cpu > demo.log 2>&1
$SF pretrain $CHIP --out s11pre --steps 60 --patch-size 128 --seed 0 --device cpu > pre.log 2>&1
for s in 0 1; do
  $SF probe $CHIP --checkpoint s11pre/last.ckpt --labels 4 --seed $s --out probe-auto-$s --device cpu > probe-auto-$s.log 2>&1
done
$SF probe $CHIP --checkpoint s11pre/last.ckpt --labels 4 --seed 0 --features pretrained --classifier linear --out probe-lin --device cpu > probe-lin.log 2>&1
$SF probe $CHIP --labels 4 --seed 0 --features raw --classifier rf --out probe-rf --device cpu > probe-rf.log 2>&1
S1=$(ls $CHIP/S1/*.tif | head -1); S2=$(ls $CHIP/S2/*.tif | head -1)
$SF map --probe probe-lin --s1 "$S1" --s2 "$S2" --out s11map.tif --device cpu > map.log 2>&1
$PY - <<'PY'
import json, hashlib, glob
import rasterio
def h(p):
    with rasterio.open(p) as f:
        return hashlib.sha1(f.read().tobytes()).hexdigest()[:16]
s = {"demo": {k: v for k, v in json.load(open("demo/summary.json")).items() if k in ("mIoU", "mIoU_raw_baseline", "tiles")},
     "demo_map": h("demo/map.tif")}
for d in sorted(glob.glob("probe-*/")):
    m = json.load(open(f"{d}metrics.json"))
    s[d.rstrip("/")] = {k: m[k] for k in ("mIoU", "OA", "kappa") if k in m}
    s[d.rstrip("/")]["selection"] = m.get("selection")
s["s11_map"] = h("s11map.tif")
for name in ("demo/pretrain", "s11pre"):
    ck = sorted(glob.glob(f"{name}/*.csv"))
    import csv
    rows = list(csv.DictReader(open(f"{name}/loss.csv")))
    s[name + "_loss"] = [round(float(r["loss"]), 5) for r in rows[:: max(1, len(rows) // 6)]] + [round(float(rows[-1]["loss"]), 5)]
json.dump(s, open("summary.json", "w"), indent=1)
print(json.dumps(s, indent=1))
PY

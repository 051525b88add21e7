#!/usr/bin/env bash
# One GPU check in one call (issue 12): the benchmark suite with --device cuda (quick sizes),
# then a short pretraining in bf16-mixed precision whose loss must fall. Writes into $OUT:
#   latest.json / latest.png  the repo's results with the "cuda" figures merged in
#   bench.log                 the suite's table
#   bf16_loss.csv, bf16.log   the bf16 run's loss per step and its output
#   verdict.txt               one line per check: ok / FAILED
# Usage (repo root): bash benchmarks/gpu_check.sh [--cpu-smoke]
#   --cpu-smoke: the same steps on the CPU at the tiniest sizes (tests this script anywhere).
# On the lent machine the image's python3 has torch + Lightning; rasterio and its small
# dependencies travel as wheels in .whl/ (benchmarks/README.md says how to fetch them).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d)}
PY=${PYTHON:-python3}
DEVICE=cuda SIZE=--quick STEPS=60
if [ "${1:-}" = "--cpu-smoke" ]; then DEVICE=cpu SIZE=--tiny STEPS=12; fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/sarfuse-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/sarfuse-site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export SARFUSE_CACHE=${SARFUSE_CACHE:-/tmp/sarfuse-gpu-cache}
: >"$OUT/verdict.txt"
check() { echo "$1: $2" | tee -a "$OUT/verdict.txt"; }

$PY -c "import torch, rasterio, lightning; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
  || { check environment FAILED; exit 1; }

cp benchmarks/results/latest.json "$OUT/latest.json" 2>/dev/null
timeout 300 $PY benchmarks/run_all.py --device "$DEVICE" $SIZE --out "$OUT/latest.json" \
  --workdir /tmp/sarfuse-gpu-bench 2>&1 | tee "$OUT/bench.log"
[ "${PIPESTATUS[0]}" = 0 ] && check suite ok || check suite FAILED

RUN=/tmp/sarfuse-bf16-run
rm -rf "$RUN"
timeout 150 $PY -m sarfuse pretrain --device "$DEVICE" --precision bf16-mixed \
  --steps "$STEPS" --out "$RUN" >"$OUT/bf16.log" 2>&1
cp "$RUN/loss.csv" "$OUT/bf16_loss.csv" 2>/dev/null
$PY - "$OUT/bf16_loss.csv" <<'EOF' && check bf16_loss_falls ok || check bf16_loss_falls FAILED
import csv, sys
losses = [float(r["loss"]) for r in csv.DictReader(open(sys.argv[1])) if r.get("loss")]
w = max(1, len(losses) // 4)
first, last = sum(losses[:w]) / w, sum(losses[-w:]) / w
print(f"bf16-mixed: {len(losses)} steps, mean loss of the first {w} {first:.4f}, last {w} {last:.4f}")
sys.exit(0 if len(losses) >= 4 and last < first else 1)
EOF
cat "$OUT/verdict.txt"

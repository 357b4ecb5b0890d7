#!/usr/bin/env bash
# Train fast and srresnet on a lent GPU in one call (issue 29), from the shipped weights, for a
# fixed wall-clock budget; exports and a before/after table come back in OUTDIR.
#
#   benchmarks/gpu_train.sh OUTDIR [--dry-run] [--budget S] [--models fast,srresnet]
#
# Writes OUTDIR/results.json, OUTDIR/results.md, OUTDIR/MODEL.pt (fp16 exports) and
# OUTDIR/log.txt, rewritten after every step. What it does and what it needs in .device (the
# wheels of benchmarks/prepare_device.sh, a crop cache and Set5/Set14): benchmarks/gpu_train.py's
# docstring. --dry-run runs here on the CPU in miniature (tests/test_gpu_script.py runs it).
#
# Once, here, from the repository root (.device is git-ignored; all of it must stay under the
# device tool's 64 MiB carry: wheels ~35 MB, cache 12 MiB, benchmarks 6 MB, the tree ~10 MB):
#
#   benchmarks/prepare_device.sh
#   vidsr train prepare --data ../shared/data/photos --video ../shared/data/clips \
#       --hr-downscale 2 --hr-downscale 3 --min-video-lines 480 --tile 128 --step 128 \
#       --max-mb 12 --out .device/crops
#   mkdir -p .device/bench && cp -r ../shared/data/benchmarks/Set5 ../shared/data/benchmarks/Set14 .device/bench/
#
# then the device tool's one call:
#
#   run  command:   bash benchmarks/gpu_train.sh "$OUT" --budget 420
#        carry:     [".device"]
#        timeout_s: 540
#
# Evaluate what comes back here before shipping it (training/RESULTS.md says how).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
OUTDIR=""
DRY=0
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1; ARGS+=("$1") ;;
        --budget|--models) ARGS+=("$1" "${2:?$1 needs a value}"); shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        -*) echo "gpu_train.sh: unknown option $1" >&2; exit 2 ;;
        *) if [ -n "$OUTDIR" ]; then echo "gpu_train.sh: one OUTDIR only" >&2; exit 2; fi
           OUTDIR=$1 ;;
    esac
    shift
done
if [ -z "$OUTDIR" ]; then
    echo "usage: benchmarks/gpu_train.sh OUTDIR [--dry-run] [--budget S] [--models M,..]" >&2
    exit 2
fi
mkdir -p "$OUTDIR" || exit 1
NAME=gpu_train.sh
# shellcheck source=benchmarks/device_env.sh
source "$ROOT/benchmarks/device_env.sh" || exit 1
cd "$ROOT" || exit 1
exec "$PY" "$ROOT/benchmarks/gpu_train.py" "$OUTDIR" "${ARGS[@]}"

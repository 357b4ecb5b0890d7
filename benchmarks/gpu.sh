#!/usr/bin/env bash
# The one-command GPU check (issue 18): tests, throughput, codecs, training step, compile modes.
#
#   benchmarks/gpu.sh OUTDIR [--dry-run] [--budget S] [--only GROUPS] [--skip GROUPS]
#
# Writes OUTDIR/results.json, OUTDIR/results.md and OUTDIR/log.txt, rewritten after every step,
# so a run killed at any point leaves what it had measured. Under 8 minutes on an H100/H200
# (--budget 420 s for the steps; each step has its own time limit too). What each group
# measures: benchmarks/gpu_check.py's docstring. --dry-run runs here on the CPU: it checks the
# wiring, prints what it would run and writes the skeleton (tests/test_gpu_script.py runs it).
#
# The device machine has torch 2.11 + CUDA under python3 3.12 but no PyAV, spandrel or
# watchfiles, and nothing can be fetched there. Once, here, from the repository root:
#
#   benchmarks/prepare_device.sh           # fills .device/wheels/cp312/ (git-ignored, ~35 MB)
#
# then the device tool's one call (the lead's checkout is what travels):
#
#   run  command:   bash benchmarks/gpu.sh "$OUT"
#        carry:     [".device"]
#        timeout_s: 480
#
# Results come back as results.json, results.md and log.txt; copy the table into
# benchmarks/RESULTS.md. A rerun of one part fits what is left: e.g.
# `bash benchmarks/gpu.sh "$OUT" --only compile --budget 150` with timeout_s 180 (see
# benchmarks/README.md).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
OUTDIR=""
DRY=0
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1; ARGS+=("$1") ;;
        --budget|--only|--skip) ARGS+=("$1" "${2:?$1 needs a value}"); shift ;;
        -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
        -*) echo "gpu.sh: unknown option $1" >&2; exit 2 ;;
        *) if [ -n "$OUTDIR" ]; then echo "gpu.sh: one OUTDIR only" >&2; exit 2; fi; OUTDIR=$1 ;;
    esac
    shift
done
if [ -z "$OUTDIR" ]; then
    echo "usage: benchmarks/gpu.sh OUTDIR [--dry-run] [--budget S] [--only G,..] [--skip G,..]" >&2
    exit 2
fi
mkdir -p "$OUTDIR" || exit 1

NAME=gpu.sh
# shellcheck source=benchmarks/device_env.sh
source "$ROOT/benchmarks/device_env.sh" || exit 1
cd "$ROOT" || exit 1
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$OUTDIR" "${ARGS[@]}"

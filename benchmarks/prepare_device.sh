#!/usr/bin/env bash
# Fill .device/wheels/cpXY/ with the wheels benchmarks/gpu.sh installs on the device machine.
#
#   benchmarks/prepare_device.sh [--print] [DEST]      (DEST default: .device/wheels)
#
# The device's image has torch, torchvision, numpy, pillow, click, rich, safetensors, einops,
# anyio, pytest and pytest-timeout (the device tool's KINDS.md lists them) but not PyAV,
# spandrel or watchfiles, and nothing can be fetched there. Its python3 is 3.12 on x86-64.
# Versions: those installed for $PYTHON (else .venv/bin/python, else python3), i.e. what the
# tests here ran with; the newest where it has none. VIDSR_DEVICE_PYTHON="3.12 3.11" fetches
# for several versions, each in its own folder (~35 MB each; the tree and everything carried
# share 64 MiB).
# --print shows the pip commands and downloads nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
[ -z "${PYTHON:-}" ] && [ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python
PRINT=0
if [ "${1:-}" = "--print" ]; then PRINT=1; shift; fi
DEST=${1:-$ROOT/.device/wheels}
PACKAGES=(av spandrel watchfiles)
PLATFORMS=()
for tag in manylinux_2_17 manylinux2014 manylinux_2_24 manylinux_2_27 manylinux_2_28 \
           manylinux_2_31 manylinux_2_34 manylinux_2_35; do
    PLATFORMS+=(--platform "${tag}_x86_64")
done

pinned() {  # NAME==VERSION as installed for $PY, or NAME alone
    "$PY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    print(f"{sys.argv[1]}=={metadata.version(sys.argv[1])}")
except metadata.PackageNotFoundError:
    print(sys.argv[1])
EOF
}

SPECS=()
for p in "${PACKAGES[@]}"; do SPECS+=("$(pinned "$p")"); done
for version in ${VIDSR_DEVICE_PYTHON:-3.12}; do
    dir="$DEST/cp${version/./}"
    cmd=("$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp
         --python-version "$version" "${PLATFORMS[@]}" -d "$dir" "${SPECS[@]}")
    if [ "$PRINT" = 1 ]; then echo "${cmd[*]}"; continue; fi
    mkdir -p "$dir"
    rm -f "$dir"/*.whl  # one version of each package: two would stop the install there
    "${cmd[@]}"
    echo "$dir: $(cd "$dir" && ls ./*.whl | tr '\n' ' ')"
done
[ "$PRINT" = 1 ] && exit 0
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 && ! git -C "$ROOT" check-ignore -q "$DEST"; then
    echo "warning: $DEST is not git-ignored: it would travel as part of the tree" >&2
fi
echo "total: $(du -sh "$DEST" | cut -f1) (carry .device; the tree and the carried paths share 64 MiB)"

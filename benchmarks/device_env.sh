# Sourced by gpu.sh and gpu_train.sh: put the carried wheels (.device/wheels/cpXY) on the
# device machine's python, which lacks PyAV and spandrel and can fetch nothing. Expects ROOT, PY,
# DRY (1: only say what it would install) and NAME (for messages); sets PYTHONPATH.
# Wheels for this interpreter's version (abi3 wheels serve later versions too).
TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")') || exit 1
WHEELS=${VIDSR_WHEELS:-$ROOT/.device/wheels/$TAG}
SITE=${VIDSR_SITE:-/tmp/vidsr-site}
INSTALL=("$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade
         --target "$SITE")
shopt -s nullglob
WHEEL_FILES=("$WHEELS"/*.whl)
if [ "$DRY" = 1 ]; then
    echo "would run: ${INSTALL[*]} $WHEELS/*.whl"
    if [ ${#WHEEL_FILES[@]} -eq 0 ]; then
        echo "note: no wheels in $WHEELS yet: run benchmarks/prepare_device.sh before the device run"
    else
        echo "wheels: $(cd "$WHEELS" && ls ./*.whl | tr '\n' ' ')"
    fi
    "$PY" -m pip --version >/dev/null || { echo "$NAME: $PY has no pip" >&2; exit 1; }
elif [ ${#WHEEL_FILES[@]} -gt 0 ]; then
    "${INSTALL[@]}" "${WHEEL_FILES[@]}" || { echo "$NAME: installing $WHEELS failed" >&2; exit 1; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$PY" -c "import av" 2>/dev/null; then
    echo "$NAME: PyAV is missing and $WHEELS holds no wheels: run benchmarks/prepare_device.sh" \
         "here and carry .device" >&2
    exit 1
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

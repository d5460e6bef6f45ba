#!/usr/bin/env bash
# Set up .venv, compile the bundled digits CNN for the cpu and fpga targets, print the reports.
#
#   bash scripts/demo.sh                     # the bundled model
#   bash scripts/demo.sh path/to/model.onnx  # or MODEL=path/to/model.onnx bash scripts/demo.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODEL="${1:-${MODEL:-compiler/data/digits_cnn.onnx}}"
# Calibration data for the int8 targets (the FPGA quantizes to power-of-two fixed point).
CALIB="${CALIB:-compiler/data/digits_calib.npz}"

bash scripts/setup_env.sh
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

if [[ ! -f "$MODEL" ]]; then
    echo "demo.sh: model not found: $MODEL" >&2
    exit 1
fi

for target in cpu fpga; do
    out="build/demo-$target"
    echo
    echo "== tapeout compile $MODEL --target $target --calib $CALIB -o $out"
    rm -rf "$out"   # the demo's own output: start clean so a rerun shows this run's result
    # The report is printed from the artifact folder below, so the CLI's copy is not shown.
    tapeout compile "$MODEL" --target "$target" --calib "$CALIB" -o "$out" >/dev/null
    for report in "$out"/report.md "$out"/report.txt; do
        if [[ -f "$report" ]]; then
            echo
            echo "-- $report"
            cat "$report"
        fi
    done
done

echo
echo "demo.sh: artifacts in build/demo-cpu and build/demo-fpga"

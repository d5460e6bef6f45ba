#!/usr/bin/env bash
# Create (or refresh) the project's virtualenv in .venv at the repo root. Idempotent: when the
# stamp .venv/.tapeout-installed is newer than pyproject.toml and this script, nothing runs.
#
#   bash scripts/setup_env.sh          # then: . .venv/bin/activate
#
# torch is installed first and pinned to 2.13.0: that release lies on disk as a CPU wheel, and
# any other torch request makes pip download gigabytes of CUDA libraries. pyproject.toml only
# asks for torch>=2.4, which the pinned one satisfies, so the editable install adds nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.tapeout-installed"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"

cd "$ROOT"

if [[ -f "$STAMP" && "$STAMP" -nt pyproject.toml && "$STAMP" -nt scripts/setup_env.sh \
      && -x "$VENV/bin/python" ]]; then
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "setup_env.sh: tapeout needs Python >= 3.11; $PYTHON is $("$PYTHON" -V 2>&1)." >&2
        echo "setup_env.sh: point PYTHON at a newer one, e.g. PYTHON=python3.11 $0" >&2
        exit 1
    fi
    echo "setup_env.sh: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip)
echo "setup_env.sh: installing torch==$TORCH_VERSION and tapeout[dev,tvm] into $VENV"
"${PIP[@]}" install -q --upgrade pip
"${PIP[@]}" install -q "torch==$TORCH_VERSION"
"${PIP[@]}" install -q -e ".[dev,tvm]"

# Optional: the aarch64 cross compiler, so an aarch64 target builds a real model.so (and its
# test runs instead of skipping). Only as root with apt-get (a CI machine), never fatal;
# TAPEOUT_NO_APT=1 skips it.
if [[ -z "${TAPEOUT_NO_APT:-}" && "$(id -u)" == 0 ]] && command -v apt-get > /dev/null \
        && ! command -v aarch64-linux-gnu-gcc > /dev/null; then
    echo "setup_env.sh: installing the aarch64 cross compiler (optional)"
    cross=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
    if ! timeout 300 apt-get install -y -q --no-install-recommends "${cross[@]}" > /dev/null 2>&1
    then
        timeout 300 apt-get update -q > /dev/null 2>&1 || true
        timeout 300 apt-get install -y -q --no-install-recommends "${cross[@]}" > /dev/null 2>&1 \
            || echo "setup_env.sh: no aarch64 cross compiler (aarch64 builds leave objects)"
    fi
fi

# Optional: headless chromium, so the test of `tapeout view`'s page runs in a real browser
# (instead of skipping). Same rules: root with apt-get only, never fatal, TAPEOUT_NO_APT=1 skips.
if [[ -z "${TAPEOUT_NO_APT:-}" && "$(id -u)" == 0 ]] && command -v apt-get > /dev/null \
        && ! command -v chromium > /dev/null; then
    echo "setup_env.sh: installing chromium for the graph-view browser test (optional)"
    if ! timeout 600 apt-get install -y -q chromium > /dev/null 2>&1; then
        timeout 300 apt-get update -q > /dev/null 2>&1 || true
        timeout 600 apt-get install -y -q chromium > /dev/null 2>&1 \
            || echo "setup_env.sh: no chromium (the graph-view browser test will skip)"
    fi
fi

# Fail here, not in the middle of a test run, if the editable install did not take.
"$VENV/bin/python" -c "import torch, onnx, onnxruntime, tvm" \
    || { echo "setup_env.sh: toolchain imports failed after install" >&2; exit 1; }
touch "$STAMP"
echo "setup_env.sh: ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"

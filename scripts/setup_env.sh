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

# Fail here, not in the middle of a test run, if the editable install did not take.
"$VENV/bin/python" -c "import torch, onnx, onnxruntime, tvm" \
    || { echo "setup_env.sh: toolchain imports failed after install" >&2; exit 1; }
touch "$STAMP"
echo "setup_env.sh: ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"

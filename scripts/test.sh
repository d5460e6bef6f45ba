#!/usr/bin/env bash
# What CI runs: set up .venv, then ruff, mypy and the test suite. Extra arguments go to pytest:
#
#   bash scripts/test.sh                     # everything
#   bash scripts/test.sh -k numerics -x      # a subset; ruff and mypy still run
#
# Every step runs even when an earlier one fails, so one run shows all the problems; the exit
# status is non-zero if any step failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup_env.sh
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"

failed=()

echo "== ruff check ."
ruff check . || failed+=("ruff")

echo "== mypy"
mypy || failed+=("mypy")

echo "== pytest -q $*"
status=0
pytest -q "$@" || status=$?
if [[ $status -eq 5 ]]; then
    # pytest's 5 means "no tests collected": a suite that ran nothing has not passed.
    echo "test.sh: pytest collected no tests" >&2
    failed+=("pytest (no tests collected)")
elif [[ $status -ne 0 ]]; then
    failed+=("pytest (exit $status)")
fi

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "test.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: ruff, mypy and pytest passed"

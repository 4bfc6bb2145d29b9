#!/usr/bin/env bash
# The test command of the README and of CI: set up .venv, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# two workers on two cores, one OpenMP thread each (and in the commands the tests start):
# more threads than cores only make them wait on each other
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# --quick: the inner loop (no slow, end-to-end, browser or GPU tests); other arguments pass
# through to pytest
if [ "${1:-}" = "--quick" ]; then
  shift
  exec .venv/bin/python -m pytest -n 2 -m "not slow and not integration and not browser and not gpu" "$@"
fi
exec .venv/bin/python -m pytest -n 2 "$@"

#!/usr/bin/env bash
# The test command of the README and of CI: set up .venv, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# two workers on two cores, one OpenMP thread each (and in the commands the tests start):
# more threads than cores only make them wait on each other
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest -n 2 "$@"

#!/usr/bin/env bash
# Create .venv (if missing) and install xrobust with its dev extras.
# torch is pinned through constraints.txt to the local CPU build; pyproject.toml keeps an open range.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_CONSTRAINT="$PWD/constraints.txt"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,app,onnx]'
# torchattacks declares torchvision (no CPU build here); it is only a benchmark/test peer.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'torchattacks>=3.5'
# Croce and Hein's AutoAttack code, packaged (no declared dependencies): the reference the
# ensemble is benchmarked and tested against.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'pyautoattack>=0.2'

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
# The TensorFlow example's extra (tensorflow-cpu ~1.6 GB; it keeps numpy 2.4 and protobuf 7,
# which onnx and the rest of the toolkit use too) and scikit-learn's ONNX exporter for the
# tests; versions checked here.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[tensorflow]' \
  'tensorflow-cpu==2.21.0' 'tf2onnx==1.17.0' 'skl2onnx==1.20.0'
# SageMaker (boto3) and TensorFlow Lite (ai-edge-litert) sources, versions checked here.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[sagemaker,tflite]' \
  'boto3==1.44.8' 'ai-edge-litert==2.3.0'
# onnx2torch (white-box ONNX models) declares torchvision, whose wheel here is a CUDA build
# that breaks against the CPU torch; xrobust imports onnx2torch without it
# (xrobust.models.onnx.import_onnx2torch), so it is installed without its dependencies.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'onnx2torch==1.5.15'
# torchattacks declares torchvision (no CPU build here); it is only a benchmark/test peer.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'torchattacks>=3.5'
# Croce and Hein's AutoAttack code, packaged (no declared dependencies): the reference the
# ensemble is benchmarked and tested against.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'pyautoattack>=0.2'
# Real model servers for tests/test_real_servers.py and benchmarks/bench_protocols.py (KServe,
# MLServer): they pin protobuf 6 and FastAPI/pandas versions the main venv cannot share, so
# each gets its own venv, with onnxruntime to serve ONNX files (examples/serve_*.py); pinned
# in tests/servers/requirements-*.txt. XROBUST_SKIP_SERVERS=1 leaves them out (those tests
# are then skipped, saying why).
if [ "${XROBUST_SKIP_SERVERS:-0}" != 1 ]; then
  for server in kserve mlserver; do
    [ -x ".venv-$server/bin/python" ] || "$PY" -m venv ".venv-$server"
    ".venv-$server/bin/python" -m pip install -q --disable-pip-version-check \
      -r "tests/servers/requirements-$server.txt" \
      || echo "warning: could not install $server; its real-server tests will be skipped" >&2
  done
fi

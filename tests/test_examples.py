"""Every example runs (small settings through XROBUST_EXAMPLES_FAST), so none rots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """A private model cache with the demo CNN trained once (shared by the examples)."""
    cache = tmp_path_factory.mktemp("xrobust-cache")
    e = {
        **os.environ,
        "XROBUST_CACHE": str(cache),
        "XROBUST_EXAMPLES_FAST": "1",
        "OMP_NUM_THREADS": "1",
    }
    r = subprocess.run(
        [sys.executable, "-c", "from xrobust.audit.demo import demo_run; demo_run('digits')"],
        env=e,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return e


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    return r


def test_quickstart(env, tmp_path) -> None:
    r = _run([sys.executable, str(EXAMPLES / "quickstart.py")], env, tmp_path)
    assert "robust" in r.stdout and "attributions (4, 1, 28, 28)" in r.stdout


def test_audit_from_python_with_toml(env, tmp_path) -> None:
    r = _run(
        [sys.executable, str(EXAMPLES / "audit_from_python.py"), str(tmp_path / "rep")],
        env,
        tmp_path,
    )
    d = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert (tmp_path / "rep" / "report.html").exists() and (tmp_path / "rep" / "junit.xml").exists()
    # the TOML's requirements were applied
    names = [q["name"] for q in d["requirements"]]
    assert names == [
        "min_clean_accuracy",
        "max_ece",
        "robust_accuracy[worst,linf,eps=0.05]",
        "sanity_checks_pass",
    ]
    assert ("passed" in r.stdout) == d["passed"]


def test_pytest_gate_example(env, tmp_path) -> None:
    junit = tmp_path / "junit.xml"
    _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_gate_model.py"),
            f"--junitxml={junit}",
            "--rootdir",
            str(EXAMPLES),
        ],
        env,
        tmp_path,
    )
    assert 'name="robust_accuracy"' in junit.read_text()  # recorded by the robustness_gate fixture


def test_tflite_example(env, tmp_path) -> None:
    """Keras -> ONNX, float and int8 .tflite; the int8 file audited beside the ONNX source."""
    for mod in ("tensorflow", "tf2onnx", "ai_edge_litert"):
        pytest.importorskip(mod, reason=f"{mod} is not installed (xrobust[tensorflow,tflite])")
    out = tmp_path / "tfl"
    r = _run([sys.executable, str(EXAMPLES / "tflite_model.py"), str(out)], env, tmp_path)
    assert "model_int8.tflite: layout NHWC, quantized True, input int8 (scale" in r.stdout
    diff = r.stdout.split("model_float.tflite: ")[1].split("max abs logit difference to Keras ")[1]
    assert float(diff.split(",")[0]) <= 1e-4, r.stdout
    d = json.loads((out / "deployed" / "report.json").read_text())["sections"]["deployed"]
    assert d["status"] == "ok" and d["data"]["deployed"]["quantized"] is True
    assert f"summary: {d['data']['summary']}" in r.stdout
    assert f"agreement {d['data']['clean']['agreement']:.4f}" in r.stdout

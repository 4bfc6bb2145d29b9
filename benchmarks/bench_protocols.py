"""Rows per second through each serving protocol and server, beside onnxruntime in-process.

One ONNX model (xrobust's small CNN on 1x28x28 digits, taking NHWC input as TensorFlow
models do; random weights: speed does not depend on them) is answered 64 rows at a time:

* in-process by onnxruntime (``as_classifier("model.onnx")``);
* by KServe 0.21's ModelServer over V1 (TF Serving JSON) and V2 (the Open Inference
  Protocol: JSON, and its binary tensor extension), and by MLServer 1.7 over V2 (JSON; it
  has no binary extension over REST), each serving the file through
  onnxruntime (``examples/serve_kserve.py``, ``examples/serve_mlserver.py``) in its own venv;
* by xrobust's own test server (``xrobust.models.serving``) over V1 and V2 (JSON and
  binary), in a subprocess, for reference.

Each round times one ``clf.scores`` call of 64 rows on every source in turn (so that a
change of load hits all of them alike), one request in flight; the table gives the median
and 90th percentile of the call and the rows per second at the median. A second table sends
1,024 rows (16 requests of 64) with ``concurrency`` 4. Run by hand:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_protocols.py [--rounds 40] [--size 28]

Needs ``.venv-kserve`` and ``.venv-mlserver`` (``bash scripts/setup.sh``); a server whose
venv is missing is left out and named.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers.launch import serve, server_python  # noqa: E402
from servers.onnx_model import export_nhwc  # noqa: E402

from xrobust.data import as_tensors, load_dataset  # noqa: E402
from xrobust.models import as_classifier, build_model  # noqa: E402


def _model(folder: Path, spec) -> Path:
    torch.manual_seed(0)
    return export_nhwc(build_model("small_cnn", spec), spec, folder / "digits_nhwc.onnx")


_OWN_SERVER = """
import sys, time
sys.path.insert(0, {examples!r})
from serving_onnx import OnnxRunner
from xrobust.models import serving
run = OnnxRunner({model!r})
with serving.serve(run, protocol="v1", model_name="digits") as v1, \\
        serving.serve(run, protocol="v2", model_name="digits") as v2:
    print(v1.url, v2.url, flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def _own_server(model: Path):
    code = _OWN_SERVER.format(examples=str(ROOT / "examples"), model=str(model))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc.stdout.readline().split()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def _time(clf, x: torch.Tensor) -> float:
    t = time.perf_counter()
    clf.scores(x)
    return time.perf_counter() - t


def _table(title: str, times: dict[str, list[float]], rows: int) -> str:
    ref = statistics.median(times["onnxruntime in-process"])
    out = [f"**{title}**", "", "| source | median ms | p90 ms | rows/s | x in-process |",
           "|---|---:|---:|---:|---:|"]  # fmt: skip
    for name, ts in times.items():
        med, p90 = statistics.median(ts), statistics.quantiles(ts, n=10)[-1]
        out.append(
            f"| {name} | {med * 1e3:.2f} | {p90 * 1e3:.2f} | {rows / med:,.0f} | {med / ref:.1f} |"
        )
    return "\n".join(out)


def _sources(stack: contextlib.ExitStack, model: Path, folder: Path, spec) -> dict:
    opts = {"spec": spec, "layout": "NHWC", "batch_size": 64, "retries": 0}
    made = {"onnxruntime in-process": as_classifier(model, spec, batch_size=64)}
    for kind in ("kserve", "mlserver"):
        py, why = server_python(kind)
        if py is None:
            print(f"left out: {why}", file=sys.stderr)
            continue
        s = stack.enter_context(serve(kind, py, model, folder))
        if kind == "kserve":
            made["KServe V1 JSON"] = as_classifier(s.v1_url, **opts)
            made["KServe V2 JSON"] = as_classifier(s.v2_url, protocol="v2", **opts)
            made["KServe V2 binary"] = as_classifier(s.v2_url, protocol="v2-binary", **opts)
        else:
            made["MLServer V2 JSON"] = as_classifier(s.v2_url, protocol="v2", **opts)
    v1, v2 = stack.enter_context(_own_server(model))
    made["xrobust.models.serving V1 JSON"] = as_classifier(v1, **opts)
    made["xrobust.models.serving V2 JSON"] = as_classifier(v2, protocol="v2", **opts)
    made["xrobust.models.serving V2 binary"] = as_classifier(v2, protocol="v2-binary", **opts)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--size", type=int, default=28, help="digits image side (8 or 28)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset("digits", size=args.size)
    x, _ = as_tensors(ds.test, limit=1024)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        model = _model(Path(tmp), ds.spec)
        sources = _sources(stack, model, Path(tmp), ds.spec)
        for clf in sources.values():  # warm up (connections, sessions)
            clf.scores(x[:64])
        one = {k: [] for k in sources}
        many = {k: [] for k in sources}
        for _ in range(args.rounds):
            for name, clf in sources.items():
                one[name].append(_time(clf, x[:64]))
        for clf in sources.values():
            if hasattr(clf, "concurrency"):
                clf.concurrency = 4
        for _ in range(max(5, args.rounds // 4)):
            for name, clf in sources.items():
                many[name].append(_time(clf, x))
        for clf in sources.values():
            getattr(clf, "close", lambda: None)()
    shape = "x".join(map(str, ds.spec.input_shape))
    print(_table(f"64 rows of {shape} per call, one request in flight", one, 64))
    print()
    print(_table(f"1,024 rows of {shape} per call (16 requests of 64, 4 in flight)", many, 1024))


if __name__ == "__main__":
    main()

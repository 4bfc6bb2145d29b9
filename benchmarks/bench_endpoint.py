"""HTTP endpoint overhead: the same model answered directly and through the local
TF-Serving-compatible server (:mod:`xrobust.models.serving`) on 127.0.0.1.

The model is a tiny CNN on 1x8x8 digits exported to ONNX (onnxruntime). Measured per call of
``scores`` on 64 rows: the direct onnxruntime call (through a ``CallableClassifier``), the
endpoint with one request of 64 rows (row form and columnar form), and 1,024 rows in 16
requests with ``concurrency`` 1, 2 and 4. The server runs in its own process (in the same
process it would share the client's GIL). Run by hand:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_endpoint.py [--repeats 50]

Prints a markdown table (median and 90th percentile, milliseconds).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def _predict_fn(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # no spinning thread pool on a shared machine
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    lock = threading.Lock()

    def predict(a: np.ndarray) -> np.ndarray:
        with lock:
            return sess.run(None, {"x": np.ascontiguousarray(a, dtype=np.float32)})[0]

    return predict


def _serve(path: str) -> None:
    """The server process: serve the model, print the URL, stop when stdin closes."""
    from xrobust.models import serving

    with serving.serve(_predict_fn(path)) as server:
        print(server.url, flush=True)
        sys.stdin.read()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(args.serve)
        return

    from sklearn.datasets import load_digits

    from xrobust.models import as_classifier

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(128, 10),
    ).eval()
    x = torch.tensor(load_digits().images[:1024], dtype=torch.float32).unsqueeze(1) / 16.0
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x[:2],),
            str(path),
            input_names=["x"],
            dynamic_axes={"x": {0: "batch"}},
            dynamo=False,
        )
    predict = _predict_fn(str(path))
    decl = {"input_shape": (1, 8, 8), "num_classes": 10, "bounds": (0.0, 1.0)}
    rows: list[tuple[str, list[float]]] = []

    def timeit(label: str, fn, batch: torch.Tensor) -> None:
        fn(batch)  # warm: connections open, session ready
        t = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn(batch)
            t.append((time.perf_counter() - t0) * 1000)
        rows.append((label, t))

    direct = as_classifier(predict, **decl, batch_size=64)
    timeit("direct onnxruntime, 64 rows", direct.scores, x[:64])
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        for proto in ("instances", "inputs"):
            with as_classifier(url, **decl, protocol=proto, batch_size=64) as clf:
                timeit(f"HTTP {proto}, 64 rows in 1 request", clf.scores, x[:64])
        timeit("direct onnxruntime, 1024 rows (16 x 64)", direct.scores, x)
        for conc in (1, 2, 4):
            with as_classifier(url, **decl, batch_size=64, concurrency=conc) as clf:
                timeit(f"HTTP, 1024 rows in 16 requests, concurrency {conc}", clf.scores, x)
                assert clf.queries == (args.repeats + 1) * 1024
    finally:
        proc.stdin.close()
        proc.wait(10)
        tmp.cleanup()
    print(f"| call | median ms | p90 ms |  (repeats {args.repeats})")
    print("|---|---|---|")
    for label, t in rows:
        p90 = sorted(t)[int(0.9 * (len(t) - 1))]
        print(f"| {label} | {statistics.median(t):.2f} | {p90:.2f} |")


if __name__ == "__main__":
    main()

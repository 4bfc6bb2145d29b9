"""SageMaker source overhead: the same ONNX model answered in-process, through the local
TF-Serving-compatible server over plain HTTP (``EndpointClassifier``), and through the local
SageMaker-runtime-compatible server (``examples/sagemaker_local.py``) with real boto3 and
SigV4 signing, verified by the server (``SageMakerClassifier``).

The model is the tests' linear classifier of the 1x8x8 digits (ONNX, onnxruntime). Each
server runs in its own process. Measured per call of ``scores``: 64 rows in one request, and
1,024 rows in 16 requests of 64 with ``concurrency`` 4. Made-up credentials only. Run by hand:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sagemaker.py [--repeats 30]

Prints a markdown table (median and 90th percentile in milliseconds, rows per second).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _milliseconds(fn, batch: torch.Tensor, repeats: int) -> list[float]:
    """Times of ``repeats`` calls after one warm-up call (connections open, session ready)."""
    fn(batch)
    stamps = [time.perf_counter()]
    for _ in range(repeats):
        fn(batch)
        stamps.append(time.perf_counter())
    return [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    from sagemaker_support import KEY_ID, NAME, REGION, SECRET, linear_onnx, local_module
    from sklearn.datasets import load_digits

    from xrobust.models import as_classifier

    os.environ.update(
        AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )  # fmt: skip
    os.environ.pop("AWS_SESSION_TOKEN", None)
    digits = load_digits()
    x = torch.tensor(digits.images[:1024], dtype=torch.float32).unsqueeze(1) / 16.0
    tmp = tempfile.TemporaryDirectory()
    path = linear_onnx(Path(tmp.name) / "m.onnx", x.numpy(), digits.target[:1024], 10)
    decl = {"input_shape": (1, 8, 8), "num_classes": 10, "bounds": (0.0, 1.0)}
    rows: list[tuple[str, int, list[float]]] = []

    def timeit(label: str, fn, batch: torch.Tensor) -> None:
        rows.append((label, len(batch), _milliseconds(fn, batch, args.repeats)))

    predict = local_module().onnx_predict(path)
    direct = as_classifier(predict, **decl, batch_size=64)
    url_file = Path(tmp.name) / "url.txt"
    sm = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "sagemaker_local.py"), "--onnx", str(path),
         "--name", NAME, "--region", REGION, "--url-file", str(url_file)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    v1 = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "bench_endpoint.py"), "--serve", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        v1_url = v1.stdout.readline().strip()
        while not url_file.exists():
            time.sleep(0.1)
        sm_url = url_file.read_text().strip()
        for n, conc in ((64, 1), (1024, 4)):
            what = f"{n} rows" + ("" if n == 64 else f" in 16 requests, concurrency {conc}")
            timeit(f"onnxruntime in-process, {n} rows", direct.scores, x[:n])
            with as_classifier(v1_url, **decl, batch_size=64, concurrency=conc) as clf:
                timeit(f"HTTP JSON (V1, local serving), {what}", clf.scores, x[:n])
            with as_classifier(
                f"sagemaker://{NAME}", **decl, region=REGION, endpoint_url=sm_url,
                batch_size=64, concurrency=conc,
            ) as clf:  # fmt: skip
                timeit(f"SageMaker (boto3, SigV4 verified), {what}", clf.scores, x[:n])
                assert clf.queries == (args.repeats + 1) * n
                assert np.array_equal(clf.scores(x[:n]).numpy(), direct.scores(x[:n]).numpy())
    finally:
        sm.terminate()
        v1.stdin.close()
        sm.wait(10)
        v1.wait(10)
        tmp.cleanup()
    print(f"| call | median ms | p90 ms | rows/s |  (repeats {args.repeats})")
    print("|---|---|---|---|")
    for label, n, t in rows:
        p90 = sorted(t)[int(0.9 * (len(t) - 1))]
        med = statistics.median(t)
        print(f"| {label} | {med:.2f} | {p90:.2f} | {n / med * 1000:,.0f} |")


if __name__ == "__main__":
    main()

"""Rows per second through a TensorFlow Lite file (float and int8) beside onnxruntime.

    python examples/tflite_model.py tflite_example          # writes the three files
    OMP_NUM_THREADS=1 python benchmarks/bench_tflite.py tflite_example [--seconds 1 --rounds 3]

Each source answers ``clf.scores(x[:batch])`` through ``as_classifier`` (so the layout
permutation and, for int8, quantizing inputs and dequantizing outputs are included) for
``--seconds`` per round; the sources take turns round by round, and the best round of each is
kept (on a shared machine the best is the least disturbed). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from xrobust.data import as_tensors, load_dataset
from xrobust.models import as_classifier

FILES = (
    ("onnxruntime, model.onnx", "model.onnx"),
    ("TFLite float32, model_float.tflite", "model_float.tflite"),
    ("TFLite int8, model_int8.tflite", "model_int8.tflite"),
)


def rows_per_second(clf, x, seconds: float) -> float:
    clf.scores(x)  # warm: the interpreter for this batch size, onnxruntime's first run
    n, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        clf.scores(x)
        n += len(x)
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="the output folder of examples/tflite_model.py")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    ds = load_dataset("digits", size=8)
    x, _ = as_tensors(ds.test, limit=args.batch)
    sources = [(label, as_classifier(args.folder / f, spec=ds.spec)) for label, f in FILES]
    best = {label: 0.0 for label, _ in sources}
    for _ in range(args.rounds):
        for label, clf in sources:
            best[label] = max(best[label], rows_per_second(clf, x, args.seconds))
    base = best[FILES[0][0]]
    print(f"| source ({args.batch} rows per call) | rows / s | vs onnxruntime |")
    print("|---|---:|---:|")
    for label, _ in sources:
        print(f"| {label} | {best[label]:,.0f} | {best[label] / base:.2f} |")


if __name__ == "__main__":
    main()

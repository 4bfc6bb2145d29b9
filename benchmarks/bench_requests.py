"""Requests to a remote model: how many round trips query-only attacks cost, and how many
rows each carries, through an HTTP endpoint with a fixed latency per request.

The model is the digits small_cnn (1x28x28, trained here, seeded) exported to ONNX and
served by xrobust's TF-Serving-compatible test server (:func:`xrobust.models.serving.serve`)
in its own process, with ``latency=`` seconds added to every request (slept in the
request's own thread, so requests in flight together wait together: a network round trip).
The server counts the requests and the rows of each. Both libraries reach it through the
same client, ``as_classifier(url, ...)`` (64 rows a request, 4 in flight):

* ``overlap``: one ``scores`` call of 256 rows (4 requests of 64) with ``concurrency`` 4
  and 1: with 4 truly in flight it takes about one latency, not four;
* ``hsj``: HopSkipJump, L2, minimal perturbation, ``--queries`` per image (the clean pass
  included), the first ``--n`` test images: xrobust's ``hop_skip_jump`` against ART's
  ``HopSkipJump`` on a ``BlackBoxClassifier`` whose predict function calls the endpoint
  (``--art-iters`` iterations, chosen so that ART asks about as many rows per image);
  requests, rows per request, wall time, success and the median L2 of the adversarials;
* ``audit``: ``xrobust audit --endpoint URL --data digits --n N`` (the default black-box
  audit, through the CLI in a subprocess): requests, rows, wall time.

Run by hand (one thread, as the other benchmarks):

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_requests.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_requests.py --latency-ms 50 --only hsj
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_requests.py --latency-ms 50 --only audit

Prints markdown tables (each row as soon as it is measured).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 28, 28)


def _serve(model: str, latency: float, protocol: str) -> None:
    """The server process: print the URL; on each line of stdin, print the counters
    (requests, rows, rows per request) as JSON and reset them; stop when stdin closes."""
    sys.path.insert(0, str(ROOT / "examples"))
    from serving_onnx import OnnxRunner

    from xrobust.models import serving

    proto = "v2" if protocol.startswith("v2") else "v1"
    with serving.serve(OnnxRunner(model), latency=latency, protocol=proto) as server:
        print(server.url, flush=True)
        for _ in sys.stdin:
            sizes = collections.Counter(server.request_rows)
            stats = {"requests": server.requests, "rows": server.rows_received}
            print(json.dumps({**stats, "sizes": sorted(sizes.items())}), flush=True)
            server.reset()


class Server:
    """The model server in a subprocess: ``url``, and :meth:`stats` since the last call."""

    def __init__(self, model: Path, latency: float, protocol: str) -> None:
        cmd = [sys.executable, __file__, "--serve", str(model), "--latency", str(latency),
               "--protocol", protocol]  # fmt: skip
        self.protocol = protocol
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def stats(self) -> dict:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def _model(cache: Path, epochs: int) -> tuple[Path, torch.Tensor, torch.Tensor]:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models.export import export_onnx
    from xrobust.trainer import TrainConfig, train

    ds = load_dataset("digits")
    x, y = as_tensors(ds.test)
    path = cache / f"digits_small_cnn_e{epochs}.onnx"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        cfg = TrainConfig(epochs=epochs, device="cpu", seed=0)
        model, _ = train(ds, "small_cnn", cfg, progress=False)
        tmp = path.with_suffix(".tmp.onnx")
        export_onnx(model.eval(), tmp, SHAPE)
        os.replace(tmp, path)
    return path, x, y


def _client(server: Server, concurrency: int = 4):
    from xrobust.models import as_classifier

    return as_classifier(server.url, input_shape=SHAPE, num_classes=10, bounds=(0.0, 1.0),
                         concurrency=concurrency, protocol=server.protocol)  # fmt: skip


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


def _sizes(stats: dict) -> str:
    """Rows per request: mean, and how many requests were full (64), 1 row, or between."""
    sizes = dict((int(k), v) for k, v in stats["sizes"])
    full, one = sizes.get(64, 0), sizes.get(1, 0)
    mean = stats["rows"] / max(stats["requests"], 1)
    return f"{mean:.1f} ({full} of 64, {one} of 1, {stats['requests'] - full - one} between)"


def bench_overlap(server: Server, x: torch.Tensor, repeats: int) -> None:
    print(f"\nOne call of 256 rows (4 requests of 64), median of {repeats}\n")
    row("concurrency", "median ms", "requests per call")
    print("|---|---|---|")
    for conc in (4, 1):
        with _client(server, conc) as clf:
            clf.scores(x[:256])
            server.stats()
            t = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                clf.scores(x[:256])
                t.append(1000 * (time.perf_counter() - t0))
            st = server.stats()
        row(conc, f"{statistics.median(t):.0f}", st["requests"] / repeats)


def _report(lib: str, server: Server, x, y, xa, dt: float, predict) -> None:
    st = server.stats()
    xa = torch.as_tensor(np.asarray(xa)).float()
    right = predict(x) == y  # the images the model classifies correctly
    fooled = (predict(xa) != y) & right
    nrm = (xa - x).flatten(1).norm(dim=1)[fooled]
    med = f"{nrm.median():.3f}" if len(nrm) else "-"
    row(lib, st["requests"], _sizes(st), f"{st['rows'] / len(x):.0f}", f"{dt:.1f}",
        f"{int(fooled.sum())} of {int(right.sum())}", med)  # fmt: skip


def bench_hsj(server: Server, x, y, queries: int, art_iters: int, skip_art: bool) -> None:
    from xrobust.attacks import get_attack

    print(f"\nHopSkipJump L2, {queries} queries, {len(x)} images (ART: {art_iters} iterations)\n")
    row("library", "requests", "rows per request", "rows per image", "seconds",
        "fooled (of the clean-correct)", "median L2")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    with _client(server) as clf:
        clf.scores(x[:1])  # a connection open, the model warm
        server.stats()

        def predict(xa: torch.Tensor) -> torch.Tensor:
            return clf.scores(xa).argmax(1)

        t = time.perf_counter()
        res = get_attack("hop_skip_jump", clf, norm="l2", queries=queries, seed=0).run(x, y)
        dt = time.perf_counter() - t
        _report("xrobust hop_skip_jump", server, x, y, res.x_adv, dt, predict)
        server.stats()
        if skip_art:
            return
        from art.attacks.evasion import HopSkipJump
        from art.estimators.classification import BlackBoxClassifier

        def art_predict(a: np.ndarray) -> np.ndarray:
            return clf.scores(torch.from_numpy(np.ascontiguousarray(a, np.float32))).numpy()

        bb = BlackBoxClassifier(art_predict, SHAPE, 10, clip_values=(0.0, 1.0))
        atk = HopSkipJump(bb, norm=2, max_iter=art_iters, max_eval=10000, init_eval=100,
                          init_size=100, batch_size=64, verbose=False)  # fmt: skip
        np.random.seed(0)
        t = time.perf_counter()
        xa = atk.generate(x.numpy())
        dt = time.perf_counter() - t
        _report("ART HopSkipJump (BlackBoxClassifier)", server, x, y, xa, dt, predict)
        server.stats()


def bench_audit(server: Server, n: int, cli: str | None) -> None:
    print(f"\nxrobust audit --endpoint URL --data digits --n {n} (the default black-box audit)\n")
    row("requests", "rows per request", "rows", "seconds", "exit")
    print("|---|---|---|---|---|")
    server.stats()
    with tempfile.TemporaryDirectory() as out:
        xr = shlex.split(cli) if cli else [str(Path(sys.executable).parent / "xrobust")]
        cmd = [*xr, "audit", "--endpoint", server.url,
               "--data", "digits", "--n", str(n), "--out", out, "--no-progress",
               "--endpoint-protocol", server.protocol]  # fmt: skip
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        dt = time.perf_counter() - t
    st = server.stats()
    row(st["requests"], _sizes(st), st["rows"], f"{dt:.1f}", done.returncode)
    if done.returncode not in (0, 1, 3):
        print(done.stderr[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, nargs="+", default=[5.0, 50.0])
    ap.add_argument("--only", choices=("overlap", "hsj", "audit"), nargs="+")
    ap.add_argument("--n", type=int, default=20, help="images for HopSkipJump")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--art-iters", type=int, default=5)
    ap.add_argument("--skip-art", action="store_true")
    ap.add_argument("--audit-n", type=int, default=16)
    ap.add_argument("--cli", help="the xrobust command the audit runs (default: the venv's)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--protocol", choices=("instances", "v2-binary"), default="instances",
                    help="TF Serving JSON (default) or the Open Inference Protocol's binary "
                    "tensors (no JSON numbers to write and parse)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "xrobust-bench")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(args.serve, args.latency, args.protocol)
        return
    only = set(args.only or ("overlap", "hsj", "audit"))
    path, x, y = _model(args.cache, args.epochs)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}, torch {torch.__version__}, model {path.name}")  # fmt: skip
    for ms in args.latency_ms:
        print(f"\n## {ms:g} ms per request, protocol {args.protocol}")
        server = Server(path, ms / 1000, args.protocol)
        with contextlib.ExitStack() as stack:
            stack.callback(server.close)
            if "overlap" in only:
                bench_overlap(server, x, args.repeats)
            if "hsj" in only:
                bench_hsj(server, x[: args.n], y[: args.n], args.queries, args.art_iters,
                          args.skip_art)  # fmt: skip
            if "audit" in only:
                bench_audit(server, args.audit_n, args.cli)
        print(f"\n(load {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()

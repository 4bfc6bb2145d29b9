"""Time the README's main command, `xrobust audit --demo --out DIR`, training included.

Runs the command in a subprocess with an empty model cache (so the demo CNN is trained
first), then again with the cache filled (audit only), and prints the wall time and the
per-stage timings from report.json. Also the tabular demo (breast_cancer).

Run: .venv/bin/python benchmarks/bench_audit.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(demo: str, cache: Path, out: Path) -> tuple[float, int, dict]:
    env = {**os.environ, "XROBUST_CACHE": str(cache)}
    cmd = [
        str(Path(sys.executable).parent / "xrobust"),
        "audit",
        "--demo",
        demo,
        "--out",
        str(out),
        "--no-progress",
    ]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):
        sys.exit(f"command failed ({r.returncode}):\n{r.stderr[-3000:]}")
    d = json.loads((out / "report.json").read_text())
    return wall, r.returncode, d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--demos", default="digits,breast_cancer")
    args = ap.parse_args()
    rows = []
    for demo in args.demos.split(","):
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                cache, out = Path(tmp) / "cache", Path(tmp) / "out"
                cold, rc, d = _run(demo, cache, out)
                warm, _, d2 = _run(demo, cache, out)
                rows.append((demo, cold, warm, rc, d2))
    print(
        f"{'demo':14} {'cold s (train+audit)':>21} {'warm s (audit)':>15} {'exit':>5}  stages (warm run, s)"
    )
    for demo, cold, warm, rc, d in rows:
        t = d["timings"]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in t.items() if k not in ("load_data", "total"))
        print(f"{demo:14} {cold:21.1f} {warm:15.1f} {rc:5d}  {stages}")
        adv = d["sections"]["adversarial"]["data"]
        print(
            f"{'':14} clean acc {d['sections']['clean']['data']['accuracy']:.3f}; worst-case robust acc "
            + "; ".join(
                f"{n} eps={nd['headline_eps']:g}: {nd['curves']['worst']['robust_accuracy'][nd['eps'].index(nd['headline_eps'])]:.3f}"
                for n, nd in adv["norms"].items()
            )
            + f"; threads {d['environment']['threads']}"
        )


if __name__ == "__main__":
    main()

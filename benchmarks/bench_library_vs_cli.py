"""The same audit through the CLI and through the Python API, in fresh processes, alternating.

    .venv/bin/python benchmarks/bench_library_vs_cli.py [--rounds 3] [--n 16] [--old]

Trains a small digits CNN once into a temporary folder (not timed), writes a reduced copy of
``examples/audit.toml`` (fewer examples, so a run takes seconds, not minutes) and then times,
round after round, ``xrobust audit --model RUN --config TOML`` and the README's
``audit(load_model(RUN), "digits", load_config(TOML))`` from ``python -c``, each in a fresh
process with the environment's OpenMP and malloc variables removed (what a new user has).
``--old`` adds the library as it was before issue 19: torch imported before xrobust (so the
OpenMP policy stays at its default) and ``XROBUST_TUNE_MALLOC=0``. Prints wall seconds per run,
the medians and the ratio Python / CLI (goal: within 1.15x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PY_NEW = (
    "import sys\n"
    "from xrobust.models import load_model\n"
    "from xrobust.audit import audit, load_config\n"
    "audit(load_model(sys.argv[1]), 'digits', load_config(sys.argv[2])).save(sys.argv[3])\n"
)
PY_OLD = "import torch\n" + PY_NEW  # OpenMP already loaded: import xrobust leaves it alone


def reduced_config(n: int) -> str:
    """examples/audit.toml with fewer examples (the rest as shipped)."""
    text = (ROOT / "examples" / "audit.toml").read_text()
    out, section = [], ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s
        if s.startswith("n =") and section in ("[adversarial]", "[sanity]"):
            line = f"n = {n}"
        elif s.startswith("n =") and section == "[corruption]":
            line = f"n = {4 * n}"
        elif s.startswith("n_metrics =") and section == "[explanations]":
            line = f"n_metrics = {max(4, n // 4)}"
        out.append(line)
    return "\n".join(out) + "\n"


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
            "XROBUST_TUNE_MALLOC", "GLIBC_TUNABLES")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MALLOC_")}
    env.update(extra)
    return env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 1, 3):  # 1 / 3: a requirement failed / incomplete: still timed
        raise SystemExit(f"{cmd[:4]} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return dt


def load() -> str:
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=16, help="examples attacked (and sanity-checked)")
    ap.add_argument("--old", action="store_true", help="also the library's old defaults")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="bench_lib_cli_") as tmp:
        t = Path(tmp)
        run, cfg = t / "run", t / "audit.toml"
        cfg.write_text(reduced_config(args.n))
        subprocess.run(
            [py, "-m", "xrobust", "train", "--data", "digits", "--model", "small_cnn",
             "--epochs", "2", "--label-smoothing", "0", "--out", str(run), "--no-progress"],
            env=clean_env(), cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        variants = {
            "cli": ([py, "-m", "xrobust", "audit", "--model", str(run), "--data", "digits",
                     "--config", str(cfg), "--out", str(t / "rep_cli"), "--no-progress"],
                    clean_env()),
            "python": ([py, "-c", PY_NEW, str(run), str(cfg), str(t / "rep_py")], clean_env()),
        }  # fmt: skip
        if args.old:
            variants["python_old"] = (
                [py, "-c", PY_OLD, str(run), str(cfg), str(t / "rep_old")],
                clean_env(XROBUST_TUNE_MALLOC="0"),
            )
        times: dict[str, list[float]] = {k: [] for k in variants}
        names = list(variants)
        print(f"load before: {load()}", flush=True)
        for i in range(args.rounds):
            order = names if i % 2 == 0 else names[::-1]  # alternate who goes first
            for name in order:
                cmd, env = variants[name]
                dt = timed(cmd, env)
                times[name].append(dt)
                print(f"round {i + 1} {name:<10} {dt:6.1f} s  (load {load()})", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"{k:<10} median {med[k]:6.1f} s  runs {', '.join(f'{x:.1f}' for x in v)}")
        for k in med:
            if k != "cli":
                print(f"ratio {k} / cli: {med[k] / med['cli']:.2f}")


if __name__ == "__main__":
    main()

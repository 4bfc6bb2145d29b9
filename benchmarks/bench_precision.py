"""Reduced-precision attack search: the ensemble with ``precision="bf16"`` and in fp32
against the reference AutoAttack's APGD-CE + APGD-T, side by side, plus the demo audit.

For each of the four settings (the standard and the PGD-trained digits small_cnn, Linf
0.1 and L2 1.0, the first ``--n`` test digits) one run per repeat of each of: the
ensemble in fp32, the ensemble in bf16 (search passes under autocast, every verdict
fp32's), and the reference (``pyautoattack``: APGD-CE then APGD-T, 100 iterations, 9
targets, as users run it), in an order that rotates every repeat (the machine is
shared: ratios come from these interleaved runs). Prints the seconds, speed-ups, robust
accuracies (all judged by an fp32 forward pass at the returned adversarials) and which
images' verdicts differ between bf16 and fp32. ``--demo`` also times
``xrobust audit --demo`` with ``--precision fp32`` and ``bf16``, alternating. Run by
hand:

    .venv/bin/python benchmarks/bench_precision.py                     # four settings
    .venv/bin/python benchmarks/bench_precision.py --n 64 --repeats 1  # quick look
    .venv/bin/python benchmarks/bench_precision.py --only demo --repeats 1
    python benchmarks/bench_precision.py --device cuda --precisions fp32,bf16,fp16  # a GPU
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_attacks as ba  # the shared models and the reference runner

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (("linf", 0.1), ("l2", 1.0))


def _sync() -> None:
    if ba.DEVICE.type == "cuda":
        torch.cuda.synchronize(ba.DEVICE)


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    _sync()
    t = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - t, out


def _runners(model, x, y, norm: str, eps: float, precisions: list[str]) -> dict:
    from xrobust.attacks import Ensemble

    def ours(p: str) -> Callable[[], torch.Tensor]:
        return lambda: Ensemble(model, eps=eps, norm=norm, seed=0, precision=p).run(x, y).x_adv

    runs = {f"ensemble {p}": ours(p) for p in precisions}
    runs["reference"] = lambda: ba._reference_autoattack(model, x, y, norm, eps, 0).to(x.device)
    return runs


def bench_setting(label: str, model, x, y, norm: str, eps: float, args) -> list[str]:
    """One setting: every runner once per repeat, in a rotating order."""
    runs = _runners(model, x, y, norm, eps, args.precisions)
    names = list(runs)
    secs: dict[str, list[float]] = {k: [] for k in names}
    robust: dict[str, torch.Tensor] = {}
    for i in range(args.repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            s, x_adv = _timed(runs[name])
            secs[name].append(s)
            with torch.no_grad():
                robust[name] = model(x_adv).argmax(1) == y  # fp32 verdicts for everyone
            print(f"  {label} {norm} {eps} {name}: {s:.1f} s", file=sys.stderr, flush=True)
    ref = "reference"
    rows = []
    for name in names:
        med = float(np.median(secs[name]))
        vs_ref = [r / o for r, o in zip(secs[ref], secs[name])]
        fp32 = secs.get("ensemble fp32")
        vs_fp32 = [a / b for a, b in zip(fp32, secs[name])] if fp32 else []
        diff = ""
        if name.startswith("ensemble") and "ensemble fp32" in robust and name != "ensemble fp32":
            d = (robust[name] != robust["ensemble fp32"]).nonzero().squeeze(1).tolist()
            diff = f"{len(d)}: {d}" if d else "0"
        rows.append(
            f"| {label} | {norm} {eps} | {name} | {med:.1f} | "
            f"{_ratio(vs_ref) if name != ref else '1'} | "
            f"{_ratio(vs_fp32) if vs_fp32 else ''} | "
            f"{float(robust[name].float().mean()):.4f} ({int(robust[name].sum())}) | {diff} |"
        )
        print(rows[-1], flush=True)
    return rows


def _ratio(r: list[float]) -> str:
    if len(r) == 1:
        return f"{r[0]:.2f}x"
    return f"{np.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})"


def bench_demo(args) -> None:
    """``xrobust audit --demo`` with each precision, alternating, in fresh processes."""
    exe = str(Path(sys.executable).parent / "xrobust")
    secs: dict[str, list[float]] = {p: [] for p in args.precisions}
    worst: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            order = args.precisions if i % 2 == 0 else args.precisions[::-1]
            for p in order:
                out = Path(tmp) / f"demo-{p}-{i}"
                cmd = [exe, "audit", "--demo", "--out", str(out), "--precision", p]
                t = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                secs[p].append(time.perf_counter() - t)
                print(f"  demo {p}: {secs[p][-1]:.1f} s (exit {proc.returncode})", file=sys.stderr)
                worst[p] = _demo_worst(out / "report.json")
    print("\n| demo audit | seconds: median (runs) | worst-case robust accuracy (headline) |")
    print("|---|---|---|")
    for p in args.precisions:
        runs = ", ".join(f"{s:.0f}" for s in secs[p])
        print(f"| --precision {p} | {np.median(secs[p]):.1f} ({runs}) | {worst[p]} |", flush=True)


def _demo_worst(path: Path) -> str:
    import json

    if not path.exists():
        return "no report"
    norms = json.loads(path.read_text())["sections"]["adversarial"]["data"]["norms"]
    parts = []
    for name, nd in norms.items():
        i = nd["eps"].index(nd["headline_eps"])
        parts.append(
            f"{name} {nd['headline_eps']:g}: {nd['curves']['worst']['robust_accuracy'][i]:.4f}"
        )
    return "; ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="settings", help="settings, demo or settings,demo")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default="fp32,bf16", help="comma-separated (fp32 first)")
    ap.add_argument("--models", default="standard,pgd", help="standard, pgd or both")
    ap.add_argument("--norms", default="linf,l2", help="threat models: linf (0.1), l2 (1.0)")
    args = ap.parse_args()
    args.precisions = args.precisions.split(",")
    ba.DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {ba.DEVICE}, threads {torch.get_num_threads()}, "
          f"load average at the start {' '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    only = set(args.only.split(","))
    if "settings" in only:
        model, x, y = ba.get_model_and_data(args.n, args.epochs)
        models = {"standard": model}
        if "pgd" in args.models:
            models["PGD-trained"] = ba.pgd_trained_model(args.epochs)
        if "standard" not in args.models:
            models.pop("standard")
        print(f"\n{len(x)} digits; robust accuracy judged by fp32 at each output (images)")
        print("\n| model | threat | run | seconds | speed-up over reference | over fp32 | "
              "robust accuracy | images differing from fp32 |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for label, m in models.items():
            for norm, eps in (s for s in SETTINGS if s[0] in args.norms.split(",")):
                bench_setting(label, m, x, y, norm, eps, args)
    if "demo" in only:
        bench_demo(args)
    print(f"\nload average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""Explainers: our overhead over calling Captum directly, and bounded memory of IG.

Run by hand (never in tests):

    .venv/bin/python benchmarks/bench_explain.py            # both parts
    .venv/bin/python benchmarks/bench_explain.py --part overhead --reps 7
    .venv/bin/python benchmarks/bench_explain.py --part memory
    .venv/bin/python benchmarks/bench_explain.py --part quality   # deletion/insertion, sanity

1. Overhead: saliency, integrated gradients and smoothgrad through ``xrobust.explain`` vs
   Captum called directly with the same arguments (same targets, same internal batch size /
   noise batch size), on the same batch of digits (1x28x28) through a LeNet-like CNN.
   Calls are interleaved in pairs (alternating order) and timed in process CPU time on one
   thread, which waiting for a busy core does not inflate; the median of the paired ratios
   and the ratio of the best times are reported.
2. Memory: integrated gradients (64 steps) on 3x224x224 images through a small conv net,
   once with our automatic chunking (256 MB budget) and once with plain Captum without
   ``internal_batch_size``. Each measurement runs in a fresh subprocess, warms up with a
   one-row IG (so that library code pages are resident) and reports the growth of the peak
   resident set size (``ru_maxrss``) over the RSS before the call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    """Same shape as the test suite's digits CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class WideConv(nn.Module):
    """A small conv net on 224x224 inputs with large activations (~20 MB per row)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 32, 3, padding=1, stride=2)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.relu(self.c3(x))
        return self.head(x.mean((2, 3)))


def _digits(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images[:n], dtype=torch.float32).unsqueeze(1) / 16.0
    return F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)


def _cpu_seconds(fn) -> float:  # type: ignore[no-untyped-def]
    """CPU time of this process for one call: unlike wall time it does not count the time
    spent waiting for a core, so it stays meaningful on a shared, overloaded machine."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def overhead(reps: int, batch: int) -> list[dict[str, object]]:
    import captum.attr as ca

    from xrobust.explain import get_explainer

    torch.manual_seed(0)
    model = LeNet().eval()
    x = _digits(batch)
    with torch.no_grad():
        t = model(x).argmax(1)
    ig_ours = get_explainer("integrated_gradients", model, n_steps=64)
    rows = ig_ours._row_budget(x, torch.device("cpu"))  # what ours picks from the budget
    cases = {
        "saliency": (
            lambda: get_explainer("saliency", model).explain(x, t),
            lambda: ca.Saliency(model).attribute(x, target=t),
        ),
        "integrated_gradients (64 steps)": (
            lambda: ig_ours.explain(x, t),
            lambda: ca.IntegratedGradients(model).attribute(
                x,
                baselines=torch.zeros_like(x),
                target=t,
                n_steps=64,
                internal_batch_size=rows,
                return_convergence_delta=True,
            ),
        ),
        "smoothgrad (16 samples)": (
            lambda: get_explainer(
                "smoothgrad", model, nt_samples=16, nt_samples_batch_size=4
            ).explain(x, t, seed=0),
            lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(
                x,
                nt_type="smoothgrad",
                nt_samples=16,
                nt_samples_batch_size=4,
                stdevs=0.15,
                target=t,
            ),
        ),
    }
    out = []
    for name, (ours, theirs) in cases.items():
        ours()
        theirs()  # warm up
        t_ours, t_theirs = [], []
        for i in range(reps):  # interleaved pairs, order alternating, so load hits both alike
            pair = (theirs, ours) if i % 2 == 0 else (ours, theirs)
            times = {id(f): _cpu_seconds(f) for f in pair}
            t_ours.append(times[id(ours)])
            t_theirs.append(times[id(theirs)])
        ratios = [o / t for o, t in zip(t_ours, t_theirs)]
        out.append(
            {
                "method": name,
                "captum CPU ms (best)": round(min(t_theirs) * 1000, 1),
                "xrobust CPU ms (best)": round(min(t_ours) * 1000, 1),
                "overhead of best (%)": round(100 * (min(t_ours) / min(t_theirs) - 1), 1),
                "median paired overhead (%)": round(100 * (statistics.median(ratios) - 1), 1),
            }
        )
    return out


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _child(mode: str, batch: int, n_steps: int, budget_mb: float) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = WideConv().eval()
    x = torch.rand(batch, 3, 224, 224)
    with torch.no_grad():
        t = model(x[:1]).argmax(1).expand(batch).clone()
    if mode == "xrobust":
        from xrobust.explain import get_explainer
        from xrobust.explain.base import _estimate_row_bytes

        ex = get_explainer(
            "integrated_gradients", model, n_steps=n_steps, memory_budget_mb=budget_mb
        )
        row = _estimate_row_bytes(model, x[:1], True)
        rows = ex._row_budget(x, torch.device("cpu"))
        run = lambda: ex.explain(x, t)  # noqa: E731
    else:
        import captum.attr as ca

        row, rows = None, batch * n_steps
        run = lambda: ca.IntegratedGradients(model).attribute(  # noqa: E731
            x, baselines=torch.zeros_like(x), target=t, n_steps=n_steps
        )
    # warm up on one row with two steps, the same for both modes, so that the code pages of
    # the backward kernels and the allocator's first arenas are already resident: the growth
    # measured below is then the data of the call itself
    import captum.attr as ca_warm

    ca_warm.IntegratedGradients(model).attribute(x[:1], target=t[:1], n_steps=2)
    before = _rss_kb()
    t0 = time.perf_counter()
    run()
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "mode": mode,
                "rss_before_mb": round(before / 1024, 1),
                "peak_rss_mb": round(peak / 1024, 1),
                "peak_growth_mb": round((peak - before) / 1024, 1),
                "rows_per_pass": rows,
                "estimated_row_mb": None if row is None else round(row / 2**20, 2),
                "seconds": round(secs, 2),
            }
        )
    )


def memory(batch: int, n_steps: int, budget_mb: float, runs: int) -> list[dict[str, object]]:
    out = []
    for mode, n in (("xrobust", runs), ("captum", 1)):
        for _ in range(n):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--batch",
                str(batch),
                "--n-steps",
                str(n_steps),
                "--budget-mb",
                str(budget_mb),
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            d = json.loads(res.stdout.strip().splitlines()[-1])
            d["budget_mb"] = budget_mb if mode == "xrobust" else None
            out.append(d)
    return out


def _trained_lenet() -> tuple[nn.Module, torch.Tensor]:
    """LeNet trained on digits with the test suite's recipe (same split, seed, epochs)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:-300], perm[-300:]
    torch.manual_seed(0)
    model = LeNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        p = torch.randperm(len(tr), generator=g)
        for i in range(0, len(tr), 64):
            idx = tr[p[i : i + 64]]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval(), x[te]


def quality(n: int) -> list[dict[str, object]]:
    from xrobust.explain import explain
    from xrobust.explain.metrics import (
        deletion_curve,
        ig_completeness,
        insertion_curve,
        model_randomisation_check,
    )

    model, x_test = _trained_lenet()
    x = x_test[:n]
    base = explain(model, x, method="saliency")
    rnd = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    rows = []
    for name, kw in (
        ("integrated_gradients", {}),
        ("occlusion", {}),
        ("saliency", {}),
        ("gradcam", {}),
        ("random", None),
    ):
        attr = rnd if kw is None else explain(model, x, base.target, name, **kw)
        sanity = "" if kw is None else model_randomisation_check(model, x, name).final_spearman
        rows.append(
            {
                "attribution": name,
                "deletion AUC (lower better)": round(
                    deletion_curve(model, x, attr, base.target).mean_auc, 3
                ),
                "insertion AUC (higher better)": round(
                    insertion_curve(model, x, attr, base.target).mean_auc, 3
                ),
                "sanity: final Spearman (pass < 0.5)": sanity if sanity == "" else round(sanity, 2),
            }
        )
    ig_u = model_randomisation_check(model, x, "integrated_gradients", baselines="uniform")
    rows.append(
        {
            "attribution": "integrated_gradients, uniform-noise baseline",
            "deletion AUC (lower better)": "",
            "insertion AUC (higher better)": "",
            "sanity: final Spearman (pass < 0.5)": round(ig_u.final_spearman, 2),
        }
    )
    for steps in (16, 32, 64):
        c = ig_completeness(model, x_test[:64], n_steps=steps)
        rows.append(
            {
                "attribution": f"IG completeness, {steps} steps, 64 images: max relative delta",
                "deletion AUC (lower better)": "",
                "insertion AUC (higher better)": "",
                "sanity: final Spearman (pass < 0.5)": f"{c.max_rel_delta:.4f}",
            }
        )
    return rows


def _table(rows: list[dict[str, object]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("overhead", "memory", "quality", "all"), default="all")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--n-steps", type=int, default=64)
    p.add_argument("--budget-mb", type=float, default=256.0)
    p.add_argument("--mem-runs", type=int, default=3, help="fresh processes for xrobust's run")
    p.add_argument("--child", choices=("xrobust", "captum"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        _child(a.child, a.batch or 2, a.n_steps, a.budget_mb)
        return
    torch.set_num_threads(1)  # one thread: CPU time = work (memory children use 2)
    warnings.filterwarnings("ignore", category=UserWarning)  # Captum's notes, both sides
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
        f"{platform.machine()}, {torch.get_num_threads()} threads, cuda={torch.cuda.is_available()}"
    )
    if a.part in ("overhead", "all"):
        print(f"\n## overhead, batch {a.batch or 128} digits, {a.reps} interleaved pairs\n")
        print(_table(overhead(a.reps, a.batch or 128)))
    if a.part in ("quality", "all"):
        print(f"\n## explanation quality, digits CNN, {a.batch or 16} test images\n")
        print(_table(quality(a.batch or 16)))
    if a.part in ("memory", "all"):
        print(f"\n## peak memory, IG {a.n_steps} steps on 2x3x224x224\n")
        print(_table(memory(a.batch or 2, a.n_steps, a.budget_mb, a.mem_runs)))


if __name__ == "__main__":
    main()
